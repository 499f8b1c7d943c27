"""Evaluation during training for every method (issue 13 point 3): DPO, KTO and GRPO read
`data.eval` / `data.eval_fraction` as SFT does; the held-out fraction leaves the training data,
and `eval_strategy: steps` evaluates (it failed in TRL with a traceback before)."""

import json

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.e2e

TINY = "  name_or_path: tiny\n  tiny: {hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}\n"
COMMON = "  max_steps: 2\n  learning_rate: 1.0e-3\n  logging_steps: 1\n  seed: 0\n  eval_strategy: steps\n  eval_steps: 2\n"

RECIPES = {
    "dpo": ("method: dpo\nmodel:\n" + TINY + "data:\n  train:\n    - {task: arithmetic_pairs, n: 20}\n"
            "  eval_fraction: 0.2\nbatch: {per_device: 4}\ntrainer:\n" + COMMON + "  max_length: 128\n"),
    "kto": ("method: kto\nmodel:\n" + TINY + "data:\n  train:\n    - {task: arithmetic_pairs, n: 20}\n"
            "  eval:\n    - {task: arithmetic_pairs, split: heldout, n: 4}\nbatch: {per_device: 4}\ntrainer:\n"
            + COMMON + "  max_length: 128\n"),
    "rlvr": ("method: rlvr\nmodel:\n" + TINY + "data:\n  train:\n    - {task: arithmetic, n: 20}\n"
             "  eval_fraction: 0.2\nrewards:\n  - {name: numeric}\nreward_preflight: {enabled: false}\n"
             "batch: {per_device: 8}\ntrainer:\n" + COMMON
             + "  num_generations: 4\n  max_completion_length: 8\n  per_device_eval_batch_size: 8\n"),
}


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_every_method_evaluates_on_held_out_data(tmp_path, method):
    recipe = tmp_path / f"{method}.yaml"
    recipe.write_text(RECIPES[method] + f"run: {{name: {method}, dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(recipe)]) == 0
    run = tmp_path / "runs" / method
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluated = [m for m in logged if any(k.startswith("eval_") for k in m)]
    assert evaluated, f"no eval_* metrics in {logged}"
    sources = json.loads((run / "env.json").read_text())["data"]
    if method == "dpo":  # a fifth of 20 pairs held out, and not trained on
        assert sources["eval_pairs"] == 4
    if method == "rlvr":
        assert any("eval_reward" in m for m in evaluated)
