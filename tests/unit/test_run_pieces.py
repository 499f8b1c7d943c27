"""Pieces of a run that need no training: W&B mode, eval splits, the run directory rules."""

import pytest

from posttrain.errors import UserError
from posttrain.recipe import load_run
from posttrain.rundir import RunDir, prepare
from posttrain.trainers.common import wandb_mode

RECIPE = "method: sft\ndata:\n  train:\n    - {task: arithmetic, n: 40}\n"


@pytest.mark.parametrize("env,netrc,expected", [
    ({}, None, "offline"),
    ({"WANDB_API_KEY": "x" * 40}, None, "online"),
    ({}, "machine api.wandb.ai\n  login user\n  password abc\n", "online"),
    ({"WANDB_MODE": "disabled", "WANDB_API_KEY": "x"}, None, "disabled"),
])
def test_wandb_auto_mode(monkeypatch, tmp_path, env, netrc, expected):
    for key in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    if netrc:
        (tmp_path / ".netrc").write_text(netrc)
    assert wandb_mode("auto") == expected
    assert wandb_mode("offline") == "offline"


def test_eval_fraction_carves_a_disjoint_eval_split(write_recipe):
    from posttrain.trainers.sft import sft_data

    loaded = load_run(write_recipe(RECIPE + "  eval_fraction: 0.25\n"))
    train, evaluation, fingerprints = sft_data(loaded, seed=0)
    assert (len(train), len(evaluation)) == (30, 10)
    key = lambda r: r["prompt"][0]["content"]  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in evaluation}
    assert fingerprints["task:arithmetic:train"]["used"] == 40


def test_eval_size_holds_out_a_count(write_recipe):
    """alignment-handbook's `test_split_size: 1000` is `data.eval_size: 1000`."""
    from posttrain.trainers.sft import sft_data

    train, evaluation, _ = sft_data(load_run(write_recipe(RECIPE + "  eval_size: 7\n")), seed=0)
    assert (len(train), len(evaluation)) == (33, 7)
    with pytest.raises(UserError, match="eval_size 40 of 40 records leaves none to train on"):
        sft_data(load_run(write_recipe(RECIPE + "  eval_size: 40\n")), seed=0)


def test_unwritable_run_directory_is_reported_before_training(write_recipe, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    loaded = load_run(write_recipe(RECIPE + f"run: {{dir: {blocker}}}\n"))
    with pytest.raises(UserError, match="cannot write there"):
        prepare(RunDir(loaded.run_dir), resume=False, overwrite=False)
