"""Faults on a real run: a stop signal checkpoints and exits cleanly, `kill -9` at a random step
loses nothing that `--resume` cannot redo, a half-written checkpoint is never loaded, and a full
or read-only disk is reported before training starts."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from posttrain.cli import main
from posttrain.rundir import COMPLETE
from posttrain.trainers.faults import EXIT_INTERRUPTED

pytestmark = pytest.mark.e2e

STEPS = 120
RECIPE = f"""\
method: sft
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
data:
  train:
    - {{task: arithmetic, n: 400}}
batch: {{per_device: 8, global: 8}}
trainer: {{max_steps: {STEPS}, learning_rate: 1.0e-3, logging_steps: 1, save_steps: 10, save_total_limit: 2, seed: 0}}
run: {{dir: runs}}
"""


def losses(run: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in m}


def weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "final" / "model.safetensors"))


def start(recipe: Path, name: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "posttrain", "run", str(recipe), f"run.name={name}"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_step(process: subprocess.Popen, run: Path, step: int) -> int:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        logged = losses(run) if (run / "metrics.jsonl").is_file() else {}
        if logged and max(logged) >= step:
            return max(logged)
        time.sleep(0.02)
    raise AssertionError(f"the run never reached step {step}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must match."""
    tmp = tmp_path_factory.mktemp("faults")
    recipe = tmp / "faults.yaml"
    recipe.write_text(RECIPE)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        assert main(["run", str(recipe), "run.name=reference"]) == 0
    finally:
        os.chdir(cwd)
    return tmp, recipe, tmp / "runs" / "reference"


def resume_and_compare(tmp: Path, recipe: Path, name: str, reference: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        assert main(["run", str(recipe), f"run.name={name}", "--resume"]) == 0
    finally:
        os.chdir(cwd)
    run = tmp / "runs" / name
    expected, got = losses(reference), losses(run)
    assert sorted(got) == list(range(1, STEPS + 1))  # every step logged once: the redone tail replaced
    for step, loss in expected.items():
        assert got[step] == pytest.approx(loss, rel=1e-5), step
    a, b = weights(reference), weights(run)
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-6, key


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])  # SIGINT: Ctrl-C
def test_a_stop_signal_saves_a_checkpoint_and_exits_cleanly(reference, signum):
    tmp, recipe, ref = reference
    name = f"stopped-{signum.name}"
    run = tmp / "runs" / name
    process = start(recipe, name, tmp)
    reached = wait_for_step(process, run, random.randint(15, 60))
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, output
    assert f"received {signum.name}" in output
    assert f"posttrain: continue with: posttrain run {recipe} run.name={name} --resume" in output
    assert not (run / "final").exists()
    stopped = max(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*"))
    assert reached <= stopped < STEPS  # stopped at the end of the step it was in, not at a save step
    assert (run / "checkpoints" / f"checkpoint-{stopped}" / COMPLETE).is_file()
    assert len(list((run / "checkpoints").glob("checkpoint-*"))) <= 2  # save_total_limit still holds
    resume_and_compare(tmp, recipe, name, ref)


def test_kill_9_at_a_random_step_then_resume_matches_the_uninterrupted_run(reference):
    tmp, recipe, ref = reference
    seed = random.randrange(10**6)
    step = random.Random(seed).randint(12, 100)
    name = "killed"
    run = tmp / "runs" / name
    process = start(recipe, name, tmp)
    wait_for_step(process, run, step)
    process.kill()
    process.communicate()
    checkpoints = run / "checkpoints"
    complete = sorted(int(p.parent.name.split("-")[1]) for p in checkpoints.glob(f"checkpoint-*/{COMPLETE}"))
    assert complete, f"no complete checkpoint (seed {seed}, step {step})"
    # A save the kill cut short: newer than every complete checkpoint, files truncated, no marker.
    half = checkpoints / f"checkpoint-{complete[-1] + 1}"
    shutil.rmtree(half, ignore_errors=True)
    shutil.copytree(checkpoints / f"checkpoint-{complete[-1]}", half)
    (half / COMPLETE).unlink()
    data = (half / "model.safetensors").read_bytes()
    (half / "model.safetensors").write_bytes(data[: len(data) // 3])
    resume_and_compare(tmp, recipe, name, ref)
    assert not half.exists() or (half / COMPLETE).is_file()  # removed (or rewritten whole by the resumed run)


@contextmanager
def run_on_tmpfs(tmp_path: Path, options: str):
    """A recipe whose run directory is on a fresh tmpfs mounted with `options` (needs root)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(RECIPE.replace("run: {dir: runs}", f"run: {{dir: {mount}}}"))
        yield recipe, mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_reported_before_training_starts(tmp_path, capsys):
    with run_on_tmpfs(tmp_path, "size=256k") as (recipe, small):
        assert main(["run", str(recipe)]) == 2
        err = capsys.readouterr().err
        assert "GiB free" in err and "one checkpoint plus the final model" in err
        assert not list((small / "r" / "checkpoints").iterdir())  # no step ran
        assert (small / "r" / "metrics.jsonl").read_text() == ""


def test_a_read_only_output_directory_is_reported(tmp_path, capsys):
    with run_on_tmpfs(tmp_path, "ro,size=1m") as (recipe, readonly):
        assert main(["run", str(recipe)]) == 2
        assert f"{readonly}/r: cannot write there: Read-only file system" in capsys.readouterr().err


def test_a_disk_that_fills_up_during_training_is_one_line_and_keeps_the_checkpoint(tmp_path):
    """Another process fills the disk while the run trains: the final save fails with a message
    that names what is kept, not a safetensors traceback."""
    with run_on_tmpfs(tmp_path, "size=24m") as (recipe, disk):
        recipe.write_text(recipe.read_text().replace("save_steps: 10, save_total_limit: 2", "save_steps: 30"))
        process = subprocess.Popen([sys.executable, "-m", "posttrain", "run", str(recipe)], cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        run = disk / "r"
        wait_for_step(process, run, 35)  # a checkpoint at step 30 is written
        with open(disk / "filler", "wb") as f:  # the rest of the disk, taken
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        output, _ = process.communicate(timeout=240)
    assert process.returncode == 2, output
    assert "Traceback" not in output
    assert "No space left on device while saving" in output and "checkpoint-30, is kept" in output
