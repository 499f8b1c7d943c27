"""Bad recipes: each error names the file (and line) and the key path, and says what is expected."""

import subprocess
import sys

import pytest

from posttrain.errors import RecipeError
from posttrain.recipe import Device, check_vllm_installed, load_run, trainer_arguments

GOOD = """\
method: sft
data:
  train:
    - {task: arithmetic, n: 10}
"""

# (name, recipe text, expected key path, fragments the message must contain, expected line)
BAD_RECIPES = [
    ("misspelt top-level key", GOOD + "modle: {name_or_path: tiny}\n", "modle", ["did you mean 'model'"], 5),
    ("misspelt trainer key", GOOD + "trainer: {learnig_rate: 0.1}\n", "trainer.learnig_rate",
     ["did you mean 'learning_rate'"], 5),
    ("removed warmup_ratio", GOOD + "trainer: {warmup_ratio: 0.1}\n", "trainer.warmup_ratio",
     ["warmup_steps", "below 1 is a ratio"], 5),
    ("removed max_seq_length", GOOD + "trainer: {max_seq_length: 512}\n", "trainer.max_seq_length",
     ["max_length"], 5),
    ("removed logging_dir", GOOD + "trainer: {logging_dir: x}\n", "trainer.logging_dir", ["metrics.jsonl"], 5),
    ("managed batch key", GOOD + "trainer: {per_device_train_batch_size: 4}\n",
     "trainer.per_device_train_batch_size", ["batch.per_device"], 5),
    ("managed output_dir", GOOD + "trainer:\n  output_dir: /tmp/x\n", "trainer.output_dir", ["run.dir"], 6),
    ("wrong type", GOOD + "trainer:\n  learning_rate: fast\n", "trainer.learning_rate", ["expected float", "'fast'"], 6),
    ("bool for int", GOOD + "trainer:\n  max_steps: true\n", "trainer.max_steps", ["expected int"], 6),
    ("choice not allowed", GOOD + "trainer: {loss_type: focal}\n", "trainer.loss_type", ["not one of", "nll"], 5),
    # issue 13 point 5: choices TRL lists only in its help text, read from it (not copied here)
    ("GRPO loss_type typo", GOOD.replace("sft", "rlvr") + "rewards: [{name: numeric}]\ntrainer: {loss_type: bnpoo}\n",
     "trainer.loss_type", ["'bnpoo' is not one of", "did you mean 'bnpo'"], 6),
    ("GRPO vllm_mode typo", GOOD.replace("sft", "rlvr") + "rewards: [{name: numeric}]\ntrainer: {vllm_mode: serve}\n",
     "trainer.vllm_mode", ["did you mean 'server'"], 6),
    ("DPO loss_type list typo", GOOD.replace("sft", "dpo").replace("arithmetic,", "arithmetic_pairs,")
     + "trainer: {loss_type: [sigmoid_nrm]}\n", "trainer.loss_type", ["'sigmoid_nrm'", "did you mean 'sigmoid_norm'"], 5),
    ("unknown method", GOOD.replace("sft", "ppo"), "method", ["'sft'", "'dpo'", "'rlvr'"], 1),
    ("no data", "method: sft\n", "data", ["required key is missing"], None),
    ("two kinds in one source", "method: sft\ndata:\n  train:\n    - {task: arithmetic, path: a.jsonl}\n",
     "data.train.0", ["exactly one of 'path'"], 4),
    ("missing data file", "method: sft\ndata:\n  train:\n    - path: nowhere.jsonl\n", "data.train.0.path",
     ["file not found", "relative to the recipe file"], 4),
    ("unknown task", "method: sft\ndata:\n  train:\n    - {task: arithmetc}\n", "data.train.0.task",
     ["did you mean 'arithmetic'"], 4),
    ("fractional up-sampling", "method: sft\ndata:\n  train:\n    - {task: arithmetic, weight: 2.5}\n",
     "data.train.0", ["whole number of records"], 4),
    ("batch arithmetic", GOOD + "batch: {per_device: 4, global: 30}\n", "batch.global",
     ["not a multiple", "per_device (4)", "use 28 or 32"], 5),
    ("batch arithmetic with world size", GOOD + "batch: {per_device: 4, global: 16}\nlaunch: {gpus_per_node: 8}\n",
     "batch.global", ["world size (8) = 32"], 5),
    ("negative batch", GOOD + "batch:\n  per_device: 0\n", "batch.per_device", ["greater than 0"], 6),
    ("bf16 and fp16", GOOD + "trainer: {bf16: true, fp16: true}\n", "trainer.fp16", ["choose one"], 5),
    ("eval without data", GOOD + "trainer: {eval_strategy: steps}\n", "trainer.eval_strategy",
     ["data.eval"], 5),
    ("padding-free truncation", GOOD + "trainer: {padding_free: true}\n", "trainer.padding_free",
     ["max_length: null"], 5),
    ("unknown peft key", GOOD + "peft: {rank: 8}\n", "peft.rank", ["did you mean 'r'"], 5),
    ("tiny heads", GOOD + "model:\n  tiny: {hidden_size: 100, num_heads: 3}\n", "model.tiny",
     ["divisible by num_heads"], 6),
    ("unknown eval reward", GOOD + "eval:\n  data: [{task: arithmetic, split: heldout}]\n  reward: numerc\n",
     "eval.reward", ["did you mean 'numeric'"], 7),
    ("task split", "method: sft\ndata:\n  train:\n    - {task: arithmetic, split: test}\n", "data.train.0.split",
     ["'train' or 'heldout'"], 4),
    ("rpo_alpha in dpo", "method: dpo\ndata:\n  train:\n    - {task: arithmetic}\ntrainer: {rpo_alpha: 1.0}\n",
     "trainer.rpo_alpha", ["loss_type: [sigmoid, sft]"], 5),
    ("quantization through model_init_kwargs", GOOD + "trainer: {model_init_kwargs: {quantization_config: {load_in_4bit: true}}}\n",
     "trainer.model_init_kwargs", ["quantization for 4-/8-bit"], 5),
    ("quantization without peft", GOOD + "model: {quantization: {bits: 4}}\n", "model.quantization",
     ["add a peft block"], 5),
    ("quantization under zero 3", GOOD + "model: {quantization: {bits: 4}}\npeft: {r: 4}\nlaunch: {zero: 3}\n",
     "model.quantization", ["ZeRO-3"], 5),
    ("8-bit with a 4-bit option", GOOD + "model: {quantization: {bits: 8, double_quant: true}}\npeft: {r: 4}\n",
     "model.quantization", ["4-bit options"], 5),
    ("quantization bits", GOOD + "model: {quantization: {bits: 3}}\npeft: {r: 4}\n", "model.quantization.bits",
     ["4 or 8"], 5),
    ("padding_free in dpo", "method: dpo\ndata:\n  train:\n    - {task: arithmetic}\ntrainer: {padding_free: true}\n",
     "trainer.padding_free", ["DPOTrainer ignores padding_free"], 5),
]


