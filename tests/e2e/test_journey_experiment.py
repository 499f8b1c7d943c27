"""The journey-vs-shortcut experiment end to end on a small tiny model: phase 1, trees sampled
from it (with the worked solution grafted in, since a 4-step model solves nothing), phase 2 on
both trace kinds for 2 seeds, the comparison table and plot; a rerun reuses every finished run."""

import json

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.e2e

OVERRIDES = [
    "model.tiny={hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}",
    "phase1.data.train.0.n=64", "phase1.trainer.max_steps=4", "phase1.trainer.logging_steps=1",
    "phase1.batch={per_device: 8, global: 8}", "phase2.batch={per_device: 8, global: 8}",
    "trees.questions.n=6", "trees.include_gold=true", "trees.step_tokens=8",
    "phase2.seeds=[0, 1]", "phase2.trainer.max_steps=2", "phase2.trainer.logging_steps=1",
    "phase2.traces.detour_probability=1.0",
    "eval.data.0.n=8", "eval.max_new_tokens=16",
]


def test_journey_vs_shortcut_runs_every_phase_and_writes_the_comparison(tmp_path, capsys):
    recipe = "recipes/quickstart/journey-vs-shortcut.yaml"
    assert main(["run", recipe, *OVERRIDES, f"run.dir={tmp_path}"]) == 0
    root = tmp_path / "journey-vs-shortcut"
    trees = [json.loads(line) for line in (root / "trees.jsonl").read_text().splitlines()]
    assert len(trees) == 6  # every question kept a correct path (the worked solution)
    for kind in ("shortcut", "journey"):
        for seed in (0, 1):
            run = root / f"{kind}-seed{seed}"
            assert (run / "final" / "config.json").is_file() and (run / "eval" / "report.json").is_file()
            resolved = (run / "recipe.resolved.yaml").read_text()
            assert f"kind: {kind}" in resolved and f"seed: {seed}" in resolved and "max_steps: 2" in resolved
            assert str((root / "phase1" / "final").resolve()) in resolved  # phase 2 starts from phase 1
    summary = json.loads((root / "comparison.json").read_text())
    assert [r["model"] for r in summary["rows"]] == [
        "phase 1 (worked solutions)", "phase 2 on shortcut traces", "phase 2 on journey traces"]
    assert [r["seeds"] for r in summary["rows"]] == [1, 2, 2]
    assert summary["held_out"] == 8 and summary["trees"]["trees"] == 6
    table = (root / "comparison.md").read_text()
    assert "| phase 2 on journey traces |" in table and "answers with a reflection" in table
    assert (root / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["run", recipe, *OVERRIDES, f"run.dir={tmp_path}"]) == 0  # everything finished: reused
    assert capsys.readouterr().out.count("is finished; reusing it") == 5


def test_countdown_search_trees_equal_token_budgets_and_paired_intervals(tmp_path):
    recipe = "recipes/journey-countdown/experiment.yaml"
    overrides = [
        "model.tiny={hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}",
        "phase1.data.train.0.n=64", "phase1.trainer.max_steps=4", "phase1.batch={per_device: 8, global: 8}",
        "phase2.batch={per_device: 8, global: 8}", "trees.questions.n=20", "phase2.seeds=[0, 1]",
        "phase2.run.max_train_tokens=3000", "phase2.traces.mask=[wrong]", "eval.data.0.n=8", "eval.max_new_tokens=24",
        f"run.dir={tmp_path}",
    ]
    assert main(["run", recipe, *overrides]) == 0
    root = tmp_path / "journey-countdown"
    assert json.loads((root / "trees.json").read_text())["source"] == "search"
    summary = json.loads((root / "comparison.json").read_text())
    shortcut, journey = summary["rows"][1], summary["rows"][2]
    for row in (shortcut, journey):  # both arms stopped at the first step past the same budget
        assert 3000 <= row["tokens"] < 3000 + 8 * 200 and row["flops"] > 0
    assert journey["steps"] < shortcut["steps"]  # journey records are longer: fewer of them per token
    d = {(x["a"], x["b"]): x for x in summary["differences"]}
    assert set(d) == {("journey", "shortcut"), ("journey", "phase 1"), ("shortcut", "phase 1")}
    assert d[("journey", "shortcut")]["seeds"] == 2 and d[("journey", "shortcut")]["problems"] == 8
    assert d[("journey", "shortcut")]["difference"] == pytest.approx(journey["accuracy_mean"] - shortcut["accuracy_mean"])
    assert "| journey - shortcut |" in (root / "comparison.md").read_text()
    resolved = (root / "journey-seed0" / "recipe.resolved.yaml").read_text()
    assert "journey: search" in resolved and "- wrong" in resolved and "max_train_tokens: 3000" in resolved
