"""`posttrain consolidate CHECKPOINT OUTPUT`: a DeepSpeed ZeRO checkpoint (any stage; the shards
under global_stepN/) into a normal Hugging Face model directory, on CPU.

DeepSpeed's `zero_to_fp32 --safe_serialization` fails on tied embeddings (measured with DeepSpeed 0.19.8): here the fp32
state dict is loaded into the model built from the checkpoint's config, tied weights are tied
again, and `save_pretrained` writes safetensors (one copy of a tied tensor). The tokenizer and
generation config are copied. Written atomically.

DeepSpeed loads its shards with `weights_only=False`, which runs whatever a planted pickle says;
here every load is weights-only (models.weights_only_loading), so a checkpoint someone else wrote
is refused in one line unless --trust-checkpoint says otherwise.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from posttrain import models
from posttrain.errors import UserError
from posttrain.rundir import holds_model


def consolidate(checkpoint: Path, output: Path) -> Path:
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForCausalLM

    if not holds_model(checkpoint):
        raise UserError(f"{checkpoint}: no config.json; pass a checkpoint directory (checkpoints/checkpoint-N)")
    if not any(checkpoint.glob("global_step*/*model_states.pt")):
        raise UserError(f"{checkpoint}: no DeepSpeed shards (global_stepN/*model_states.pt); "
                        "a checkpoint without DeepSpeed already holds a normal model")
    with models.weights_only_loading():  # a planted pickle is refused (--trust-checkpoint to allow)
        state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint))
    config = models.load_config(str(checkpoint), what=str(checkpoint))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise UserError(f"{checkpoint}: the shards do not match the model: missing {sorted(set(missing) - tied)}, "
                        f"unexpected {sorted(unexpected)}")
    model.tie_weights()
    staging = output.with_name(output.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    try:
        models.load_tokenizer(str(checkpoint)).save_pretrained(staging)
    except UserError:
        print(f"posttrain: no tokenizer in {checkpoint}; the model is written without one")
    if (checkpoint / "generation_config.json").is_file():
        shutil.copy(checkpoint / "generation_config.json", staging / "generation_config.json")
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    return output
