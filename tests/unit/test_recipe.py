"""Extends, overrides, batch arithmetic, device resolution, and every shipped recipe."""

from pathlib import Path

import pytest

from posttrain.errors import RecipeError
from posttrain.recipe import Device, gradient_accumulation, load_recipe, load_run, resolved_dict, trainer_arguments

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "recipes").rglob("*.yaml"))

BASE = """\
method: sft
model: {name_or_path: tiny, tiny: {hidden_size: 64, num_heads: 4}}
data:
  train:
    - {task: arithmetic, n: 100}
trainer:
  learning_rate: 1.0e-3
  max_steps: 10
batch: {per_device: 8, global: 32}
"""


def test_shipped_recipes_exist():
    assert SHIPPED, "no recipes found under recipes/"


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_every_shipped_recipe_validates(path, monkeypatch):
    from posttrain.methods import METHODS

    # LLaMA-Factory's recipes read its data/ directory ($LLAMAFACTORY_DATA); fixtures stand in
    monkeypatch.setenv("LLAMAFACTORY_DATA", str(REPO / "recipes" / "llama-factory" / "fixtures"))
    stages = load_recipe(path).stages  # every stage of a pipeline or experiment is validated when it loads
    assert stages and all(stage.recipe.spec.method in METHODS for stage in stages)


def test_extends_deep_merges_and_child_wins(write_recipe):
    write_recipe(BASE, "base/base.yaml")
    child = write_recipe("extends: base/base.yaml\ntrainer: {max_steps: 20}\nmodel: {tiny: {num_layers: 2}}\n")
    spec = load_run(child).spec
    assert spec.trainer == {"learning_rate": 1e-3, "max_steps": 20}
    assert (spec.model.tiny.hidden_size, spec.model.tiny.num_layers) == (64, 2)


def test_extends_replaces_lists(write_recipe):
    write_recipe(BASE, "base.yaml")
    child = write_recipe("extends: base.yaml\ndata:\n  train:\n    - {task: arithmetic, n: 7}\n", "child.yaml")
    assert [s.n for s in load_run(child).spec.data.train] == [7]


def test_error_in_a_parent_names_the_parent_file_and_line(write_recipe):
    base = write_recipe(BASE.replace("max_steps: 10", "max_steps: 10\n  warmup_ratio: 0.1"), "base.yaml")
    child = write_recipe("extends: base.yaml\nrun: {name: x}\n", "child.yaml")
    with pytest.raises(RecipeError) as info:
        load_run(child)
    assert info.value.where == f"{base}:9" and info.value.key == "trainer.warmup_ratio"


def test_extends_cycle_is_detected(write_recipe):
    write_recipe("extends: b.yaml\nmethod: sft\n", "a.yaml")
    b = write_recipe("extends: a.yaml\n", "b.yaml")
    with pytest.raises(RecipeError, match="extends cycle") as info:
        load_run(b)
    assert "a.yaml -> " in str(info.value) and info.value.key == "extends"


def test_extends_missing_parent(write_recipe):
    path = write_recipe("extends: nowhere.yaml\n" + BASE)
    with pytest.raises(RecipeError, match="file not found") as info:
        load_run(path)
    assert info.value.where == f"{path}:1"


def test_overrides_are_yaml_scalars_and_reach_nested_keys(write_recipe):
    path = write_recipe(BASE)
    spec = load_run(path, ["trainer.learning_rate=5e-4", "data.train.0.n=3", "trainer.bf16=false",
                              "run.name=custom", "model.tiny.num_layers=1"]).spec
    assert spec.trainer["learning_rate"] == 5e-4 and isinstance(spec.trainer["learning_rate"], float)
    assert spec.data.train[0].n == 3 and spec.trainer["bf16"] is False
    assert spec.run.name == "custom" and spec.model.tiny.num_layers == 1


def test_an_override_error_names_the_override(write_recipe):
    path = write_recipe(BASE)
    with pytest.raises(RecipeError) as info:
        load_run(path, ["trainer.learning_rate=fast"])
    assert info.value.where == "command-line override 'trainer.learning_rate=fast'"


@pytest.mark.parametrize("override,message", [
    ("trainer.learning_rate", "must look like key.path=value"),
    ("data.train.5.n=3", "out of range"),
    ("method.x=1", "is a value, not a mapping"),
])
def test_malformed_overrides(write_recipe, override, message):
    with pytest.raises(RecipeError, match=message):
        load_run(write_recipe(BASE), [override])


@pytest.mark.parametrize("world,expected", [(1, 4), (2, 2), (4, 1)])
def test_gradient_accumulation_keeps_the_global_batch(write_recipe, world, expected):
    loaded = load_run(write_recipe(BASE))
    assert gradient_accumulation(loaded, world) == expected


def test_gradient_accumulation_impossible_split(write_recipe):
    loaded = load_run(write_recipe(BASE))
    with pytest.raises(RecipeError, match=r"world size \(3\) = 24; use 24 or 48"):
        gradient_accumulation(loaded, 3)


def test_cpu_resolution_records_what_runs(write_recipe):
    loaded = load_run(write_recipe(BASE))
    args = trainer_arguments(loaded, Device(cuda=False, bf16=False))
    assert args["bf16"] is False and args["use_cpu"] is True
    assert args["activation_checkpointing"] is False
    assert args["per_device_train_batch_size"] == 8 and args["gradient_accumulation_steps"] == 4
    resolved = resolved_dict(loaded, Device(cuda=False, bf16=False))
    assert resolved["trainer"]["bf16"] is False and resolved["batch"]["global"] == 32


def test_gpu_resolution_turns_bf16_on_where_supported(write_recipe):
    loaded = load_run(write_recipe(BASE))
    assert trainer_arguments(loaded, Device(cuda=True, bf16=True))["bf16"] is True
    assert trainer_arguments(loaded, Device(cuda=True, bf16=False))["bf16"] is False
    assert "use_cpu" not in trainer_arguments(loaded, Device(cuda=True, bf16=True))


def test_relative_data_paths_resolve_from_the_recipe_file(write_recipe, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    path = write_recipe("method: sft\ndata:\n  train:\n    - path: d.jsonl\n", "sub/r.yaml")
    assert load_run(path).spec.data.train[0].path == str(tmp_path / "sub" / "d.jsonl")


def test_sft_keeps_padded_randomly_sampled_batches_by_default(write_recipe):
    # Measured (docs/benchmarks.md): on CPU, padded batches train 2.2-2.5x the real tokens/s of
    # padding-free or packed rows; length-grouped batches are faster still but stopped the
    # quickstart from learning (1.2% vs 83%), so posttrain does not turn them on.
    args = trainer_arguments(load_run(write_recipe(BASE)), Device(cuda=False, bf16=False))
    assert not {"packing", "padding_free", "train_sampling_strategy"} & set(args)
