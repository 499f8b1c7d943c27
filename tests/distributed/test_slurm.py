"""`posttrain launch --slurm` against a real two-node SLURM cluster on this machine
(slurm_cluster.py; `.ci/run` installs SLURM): the rendered script, submitted with the real
sbatch, trains the tiny model as a 2-node job (one CPU process per node, gloo, torchrun with c10d
rendezvous on the head node); a job whose time limit runs out gets SLURM's signal, checkpoints,
requeues itself, resumes, and ends with the same losses and weights as the uninterrupted job."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posttrain.cli import main
from . import slurm_cluster

pytestmark = [pytest.mark.distributed, pytest.mark.slurm]

STEPS = 400
RECIPE = """\
method: sft
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
data:
  train: [{{task: arithmetic, n: 2000}}]
batch: {{per_device: 4, global: 8}}
trainer: {{max_steps: {steps}, learning_rate: 1.0e-3, logging_steps: 1, save_steps: 200, seed: 0, disable_tqdm: true}}
launch:
  nodes: 2
  gpus_per_node: 1
  port: {port}
  slurm: {{gpus: false, time: 10, signal_seconds: 45}}
run: {{dir: {runs}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why_not = slurm_cluster.available()
    if why_not:
        pytest.skip(why_not)
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="posttrain-slurm-"))  # not under pytest's 0700 tmp: munge reads it
    root.chmod(0o755)
    env = slurm_cluster.start(root)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield root
    slurm_cluster.stop(root)
    shutil.rmtree(root, ignore_errors=True)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def job_info(job: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job, "-o"], capture_output=True, text=True).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def submit(recipe: Path, *overrides: str) -> str:
    done = subprocess.run([sys.executable, "-m", "posttrain", "launch", str(recipe), *overrides, "--slurm"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return re.search(r"submitted job (\d+)", done.stdout).group(1)


def wait_until_done(job: str, on_pending=None, timeout: float = 420) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = job_info(job)
        if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return info
        if info.get("JobState") == "PENDING" and on_pending:
            on_pending(info)
        time.sleep(1)
    raise AssertionError(f"job {job} did not finish: {job_info(job)}")


def losses(run: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in m}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slurm-runs")
    path = tmp / "slurm.yaml"
    path.write_text(RECIPE.format(steps=STEPS, port=free_port(), runs=tmp / "runs"))
    return path


@pytest.fixture(scope="module")
def uninterrupted(cluster, recipe):
    """A plain two-node job: the reference the requeued job must match."""
    job = submit(recipe, "run.name=whole")
    info = wait_until_done(job)
    run = recipe.parent / "runs" / "whole"
    return info, run, (run / f"slurm-{job}.out").read_text()


def test_the_rendered_script_passes_bash_n_and_shellcheck(recipe, tmp_path):
    script = tmp_path / "job.sbatch"
    assert main(["launch", str(recipe), f"launch.slurm.script={script}", "--slurm", "--dry-run"]) == 0
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    shellcheck = Path(sys.executable).parent / "shellcheck"
    done = subprocess.run([str(shellcheck), str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_sbatch_trains_the_tiny_model_as_a_two_node_job(uninterrupted):
    info, run, log = uninterrupted
    assert info["JobState"] == "COMPLETED" and info["NumNodes"] == "2", (info, log[-3000:])
    assert "head n1 at 127.0.0.1:" in log  # the head node's address came from SLURM
    resolved = (run / "recipe.resolved.yaml").read_text()
    assert "world_size: 2" in resolved and "gradient_accumulation_steps: 1" in resolved
    assert sorted(losses(run)) == list(range(1, STEPS + 1))  # rank 0 alone logs, once per step
    assert (run / "final" / "model.safetensors").is_file()


def test_a_job_at_its_time_limit_checkpoints_requeues_and_resumes_to_the_same_end(cluster, recipe, uninterrupted):
    _, reference, _ = uninterrupted
    extended = []

    def let_the_requeued_job_finish(info):
        # The requeued job would get the same one-minute limit, and requeue again; an
        # administrator's `scontrol update` gives it time to finish. (It starts by itself once
        # the old job's credential expires: cred_expire=10 in the test cluster, 120 s by default.)
        if info.get("Restarts", "0") != "0" and not extended:
            subprocess.run(["scontrol", "update", f"JobId={info['JobId']}", "TimeLimit=10"], check=True)
            extended.append(info["JobId"])

    # SLURM may send the warning up to a minute early (sbatch --signal); when it lands before the
    # training processes have started there is nothing to checkpoint (the requeued job simply
    # starts over), so that attempt does not exercise the checkpoint and another job is submitted.
    for attempt in range(3):
        extended.clear()
        name = f"requeued-{attempt}"
        job = submit(recipe, f"run.name={name}", "launch.slurm.time=1")
        info = wait_until_done(job, on_pending=let_the_requeued_job_finish)
        run = recipe.parent / "runs" / name
        log = (run / f"slurm-{job}.out").read_text()
        assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", (info, log[-3000:])
        assert "the time limit is near" in log and "requeueing job" in log
        saved = re.search(r"received SIGTERM; saved (\S+) at step (\d+)", log)
        if saved:
            break
    assert saved, log[-3000:]
    stopped = int(saved.group(2))
    assert 0 < stopped < STEPS
    assert "restart 1" in log  # the requeued run printed its restart count, then resumed
    expected, got = losses(reference), losses(run)
    assert sorted(got) == list(range(1, STEPS + 1))
    for step, loss in expected.items():
        assert got[step] == pytest.approx(loss, rel=1e-4), step
    from safetensors.torch import load_file

    a = load_file(str(reference / "final" / "model.safetensors"))
    b = load_file(str(run / "final" / "model.safetensors"))
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-4, key


SERVER_RECIPE = """\
method: rlvr
model: {{name_or_path: tiny, tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}}}
data:
  train: [{{task: arithmetic, n: 32}}]
rewards: [{{name: numeric}}]
reward_preflight: {{enabled: false}}
batch: {{per_device: 8}}
trainer: {{use_vllm: true, vllm_mode: server, vllm_server_timeout: 60, max_steps: 1, num_generations: 4}}
launch:
  nodes: 1
  gpus_per_node: 1
  port: {port}
  slurm:
    gpus: false
    time: 10
    signal_seconds: 45
    vllm_server: {{port: {server_port}, command: [{python}, {standin}]}}
run: {{dir: {runs}, name: served}}
"""


def test_a_vllm_server_node_is_started_and_the_training_node_reaches_its_resolved_address(cluster, tmp_path):
    """open-r1's layout: training nodes plus one `trl vllm-serve` node in one allocation. The job
    resolves the server node's address and hands it to training; here a stand-in answers TRL's
    health check, and the training side reaches it before it stops: GRPO with vLLM needs a GPU,
    which this cluster does not have, so the job ends with that error, exit code 2."""
    recipe = tmp_path / "served.yaml"
    standin = Path(__file__).with_name("vllm_standin.py")
    server_port = free_port()
    recipe.write_text(SERVER_RECIPE.format(port=free_port(), server_port=server_port, python=sys.executable,
                                           standin=standin, runs=tmp_path / "runs"))
    job = submit(recipe)
    info = wait_until_done(job, timeout=240)
    run = tmp_path / "runs" / "served"
    log = (run / f"slurm-{job}.out").read_text()
    server_log = (run / f"vllm-{job}.out").read_text()
    assert info["NumNodes"] == "2", info  # one training node and the server node
    assert f"vLLM server on n2 at 127.0.0.1:{server_port}" in log, log[-3000:]
    assert f"the vLLM server at http://127.0.0.1:{server_port} answers" in log, log[-3000:]
    assert "stand-in: serving" in server_log and "GET /health/ from 127.0.0.1" in server_log, server_log
    # the job stopped the server when training ended (srun passes the signal on, or cancels the step)
    assert "stand-in: stopped" in server_log or "CANCELLED" in server_log, server_log
    assert "trainer.use_vllm: vLLM generation needs a GPU" in log and info["JobState"] == "FAILED", info
