"""Budgets that do not depend on the machine: tokens and estimated FLOPs (trainers/budget.py),
counted across resumes; comparison stages and seeds in pipeline recipes."""

import json
from types import SimpleNamespace

import pytest
from transformers import LlamaConfig, LlamaForCausalLM, TrainerControl

from posttrain import rundir
from posttrain.errors import RecipeError
from posttrain.recipe import load_recipe
from posttrain.trainers import budget, faults


def _llama(tied: bool):
    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [False, True])
def test_parameters_leave_out_the_input_embedding_only(tied):
    model = _llama(tied)
    layers = sum(p.numel() for p in model.model.layers.parameters()) + model.model.norm.weight.numel()
    output = 300 * 32  # the output layer is a matmul, tied or not
    assert budget.model_parameters(model) == layers + output


def test_flops_per_token_follow_the_method_row():
    n = 1000
    assert budget.flops_per_token("sft", {}, n) == 6 * n  # forward + backward (Kaplan et al.)
    assert budget.flops_per_token("dpo", {}, n) == 8 * n  # + the reference model's forward
    assert budget.flops_per_token("rlvr", {}, n) == 8 * n  # generate each token, then train on it
    assert budget.flops_per_token("rlvr", {"beta": 0.04}, n) == 10 * n  # + reference
    assert budget.flops_per_token("rlvr", {"beta": 0.04, "num_iterations": 2}, n) == 12 * n  # + old policy


class FakeSFT:  # what the meter reads of TRL's SFTTrainer: its own counter, not restored on resume
    def __init__(self, tokens=0):
        self._total_train_tokens = tokens
        self.state = SimpleNamespace(num_input_tokens_seen=0)
        self.model = _llama(False)


class FakeGRPO:  # GRPO counts in the trainer state, which a checkpoint restores (methods.py: tokens_in_state)
    def __init__(self, tokens=0):
        self._total_train_tokens = 0
        self.state = SimpleNamespace(num_input_tokens_seen=tokens)
        self.model = _llama(False)


def _state(step):
    return SimpleNamespace(global_step=step, max_steps=1000, is_world_process_zero=True)


def test_a_token_budget_ends_training_and_a_resumed_run_counts_on(tmp_path):
    trainer = FakeSFT()
    meter = budget.Meter("sft", {})
    meter.attach(trainer)
    callback = faults.fault_callback(tmp_path, None, meter=meter, max_train_tokens=1000)
    callback.on_train_begin(None, _state(0), TrainerControl())
    stopped = None
    for step in range(1, 50):
        trainer._total_train_tokens += 150
        if callback.on_step_end(None, _state(step), TrainerControl()).should_training_stop:
            stopped = step
            break
    assert stopped == 7 and meter.tokens() == 1050  # the first step at or past the budget
    (tmp_path / "checkpoint-4").mkdir()
    callback.on_save(None, _state(4), TrainerControl())
    record = json.loads((tmp_path / "checkpoint-4" / rundir.COMPLETE).read_text())
    assert record["train_tokens"] == 1050 and record["train_flops"] == pytest.approx(1050 * meter.per_token)
    # resumed: the SFT counter starts at 0 again; the checkpoint's count is added
    resumed = budget.Meter("sft", {}, {"train_tokens": 600})
    resumed.attach(FakeSFT(tokens=300))
    assert resumed.tokens() == 900
    # GRPO's state counter is restored with the checkpoint: nothing is added
    grpo = budget.Meter("rlvr", {}, {"train_tokens": 600})
    grpo.attach(FakeGRPO(tokens=900))
    assert grpo.tokens() == 900 and grpo.flops() == pytest.approx(900 * 8 * budget.model_parameters(grpo.trainer.model))


def test_a_flops_budget_ends_training(tmp_path):
    trainer = FakeSFT()
    meter = budget.Meter("sft", {})
    meter.attach(trainer)
    limit = 10 * meter.per_token
    callback = faults.fault_callback(tmp_path, None, meter=meter, max_train_flops=limit)
    callback.on_train_begin(None, _state(0), TrainerControl())
    trainer._total_train_tokens = 9
    assert not callback.on_step_end(None, _state(1), TrainerControl()).should_training_stop
    trainer._total_train_tokens = 10
    assert callback.on_step_end(None, _state(2), TrainerControl()).should_training_stop


