"""Process reward models (method: prm, posttrain's own trainer on transformers' Trainer) on the
tiny model: trained on step-labelled paths of reasoning trees, PRM800K and Math-Shepherd rows,
with and without LoRA; final/ is a token classifier with two labels, and step accuracy and
first-wrong-step accuracy are reported per evaluation source (issue 14)."""

import json
from pathlib import Path

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.e2e
DATA = Path(__file__).resolve().parents[1] / "unit" / "data"

RECIPE = """\
method: prm
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
data:
  train:
    - {{task: arithmetic_trees, n: 48, traces: {{kind: steps}}}}
    - {{path: {prm800k}}}
    - {{path: {shepherd}}}
  eval:
    - {{task: arithmetic_trees, split: heldout, n: 12, traces: {{kind: steps}}}}
    - {{path: {shepherd}}}
batch: {{per_device: 8}}
trainer: {{max_steps: 4, learning_rate: 1.0e-3, logging_steps: 1, max_length: 1024, seed: 0}}
run: {{name: {name}, dir: {dir}}}
{extra}"""


@pytest.mark.parametrize("name,extra", [("full", ""), ("lora", "peft: {r: 4, lora_alpha: 8, target_modules: all-linear}\n")])
def test_a_process_reward_model_trains_and_reports_step_accuracy_per_source(tmp_path, capsys, name, extra):
    from safetensors.torch import load_file
    from transformers import AutoModelForTokenClassification

    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    recipe = tmp_path / "prm.yaml"
    recipe.write_text(RECIPE.format(prm800k=DATA / "prm800k.jsonl", shepherd=DATA / "math_shepherd.jsonl",
                                    name=name, dir=tmp_path / "runs", extra=extra))
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / name
    report = json.loads((run / "eval" / "report.json").read_text())["process_reward"]
    shepherd = str(DATA / "math_shepherd.jsonl")
    assert set(report) == {"task:arithmetic_trees:heldout", shepherd}
    assert report[shepherd]["solutions"] == 3 and report[shepherd]["steps"] == 10
    assert report[shepherd]["incorrect_steps"] == 2 and report[shepherd]["first_wrong_step"]["erroneous_solutions"] == 1
    for label, r in report.items():
        assert 0 <= r["step_accuracy"] <= 1 and f"process reward model on {label}: step accuracy" in out
    assert "| steps from | solutions | steps | step accuracy |" in (run / "eval" / "report.md").read_text()
    env = json.loads((run / "env.json").read_text())
    assert env["data"]["steps"] > env["data"]["incorrect_steps"] > 0
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 4 and all(l["loss"] > 0 for l in losses)
    model = AutoModelForTokenClassification.from_pretrained(run / "final")
    assert model.config.num_labels == 2 and type(model).__name__ == "LlamaForTokenClassification"
    start = load_file(str(tiny_model_path(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4,
                                                        intermediate_size=128)) / "model.safetensors"))
    end = load_file(str(run / "final" / "model.safetensors"))
    moved = {k for k in start if k in end and not (start[k] == end[k]).all()}
    assert "score.weight" in end and moved  # a new classification head, and the body trained
    if name == "lora":
        assert (run / "adapter" / "adapter_config.json").is_file() and all("proj" in k for k in moved)
        assert json.loads((run / "adapter" / "adapter_config.json").read_text())["task_type"] == "TOKEN_CLS"


def test_an_eval_block_is_refused_for_a_process_reward_model(tmp_path, capsys):
    recipe = tmp_path / "prm.yaml"
    recipe.write_text(RECIPE.format(prm800k=DATA / "prm800k.jsonl", shepherd=DATA / "math_shepherd.jsonl",
                                    name="x", dir=tmp_path / "runs", extra="eval: {data: [{task: arithmetic, split: heldout, n: 4}]}\n"))
    assert main(["run", str(recipe)]) == 2
    assert "a process reward model does not generate" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


PIPELINE = """\
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
trainer: {{seed: 0}}
run: {{name: verify, dir: {dir}}}
stages:
  - name: prm
    method: prm
    data: {{train: [{{task: arithmetic_trees, n: 32, traces: {{kind: steps}}}}]}}
    batch: {{per_device: 8}}
    trainer: {{max_steps: 2, learning_rate: 1.0e-3, max_length: 256}}
  - name: rlvr
    method: rlvr
    model: {{name_or_path: tiny}}
    data: {{train: [{{task: arithmetic, n: 16}}]}}
    rewards:
      - {{name: numeric, weight: 1.0}}
      - {{name: reward_model, path: {dir}/verify/prm/final, aggregate: min, weight: 0.5, device: cpu}}
    batch: {{per_device: 8}}
    trainer: {{max_steps: 2, num_generations: 4, max_completion_length: 16, learning_rate: 1.0e-3, logging_steps: 1}}
    eval:
      data: [{{task: arithmetic, split: heldout, n: 6}}]
      n: 4
      temperature: 1.0
      max_new_tokens: 16
      select_reward: {{name: reward_model, path: {dir}/verify/prm/final, aggregate: mean, device: cpu}}
"""


def test_a_trained_prm_is_a_grpo_reward_beside_a_verifier_and_the_best_of_n_selector(tmp_path):
    """The PRM a stage leaves in final/ scores GRPO's completions, mixed with numeric by weight,
    and selects among evaluation samples (best-of-N, weighted majority)."""
    recipe = tmp_path / "verify.yaml"
    recipe.write_text(PIPELINE.format(dir=tmp_path / "runs"))
    assert main(["run", str(recipe)]) == 0
    run = tmp_path / "runs" / "verify" / "rlvr"
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) == 2
    for m in steps:
        assert 0.0 <= m["rewards/reward_model/mean"] <= 1.0 and "rewards/numeric/mean" in m
    resolved = (run / "recipe.resolved.yaml").read_text()
    assert "reward_weights:\n  - 1.0\n  - 0.5" in resolved or "reward_weights: [1.0, 0.5]" in resolved
    report = (run / "eval" / "report.md").read_text()
    assert "best_of_4" in report and "weighted_maj@4" in report
