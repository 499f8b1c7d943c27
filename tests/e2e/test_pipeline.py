"""Pipelines: SFT -> DPO -> RLVR from one recipe, evaluation after each stage, skip and resume."""

import json
import shutil

import pytest
import yaml

from posttrain.cli import main
from posttrain.evaluation.stats import problem_scores

pytestmark = pytest.mark.e2e

PIPELINE = """\
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
batch: {{per_device: 8}}
eval:
  data: [{{task: arithmetic, split: heldout, n: 16}}]
  max_new_tokens: 8
  baseline: true
run: {{name: chain, dir: {dir}}}
stages:
  - name: sft
    method: sft
    data: {{train: [{{task: arithmetic, n: 64}}]}}
    trainer: {{max_steps: 3, learning_rate: 1.0e-3, logging_steps: 1, save_steps: 3}}
  - name: dpo
    method: dpo
    data: {{train: [{{task: arithmetic_pairs, n: 64}}]}}
    trainer: {{max_steps: 2, learning_rate: 1.0e-4, logging_steps: 1, save_steps: 1, loss_type: [sigmoid, sft]}}
  - name: rlvr
    method: rlvr
    data: {{train: [{{task: arithmetic, n: 32}}]}}
    rewards: [{{name: numeric}}]
    reward_preflight: {{enabled: false}}  # a 3-step SFT model earns no reward; the plumbing is under test
    trainer: {{max_steps: 2, num_generations: 4, max_completion_length: 8, logging_steps: 1}}
"""


