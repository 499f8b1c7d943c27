"""eval.engine (issue 16, point 3): what can be checked without a GPU. Which engine a run gets,
that `engine: vllm` where it cannot run fails before training and names the key, and that
vLLM's request and its outputs map onto posttrain's sampling settings and answers. vLLM itself
runs in tests/gpu/test_gpu_suite.py (a GPU only)."""

from types import SimpleNamespace

import pytest

from posttrain.cli import main
from posttrain.recipe import Device, load_run
from posttrain.recipe.device import eval_engine
from posttrain.sampling import vllm_answers, vllm_arguments

RECIPE = """\
method: sft
model: {{name_or_path: tiny, tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}}}
data: {{train: [{{task: arithmetic, n: 16}}]}}
trainer: {{max_steps: 2, save_strategy: "no"}}
eval: {{data: [{{task: arithmetic, split: heldout, n: 4}}], engine: {engine}}}
run: {{dir: {dir}}}
"""


def _loaded(write_recipe, tmp_path, engine):
    return load_run(write_recipe(RECIPE.format(engine=engine, dir=tmp_path / "runs")))


@pytest.mark.parametrize("engine,cuda,installed,expected", [
    ("auto", False, True, "hf"), ("auto", True, False, "hf"), ("auto", True, True, "vllm"),
    ("hf", True, True, "hf"), ("vllm", True, True, "vllm"),
])
def test_the_engine_a_run_gets(write_recipe, tmp_path, monkeypatch, engine, cuda, installed, expected):
    from posttrain.recipe import device as device_module

    monkeypatch.setattr(device_module, "_importable", lambda name: installed)
    loaded = _loaded(write_recipe, tmp_path, engine)
    assert eval_engine(loaded, Device(cuda=cuda, bf16=cuda, world_size=1)) == expected


@pytest.mark.parametrize("cuda,message", [(False, "needs a GPU, and this machine has none"),
                                           (True, "needs the vllm package")])
def test_engine_vllm_where_it_cannot_run_names_the_key(write_recipe, tmp_path, monkeypatch, cuda, message):
    from posttrain.recipe import device as device_module

    monkeypatch.setattr(device_module, "_importable", lambda name: False)
    loaded = _loaded(write_recipe, tmp_path, "vllm")
    with pytest.raises(Exception) as caught:
        eval_engine(loaded, Device(cuda=cuda, bf16=cuda, world_size=1))
    assert "eval.engine" in str(caught.value) and message in str(caught.value)


def test_a_run_with_engine_vllm_on_this_machine_stops_before_training(write_recipe, tmp_path, capsys):
    path = write_recipe(RECIPE.format(engine="vllm", dir=tmp_path / "runs"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "eval.engine" in err and "engine: vllm needs" in err
    assert not list((tmp_path / "runs").rglob("checkpoint-*")) and not list((tmp_path / "runs").rglob("final"))


def test_vllm_is_asked_for_the_same_sampling_as_the_hf_path():
    from transformers import GenerationConfig

    tokenizer = SimpleNamespace(eos_token_id=5)
    llm, params = vllm_arguments("/m", GenerationConfig(eos_token_id=[7, 9]), tokenizer, max_new_tokens=48, n=1,
                                 temperature=0.0, top_p=1.0, seed=3)
    assert llm == {"model": "/m", "tokenizer": "/m", "seed": 3, "gpu_memory_utilization": 0.5,
                   "enable_prefix_caching": True}
    assert params == {"n": 1, "max_tokens": 48, "seed": 3, "skip_special_tokens": True, "stop_token_ids": [7, 9],
                      "temperature": 0.0, "top_p": 1.0, "top_k": -1}
    # sampled: generate's default top-k (50) unless the generation config sets one; options win
    _, params = vllm_arguments("/m", None, tokenizer, max_new_tokens=8, n=4, temperature=0.7, top_p=0.9, seed=0)
    assert (params["n"], params["temperature"], params["top_p"], params["top_k"], params["stop_token_ids"]) == \
        (4, 0.7, 0.9, 50, [5])
    llm, params = vllm_arguments("/m", GenerationConfig(top_k=20), tokenizer, max_new_tokens=8, n=2,
                                 temperature=1.0, top_p=1.0, seed=0, options={"gpu_memory_utilization": 0.8})
    assert params["top_k"] == 20 and llm["gpu_memory_utilization"] == 0.8


def test_vllm_outputs_become_answers_as_the_hf_path_writes_them():
    """Outputs shaped like vLLM's RequestOutput (outputs[i].token_ids, finish_reason), decoded by
    posttrain's tokenizer; a cut answer loses its unfinished last line when asked."""
    from transformers import AutoTokenizer

    from posttrain.recipe.schema import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path(TinyModelSpec()))

    def completion(text, reason):
        return SimpleNamespace(token_ids=tuple(tokenizer(text, add_special_tokens=False)["input_ids"]),
                               finish_reason=reason)

    outputs = [SimpleNamespace(outputs=[completion("3 + 4 = 7\nAnswer: 7<|im_end|>", "stop"),
                                        completion("3 + 4 = 7\nAnswer: 1", "length")]),
               SimpleNamespace(outputs=[completion("Answer", "length"), completion("x\ny", "stop")])]
    assert vllm_answers(outputs, tokenizer, 2, trim_unfinished=False) == [
        ["3 + 4 = 7\nAnswer: 7", "3 + 4 = 7\nAnswer: 1"], ["Answer", "x\ny"]]
    assert vllm_answers(outputs, tokenizer, 2, trim_unfinished=True) == [
        ["3 + 4 = 7\nAnswer: 7", "3 + 4 = 7\n"], ["Answer", "x\ny"]]
