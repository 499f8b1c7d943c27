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


TARGET = RECIPE + """\
batch: {per_device: 16, global: 128}
launch: {nodes: 1, gpus_per_node: 8}
"""
RLVR = "method: rlvr\ndata:\n  train:\n    - {task: arithmetic, n: 10}\nrewards: [{name: numeric}]\n"


def test_show_resolves_for_the_launch_blocks_machine(write_recipe, capsys):
    """alignment-handbook's Zephyr SFT: 8 GPUs x 16 = 128, so no accumulation, and bf16 on GPUs;
    `--here` resolves for this CPU machine instead."""
    assert main(["show", str(write_recipe(TARGET))]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["device"] == {"cuda": True, "bf16": True, "world_size": 8}
    assert resolved["trainer"]["gradient_accumulation_steps"] == 1 and resolved["trainer"]["bf16"] is True
    assert main(["show", str(write_recipe(TARGET)), "--here"]) == 0
    here = yaml.safe_load(capsys.readouterr().out)
    assert here["device"]["cuda"] is False and here["trainer"]["use_cpu"] is True
    assert here["trainer"]["gradient_accumulation_steps"] == 8


def test_show_renders_gpu_only_settings_for_a_gpu_target(write_recipe, capsys):
    text = RLVR + "trainer: {use_vllm: true}\nbatch: {per_device: 8}\nlaunch: {gpus_per_node: 8}\n"
    assert main(["show", str(write_recipe(text))]) == 0  # refused only by `run` on a machine without a GPU
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["use_vllm"] is True
    assert main(["show", str(write_recipe(text)), "--here"]) == 2
    assert "trainer.use_vllm: vLLM generation needs a GPU" in capsys.readouterr().err


def test_show_lists_trls_defaults_apart(write_recipe, capsys):
    """A recipe copied from open-r1 for TRL 0.18 (beta 0.04, loss bnpo, vLLM server) must see
    what TRL 1.16 will use instead."""
    assert main(["show", str(write_recipe(RLVR)), "trainer.learning_rate=1e-6"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    defaults = resolved["trainer_defaults"]
    assert defaults["beta"] == 0.0 and defaults["vllm_mode"] == "colocate" and defaults["loss_type"] == "dapo"
    assert "learning_rate" not in defaults and resolved["trainer"]["learning_rate"] == 1e-6
    assert not set(defaults) & set(resolved["trainer"])


def test_launch_dry_run_resolves_for_the_launch_blocks_machine(write_recipe, capsys):
    text = TARGET.replace("launch: {nodes: 1, gpus_per_node: 8}", "launch: {nodes: 1, gpus_per_node: 8, zero: 2}")
    assert main(["launch", str(write_recipe(text)), "--dry-run"]) == 0
    assert "--mixed_precision bf16" in capsys.readouterr().out


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
