"""The CLI's quick paths: show, data generate, and errors that must not become tracebacks."""

import json
import time

import yaml

from posttrain.cli import main

RECIPE = "method: sft\ndata:\n  train:\n    - {task: arithmetic, n: 10}\n"


def test_show_prints_the_resolved_recipe_with_overrides(write_recipe, capsys):
    assert main(["show", str(write_recipe(RECIPE)), "trainer.max_steps=5", "batch.per_device=2"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["trainer"]["max_steps"] == 5
    assert resolved["trainer"]["per_device_train_batch_size"] == 2
    assert resolved["trainer"]["use_cpu"] is True and resolved["trainer"]["bf16"] is False
    assert resolved["run"]["name"] == "recipe"


def test_validate_reports_each_file(write_recipe, capsys):
    good, bad = write_recipe(RECIPE, "good.yaml"), write_recipe(RECIPE + "trainr: {}\n", "bad.yaml")
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"ok: {good}" in captured.out
    assert f"{bad}:5: trainr: unknown key 'trainr'; did you mean 'trainer'" in captured.err


def test_validate_takes_overrides_like_show(write_recipe, capsys):
    good = write_recipe(RECIPE, "good.yaml")
    assert main(["validate", str(good), "trainer.max_steps=5"]) == 0
    assert main(["validate", str(good), "trainer.learning_rat=1e-5"]) == 2
    err = capsys.readouterr().err
    assert "learning_rat" in err and "learning_rate" in err and "No such file" not in err


def test_data_generate_writes_jsonl(tmp_path):
    out = tmp_path / "h.jsonl"
    assert main(["data", "generate", "arithmetic", "--n", "7", "--split", "heldout", "-o", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 7 and all("ground_truth" in r for r in records)


def test_unreachable_hub_model_fails_fast_naming_the_key(write_recipe, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_recipe(RECIPE + "model: {name_or_path: posttrain-tests/absent-model}\n")
    start = time.monotonic()
    assert main(["run", str(path)]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert "model.name_or_path: cannot load a tokenizer from 'posttrain-tests/absent-model'" in err


def test_data_generate_checks_n_and_makes_the_output_directory(tmp_path, capsys):
    assert main(["data", "generate", "arithmetic", "--n", "-5"]) == 2
    assert "error: --n -5: the number of records must be at least 1" in capsys.readouterr().err
    out = tmp_path / "no" / "such" / "dir" / "x.jsonl"
    assert main(["data", "generate", "arithmetic", "--n", "3", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["data", "generate", "arithmetic", "--n", "3", "-o", str(blocker / "x.jsonl")]) == 2
    assert f"error: {blocker}/x.jsonl: cannot write" in capsys.readouterr().err
