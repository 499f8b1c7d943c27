"""QLoRA on the tiny model, for real: bitsandbytes 4-bit (and 8-bit) loading runs on CPU too, so
the base model is quantized, peft prepares it, LoRA trains, and final/ is the adapter merged into
the 16-bit base (a plain model: no quantization_config)."""

import json

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.e2e

RECIPE = """\
method: {method}
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
  quantization: {quantization}
data:
  train:
    - {{task: {task}, n: 32}}
peft: {{r: 4, lora_alpha: 8, target_modules: all-linear}}
batch: {{per_device: 4, global: 4}}
trainer: {{max_steps: 2, learning_rate: 1.0e-3, logging_steps: 1, seed: 0}}
run: {{name: {name}, dir: {dir}}}
"""


@pytest.mark.parametrize("name,method,task,quantization,printed", [
    ("qlora-sft", "sft", "arithmetic", "{bits: 4, quant_type: nf4, double_quant: true}",
     "base model loaded in 4-bit (nf4, compute torch.float32, double quant) for LoRA training"),
    ("int8-dpo", "dpo", "arithmetic_pairs", "{bits: 8}", "base model loaded in 8-bit for LoRA training"),
])
def test_quantized_lora_trains_and_merges_into_the_16_bit_base(tmp_path, capsys, name, method, task,
                                                                quantization, printed):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(method=method, task=task, quantization=quantization, name=name,
                                    dir=tmp_path / "runs"))
    assert main(["run", str(recipe)]) == 0
    assert printed in capsys.readouterr().out
    run = tmp_path / "runs" / name
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 2
    config = json.loads((run / "final" / "config.json").read_text())
    assert "quantization_config" not in config  # a plain model, merged into the unquantized base
    assert (run / "adapter" / "adapter_config.json").is_file()
    start = load_file(str(tiny_model_path(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4,
                                                        intermediate_size=128)) / "model.safetensors"))
    end = load_file(str(run / "final" / "model.safetensors"))
    moved = {k for k in start if not (start[k] == end[k]).all()}
    assert moved and all("proj" in k for k in moved)  # the merged LoRA moved the projections only
    AutoModelForCausalLM.from_pretrained(run / "final")  # loads without bitsandbytes settings
