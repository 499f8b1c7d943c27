"""Reward models (method: reward, TRL's RewardTrainer) on the tiny model: trained on pairs from a
generated task, from UltraFeedback-shaped rows and from reasoning trees, with and without LoRA;
final/ is a sequence classifier with one output and the held-out pairwise accuracy is reported
per evaluation source."""

import json
from pathlib import Path

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]

RECIPE = """\
method: reward
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
data:
  train:
    - {{task: arithmetic_pairs, n: 64}}
    - {{path: {trees}, traces: {{kind: pairs}}}}
  eval:
    - {{path: {ultrafeedback}}}
    - {{task: arithmetic_pairs, split: heldout, n: 16}}
batch: {{per_device: 8}}
trainer: {{max_steps: 4, learning_rate: 1.0e-3, logging_steps: 1, max_length: 256, seed: 0}}
run: {{name: {name}, dir: {dir}}}
{extra}"""


@pytest.mark.parametrize("name,extra", [("full", ""), ("lora", "peft: {r: 4, lora_alpha: 8, target_modules: all-linear}\n")])
def test_a_reward_model_trains_and_reports_pairwise_accuracy_per_source(tmp_path, capsys, name, extra):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    ultrafeedback = REPO / "recipes/alignment-handbook/fixtures/ultrafeedback_binarized.jsonl"
    recipe = tmp_path / "reward.yaml"
    recipe.write_text(RECIPE.format(trees=REPO / "recipes/o1-journey/trees.example.jsonl", ultrafeedback=ultrafeedback,
                                    name=name, dir=tmp_path / "runs", extra=extra))
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / name
    report = json.loads((run / "eval" / "report.json").read_text())["pairwise_accuracy"]
    assert set(report) == {str(ultrafeedback), "task:arithmetic_pairs:heldout"}
    assert report[str(ultrafeedback)]["pairs"] == 24 and report["task:arithmetic_pairs:heldout"]["pairs"] == 16
    for label, r in report.items():
        assert 0 <= r["accuracy"] <= 1 and r["correct"] == round(r["accuracy"] * r["pairs"])
        assert f"pairwise accuracy on {label}: " in out
    assert "| pairs from | pairs | accuracy | mean margin |" in (run / "eval" / "report.md").read_text()
    losses = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 4 and all("accuracy" in m for m in losses)
    model = AutoModelForSequenceClassification.from_pretrained(run / "final")
    assert model.config.num_labels == 1 and type(model).__name__ == "LlamaForSequenceClassification"
    start = load_file(str(tiny_model_path(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4,
                                                        intermediate_size=128)) / "model.safetensors"))
    end = load_file(str(run / "final" / "model.safetensors"))
    moved = {k for k in start if k in end and not (start[k] == end[k]).all()}
    assert "score.weight" in end and moved  # a new score head, and the body trained
    if name == "lora":
        assert (run / "adapter" / "adapter_config.json").is_file() and all("proj" in k for k in moved)


def test_on_policy_pairs_from_the_starting_model_train_a_reward_model(tmp_path, monkeypatch, capsys):
    """Pairs sampled from the causal LM the reward model starts from (the classifier cannot
    generate), scored by a reward that splits the tiny model's answers, as DPO's test does."""
    (tmp_path / "split_reward.py").write_text(
        "def first_digit_odd(completions, **columns):\n"
        "    texts = [c if isinstance(c, str) else c[-1]['content'] for c in completions]\n"
        "    firsts = [next((ch for ch in t if ch.isdigit()), None) for t in texts]\n"
        "    return [1.0 if d is not None and int(d) % 2 else 0.0 for d in firsts]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "onpolicy.yaml"
    recipe.write_text(
        "method: reward\nmodel:\n  name_or_path: tiny\n  tiny: {hidden_size: 64, num_layers: 2, num_heads: 4, "
        "intermediate_size: 128}\ndata:\n  train:\n    - task: arithmetic\n      n: 16\n      on_policy: {samples: 4, "
        "pairs: 2, max_new_tokens: 16, reward: 'split_reward:first_digit_odd'}\n"
        "  eval:\n    - {task: arithmetic_pairs, split: heldout, n: 8}\n"
        f"batch: {{per_device: 4}}\ntrainer: {{max_steps: 2, learning_rate: 1.0e-3, logging_steps: 1, max_length: 256}}\n"
        f"run: {{name: onpolicy, dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(recipe)]) == 0
    run = tmp_path / "runs" / "onpolicy"
    stats = json.loads((run / "env.json").read_text())["data"]["on_policy"]["task:arithmetic:train"]
    assert stats["prompts"] == 16 and stats["pairs"] > 0
    assert "samples of the starting model" in capsys.readouterr().out
    assert json.loads((run / "eval" / "report.json").read_text())
