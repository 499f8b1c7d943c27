"""The tiny default model: a Llama config built locally and a byte-level BPE tokenizer trained
locally, so the quickstart and the tests need no network.

Measured on 2 CPU cores (docs/benchmarks.md): width 128, 4 layers, 4 heads (~1.1 M parameters)
learns multi-step arithmetic in a few minutes; a tokenizer that gives every digit its own token
is what makes the arithmetic learnable.

Built once per configuration and cached under $POSTTRAIN_CACHE (default ~/.cache/posttrain).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from posttrain.chat_templates import CHATML_TEMPLATE
from posttrain.errors import UserError
from posttrain.models import cache_root, cached_directory
from posttrain.tasks import arithmetic

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD, BOS, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
TOKENIZER_VERSION = 1  # bump when the corpus or the training procedure changes
# 2: build_tiny writes the weights itself (a cache a launched rank built under version 1 could
# hold the tokenizer only: transformers 5's save_pretrained writes nothing on ranks other than 0)
LAYOUT_VERSION = 2

_ENGLISH = (
    "The quick brown fox jumps over the lazy dog. A model learns from examples; it is scored on "
    "problems it has never seen. Think step by step, check each step, and give the final answer. "
    "Wait, that step is wrong: let me go back and fix it. Question: what is the result? "
    "Yes. No. Compute, add, subtract, multiply, divide, total, answer, because, therefore."
)


def _corpus() -> list[str]:
    """Text to train the tokenizer on: rendered arithmetic conversations and some English."""
    lines = [_ENGLISH] * 20
    for record in arithmetic(2000, split="train", seed=12345):
        lines.append(record["prompt"][0]["content"] + "\n" + record["completion"][0]["content"])
    return lines


def train_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer in which every digit is its own token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=None
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.padding_side = "right"
    return fast


def _key(spec) -> str:
    blob = json.dumps({"spec": spec.model_dump(), "tokenizer": TOKENIZER_VERSION, "layout": LAYOUT_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tiny_config(spec, **overrides):
    """The tiny model's LlamaConfig (what `posttrain plan` sizes without building anything)."""
    from transformers import LlamaConfig

    settings = dict(vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
                    intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
                    num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
                    max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=True)
    return LlamaConfig(**{**settings, **overrides})


def build_tiny(spec, directory: Path) -> None:
    """Write a tiny Llama model and its tokenizer into `directory`."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(spec.vocab_size)
    config = tiny_config(spec, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    # Written directly, not by model.save_pretrained: transformers 5 writes nothing on a rank other
    # than 0 once torch.distributed is up, and a launched rank can be the one that builds the cache.
    from safetensors.torch import save_file

    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()
               if name != "lm_head.weight"}  # tied to the input embeddings, as save_pretrained leaves it out
    save_file(weights, str(Path(directory) / "model.safetensors"), metadata={"format": "pt"})
    model.config.architectures = [type(model).__name__]
    model.config.dtype = torch.float32
    model.config.save_pretrained(directory)
    model.generation_config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def tiny_model_path(spec) -> Path:
    """The cached directory of the tiny model for `spec`, built on first use; a damaged one (a
    file changed, cut short or missing) is set aside and built again (models.cached_directory)."""
    target = cache_root() / "tiny" / _key(spec)
    try:
        return cached_directory(target, lambda staging: build_tiny(spec, staging),
                                f"the cached tiny model in {target} is damaged; building it again")
    except OSError as exc:
        raise UserError(f"cannot build the tiny model in {target.parent} ({exc.strerror or exc}); "
                        "free space there or set POSTTRAIN_CACHE to another directory") from None
