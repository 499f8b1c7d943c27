"""Decontamination: n-gram overlap with evaluation sets, as a library, a CLI and a preflight."""

import json

import pytest

from posttrain.cli import main
from posttrain.data.decontaminate import EvalIndex, contaminated, record_text
from posttrain.errors import RecipeError
from posttrain.recipe import load_run

QUESTION = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
            "in May. How many clips did Natalia sell altogether in April and May?")


@pytest.mark.parametrize("text,flagged", [
    (QUESTION, True),                                                   # verbatim
    ("Q: " + QUESTION.replace("altogether in April and May?", "in total?"), True),  # edited at the edge
    ("Let's think step by step about how many clips were sold in May.", False),   # shared phrases only
    ("A different problem about 48 friends.", False),
])
def test_overlap_threshold(text, flagged):
    index = EvalIndex.build([QUESTION, "Compute 1 + 2."])
    assert bool(contaminated([{"prompt": text, "completion": "x"}], index)) is flagged


def test_short_eval_texts_must_appear_whole():
    index = EvalIndex.build(["Compute 1 + 2."])
    assert contaminated([{"prompt": "compute 1 + 2. now", "completion": "3"},
                         {"prompt": "Compute 1 + 23.", "completion": "24"}], index) == [0]


def test_record_text_reads_every_field():
    record = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
              "chosen": "c", "rejected": [{"role": "assistant", "content": "d"}]}
    assert record_text(record).split("\n") == ["a", "b", "c", "d"]


def _recipe(tmp_path, extra=""):
    train = tmp_path / "train.jsonl"
    heldout = [{"prompt": [{"role": "user", "content": QUESTION}], "ground_truth": "72"}]
    (tmp_path / "heldout.jsonl").write_text(json.dumps(heldout[0]) + "\n")
    train.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": QUESTION, "completion": "72"}, {"prompt": "Other question?", "completion": "1"},
        {"prompt": "And another one?", "completion": "2"}]))
    path = tmp_path / "r.yaml"
    path.write_text(f"method: sft\ndata:\n  train:\n    - path: train.jsonl\n{extra}"
                    "eval:\n  data:\n    - path: heldout.jsonl\n")
    return path


def test_cli_counts_per_source_and_writes_clean_files(tmp_path, capsys):
    path = _recipe(tmp_path)
    assert main(["data", "decontaminate", str(path), "--write", str(tmp_path / "clean")]) == 0
    out = capsys.readouterr().out
    assert f"| {tmp_path / 'train.jsonl'} | 3 | 1 |" in out
    (clean,) = (tmp_path / "clean").glob("*.jsonl")
    assert [json.loads(l)["completion"] for l in clean.read_text().splitlines()] == ["1", "2"]


def test_preflight_reports_or_drops_and_records_counts(tmp_path):
    from posttrain.trainers.sft import sft_data

    for action, kept in (("report", 3), ("drop", 2)):
        loaded = load_run(_recipe(tmp_path, f"  decontaminate: {{action: {action}}}\n"))
        train, _, fingerprints = sft_data(loaded, seed=0)
        (info,) = fingerprints.values()
        assert len(train) == kept and info["contaminated"] == 1 and info["dropped"] == 3 - kept


def test_decontaminate_needs_an_eval_set(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("method: sft\ndata:\n  train: [{task: arithmetic}]\n  decontaminate: {}\n")
    with pytest.raises(RecipeError, match="no evaluation set"):
        load_run(path)


def test_every_method_that_loads_data_decontaminates_it(tmp_path, capsys):
    """data.decontaminate is not SFT's alone: GRPO's prompts (and every trainer's build_mixture
    call) are checked and dropped the same way, and the log says how many."""
    from posttrain.trainers.rlvr import rlvr_data

    path = _recipe(tmp_path, "  decontaminate: {action: drop}\n")
    path.write_text(path.read_text().replace("method: sft", "method: rlvr\nrewards: [{name: numeric}]")
                    .replace("- path: train.jsonl", "- path: prompts.jsonl"))
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": QUESTION, "ground_truth": "72"}, {"prompt": "Other question?", "ground_truth": "1"},
        {"prompt": "And another one?", "ground_truth": "2"}]))
    loaded = load_run(path)
    train, _, fingerprints = rlvr_data(loaded, seed=0)
    assert len(train) == 2 and QUESTION not in str(list(train))
    (info,) = [v for k, v in fingerprints.items() if "prompts.jsonl" in k]
    assert info["contaminated"] == 1 and info["dropped"] == 1
    assert "decontamination: 1 of 3 records of" in capsys.readouterr().out
    import inspect

    from posttrain.trainers import dpo, kto, prm, reward, rlvr, sft
    for module in (dpo, kto, prm, reward, rlvr, sft):  # each build_mixture of data.train passes it
        source = inspect.getsource(module)
        assert "build_mixture(" in source and "decontamination(loaded.spec" in source, module.__name__