@pytest.mark.parametrize("name,text,key,fragments,line", BAD_RECIPES, ids=[b[0] for b in BAD_RECIPES])
def test_bad_recipe_names_file_key_and_expectation(write_recipe, name, text, key, fragments, line):
    path = write_recipe(text)
    with pytest.raises(RecipeError) as info:
        load_run(path)
    error = info.value
    assert error.key == key
    assert str(path) in error.where
    if line is not None:
        assert error.where == f"{path}:{line}"
    for fragment in fragments:
        assert fragment in str(error), str(error)


def test_quantization_without_bitsandbytes_is_an_error_naming_the_extra(write_recipe, monkeypatch):
    import sys

    from posttrain.trainers.common import check_quantization_backend

    loaded = load_run(write_recipe(GOOD + "model: {quantization: {bits: 4}}\npeft: {r: 4}\n"))
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if it were not installed
    with pytest.raises(RecipeError, match=r"needs bitsandbytes .*pip install 'posttrain\[qlora\]'") as info:
        check_quantization_backend(loaded)
    assert info.value.key == "model.quantization"
    # resolving for this machine says so too (`show --here`); resolving for a described target does not
    with pytest.raises(RecipeError, match="this machine lacks"):
        trainer_arguments(loaded, Device(cuda=True, bf16=True))
    trainer_arguments(loaded, Device(cuda=True, bf16=True, described=True))