PIPELINE = """\
model: {name_or_path: tiny}
stages:
  - {name: a, method: sft, data: {train: [{task: arithmetic, n: 8}]}}
  - {name: b, method: sft, data: {train: [{task: arithmetic, n: 8}]}%s}
"""


@pytest.mark.parametrize("extra,key,message", [
    (", budget: flops", "stages.1.budget", "needs instead_of"),
    (", instead_of: a, budget: hours", "stages.1.budget", "one of seconds, tokens, flops, none"),
])
def test_a_comparison_budget_is_checked(tmp_path, extra, key, message):
    recipe = tmp_path / "p.yaml"
    recipe.write_text(PIPELINE % extra)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert info.value.key == key and message in info.value.message


def test_seeds_are_checked_and_name_each_stage(tmp_path):
    recipe = tmp_path / "p.yaml"
    recipe.write_text("seeds: [0, 0]\n" + PIPELINE % "")
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert info.value.key == "seeds" and "distinct integers" in info.value.message
    recipe.write_text("seeds: [1, 2]\n" + PIPELINE % ", instead_of: a")
    pipeline = load_recipe(recipe)
    assert [s.name for s in pipeline.stages] == ["a-seed1", "b-seed1", "a-seed2", "b-seed2"]
    b2 = pipeline.stage("b-seed2")
    assert b2.instead_of == "a-seed2" and b2.budget == "flops" and b2.recipe.spec.trainer["seed"] == 2


def test_task_options_are_the_generators(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: sft\nmodel: {name_or_path: tiny}\n"
                      "data: {train: [{task: countdown, n: 8, options: {max_numbr: 9}}]}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert info.value.key == "data.train.0.options.max_numbr" and "did you mean 'max_number'" in info.value.message


@pytest.mark.parametrize("method", ["sft", "dpo", "kto", "rlvr"])
def test_the_method_table_says_where_the_real_trl_trainer_counts_its_tokens(method):
    import importlib
    import inspect

    from posttrain.methods import METHODS

    module, name = METHODS[method].config
    trainer_class = getattr(importlib.import_module(module.replace("_config", "_trainer")),
                            name.replace("Config", "Trainer"))
    source = inspect.getsource(trainer_class)
    in_state = "self.state.num_input_tokens_seen +=" in source
    own = "self._total_train_tokens +=" in source
    assert in_state != own and METHODS[method].tokens_in_state == in_state


def test_seeds_from_runs_the_stages_above_it_once_and_every_seed_starts_from_them(tmp_path):
    recipe = tmp_path / "p.yaml"
    three = PIPELINE % "" + "  - {name: c, method: sft, instead_of: b, data: {train: [{task: arithmetic, n: 8}]}}\n"
    recipe.write_text("seeds: [1, 2]\nseeds_from: b\ntrainer: {seed: 7}\n" + three)
    pipeline = load_recipe(recipe)
    assert [s.name for s in pipeline.stages] == ["a", "b-seed1", "c-seed1", "b-seed2", "c-seed2"]
    a, b2, c2 = pipeline.stage("a"), pipeline.stage("b-seed2"), pipeline.stage("c-seed2")
    assert a.seed is None and a.recipe.spec.trainer["seed"] == 7  # run once, with the pipeline's own seed
    assert b2.starts_from == "a" and b2.recipe.spec.trainer["seed"] == 2
    assert c2.instead_of == "b-seed2" and c2.starts_from == "a"
    recipe.write_text("seeds_from: b\n" + three)  # without seeds it changes nothing
    assert [s.name for s in load_recipe(recipe).stages] == ["a", "b", "c"]
    recipe.write_text("seeds: [1, 2]\nseeds_from: bb\n" + three)
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert info.value.key == "seeds_from" and "'bb' is not a stage of this pipeline (its stages: a, b, c); did you mean 'b'?" in info.value.message
