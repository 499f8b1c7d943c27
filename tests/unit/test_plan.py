"""`posttrain plan`: model sizes, DeepSpeed's own estimators, the recommendation."""

import pytest

from posttrain.cli import main
from posttrain.launch.plan import ModelSize, activations_per_gpu, model_size, model_states_per_gpu, plan


def llama_8b():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False)


def test_parameter_count_from_config_alone():
    size = model_size(llama_8b())  # built on the meta device: no weights, no download
    assert size.parameters == 8_030_261_248 and size.largest_layer == 128256 * 4096


@pytest.mark.parametrize("gpus", [1, 8, 64])
@pytest.mark.parametrize("offload", [False, True])
def test_zero2_and_zero3_agree_with_deepspeed(gpus, offload):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    size = model_size(llama_8b())
    zero2 = estimate_zero2_model_states_mem_needs(size.parameters, gpus, 1, cpu_offload=offload)[1]
    zero3 = estimate_zero3_model_states_mem_needs(size.parameters, size.largest_layer, gpus, 1,
                                                  cpu_offload=offload, cpu_offload_params=offload)[1]
    assert model_states_per_gpu(size, 2, gpus, offload) == zero2
    assert model_states_per_gpu(size, 3, gpus, offload) == zero3


def test_stages_shrink_and_checkpointing_saves_activations():
    size = ModelSize(parameters=10**9, largest_layer=10**8, layers=24, hidden=2048, vocab=32000)
    per_stage = [model_states_per_gpu(size, stage, 8) for stage in (0, 1, 2, 3)]
    assert per_stage == sorted(per_stage, reverse=True) and per_stage[0] == 20 * 10**9
    assert activations_per_gpu(size, 1, 4096, True) < activations_per_gpu(size, 1, 4096, False)


def test_recommends_the_simplest_option_that_fits():
    size = model_size(llama_8b())
    assert plan(size, 64, 1, 4096, True, 80)["recommended"] == "zero1"   # 64.7 GiB per GPU
    assert plan(size, 8, 1, 4096, True, 80)["recommended"] == "zero2"    # 37.5 GiB per GPU
    assert plan(size, 1, 1, 4096, True, 24)["recommended"] == "zero2-offload"  # 18.4 GiB
    assert plan(size, 1, 1, 4096, True, 4)["recommended"] is None


def test_plan_command_on_the_tiny_recipe(write_recipe, capsys):
    path = write_recipe("method: sft\ndata:\n  train:\n    - {task: arithmetic}\nbatch: {per_device: 4, global: 8}\n"
                        "launch: {gpus_per_node: 2}\n")
    assert main(["plan", str(path), "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "tiny: 0.001 B parameters; 2 GPUs" in out and "| zero3-offload |" in out
    assert "recommended with 80 GiB GPUs: ddp" in out
