"""A run directory cannot hurt anything else: run.name stays inside run.dir, --overwrite removes
only what posttrain made, one process at a time holds a run directory, and --resume refuses a
recipe whose training settings changed since the run started (unless told otherwise)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from posttrain.cli import main
from posttrain.rundir import LOCK, MARKER

pytestmark = pytest.mark.e2e

RECIPE = """\
method: sft
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
data:
  train:
    - {{task: arithmetic, n: 64}}
batch: {{per_device: 8}}
trainer: {{max_steps: 4, learning_rate: 1.0e-3, logging_steps: 1, save_steps: 2, seed: 0}}
run: {{dir: {dir}}}
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.format(dir=tmp_path / "runs"))
    return path


@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", ".", "a/../../b", "~/x", ""])
def test_run_name_stays_inside_run_dir(recipe, capsys, name):
    assert main(["run", str(recipe), f"run.name={name}", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"error: command-line override 'run.name={name}': run.name: '{name}'" in err and "run.dir" in err


def test_a_pipeline_stage_name_stays_inside_too(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("stages:\n  - {name: ../escape, method: sft, data: {train: [{task: arithmetic}]}}\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}:2: stages.0.name: '../escape' leaves run.dir" in capsys.readouterr().err


def test_overwrite_removes_only_a_directory_posttrain_made(recipe, tmp_path, capsys):
    victim = tmp_path / "runs" / "victim"
    victim.mkdir(parents=True)
    (victim / "thesis.tex").write_text("years of work")
    assert main(["run", str(recipe), "run.name=victim", "--overwrite"]) == 2
    assert "--overwrite removes only directories posttrain made" in capsys.readouterr().err
    assert (victim / "thesis.tex").read_text() == "years of work"
    # a run posttrain made is marked, and --overwrite replaces it
    assert main(["run", str(recipe), "run.name=mine"]) == 0
    mine = tmp_path / "runs" / "mine"
    assert (mine / MARKER).is_file() and not (mine / LOCK).exists()  # the lock is gone when the run ends
    (mine / "stray.txt").write_text("x")
    assert main(["run", str(recipe), "run.name=mine", "--overwrite"]) == 0
    assert not (mine / "stray.txt").exists() and (mine / "final" / "config.json").is_file()


def test_overwrite_starts_a_new_run_or_pipeline_too(recipe, tmp_path):
    """--overwrite where nothing is yet: the lock taken first is all the directory holds (a
    fresh pipeline used to refuse its own new directory)."""
    assert main(["run", str(recipe), "run.name=fresh", "--overwrite"]) == 0
    pipeline = tmp_path / "p.yaml"
    stage = yaml.safe_load(RECIPE.format(dir=tmp_path / "runs"))
    run = stage.pop("run")
    pipeline.write_text(yaml.safe_dump({"run": {**run, "name": "new-pipeline"}, "stages": [{"name": "sft", **stage}]}))
    assert main(["run", str(pipeline), "--overwrite"]) == 0
    assert (tmp_path / "runs" / "new-pipeline" / "sft" / "final" / "config.json").is_file()


def test_a_second_process_cannot_take_a_run_directory_in_use(recipe, tmp_path, capsys):
    run = tmp_path / "runs" / "busy"
    run.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "slurm_job_id": None}))
        assert main(["run", str(recipe), "run.name=busy"]) == 2
        err = capsys.readouterr().err
        assert f"is in use by posttrain process {holder.pid} on {socket.gethostname()}" in err
        assert not (run / "checkpoints").exists()  # nothing was started
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over
    assert main(["run", str(recipe), "run.name=busy"]) == 0
    assert (run / "final" / "config.json").is_file() and not (run / LOCK).exists()


def test_two_runs_started_together_one_wins(recipe, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "posttrain", "run", str(recipe), "run.name=race"]
    first = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 2], outputs
    loser = outputs[[first.returncode, second.returncode].index(2)]
    assert "is in use by posttrain process" in loser or "holds a finished run" in loser
    logged = [json.loads(line)["step"] for line in (tmp_path / "runs" / "race" / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert logged == [1, 2, 3, 4]  # one run's steps, each once


def test_resume_refuses_changed_training_settings_unless_allowed(recipe, tmp_path, capsys):
    assert main(["run", str(recipe), "run.name=edited"]) == 0
    run = tmp_path / "runs" / "edited"
    import shutil

    shutil.rmtree(run / "final")  # as if it had been stopped after its last checkpoint
    capsys.readouterr()
    changed = ["trainer.learning_rate=5e-4", "data.train.0.n=32"]
    assert main(["run", str(recipe), "run.name=edited", *changed, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "was trained with other settings; resuming would continue its checkpoint with changed training" in err
    assert "trainer.learning_rate (0.001 -> 0.0005)" in err and "data.train.0.n (64 -> 32)" in err
    # settings that do not alter training may change
    assert main(["run", str(recipe), "run.name=edited", "trainer.logging_steps=2", "--resume"]) == 0
    shutil.rmtree(run / "final")
    assert main(["run", str(recipe), "run.name=edited", *changed, "--resume", "--allow-changes"]) == 0
    out = capsys.readouterr().out
    assert "resuming with changed training settings (--allow-changes): data.train.0.n (64 -> 32); " \
           "trainer.learning_rate (0.001 -> 0.0005); the earlier record is kept" in out
    before = yaml.safe_load((run / "recipe.resolved.before-resume.yaml").read_text())
    assert before["trainer"]["learning_rate"] == 1.0e-3
    assert yaml.safe_load((run / "recipe.resolved.yaml").read_text())["trainer"]["learning_rate"] == 5.0e-4
