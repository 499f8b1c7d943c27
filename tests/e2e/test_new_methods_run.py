"""Issue 31's methods through the CLI on the tiny model: ORPO, CPO with SimPO's loss, RLOO,
online DPO ranked by a verifier, and on-policy distillation from a trained teacher (the student's
held-out accuracy rises). Each is a row in methods.py and a trainer module over TRL's trainer."""

import json
from pathlib import Path

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.e2e
TINY = "{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}"


def run(tmp_path: Path, name: str, text: str) -> Path:
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(text + f"run: {{name: {name}, dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(recipe)]) == 0
    return tmp_path / "runs" / name


def logged(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


PAIRS = f"""\
model: {{name_or_path: tiny, tiny: {TINY}}}
data:
  train:
    - {{task: arithmetic_pairs, n: 16}}
batch: {{per_device: 4}}
"""


@pytest.mark.parametrize("method, trainer, metric", [
    ("orpo", "{max_steps: 2, logging_steps: 1, learning_rate: 1.0e-3, max_length: 128, beta: 0.1}", "log_odds_ratio"),
    ("cpo", "{max_steps: 2, logging_steps: 1, learning_rate: 1.0e-3, max_length: 128, loss_type: simpo, "
            "cpo_alpha: 0.0, simpo_gamma: 0.5, beta: 2.0}", "rewards/margins"),
])
def test_preference_methods_without_a_reference_model_train(tmp_path, method, trainer, metric):
    run_dir = run(tmp_path, method, f"method: {method}\n{PAIRS}trainer: {trainer}\n")
    lines = [m for m in logged(run_dir) if "loss" in m]
    assert len(lines) == 2 and any(metric in key for key in lines[0]), lines[0]
    assert (run_dir / "final" / "model.safetensors").is_file()
    resolved = (run_dir / "recipe.resolved.yaml").read_text()
    assert f"method: {method}" in resolved


PROMPTS = f"""\
model: {{name_or_path: tiny, tiny: {TINY}}}
data:
  train:
    - {{task: arithmetic, n: 16}}
rewards: [{{name: numeric}}]
batch: {{per_device: 4}}
"""


def test_rloo_trains_with_posttrains_rewards(tmp_path):
    run_dir = run(tmp_path, "rloo", "method: rloo\n" + PROMPTS + "reward_preflight: {enabled: false}\n"
                  "trainer: {max_steps: 2, logging_steps: 1, num_generations: 4, max_completion_length: 8}\n")
    lines = [m for m in logged(run_dir) if "loss" in m]
    assert len(lines) == 2 and "rewards/numeric/mean" in lines[0]


def test_online_dpo_ranks_sampled_pairs_with_a_verifier(tmp_path):
    run_dir = run(tmp_path, "online", "method: online_dpo\n" + PROMPTS
                  + "trainer: {max_steps: 2, logging_steps: 1, max_new_tokens: 8}\n")
    lines = [m for m in logged(run_dir) if "loss" in m]
    assert len(lines) == 2 and any(key.startswith("objective/") for key in lines[0]), lines[0]


ARITHMETIC = "{task: arithmetic, n: 800, options: {max_value: 49, max_operands: 2}}"
HELD_OUT = "{task: arithmetic, split: heldout, n: 100, options: {max_value: 49, max_operands: 2}}"


def test_distillation_from_a_trained_teacher_raises_the_students_accuracy(tmp_path):
    """The teacher: the tiny model after 300 SFT steps; the student: the same tiny model fresh,
    trained only on the teacher's token distributions over its own samples (no gold answers)."""
    teacher = run(tmp_path, "teacher", f"""\
method: sft
model: {{name_or_path: tiny}}
data: {{train: [{ARITHMETIC}]}}
batch: {{per_device: 32}}
trainer: {{max_steps: 300, learning_rate: 1.0e-3, warmup_steps: 20, logging_steps: 100, save_strategy: "no", seed: 0}}
""")
    student = run(tmp_path, "student", f"""\
method: distill
model: {{name_or_path: tiny}}
teacher: {{name_or_path: {teacher / 'final'}}}
data: {{train: [{ARITHMETIC}]}}
batch: {{per_device: 32}}
trainer: {{max_steps: 200, learning_rate: 1.0e-3, warmup_steps: 10, logging_steps: 50, max_completion_length: 24,
          save_strategy: "no", seed: 0}}
eval: {{data: [{HELD_OUT}], max_new_tokens: 16, baseline: true}}
""")
    losses = [m["loss"] for m in logged(student) if "loss" in m]
    assert losses[-1] < losses[0] / 2, losses
    report = json.loads((student / "eval" / "report.json").read_text())
    before, after = report["baseline"]["correct"], report["trained"]["correct"]
    assert after > before, report
    resolved = (student / "recipe.resolved.yaml").read_text()
    assert "teacher:" in resolved and str(teacher / "final") in resolved


def test_a_prm_trained_as_a_language_model_scores_as_a_reward(tmp_path):
    """head: causal_lm trains the LM to write + / - at each step; final/ records the tokens and
    reward_model reads them."""
    from posttrain.rewards import REWARDS
    from posttrain.rewards.model_reward import load_verifier_model

    run_dir = run(tmp_path, "prm-lm", f"""\
method: prm
model: {{name_or_path: tiny, tiny: {TINY}}}
data:
  train:
    - {{task: arithmetic_trees, n: 32, traces: {{kind: steps}}}}
  eval_size: 8
batch: {{per_device: 4}}
trainer: {{max_steps: 6, learning_rate: 1.0e-3, max_length: 256, head: causal_lm, logging_steps: 1}}
""")
    head = json.loads((run_dir / "final" / "prm.json").read_text())
    assert head == {"head": "causal_lm", "positive_token": "+", "negative_token": "-", "step_separator": "\n",
                    "step_tag": None}
    assert json.loads((run_dir / "final" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    report = json.loads((run_dir / "eval" / "report.json").read_text())["process_reward"]
    assert next(iter(report.values()))["steps"] > 0
    load_verifier_model.cache_clear()
    scores = REWARDS["reward_model"](["2 + 3 = 5\nAnswer: 5", "2 + 3 = 6\nAnswer: 6"], prompts=["Compute 2 + 3."] * 2,
                                     path=str(run_dir / "final"), device="cpu")
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)


def test_grpo_with_greedy_in_training_evaluation_runs_and_logs_it(tmp_path):
    run_dir = run(tmp_path, "greedy", f"""\
method: rlvr
model: {{name_or_path: tiny, tiny: {TINY}}}
data:
  train:
    - {{task: arithmetic, n: 16}}
  eval_size: 4
rewards: [{{name: numeric}}]
reward_preflight: {{enabled: false}}
eval_greedy: true
batch: {{per_device: 4}}
trainer: {{max_steps: 2, logging_steps: 1, num_generations: 4, num_generations_eval: 2, max_completion_length: 8,
          eval_strategy: steps, eval_steps: 2}}
""")
    evaluated = [m for m in logged(run_dir) if "eval_reward" in m]
    assert evaluated and evaluated[0]["step"] == 2
    assert "eval_greedy: true" in (run_dir / "recipe.resolved.yaml").read_text()


@pytest.mark.parametrize("method, beta", [("distill", 0.0), ("gkd", 1.0)])
def test_a_lora_student_distils_with_the_losses_beta_chooses(tmp_path, method, beta):
    """A LoRA student (the teacher's vocabulary, its own width), forward KL (beta 0) or reverse KL
    (beta 1): the adapter trains, final/ and adapter/ are saved."""
    extra = "max_completion_length: 8" if method == "distill" else "max_new_tokens: 8, max_length: 128"
    run_dir = run(tmp_path, method, f"""\
method: {method}
model: {{name_or_path: tiny, tiny: {TINY}}}
teacher: {{name_or_path: tiny}}
peft: {{r: 4, lora_alpha: 8, target_modules: all-linear}}
data: {{train: [{{task: arithmetic, n: 16}}]}}
batch: {{per_device: 4}}
trainer: {{max_steps: 2, logging_steps: 1, learning_rate: 1.0e-3, beta: {beta}, {extra}}}
""")
    losses = [m["loss"] for m in logged(run_dir) if "loss" in m]
    assert len(losses) == 2 and all(loss == loss and loss >= 0 for loss in losses)
    assert (run_dir / "adapter" / "adapter_config.json").is_file() and (run_dir / "final" / "config.json").is_file()
    assert f"beta: {beta}" in (run_dir / "recipe.resolved.yaml").read_text()



MIXED = "{task: arithmetic, n: 8, options: {min_operands: 2, max_operands: 5, max_value: 99}}"  # prompts of 27-39 tokens


@pytest.mark.parametrize("method", ["prm", "gkd"])
def test_long_prompts_are_dropped_where_part_of_the_data_is_sampled(tmp_path, capsys, method):
    """data.max_prompt_length before a PRM's trees are sampled (build_trees) and before GKD's
    student answers its share: counted in the log; only the short prompts reach training."""
    import re

    source = (MIXED[:-1] + ", traces: {kind: steps}, build_trees: {width: 2, depth: 2, step_tokens: 8, "
              "judge: arithmetic, keep_unsolved: true}}" if method == "prm" else MIXED)
    extra = "teacher: {name_or_path: tiny}\n" if method == "gkd" else ""
    trainer = "max_new_tokens: 8, max_length: 128" if method == "gkd" else "max_length: 256"
    run_dir = run(tmp_path, method, f"""\
method: {method}
model: {{name_or_path: tiny, tiny: {TINY}}}
{extra}data:
  train: [{source}]
  max_prompt_length: 34
batch: {{per_device: 2}}
trainer: {{max_steps: 1, logging_steps: 1, {trainer}}}
""")
    found = re.search(r": dropped (\d) of 8 prompts longer than data.max_prompt_length \(34 tokens\)",
                      capsys.readouterr().out)
    assert found and 0 < int(found.group(1)) < 8
    if method == "prm":
        trees = (run_dir / "trees").glob("*.jsonl")
        assert sum(len(f.read_text().splitlines()) for f in trees) == 8 - int(found.group(1))
    assert [m for m in logged(run_dir) if "loss" in m]


def test_a_teacher_dispatched_to_a_device_of_its_own_trains_the_student_exactly_as_before(tmp_path, capsys):
    """teacher.device: cpu puts the teacher's layers behind accelerate's device hooks (the path a
    cuda:1 teacher takes, on one device here): TRL accepts the dispatched teacher and the losses
    equal those of the undispatched one. A device the machine lacks stops the run, naming the key."""
    recipe = f"""\
method: distill
model: {{name_or_path: tiny, tiny: {TINY}}}
teacher: {{name_or_path: tiny DEVICE}}
data: {{train: [{{task: arithmetic, n: 16}}]}}
batch: {{per_device: 4}}
trainer: {{max_steps: 3, logging_steps: 1, learning_rate: 1.0e-3, max_completion_length: 8, seed: 0}}
"""
    plain = run(tmp_path, "plain", recipe.replace(" DEVICE", ""))
    placed = run(tmp_path, "placed", recipe.replace(" DEVICE", ", device: cpu"))
    assert "posttrain: teacher layers on cpu" in capsys.readouterr().out
    losses = [[m["loss"] for m in logged(d) if "loss" in m] for d in (plain, placed)]
    assert len(losses[0]) == 3 and losses[0] == losses[1]
    missing = tmp_path / "missing.yaml"
    missing.write_text(recipe.replace(" DEVICE", ", device: cuda:7") + f"run: {{name: missing, dir: {tmp_path / 'runs'}}}\n")
    assert main(["run", str(missing)]) == 2
    assert "teacher.device: cuda:7 is not on this machine" in capsys.readouterr().err
