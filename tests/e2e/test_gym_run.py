"""A run on a reasoning-gym task: trained on its records, scored by its own score_answer."""

import json

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.e2e

RECIPE = """\
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
method: rlvr
data: {{train: [{{task: reasoning_gym/chain_sum, n: 32, options: {{min_terms: 2, max_terms: 2, max_digits: 1}}}}]}}
rewards: [{{name: verifier}}]
reward_preflight: {{enabled: false}}  # the untrained tiny model earns no reward; the scoring path is under test
batch: {{per_device: 8}}
trainer: {{max_steps: 2, num_generations: 4, max_completion_length: 8, logging_steps: 1, save_steps: 2}}
eval:
  data: [{{task: reasoning_gym/chain_sum, split: heldout, n: 8, options: {{min_terms: 2, max_terms: 2, max_digits: 1}}}}]
  reward: verifier
  max_new_tokens: 8
run: {{name: gym, dir: {dir}}}
"""


def test_grpo_on_a_reasoning_gym_task_with_its_own_scoring(tmp_path):
    recipe = tmp_path / "gym.yaml"
    recipe.write_text(RECIPE.format(dir=tmp_path / "runs"))
    assert main(["run", str(recipe)]) == 0
    run = tmp_path / "runs" / "gym"
    samples = [json.loads(line) for line in (run / "eval" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8
    assert all(json.loads(s["ground_truth"])["dataset"] == "chain_sum" for s in samples)
    rewards = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(any(k.startswith("rewards/") for k in row) for row in rewards)  # the reward ran in training
