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
    recipe.write_text(text + f"run: {{name: zero, dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(recipe)]) == 0
    logged = [json.loads(line) for line in (tmp_path / "runs" / "zero" / "metrics.jsonl").read_text().splitlines()]
    assert [m["loss"] for m in logged if "loss" in m] == [0.0, 0.0]
    out = capsys.readouterr().out
    assert "step 1: loss is exactly 0 because every prompt's group of completions got the same reward" in out
    assert "beta is 0, so there is no KL term" in out


def test_zero_loss_reasons():
    from posttrain.trainers.rlvr import zero_loss_reason

    assert zero_loss_reason({"loss": 0.1, "frac_reward_zero_std": 1.0}, 0.0) is None
    assert zero_loss_reason({"loss": 0.0, "frac_reward_zero_std": 0.5, "kl": 0.0}, 0.04) == (
        "the policy still equals the reference model (KL 0)")
    assert zero_loss_reason({"loss": 0.0, "frac_reward_zero_std": 0.5, "kl": 0.01}, 0.04) is None
