"""The seams issue 11 measured: one table of methods, derived stages that are new validated recipes,
one launch block per pipeline, reward references with options everywhere, managed TRL keys, and
errors blamed on the command-line override that caused them."""

import importlib
from pathlib import Path

import pytest

from posttrain.config_fields import dataclass_fields
from posttrain.data.formats import FORMATS
from posttrain.errors import RecipeError
from posttrain.methods import METHOD_KEYS, METHODS
from posttrain.recipe import derive, load_recipe, load_run
from posttrain.rewards import build_reward_ref

REPO = Path(__file__).resolve().parents[2]
GOOD = "method: sft\ndata:\n  train:\n    - {task: arithmetic, n: 10}\n"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_row_is_complete(name):
    method = METHODS[name]
    assert method.name == name and method.summary
    assert dataclass_fields(*method.config)  # the TRL config class exists and is a dataclass
    assert method.data in FORMATS
    assert method.keys <= set(METHOD_KEYS)
    module = importlib.import_module(method.trainer)  # the three functions the skeleton calls
    assert all(callable(getattr(module, f, None)) for f in ("own_arguments", "data", "build"))


def test_the_schema_takes_its_method_names_from_the_table(write_recipe):
    with pytest.raises(RecipeError) as info:
        load_run(write_recipe(GOOD.replace("sft", "ppo")))
    assert info.value.key == "method"
    assert "Input should be " + ", ".join(f"'{m}'" for m in list(METHODS)[:-1]) + f" or '{list(METHODS)[-1]}'" \
        in info.value.message


def test_reward_weights_are_managed_not_silently_replaced(write_recipe):
    text = ("method: rlvr\ndata:\n  train:\n    - {task: arithmetic}\nrewards: [{name: numeric, weight: 2.0}]\n"
            "batch: {per_device: 8}\ntrainer: {reward_weights: [1.0]}\n")
    with pytest.raises(RecipeError) as info:
        load_run(write_recipe(text))
    assert info.value.key == "trainer.reward_weights"
    assert "set from each reward's weight: rewards: [{name: ..., weight: W}]" in info.value.message


def test_an_error_in_a_block_an_override_changed_names_the_override(write_recipe):
    path = write_recipe(GOOD + "eval:\n  data: [{task: arithmetic, split: heldout, n: 4}]\n")
    with pytest.raises(RecipeError) as info:
        load_run(path, ["eval.n=4"])  # 4 samples at temperature 0: the eval block is wrong as a whole
    assert info.value.key == "eval"
    assert info.value.where == f"{path}:5 (with command-line override 'eval.n=4')"
    with pytest.raises(RecipeError) as info:  # an error in the overridden key itself blames the override alone
        load_run(path, ["eval.n=-1"])
    assert info.value.where == "command-line override 'eval.n=-1'"


def test_a_derived_stage_is_a_new_validated_recipe_and_the_pipeline_is_unchanged(tmp_path):
    from posttrain.runs import stage_for_running

    pipeline = load_recipe(REPO / "recipes/quickstart/pipeline.yaml", [f"run.dir={tmp_path}"])
    dpo = pipeline.stage("dpo")
    assert dpo.starts_from == "sft" and pipeline.stage("more-sft").starts_from == "dpo"  # what rlvr starts from
    assert pipeline.stage("more-sft").instead_of == "rlvr" and pipeline.stage("rlvr").starts_from == "dpo"
    start = tmp_path / "quickstart-pipeline" / "sft" / "final"
    start.mkdir(parents=True)
    (start / "config.json").write_text("{}")  # what a finished stage leaves (its model)
    derived = stage_for_running(dpo, start, budget={"max_train_seconds": 12.5})
    assert derived is not dpo.recipe
    assert derived.spec.model.name_or_path == str(start.resolve()) and derived.spec.model.chat_template is None
    assert derived.spec.eval.baseline is False and derived.spec.run.max_train_seconds == 12.5
    assert derived.run_dir == dpo.recipe.run_dir == tmp_path / "quickstart-pipeline" / "dpo"
    # the loaded pipeline's stage is as it was
    assert dpo.recipe.spec.model.name_or_path == "tiny" and dpo.recipe.spec.eval.baseline is True
    assert dpo.recipe.spec.run.max_train_seconds is None
    with pytest.raises(RecipeError) as info:  # a derived value is validated, and blamed on its derivation
        derive(dpo.recipe, {"run": {"max_train_seconds": -1}}, "pipeline stage dpo")
    assert info.value.key == "run.max_train_seconds" and info.value.where == "command-line override 'pipeline stage dpo'"