def test_pipeline_runs_stages_in_order_skips_finished_and_resumes_interrupted(tmp_path, capsys):
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text(PIPELINE.format(dir=tmp_path / "runs"))
    assert main(["validate", str(recipe)]) == 0
    assert "pipeline chain: sft (sft), dpo (dpo), rlvr (rlvr)" in capsys.readouterr().out

    assert main(["run", str(recipe)]) == 0
    root = tmp_path / "runs" / "chain"
    summary = json.loads((root / "summary.json").read_text())
    assert [row["stage"] for row in summary] == ["start", "sft", "dpo", "rlvr"]
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in summary)
    assert all(row["wall_seconds"] > 0 for row in summary[1:])
    table = (root / "summary.md").read_text()
    assert "| sft | sft |" in table and "| rlvr | rlvr |" in table
    for stage, previous in (("dpo", "sft"), ("rlvr", "dpo")):
        resolved = yaml.safe_load((root / stage / "recipe.resolved.yaml").read_text())
        assert resolved["model"]["name_or_path"] == str(root / previous / "final")
        assert (root / stage / "eval" / "report.json").is_file()

    capsys.readouterr()
    assert main(["run", str(recipe)]) == 0  # everything finished: nothing retrains
    out = capsys.readouterr().out
    assert all(f"stage {name} is finished; skipping it" in out for name in ("sft", "dpo", "rlvr"))

    # Interrupt DPO after its first step: its final model and the RLVR stage never happened.
    shutil.rmtree(root / "dpo" / "final")
    (root / "dpo" / "stage.json").unlink()
    shutil.rmtree(root / "dpo" / "checkpoints" / "checkpoint-2")
    shutil.rmtree(root / "rlvr")
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "stage sft is finished; skipping it" in out
    dpo = json.loads((root / "dpo" / "stage.json").read_text())
    assert dpo["resumed_from"] == "checkpoint-1"
    state = json.loads((root / "dpo" / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert (root / "rlvr" / "final" / "config.json").is_file()
    assert [row["stage"] for row in json.loads((root / "summary.json").read_text())] == ["start", "sft", "dpo", "rlvr"]

    # `posttrain eval` on a pipeline scores its last stage's model.
    assert main(["eval", str(recipe), "--output", str(tmp_path / "last")]) == 0
    report = json.loads((tmp_path / "last" / "report.json").read_text())
    assert report["model_path"] == str(root / "rlvr" / "final") and report["model"]["samples"] == 16


def test_an_error_inside_a_stage_names_the_stage_key(tmp_path):
    from posttrain.errors import RecipeError
    from posttrain.recipe import load_recipe

    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text(PIPELINE.format(dir=tmp_path).replace("learning_rate: 1.0e-4", "learnig_rate: 1.0e-4"))
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert info.value.key == "stages.1.trainer.learnig_rate" and info.value.where == f"{recipe}:18"


COMPARISON = """\
  - name: more-sft
    method: sft
    instead_of: rlvr
    data: {{train: [{{task: arithmetic, n: 64}}]}}
    trainer: {{max_steps: 100000, learning_rate: 1.0e-4, logging_steps: 1, save_steps: 100000}}
"""


def test_a_comparison_stage_starts_where_its_stage_started_and_trains_as_long(tmp_path, capsys):
    """The default budget: as many estimated FLOPs as the stage it stands in for."""
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text((PIPELINE + COMPARISON).format(dir=tmp_path / "runs"))
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    root = tmp_path / "runs" / "chain"
    rows = {row["stage"]: row for row in json.loads((root / "summary.json").read_text())}
    assert list(rows) == ["start", "sft", "dpo", "rlvr", "more-sft"]
    budget = rows["rlvr"]["train_flops"]
    assert budget > 0 and rows["more-sft"]["instead_of"] == "rlvr" and rows["more-sft"]["budget"] == "flops"
    resolved = yaml.safe_load((root / "more-sft" / "recipe.resolved.yaml").read_text())
    assert resolved["model"]["name_or_path"] == str(root / "dpo" / "final")  # where rlvr started
    assert resolved["run"]["max_train_flops"] == budget and resolved["run"].get("max_train_seconds") is None
    assert "compute budget" in out and "(run.max_train_flops) is spent" in out
    steps = [json.loads(line) for line in (root / "more-sft" / "metrics.jsonl").read_text().splitlines()]
    last_step = max(row["step"] for row in steps)
    assert 0 < last_step < 100000
    # Same model, so FLOPs per token are fixed: SFT's 6N against GRPO's 8N (it generates each token too).
    sft_per_token = rows["more-sft"]["train_flops"] / rows["more-sft"]["train_tokens"]
    rlvr_per_token = rows["rlvr"]["train_flops"] / rows["rlvr"]["train_tokens"]
    assert rlvr_per_token / sft_per_token == pytest.approx(4 / 3)
    # It spent the budget, give or take its last step (batch 8 of records under 64 tokens).
    assert budget <= rows["more-sft"]["train_flops"] < budget + 8 * 64 * sft_per_token
    assert "| more-sft (instead of rlvr, same flops) | sft |" in (root / "summary.md").read_text()
    assert (root / "more-sft" / "final" / "config.json").is_file()


def test_a_comparison_stage_can_match_tokens_or_seconds(tmp_path, capsys):
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text((PIPELINE + COMPARISON.replace("instead_of: rlvr", "instead_of: rlvr\n    budget: seconds"))
                      .format(dir=tmp_path / "runs"))
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    rows = {row["stage"]: row for row in json.loads((tmp_path / "runs" / "chain" / "summary.json").read_text())}
    budget = rows["rlvr"]["train_seconds"]
    assert "time budget" in out and "(run.max_train_seconds) is spent" in out
    # It trained for the budget, give or take one step (a step here takes well under a second).
    assert budget <= rows["more-sft"]["train_seconds"] < budget + 2.0


def test_instead_of_must_name_an_earlier_stage(tmp_path):
    from posttrain.errors import RecipeError
    from posttrain.recipe import load_recipe

    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text((PIPELINE + COMPARISON).format(dir=tmp_path).replace("instead_of: rlvr", "instead_of: rl"))
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert info.value.key == "stages.3.instead_of"
    assert "'rl' is not an earlier stage" in info.value.message and "sft, dpo, rlvr" in info.value.message


def test_seeds_run_every_stage_per_seed_and_compare_them_paired(tmp_path, capsys):
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text("seeds: [3, 4]\n" + (PIPELINE + COMPARISON).format(dir=tmp_path / "runs")
                      .replace("max_steps: 100000", "max_steps: 50"))
    assert main(["validate", str(recipe)]) == 0
    assert "sft-seed3 (sft), dpo-seed3 (dpo)" in capsys.readouterr().out
    assert main(["run", str(recipe)]) == 0
    root = tmp_path / "runs" / "chain"
    for stage, previous in (("dpo-seed4", "sft-seed4"), ("more-sft-seed4", "dpo-seed4")):
        resolved = yaml.safe_load((root / stage / "recipe.resolved.yaml").read_text())
        assert resolved["model"]["name_or_path"] == str(root / previous / "final") and resolved["trainer"]["seed"] == 4
    assert yaml.safe_load((root / "sft-seed3" / "recipe.resolved.yaml").read_text())["model"]["tiny"]["seed"] == 3
    comparison = json.loads((root / "comparison.json").read_text())
    assert [row["stage"] for row in comparison["stages"]] == ["sft", "dpo", "rlvr", "more-sft"]
    assert all(row["seeds"] == [3, 4] and len(row["per_seed"]) == 2 for row in comparison["stages"])
    pairs = {(d["a"], d["b"]): d for d in comparison["differences"]}
    # sft trained from the base model: paired with the base model's answers (eval.baseline)
    assert set(pairs) == {("sft", "start"), ("dpo", "sft"), ("rlvr", "dpo"), ("more-sft", "rlvr")}
    start = problem_scores(root / "sft-seed3" / "eval" / "baseline_samples.jsonl")
    assert not (root / "sft-seed4" / "eval" / "baseline_samples.jsonl").exists()  # the base model is scored once
    assert comparison["start"]["accuracy"] == pytest.approx(sum(start) / len(start))
    assert pairs[("sft", "start")]["problems"] == 16
    assert pairs[("sft", "start")]["difference"] == pytest.approx(
        comparison["stages"][0]["accuracy_mean"] - comparison["start"]["accuracy"])
    for d in pairs.values():  # the difference is the one the per-stage accuracies give
        assert d["problems"] == 16 and d["low"] <= d["difference"] <= d["high"]
    rows = {row["stage"]: row for row in comparison["stages"]}
    assert pairs[("dpo", "sft")]["difference"] == pytest.approx(rows["dpo"]["accuracy_mean"] - rows["sft"]["accuracy_mean"])
    table = (root / "comparison.md").read_text()
    assert "| more-sft (instead of rlvr, same flops) |" in table and "| dpo - sft |" in table
    assert "| start (the base model, eval.baseline) |" in table and "| sft - start |" in table


def test_seeds_from_shares_the_stages_above_it_and_pairs_every_seed_against_them(tmp_path):
    recipe = tmp_path / "pipeline.yaml"
    recipe.write_text("seeds: [3, 4]\nseeds_from: rlvr\n" + (PIPELINE + COMPARISON).format(dir=tmp_path / "runs")
                      .replace("max_steps: 100000", "max_steps: 50"))
    assert main(["run", str(recipe)]) == 0
    root = tmp_path / "runs" / "chain"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "dpo", "more-sft-seed3", "more-sft-seed4", "rlvr-seed3", "rlvr-seed4", "sft"]
    for stage in ("rlvr-seed3", "more-sft-seed4"):  # every seed starts from the one dpo model
        resolved = yaml.safe_load((root / stage / "recipe.resolved.yaml").read_text())
        assert resolved["model"]["name_or_path"] == str(root / "dpo" / "final")
    comparison = json.loads((root / "comparison.json").read_text())
    rows = {row["stage"]: row for row in comparison["stages"]}
    assert rows["dpo"]["seeds"] == [None] and rows["dpo"]["accuracy_std"] == 0.0
    assert rows["rlvr"]["seeds"] == [3, 4] and len(rows["rlvr"]["per_seed"]) == 2
    pairs = {(d["a"], d["b"]): d for d in comparison["differences"]}
    assert pairs[("rlvr", "dpo")]["seeds"] == 2  # each seed paired with the same dpo model
    assert pairs[("rlvr", "dpo")]["difference"] == pytest.approx(rows["rlvr"]["accuracy_mean"] - rows["dpo"]["accuracy_mean"])
    table = (root / "comparison.md").read_text()
    assert "| dpo (one run, shared by every seed) |" in table and "counts the seeds of the other stage only" in table


def test_seeded_test_time_curves_are_compared_over_the_seeds(tmp_path):
    """A reward model per seed ranks the base model's samples; comparison.json holds the curves
    over the seeds: each point the mean of the seeds' own, each seed with samples of its own."""
    import statistics

    recipe = tmp_path / "tt.yaml"
    recipe.write_text(f"""\
seeds: [0, 1]
model: {{name_or_path: tiny, tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}}}
eval:
  data: [{{task: arithmetic, split: heldout, n: 8}}]
  max_new_tokens: 8
  test_time: {{budgets: [1, 4], strategies: [majority, best_of_n], batch_size: 8}}
run: {{name: tt, dir: {tmp_path / 'runs'}}}
stages:
  - name: rm
    method: reward
    data: {{train: [{{task: arithmetic_pairs, n: 32}}]}}
    batch: {{per_device: 8}}
    trainer: {{max_steps: 2, max_length: 128}}
""")
    assert main(["run", str(recipe)]) == 0
    root = tmp_path / "runs" / "tt"
    result = json.loads((root / "comparison.json").read_text())["test_time"]["rm"]
    assert result["questions"] == 8 and result["budgets"] == [1, 4] and result["seeds"] == 2
    per_seed = [json.loads((root / f"rm-seed{s}" / "eval" / "test_time.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in per_seed] == [0, 1]  # test_time.seed follows trainer.seed
    for strategy in ("majority", "best_of_n", "oracle"):
        for i, point in enumerate(result["curves"][strategy]):
            assert point["accuracy"] == pytest.approx(statistics.mean(r["curves"][strategy][i]["accuracy"]
                                                                      for r in per_seed))
            assert 0.0 <= point["low"] <= point["accuracy"] <= point["high"] <= 1.0
    samples = [[json.loads(line)["samples"] for line in (root / f"rm-seed{s}" / "eval" / "test_time.jsonl").open()]
               for s in (0, 1)]
    assert samples[0] != samples[1]  # each seed drew its own
    pairs = {(d["a"], d["b"]) for d in result["differences"]}
    assert pairs == {("best_of_n@4", "majority@4"), ("majority@4", "majority@1"), ("best_of_n@4", "best_of_n@1"),
                     ("oracle@4", "oracle@1")}
    table = (root / "comparison.md").read_text()
    assert "## Test-time compute of rm over 2 seeds" in table and "| rm | reward | - |" in table