def test_invalid_yaml_reports_line(write_recipe):
    path = write_recipe("method: sft\ndata:\n  train: [\n    {task: arithmetic\n")
    with pytest.raises(RecipeError, match="invalid YAML") as info:
        load_run(path)
    assert info.value.where.startswith(f"{path}:")


def test_recipe_must_be_a_mapping(write_recipe):
    path = write_recipe("- method: sft\n")
    with pytest.raises(RecipeError, match="must be a YAML mapping") as info:
        load_run(path)
    assert info.value.where == str(path)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="file not found"):
        load_run(tmp_path / "absent.yaml")


def test_bf16_on_a_machine_without_gpu_is_an_error_naming_the_key(write_recipe):
    path = write_recipe(GOOD + "trainer:\n  bf16: true\n")
    loaded = load_run(path)
    with pytest.raises(RecipeError, match="needs a GPU") as info:
        trainer_arguments(loaded, Device(cuda=False, bf16=False))
    assert info.value.key == "trainer.bf16" and info.value.where == f"{path}:6"


RLVR = """\
method: rlvr
data:
  train:
    - {task: arithmetic, n: 10}
rewards: [{name: numeric}]
batch: {per_device: 8}
trainer:
  num_generations: 8
  use_vllm: true
"""


def test_vllm_generation_without_a_gpu_or_without_vllm_is_an_error_naming_the_key(write_recipe, monkeypatch):
    import importlib.util

    path = write_recipe(RLVR + "  vllm_mode: colocate\n")
    loaded = load_run(path)  # TRL's own keys: the recipe itself is valid
    with pytest.raises(RecipeError, match="vLLM generation needs a GPU") as info:
        trainer_arguments(loaded, Device(cuda=False, bf16=False))
    assert info.value.key == "trainer.use_vllm" and info.value.where == f"{path}:9"

    args = trainer_arguments(loaded, Device(cuda=True, bf16=True))  # e.g. rendering a SLURM job for GPU nodes
    assert args["use_vllm"] is True and args["vllm_mode"] == "colocate"

    # Where the run starts, the package must be there.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    with pytest.raises(RecipeError, match="pip install vllm") as info:
        check_vllm_installed(loaded)
    assert info.value.key == "trainer.use_vllm"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a))
    check_vllm_installed(loaded)


def test_cli_prints_error_without_traceback_and_exits_2(write_recipe):
    path = write_recipe(GOOD + "trainer: {learnig_rate: 0.1}\n")
    result = subprocess.run([sys.executable, "-m", "posttrain", "validate", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}:5: trainer.learnig_rate: TRL SFTConfig has no field 'learnig_rate'" in result.stderr


def test_grpo_group_arithmetic_says_which_numbers_to_change(write_recipe):
    text = ("method: rlvr\ndata:\n  train:\n    - {task: arithmetic}\nrewards: [{name: numeric}]\n"
            "batch: {per_device: 6}\ntrainer:\n  num_generations: 4\n")
    with pytest.raises(RecipeError) as info:
        load_run(write_recipe(text))
    assert info.value.key == "trainer.num_generations"
    assert "(batch.per_device 6 x world size 1 x steps_per_generation 1 = 6 completions)" in str(info.value)
    assert "make batch.per_device a multiple of 4, or set num_generations to 3" in str(info.value)


def test_rlvr_needs_rewards_and_sft_takes_none(write_recipe):
    with pytest.raises(RecipeError, match="method rlvr needs at least one reward"):
        load_run(write_recipe("method: rlvr\ndata:\n  train:\n    - {task: arithmetic}\n"))
    with pytest.raises(RecipeError, match="rewards are used for method: rlvr or rloo or online_dpo, not sft"):
        load_run(write_recipe(GOOD + "rewards: [{name: numeric}]\n"))