def test_a_pipeline_launches_as_one_job_with_one_launch_block(write_recipe):
    text = ("stages:\n  - {name: a, method: sft, data: {train: [{task: arithmetic}]}}\n"
            "  - {name: b, method: sft, data: {train: [{task: arithmetic}]}, launch: {gpus_per_node: 2}}\n")
    pipeline = load_recipe(write_recipe(text))
    with pytest.raises(RecipeError) as info:
        pipeline.launch_recipe()
    assert info.value.key == "launch"
    assert "stage 'b' launches differently from stage 'a'; a pipeline launches as one job" in info.value.message
    same = load_recipe(write_recipe("launch: {gpus_per_node: 2}\n" + text.replace(", launch: {gpus_per_node: 2}", "")))
    assert same.launch_recipe().spec.launch.gpus_per_node == 2


def test_rewards_are_referenced_with_options_everywhere(write_recipe):
    text = (GOOD + "eval:\n  data: [{task: arithmetic, split: heldout, n: 4}]\n"
            "  reward: {name: math, timeout: 2.0}\n  select_reward: numeric\n")
    spec = load_run(write_recipe(text)).spec
    assert spec.eval.reward.name == "math" and spec.eval.reward.options == {"timeout": 2.0}
    assert spec.eval.reward.label == "math(timeout=2.0)" and spec.eval.select_reward.label == "numeric"
    assert build_reward_ref(spec.eval.reward).options == {"timeout": 2.0}
    with pytest.raises(RecipeError) as info:
        load_run(write_recipe(text.replace("timeout: 2.0", "timeot: 2.0")))
    assert info.value.key == "eval.reward.timeot" and "did you mean 'timeout'" in info.value.message
    with pytest.raises(RecipeError) as info:
        load_run(write_recipe(text.replace("select_reward: numeric", "select_reward: numerc")))
    assert info.value.key == "eval.select_reward" and "did you mean 'numeric'" in info.value.message
    on_policy = ("method: dpo\ndata:\n  train:\n    - {task: arithmetic, on_policy: {samples: 4, "
                 "reward: {name: numeric, bogus: 1}}}\n")
    with pytest.raises(RecipeError) as info:
        load_run(write_recipe(on_policy))
    assert info.value.key == "data.train.0.on_policy.reward.bogus"


def test_build_trees_reads_a_reward_with_options():
    from posttrain.cli import _reward_argument
    from posttrain.errors import UserError

    assert _reward_argument("verifier").name == "verifier"
    ref = _reward_argument("{name: math, timeout: 2}")
    assert ref.name == "math" and ref.options == {"timeout": 2}
    with pytest.raises(UserError, match="--reward"):
        _reward_argument("{timeout: 2}")


def test_the_experiment_is_loaded_with_typed_blocks_and_validated_phase_two(tmp_path):
    experiment = load_recipe(REPO / "recipes/quickstart/journey-vs-shortcut.yaml", [f"run.dir={tmp_path}"])
    assert experiment.trees.questions.task == "arithmetic" and experiment.trees.width == 4
    assert experiment.traces.reflection == "Wait, {critique}" and experiment.seeds == [0, 1, 2]
    names = [s.name for s in experiment.stages]
    assert names == ["phase1"] + [f"{k}-seed{s}" for s in (0, 1, 2) for k in ("shortcut", "journey")]
    assert all(s.stand_in for s in experiment.stages[1:])  # no trees yet: procedural stand-ins
    assert experiment.stage("journey-seed1").recipe.spec.trainer["seed"] == 1
