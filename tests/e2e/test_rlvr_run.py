"""RLVR (GRPO) through the CLI on the tiny model: a few steps on CPU."""

import json
import math

import pytest

from posttrain.cli import main
from posttrain.rewards.numeric import completion_text

pytestmark = pytest.mark.e2e


def digit_share(completions, **columns):
    """A reward that differs between samples even for an untrained model."""
    texts = [completion_text(c) for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


RECIPE = f"""\
method: rlvr
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
data:
  train:
    - {{task: arithmetic, n: 32}}
rewards:
  - {{name: numeric, weight: 1.0}}
  - {{name: "{__name__}:digit_share", weight: 0.5}}
batch: {{per_device: 8}}
trainer:
  max_steps: 2
  num_generations: 4
  max_completion_length: 8
  learning_rate: 1.0e-3
  logging_steps: 1
  save_steps: 1
  seed: 0
"""


def test_grpo_trains_logs_rewards_and_changes_parameters(tmp_path):
    from safetensors.torch import load_file

    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    recipe = tmp_path / "rlvr.yaml"
    recipe.write_text(RECIPE + f"run: {{name: grpo, dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(recipe)]) == 0
    run = tmp_path / "runs" / "grpo"
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in logged if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert math.isfinite(m["loss"]) and 0.0 <= m["frac_reward_zero_std"] <= 1.0
        assert "rewards/numeric/mean" in m and f"rewards/{__name__}:digit_share/mean" in m
        assert "reward" in m and "reward_std" in m
    start = load_file(str(tiny_model_path(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4,
                                                        intermediate_size=128)) / "model.safetensors"))
    end = load_file(str(run / "final" / "model.safetensors"))
    changed = [k for k in start if not (start[k] == end[k]).all()]
    assert changed == list(start)


def test_a_loss_of_exactly_zero_is_explained(tmp_path, capsys):
    """The untrained model never answers right: every group's rewards agree, advantages are 0."""
    recipe = tmp_path / "zero.yaml"
    text = RECIPE.replace(f'  - {{name: "{__name__}:digit_share", weight: 0.5}}\n', "")
    # the groups agree on purpose: past the reward preflight (which would stop this run before its
    # first step), the per-step explanation is what is under test
    recipe.write_text(text + f"reward_preflight: {{enabled: false}}\nrun: {{name: zero, dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(recipe)]) == 0
    logged = [json.loads(line) for line in (tmp_path / "runs" / "zero" / "metrics.jsonl").read_text().splitlines()]
    assert [m["loss"] for m in logged if "loss" in m] == [0.0, 0.0]
    out = capsys.readouterr().out
    assert "step 1: loss is exactly 0 because every prompt's group of completions got the same reward" in out
    assert "beta is 0, so there is no KL term either" in out


def test_zero_loss_reasons():
    from posttrain.trainers.rlvr import zero_loss_reason

    assert zero_loss_reason({"loss": 0.1, "frac_reward_zero_std": 1.0}, 0.0) is None
    assert zero_loss_reason({"loss": 0.0, "frac_reward_zero_std": 1.0, "kl": 0.0}, 0.04).endswith(
        "the policy still equals the reference model (KL 0)")
    assert "This is normal for GRPO" in zero_loss_reason({"loss": 0.0, "frac_reward_zero_std": 0.5}, 0.0)


def constant_for_even_first_numbers(completions, prompts, **columns):
    """Constant (zero variance) for prompts whose first number is even; graded otherwise."""
    import re

    out = []
    for completion, prompt in zip(completions, prompts):
        question = prompt[-1]["content"] if isinstance(prompt, list) else prompt
        first = int(re.search(r"\d+", question).group())
        text = completion_text(completion)
        out.append(0.5 if first % 2 == 0 else sum(ch.isdigit() for ch in text) / max(1, len(text)))
    return out


def test_dynamic_sampling_replaces_groups_whose_rewards_all_agree(tmp_path):
    recipe = tmp_path / "dapo.yaml"
    text = RECIPE.replace("  - {name: numeric, weight: 1.0}\n", "").replace(
        f'  - {{name: "{__name__}:digit_share", weight: 0.5}}\n',
        f'  - {{name: "{__name__}:constant_for_even_first_numbers"}}\n')
    recipe.write_text(text + "dynamic_sampling: {max_retries: 4}\nreward_preflight: {enabled: false}  # groups agree on purpose\n"
                      f"run: {{name: dapo, dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(recipe)]) == 0
    logged = [json.loads(line) for line in (tmp_path / "runs" / "dapo" / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in logged if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2]
    before = [m["dynamic_sampling/zero_std_groups_before"] for m in steps]
    after = [m["dynamic_sampling/zero_std_groups_after"] for m in steps]
    assert max(before) > 0  # some prompts had an even first number: their groups carried no signal
    assert after == [0.0, 0.0]  # replaced by groups from fresh prompts
    assert all(m["dynamic_sampling/extra_rounds"] >= 1 for m, b in zip(steps, before) if b > 0)


def test_dynamic_sampling_needs_whole_groups_per_process(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    # two processes of 6 completions: the generation batch (12) holds whole groups of 4, each
    # process's share (6) does not
    recipe.write_text(RECIPE.replace("batch: {per_device: 8}", "batch: {per_device: 6}").replace(
        "num_generations: 4", "num_generations: 4\n  generation_batch_size: 12")
        + "launch: {nodes: 1, gpus_per_node: 2}\ndynamic_sampling: {}\n")
    assert main(["validate", str(recipe)]) == 2
    assert "must hold whole groups of num_generations (4)" in capsys.readouterr().err
