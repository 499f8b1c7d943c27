"""Test-time compute end to end on the tiny model (issue 14, points 5-7): a pipeline SFT -> PRM
whose PRM trains on trees sampled from the SFT model's own answers, then the curves of every
strategy at three budgets with the SFT model as the policy and the PRM as guide and ranker;
`posttrain eval` gives the same curves again; `data judge-pairs` judges pairs in both orders."""

import json

import pytest
import yaml

from posttrain.cli import main

pytestmark = pytest.mark.e2e

TINY = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128}
STRATEGIES = ["majority", "best_of_n", "weighted_majority", "beam_search", "lookahead", "dvts"]
TREES = {"width": 2, "depth": 3, "beam": 1, "step_tokens": 12, "judge": "arithmetic", "include_gold": True}


def _pipeline(tmp_path):
    recipe = {
        "model": {"name_or_path": "tiny", "tiny": TINY},
        "trainer": {"seed": 0},
        "run": {"name": "ttc", "dir": str(tmp_path / "runs")},
        "stages": [
            {"name": "sft", "method": "sft", "data": {"train": [{"task": "arithmetic", "n": 64}]},
             "batch": {"per_device": 8}, "trainer": {"max_steps": 6, "learning_rate": 1.0e-3, "logging_steps": 1}},
            {"name": "prm", "method": "prm",
             "data": {"train": [{"task": "arithmetic", "n": 8, "seed": 1, "build_trees": TREES, "traces": {"kind": "steps"}}],
                      "eval": [{"task": "arithmetic", "split": "heldout", "n": 4, "build_trees": TREES,
                                "traces": {"kind": "steps"}}]},
             "batch": {"per_device": 8}, "trainer": {"max_steps": 3, "learning_rate": 1.0e-3, "max_length": 128},
             "eval": {"data": [{"task": "arithmetic", "split": "heldout", "n": 6}], "reward": "numeric",
                      "max_new_tokens": 24,
                      "test_time": {"budgets": [1, 2, 4], "strategies": STRATEGIES, "beam_width": 2, "lookahead": 1,
                                    "max_steps": 3, "step_tokens": 12, "bins": 3}}},
        ],
    }
    path = tmp_path / "ttc.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_prm_on_the_policys_own_trees_gives_every_strategys_curve(tmp_path, capsys):
    recipe = _pipeline(tmp_path)
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    group = tmp_path / "runs" / "ttc"
    prm, evaluation = group / "prm", group / "prm" / "eval"
    # the PRM's trees were sampled from the SFT model and kept in the run directory
    trees = [json.loads(line) for line in (prm / "trees" / "source-0.jsonl").read_text().splitlines()]
    assert len(trees) == 8 and all(s["rating"] in ("correct", "incorrect") for t in trees for s in t["steps"])
    env = json.loads((prm / "env.json").read_text())
    assert env["data"]["sampled_trees"]["task:arithmetic:train"]["trees"] == 8
    assert "trees sampled from the starting model" in out
    assert json.loads((evaluation / "report.json").read_text())["process_reward"]  # step accuracy as before
    report = json.loads((evaluation / "test_time.json").read_text())
    assert report["policy"] == str((group / "sft" / "final").resolve()) and report["prm"] == str(prm / "final")
    assert list(report["curves"]) == [*STRATEGIES, "oracle"]
    curves = report["curves"]
    for strategy, points in curves.items():
        assert [p["budget"] for p in points] == [1, 2, 4]
        for p in points:
            assert p["questions"] == 6 and p["interval"][0] <= p["accuracy"] <= p["interval"][1]
            assert p["tokens_per_question"] > 0
    for strategy in ("majority", "best_of_n", "weighted_majority", "oracle"):  # nested samples: more tokens per budget
        tokens = [p["tokens_per_question"] for p in curves[strategy]]
        assert tokens[0] < tokens[1] < tokens[2]
    for i in range(3):  # the oracle is the ceiling of what is chosen from the same samples
        for strategy in ("majority", "best_of_n", "weighted_majority"):
            assert curves[strategy][i]["accuracy"] <= curves["oracle"][i]["accuracy"]
    assert sum(b["questions"] for b in report["bins"]) == 6
    for level in report["bins"]:
        assert all(cell["best"] in STRATEGIES for cell in level["by_budget"])
    rows = [json.loads(line) for line in (evaluation / "test_time.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(r["samples"]) == 4 and set(r["beam_search"]) == {"1", "2", "4"} for r in rows)
    assert (evaluation / "test_time.png").read_bytes()[:4] == b"\x89PNG"
    assert "| oracle pass@N (ceiling) |" in (evaluation / "test_time.md").read_text()

    # posttrain eval on the pipeline: the PRM stage, the policy it started from, the same curves
    again = tmp_path / "again"
    assert main(["eval", str(recipe), "--output", str(again)]) == 0
    repeated = json.loads((again / "test_time.json").read_text())
    for strategy in STRATEGIES:
        assert [p["correct"] for p in repeated["curves"][strategy]] == [p["correct"] for p in curves[strategy]]


def test_judge_pairs_reports_both_orders_and_what_did_not_parse(tmp_path, capsys):
    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    judge = tiny_model_path(TinyModelSpec(**TINY))
    recipe = tmp_path / "pairs.yaml"
    recipe.write_text("method: reward\nmodel: {name_or_path: tiny}\n"
                      "data: {train: [{task: arithmetic_pairs, n: 8}], eval: [{task: arithmetic_pairs, split: heldout, n: 5}]}\n")
    output = tmp_path / "judge.json"
    assert main(["data", "judge-pairs", str(recipe), "--judge", str(judge), "-o", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["pairs"] == 5 and report["judgements"] == 10
    assert report["unparsed"] == 10 and report["accuracy_both_orders"] == 0.0  # an untrained judge never passes
    assert "10 of 10 replies did not parse" in capsys.readouterr().out
