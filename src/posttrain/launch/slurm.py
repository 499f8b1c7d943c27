"""The sbatch script for a recipe: `posttrain launch RECIPE --slurm [--dry-run]`.

One task per node; each starts the recipe's launch command (torchrun with c10d rendezvous, or
accelerate) on its node. The head node's address comes from SLURM (`scontrol show node`), since
node names need not resolve. `#SBATCH --signal=B:USR1@N` warns the script N seconds before the
time limit: it sends SIGTERM to the training processes, which finish their step, save a checkpoint
and exit (posttrain.trainers.faults); then the script requeues the job, and the requeued job
resumes from that checkpoint (the script always passes --resume). A SIGTERM from SLURM itself
(scancel, preemption) reaches the training processes directly: they checkpoint too, and the job
is not requeued by the script (a preemption with PreemptMode=REQUEUE requeues it).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from posttrain.launch.render import render_command

# Placeholders posttrain itself writes into the task's words (render.py, task_command): each
# node replaces them by their values, as text (NODE_TASK). Nothing else in a word is expanded.
PLACEHOLDERS = ("NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_JOB_ID", "VLLM_ADDR")

# What each node runs: NODE_RANK from SLURM, the placeholders replaced by text substitution,
# then the task's words exactly as they are (`exec "${args[@]}"`): a word is never parsed by
# the shell, whatever quotes, `$()`, backticks or newlines it holds.
NODE_TASK = ("export NODE_RANK=$SLURM_NODEID; args=(); for word in \"$@\"; do "
             + " ".join(f'word=${{word//"\\${{{name}}}"/${{{name}:-}}}};' for name in PLACEHOLDERS)
             + ' args+=("$word"); done; exec "${args[@]}"')


def _word(token: str) -> str:
    """A word as bash reads it literally (single-quoted where it needs quoting)."""
    return shlex.quote(token)


def task_command(loaded, recipe: str, overrides: list[str], trainer_args: dict, python: str) -> list[str]:
    server = loaded.spec.launch.slurm.vllm_server
    if server is not None:  # the server node's address is known when the job runs
        overrides = [*overrides, "trainer.vllm_server_host=${VLLM_ADDR}", f"trainer.vllm_server_port={server.port}"]
    argv = render_command(loaded, recipe, overrides, trainer_args, python=python, rendezvous_id="${SLURM_JOB_ID}")
    return [*argv, "--resume"]


def _server_lines(loaded, run_dir: Path) -> list[str]:
    """Start `trl vllm-serve` (or the recipe's command) on the job's last node."""
    server = loaded.spec.launch.slurm.vllm_server
    model = loaded.spec.model
    argv = [*server.command, "--model", model.name_or_path,
            *(["--revision", model.revision] if model.revision else []),
            "--tensor_parallel_size", str(server.tensor_parallel_size),
            "--data_parallel_size", str(server.data_parallel_size),
            "--host", "0.0.0.0", "--port", str(server.port), *server.args]
    return [
        "",
        "# The vLLM server: the job's last node (launch.slurm.vllm_server), the training nodes before it.",
        'vllm_node=${hosts[-1]}',
        'VLLM_ADDR=$(scontrol show node "$vllm_node" | sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\')',
        "export VLLM_ADDR",
        f'echo "posttrain: vLLM server on $vllm_node at $VLLM_ADDR:{server.port}"',
        'srun --nodes=1 --ntasks=1 --nodelist="$vllm_node" '
        + " ".join(_word(a) for a in argv) + f' > {shlex.quote(str(run_dir))}/vllm-"$SLURM_JOB_ID".out 2>&1 &',
        "server=$!",
    ]


def render_sbatch(loaded, recipe: str, overrides: list[str], trainer_args: dict, run_dir: Path,
                  python: str, workdir: str | None = None) -> str:
    launch = loaded.spec.launch
    slurm = launch.slurm
    workdir = workdir or os.getcwd()
    shutdown = max(30, slurm.signal_seconds - 60)
    server = slurm.vllm_server
    directives = [
        f"--job-name={slurm.job_name or loaded.run_name}",
        f"--nodes={launch.nodes + (1 if server else 0)}",
        "--ntasks-per-node=1",
        *([f"--gpus-per-node={launch.gpus_per_node}"] if slurm.gpus else []),
        *([f"--cpus-per-task={slurm.cpus_per_task}"] if slurm.cpus_per_task else []),
        *([f"--partition={slurm.partition}"] if slurm.partition else []),
        *([f"--account={slurm.account}"] if slurm.account else []),
        *([f"--qos={slurm.qos}"] if slurm.qos else []),
        *([f"--time={slurm.time}"] if slurm.time else []),
        f"--signal=B:USR1@{slurm.signal_seconds}",
        "--requeue" if slurm.requeue else "--no-requeue",
        "--open-mode=append",
        f"--output={run_dir}/slurm-%j.out",
        f"--chdir={workdir}",
        *slurm.directives,
    ]
    lines = ["#!/bin/bash",
             f"# posttrain job for {recipe} (written by `posttrain launch --slurm`; edit freely).",
             f"# Submit: sbatch {{this file}}    Log: {run_dir}/slurm-<jobid>.out"]
    lines += [f"#SBATCH {d}" for d in directives]
    lines += ["", "set -uo pipefail", ""]
    if slurm.setup:
        lines += ["# Set-up from the recipe's launch.slurm.setup (files it sources exist on the cluster only)",
                  "# shellcheck disable=SC1090,SC1091", *slurm.setup, ""]
    env = {"NCCL_DEBUG": "WARN", **{k: str(v) for k, v in slurm.env.items()}}
    lines += ["# NCCL and other settings (launch.slurm.env)"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items() if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
    lines += [
        "",
        "# The head node's address as SLURM knows it: node names need not resolve.",
        'mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        'head_node=${hosts[0]}',
        'MASTER_ADDR=$(scontrol show node "$head_node" | sed -n \'s/.*NodeAddr=\\([^ ]*\\).*/\\1/p\')',
        f"MASTER_PORT={launch.port}",
        "export MASTER_ADDR MASTER_PORT",
        "# After a stop signal the launcher gives the training processes this long to checkpoint.",
        f"export TORCH_ELASTIC_SHUTDOWN_TIMEOUT={shutdown}",
        'echo "posttrain: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST; '
        'head $head_node at $MASTER_ADDR:$MASTER_PORT"',
        "",
        "# SLURM's warning before the time limit: the training processes checkpoint and exit.",
        "stop_requested=0",
        "trap 'stop_requested=1; echo \"posttrain: the time limit is near; asking the training processes "
        "to checkpoint\"; scancel --signal=TERM \"$SLURM_JOB_ID\"' USR1",
        "",
        "# Each node's task: the recipe's launch command as data, a bash array of quoted words (--resume",
        "# continues from the last complete checkpoint: a requeued or restarted job). Each node sets",
        "# NODE_RANK from SLURM and replaces the placeholders ${NODE_RANK}, ${MASTER_ADDR},",
        "# ${SLURM_JOB_ID} and ${VLLM_ADDR} in the words by their values; nothing else is expanded.",
        "# shellcheck disable=SC2016  # the placeholders are text here, filled in on each node",
        "task=(" + " ".join(_word(a) for a in task_command(loaded, recipe, overrides, trainer_args, python)) + ")",
        "# shellcheck disable=SC2016  # the node's own shell expands these",
        "node_task=" + shlex.quote(NODE_TASK),
        *(_server_lines(loaded, run_dir) + [
            'train_nodes=$(IFS=,; echo "${hosts[*]:0:' + str(launch.nodes) + '}")',
            f'srun --kill-on-bad-exit=1 --nodes={launch.nodes} --ntasks={launch.nodes} --ntasks-per-node=1 '
            '--nodelist="$train_nodes" '
            'bash -c "$node_task" posttrain-task "${task[@]}" &'] if server else
          ['srun --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c "$node_task" posttrain-task "${task[@]}" &']),
        "step=$!",
        'status=0; wait "$step" || status=$?',
        'while kill -0 "$step" 2>/dev/null; do status=0; wait "$step" || status=$?; done',
        *(['kill "$server" 2>/dev/null; wait "$server" 2>/dev/null  # training is over: stop the vLLM server']
          if server else []),
        "",
    ]
    if slurm.requeue:
        lines += [
            'if [ "$stop_requested" = 1 ]; then',
            "    trap - USR1",
            '    echo "posttrain: requeueing job $SLURM_JOB_ID; it resumes from its last checkpoint"',
            '    scontrol requeue "$SLURM_JOB_ID"',
            "    exit 0",
            "fi",
        ]
    else:
        lines += ['[ "$stop_requested" = 1 ] && echo "posttrain: stopped at the time limit; resubmit this script to resume"']
    lines += ['exit "$status"', ""]
    return "\n".join(lines)
