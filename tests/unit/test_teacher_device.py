"""teacher.device: the teacher's layers on a device of their own, its embeddings and output layer
on the student's (where TRL 1.16's chunked loss compares the two heads). The map is checked on two
architectures; the recipe refusals name the key. The dispatch itself runs end to end on CPU
(tests/e2e/test_new_methods_run.py); a second GPU was not available to run it across devices."""

import pytest
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from posttrain.errors import RecipeError
from posttrain.recipe import load_recipe
from posttrain.trainers.distill import teacher_device_map


def test_a_llama_teachers_layers_go_to_its_device_and_its_tied_embeddings_stay_with_the_student():
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config)
    assert teacher_device_map(model, "cuda:0", "cuda:1") == {
        "lm_head": "cuda:0", "model.embed_tokens": "cuda:0", "model.layers.0": "cuda:1", "model.layers.1": "cuda:1",
        "model.layers.2": "cuda:1", "model.norm": "cuda:1", "model.rotary_emb": "cuda:1"}
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied: one device for both, as mapped


def test_a_gpt2_teacher_is_mapped_by_the_same_rule():
    model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4))
    placed = teacher_device_map(model, "cuda:0", "cuda:1")
    assert placed["lm_head"] == placed["transformer.wte"] == "cuda:0"
    assert placed["transformer.h.0"] == placed["transformer.h.1"] == placed["transformer.ln_f"] == "cuda:1"
    assert placed["transformer.wpe"] == "cuda:1"  # position embeddings are not the output layer's tensor
    # every parameter is placed exactly once
    covered = [name for name, _ in model.named_parameters()
               if sum(name == key or name.startswith(key + ".") for key in placed) == 1]
    assert len(covered) == len(list(model.named_parameters()))


def recipe(tmp_path, teacher: str, extra: str = ""):
    path = tmp_path / "distill.yaml"
    path.write_text(f"""\
method: distill
model: {{name_or_path: tiny}}
teacher: {{name_or_path: tiny, {teacher}}}
data: {{train: [{{task: arithmetic, n: 8}}]}}
trainer: {{max_steps: 1, max_completion_length: 8}}
{extra}""")
    return path


def test_validate_refuses_a_teacher_device_with_several_processes_or_a_malformed_name(tmp_path):
    load_recipe(recipe(tmp_path, "device: cuda:1"))  # one process: accepted
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe(tmp_path, "device: cuda:1", "launch: {gpus_per_node: 2}\n"))
    assert info.value.key == "teacher.device" and "one process holding both models" in info.value.message
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe(tmp_path, "device: cuda:1", "launch: {zero: 3}\n"))
    assert info.value.key == "teacher.device" and "shards the teacher" in info.value.message
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe(tmp_path, "device: gpu1"))
    assert info.value.key == "teacher.device"
