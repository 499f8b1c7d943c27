"""`posttrain plan`: model sizes, DeepSpeed's own estimators, the recommendation."""

from pathlib import Path

import pytest

from posttrain.cli import main
from posttrain.launch.plan import (OPTIONS, ModelSize, Workload, activations_per_gpu, lora_parameters, model_size,
                                   model_states_per_gpu, plan)


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
    assert plan(size, 1, 1, 4096, True, 24)["recommended"] == "zero3-offload"  # not zero2-offload: no recipe can ask for it
    assert plan(size, 1, 1, 4096, True, 4)["recommended"] is None


def test_plan_command_on_the_tiny_recipe(write_recipe, capsys):
    path = write_recipe("method: sft\ndata:\n  train:\n    - {task: arithmetic}\nbatch: {per_device: 4, global: 8}\n"
                        "launch: {gpus_per_node: 2}\n")
    assert main(["plan", str(path), "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "tiny: 0.001 B parameters; 2 GPUs" in out and "| zero3-offload |" in out
    assert "recommended with 80 GiB GPUs: ddp" in out


def qwen3_4b():
    from transformers import Qwen3Config

    return Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                       num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True)


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"]])
def test_lora_parameters_are_what_peft_adds(targets):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = qwen3_4b()
    with torch.device("meta"):
        model = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(r=8, target_modules=targets))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_parameters(model_size(config), 8, targets) == trainable


def test_a_lora_run_is_planned_as_lora(write_recipe):
    """Issue 13: a 4B LoRA on one GPU was planned as 74.9 GiB and zero3."""
    size = model_size(qwen3_4b())
    work = Workload(trainable=lora_parameters(size, 8, "all-linear"))
    full = plan(size, 1, 1, 2048, True, 80)
    lora = plan(size, 1, 1, 2048, True, 80, work)
    ddp = lambda result: next(r for r in result["rows"] if r["option"] == "ddp")  # noqa: E731
    assert ddp(full)["model_states_gib"] > 70 and full["recommended"] != "ddp"
    assert ddp(lora)["model_states_gib"] < 9 and lora["recommended"] == "ddp"  # 16-bit base + adapter states


def test_4_bit_weights_are_what_bitsandbytes_stores():
    """The frozen 4-bit base as bitsandbytes really holds it (it runs on CPU): the estimate is
    within 2 % of the quantized model's parameters and buffers plus its quantization constants
    (each 4-bit weight's quant_state: absmax, code tables, the nested state of double quant;
    get_memory_footprint alone leaves those out)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

    config = LlamaConfig(vocab_size=512, hidden_size=512, intermediate_size=1536, num_hidden_layers=2,
                         num_attention_heads=8, tie_word_embeddings=False)
    size = model_size(config)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    path = Path(__import__("tempfile").mkdtemp())
    model.save_pretrained(path)
    for double in (False, True):
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=double,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        quantized = AutoModelForCausalLM.from_pretrained(path, quantization_config=q, device_map={"": "cpu"},
                                                         dtype=torch.bfloat16)
        from posttrain.launch.plan import DOUBLE_QUANT_BYTES, QUANTIZED_BYTES

        per_weight = DOUBLE_QUANT_BYTES if double else QUANTIZED_BYTES[4]
        estimate = model_states_per_gpu(size, 0, 1, work=Workload(trainable=0, frozen_linear_bytes=per_weight))
        constants = 0
        for module in quantized.modules():
            state = getattr(getattr(module, "weight", None), "quant_state", None)
            if state is None:
                continue
            tensors = [state.absmax, state.code] + ([state.state2.absmax, state.state2.code] if state.nested else [])
            constants += sum(t.numel() * t.element_size() for t in tensors)
        assert estimate == pytest.approx(quantized.get_memory_footprint() + constants, rel=0.02), double


def test_reference_models_and_grpo_lengths_and_colocated_vllm(write_recipe, capsys):
    dpo = write_recipe("method: dpo\ndata:\n  train:\n    - {task: arithmetic_pairs}\nbatch: {per_device: 4}\n", "dpo.yaml")
    assert main(["plan", str(dpo)]) == 0
    assert "a frozen reference model" in capsys.readouterr().out
    rlvr = write_recipe("method: rlvr\ndata:\n  train:\n    - {task: arithmetic}\nrewards: [{name: numeric}]\n"
                        "batch: {per_device: 8}\ntrainer: {max_completion_length: 1024, use_vllm: true, beta: 0.04}\n"
                        "launch: {gpus_per_node: 8}\n", "rlvr.yaml")
    assert main(["plan", str(rlvr), "--prompt-len", "256"]) == 0
    out = capsys.readouterr().out
    assert "sequence 1280" in out and "sequence = prompt 256 + completion 1024" in out
    assert "colocated vLLM takes 30% of each GPU" in out and "a frozen reference model" in out
    size = ModelSize(parameters=10**9, largest_layer=10**8, layers=24, hidden=2048, vocab=32000)
    alone, with_ref = (model_states_per_gpu(size, 0, 1, work=Workload(reference=r)) for r in (False, True))
    assert with_ref - alone == 2 * 10**9


@pytest.mark.parametrize("gpu_memory", [4, 24, 40, 80, 141])
def test_every_recommendation_is_a_launch_block_the_schema_accepts(write_recipe, gpu_memory):
    from posttrain.recipe import load_run

    size = model_size(llama_8b())
    recommended = plan(size, 8, 1, 4096, True, gpu_memory)["recommended"]
    launch = {name: (stage, offload) for name, stage, offload in OPTIONS}
    if recommended is not None:
        stage, offload = launch[recommended]
        path = write_recipe("method: sft\ndata:\n  train:\n    - {task: arithmetic}\n"
                            f"launch: {{gpus_per_node: 8, zero: {stage}, offload: {str(offload).lower()}}}\n")
        load_run(path)  # validates
