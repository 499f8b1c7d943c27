"""Launch rendering: pure functions from a recipe to argv, tested without launching."""

import re
import sys
from pathlib import Path

import pytest
import yaml

from posttrain.errors import RecipeError
from posttrain.launch.render import CONFIG_DIR, render_command
from posttrain.recipe import Device, load_run, trainer_arguments

BASE = "method: sft\ndata:\n  train:\n    - {task: arithmetic}\nbatch: {per_device: 2, global: 32}\n"


def render(write_recipe, launch: str, cuda: bool = True, overrides=()):
    path = write_recipe(BASE + f"launch: {launch}\n")
    loaded = load_run(path, list(overrides))
    spec = loaded.spec.launch
    args = trainer_arguments(loaded, Device(cuda=cuda, bf16=cuda, world_size=spec.nodes * spec.gpus_per_node))
    return path, render_command(loaded, str(path), list(overrides), args, python="python")


def test_one_process_is_plain_python(write_recipe):
    path, argv = render(write_recipe, "{}", overrides=["trainer.max_steps=5"])
    assert argv == ["python", "-m", "posttrain", "run", str(path), "trainer.max_steps=5"]


def test_one_node_data_parallel_is_standalone_torchrun(write_recipe):
    path, argv = render(write_recipe, "{gpus_per_node: 8}")
    assert argv == ["python", "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "8",
                    "--standalone", "-m", "posttrain", "run", str(path)]


def test_many_nodes_rendezvous_on_the_head_node(write_recipe):
    _, argv = render(write_recipe, "{nodes: 2, gpus_per_node: 8, port: 29600}")
    assert argv[argv.index("--rdzv_endpoint") + 1] == "${MASTER_ADDR}:29600"
    assert argv[argv.index("--rdzv_backend") + 1] == "c10d" and "--standalone" not in argv


@pytest.mark.parametrize("launch,config,stage", [
    ("{gpus_per_node: 8, zero: 1}", "zero1.yaml", 1),
    ("{gpus_per_node: 8, zero: 2}", "zero2.yaml", 2),
    ("{gpus_per_node: 8, zero: 3}", "zero3.yaml", 3),
    ("{gpus_per_node: 8, zero: 3, offload: true}", "zero3-offload.yaml", 3),
    ("{gpus_per_node: 8, fsdp: true}", "fsdp2.yaml", None),
    ("{gpus_per_node: 8, backend: accelerate}", "ddp.yaml", None),
])
def test_zero_and_fsdp_use_shipped_accelerate_configs(write_recipe, launch, config, stage):
    _, argv = render(write_recipe, launch)
    assert argv[:3] == ["python", "-m", "accelerate.commands.launch"]
    path = argv[argv.index("--config_file") + 1]
    assert path == str(CONFIG_DIR / config)
    shipped = yaml.safe_load(open(path))
    if stage is not None:
        assert shipped["distributed_type"] == "DEEPSPEED" and shipped["deepspeed_config"]["zero_stage"] == stage
    assert argv[argv.index("--num_processes") + 1] == "8"


def test_ones_own_deepspeed_config_is_passed_to_accelerate(write_recipe, tmp_path):
    """open-instruct's launch: accelerate launch --use_deepspeed --deepspeed_config_file FILE."""
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "stage3.json").write_text('{"zero_optimization": {"stage": 3}, "bf16": {"enabled": "auto"}}')
    _, argv = render(write_recipe, "{gpus_per_node: 8, deepspeed_config: ds/stage3.json}")
    assert argv[:5] == ["python", "-m", "accelerate.commands.launch", "--use_deepspeed", "--deepspeed_config_file"]
    assert argv[5] == str((tmp_path / "ds" / "stage3.json").resolve()) and "--config_file" not in argv


@pytest.mark.parametrize("content,launch,message", [
    (None, "{deepspeed_config: ds.json}", "file not found"),
    ("{not json", "{deepspeed_config: ds.json}", "not a readable JSON DeepSpeed configuration"),
    ('{"train_batch_size": 8}', "{deepspeed_config: ds.json}", "no zero_optimization block"),
    ('{"zero_optimization": {}}', "{deepspeed_config: ds.json, zero: 2}", "remove zero / fsdp"),
])
def test_a_bad_deepspeed_config_is_a_recipe_error(write_recipe, tmp_path, content, launch, message):
    if content is not None:
        (tmp_path / "ds.json").write_text(content)
    with pytest.raises(RecipeError, match=message) as info:
        load_run(write_recipe(BASE + f"launch: {launch}\n"))
    assert info.value.key.startswith("launch")


def test_trainer_deepspeed_points_at_the_launch_block(write_recipe):
    with pytest.raises(RecipeError, match="launch.deepspeed_config") as info:
        load_run(write_recipe(BASE + "trainer: {deepspeed: ds.json}\n"))
    assert info.value.key == "trainer.deepspeed"


def test_accelerate_mixed_precision_follows_the_trainer(write_recipe):
    _, on_gpu = render(write_recipe, "{gpus_per_node: 2, zero: 2}", cuda=True)
    _, on_cpu = render(write_recipe, "{gpus_per_node: 2, zero: 2}", cuda=False)
    assert on_gpu[on_gpu.index("--mixed_precision") + 1] == "bf16"
    assert on_cpu[on_cpu.index("--mixed_precision") + 1] == "no"


def test_accelerate_ddp_on_cpu_starts_every_process(write_recipe):
    _, argv = render(write_recipe, "{gpus_per_node: 2, backend: accelerate}", cuda=False)
    assert "--multi_gpu" in argv and "--cpu" not in argv  # --cpu would start one process


def test_every_zero_stage_and_fsdp_config_ships_as_package_data():
    names = {p.name for p in CONFIG_DIR.glob("*.yaml")}
    assert names == {"ddp.yaml", "zero1.yaml", "zero2.yaml", "zero3.yaml", "zero3-offload.yaml", "fsdp2.yaml"}


@pytest.mark.parametrize("launch,message", [
    ("{zero: 2, fsdp: true}", "not both"),
    ("{zero: 2, offload: true}", "offload needs zero: 3"),
    ("{zero: 3, backend: torchrun}", "run through accelerate"),
    ("{gpus_per_node: 2, backend: python}", "starts one process"),
    ("{zero: 4}", "Input should be 0, 1, 2 or 3"),
])
def test_contradictory_launch_blocks(write_recipe, launch, message):
    with pytest.raises(RecipeError, match=message) as info:
        load_run(write_recipe(BASE + f"launch: {launch}\n"))
    assert info.value.key.startswith("launch")


def test_launch_dry_run_prints_the_command(write_recipe, capsys):
    from posttrain.cli import main

    path = write_recipe(BASE + "launch: {gpus_per_node: 2}\n")
    assert main(["launch", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{sys.executable} -m torch.distributed.run --nnodes 1 --nproc_per_node 2 --standalone" in out


# ----------------------------------------------------------------------------- SLURM


def slurm_script(write_recipe, tmp_path, launch: str, overrides=("batch.global=512",)):
    from posttrain.cli import main

    path = write_recipe(BASE + f"launch: {launch}\nrun: {{dir: {tmp_path / 'runs'}}}\n")
    script = tmp_path / "job.sbatch"
    assert main(["launch", str(path), *overrides, f"launch.slurm.script={script}", "--slurm", "--dry-run"]) == 0
    return path, script.read_text()


def test_slurm_script_carries_the_recipes_directives_and_settings(write_recipe, tmp_path):
    launch = ("{nodes: 4, gpus_per_node: 8, zero: 3, port: 29611, slurm: {partition: gpu, account: proj, qos: high, "
              "time: '2-00:00:00', signal_seconds: 600, cpus_per_task: 96, directives: ['--exclusive', '--mem=0'], "
              "setup: ['module load cuda/12.4'], env: {NCCL_SOCKET_IFNAME: ib0, NCCL_IB_DISABLE: 0}}}")
    path, text = slurm_script(write_recipe, tmp_path, launch, ["trainer.max_steps=5", "batch.global=64"])
    directives = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH")]
    for expected in ("--nodes=4", "--ntasks-per-node=1", "--gpus-per-node=8", "--cpus-per-task=96",
                     "--partition=gpu", "--account=proj", "--qos=high", "--time=2-00:00:00",
                     "--signal=B:USR1@600", "--requeue", "--exclusive", "--mem=0"):
        assert expected in directives, expected
    assert "module load cuda/12.4" in text
    assert "export NCCL_SOCKET_IFNAME=ib0" in text and "export NCCL_IB_DISABLE=0" in text
    assert "export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=540" in text  # the signal's lead, less a minute
    assert 'scontrol show node "$head_node"' in text  # the head's address from SLURM, not assumed
    task = next(line for line in text.splitlines() if line.startswith("task=("))
    # ZeRO-3 on 4 nodes: accelerate with the node's rank, rendezvous on the head, bf16 on GPUs
    assert "accelerate.commands.launch" in task and "--machine_rank '${NODE_RANK}'" in task
    assert "--main_process_ip '${MASTER_ADDR}'" in task and "--mixed_precision bf16" in task
    assert f"posttrain run {path} trainer.max_steps=5 batch.global=64" in task and task.endswith(" --resume)")


def test_slurm_script_for_torchrun_uses_the_job_id_as_rendezvous_id(write_recipe, tmp_path):
    _, text = slurm_script(write_recipe, tmp_path, "{nodes: 2, gpus_per_node: 4, slurm: {gpus: false}}")
    task = next(line for line in text.splitlines() if line.startswith("task=("))
    assert "--rdzv_endpoint '${MASTER_ADDR}:29500' --rdzv_id '${SLURM_JOB_ID}'" in task
    assert "--gpus-per-node" not in text  # a CPU partition


@pytest.mark.parametrize("launch", [
    "{nodes: 2, gpus_per_node: 8, slurm: {partition: gpu, time: '12:00:00'}}",
    "{nodes: 4, gpus_per_node: 8, zero: 3, offload: true, slurm: {setup: ['source .venv/bin/activate']}}",
    "{slurm: {requeue: false, gpus: false}}",
])
def test_slurm_scripts_pass_bash_n_and_shellcheck(write_recipe, tmp_path, launch):
    import subprocess

    slurm_script(write_recipe, tmp_path, launch)
    script = tmp_path / "job.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    shellcheck = Path(sys.executable).parent / "shellcheck"
    done = subprocess.run([str(shellcheck), "--severity=style", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


SERVED = ("method: rlvr\ndata:\n  train:\n    - {task: arithmetic}\nrewards: [{name: numeric}]\nbatch: {per_device: 8}\n"
          "trainer: {use_vllm: true, vllm_mode: server}\n")


def test_a_vllm_server_node_joins_the_job(write_recipe, tmp_path):
    """open-r1's layout: N training nodes plus one `trl vllm-serve` node in one allocation; the
    server's address is resolved when the job runs and passed to training."""
    path = write_recipe(SERVED + "launch: {nodes: 2, gpus_per_node: 8, zero: 2, slurm: {vllm_server: "
                        "{port: 8011, data_parallel_size: 8, args: [--gpu_memory_utilization, '0.9']}}}\n"
                        f"run: {{dir: {tmp_path / 'runs'}}}\n")
    from posttrain.cli import main

    script = tmp_path / "job.sbatch"
    assert main(["launch", str(path), f"launch.slurm.script={script}", "--slurm", "--dry-run"]) == 0
    text = script.read_text()
    assert "#SBATCH --nodes=3" in text and "vllm_node=${hosts[-1]}" in text
    server = next(line for line in text.splitlines() if line.startswith('srun --nodes=1 --ntasks=1 --nodelist="$vllm_node"'))
    assert "trl vllm-serve --model tiny --tensor_parallel_size 1 --data_parallel_size 8" in server
    assert "--port 8011 --gpu_memory_utilization 0.9" in server
    task = next(line for line in text.splitlines() if line.startswith("task=("))
    assert "'trainer.vllm_server_host=${VLLM_ADDR}' trainer.vllm_server_port=8011" in task
    assert 'srun --kill-on-bad-exit=1 --nodes=2 --ntasks=2 --ntasks-per-node=1 --nodelist="$train_nodes"' in text
    assert 'kill "$server"' in text
    import subprocess

    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    shellcheck = Path(sys.executable).parent / "shellcheck"
    done = subprocess.run([str(shellcheck), "--severity=style", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("text,key,message", [
    ("method: rlvr\ndata:\n  train:\n    - {task: arithmetic}\nrewards: [{name: numeric}]\nbatch: {per_device: 8}\n"
     "launch: {slurm: {vllm_server: {}}}\n", "launch.slurm.vllm_server", "vllm_mode: server"),
    (SERVED.replace("vllm_mode: server}", "vllm_mode: server, vllm_server_host: gpu-node-7}")
     + "launch: {slurm: {vllm_server: {}}}\n", "trainer.vllm_server_host", "known only when the job runs"),
])
def test_a_vllm_server_node_needs_server_mode_and_sets_the_host_itself(write_recipe, text, key, message):
    with pytest.raises(RecipeError, match=message) as info:
        load_run(write_recipe(text))
    assert info.value.key == key


def test_the_job_may_pass_the_servers_address_on_the_command_line(write_recipe):
    loaded = load_run(write_recipe(SERVED + "launch: {slurm: {vllm_server: {}}}\n"),
                      ["trainer.vllm_server_host=10.0.0.7", "trainer.vllm_server_port=8000"])
    assert loaded.spec.trainer["vllm_server_host"] == "10.0.0.7"


@pytest.mark.parametrize("slurm,python", [
    ("{}", sys.executable),                                          # the same environment
    ("{setup: ['source /opt/envs/train/bin/activate']}", "python"),   # the one set-up activates
    ("{setup: ['module load cuda'], python: /opt/py/bin/python3}", "/opt/py/bin/python3"),
])
def test_slurm_task_runs_the_python_the_job_chooses(write_recipe, tmp_path, slurm, python):
    _, text = slurm_script(write_recipe, tmp_path, f"{{slurm: {slurm}}}")
    task = next(line for line in text.splitlines() if line.startswith("task=("))
    assert task.split()[0] == "task=(" + python


@pytest.mark.parametrize("time,message", [
    ("1", "signal_seconds (300) must be shorter than the time limit (1 = 60 s)"),
    ("'soon'", "is not a SLURM time"),
])
def test_slurm_time_limits_are_checked(write_recipe, time, message):
    path = write_recipe(BASE + f"launch: {{slurm: {{time: {time}}}}}\n")
    with pytest.raises(RecipeError, match=re.escape(message)):
        load_run(path)


def test_slurm_times_read_as_sbatch_reads_them():
    from posttrain.recipe import slurm_time_seconds

    assert slurm_time_seconds("30") == 1800 and slurm_time_seconds("30:15") == 1815
    assert slurm_time_seconds("12:00:00") == 43200 and slurm_time_seconds("2-00:00:00") == 172800
    assert slurm_time_seconds("1-2") == 93600 and slurm_time_seconds("1-2:30") == 95400


# Editable examples shipped under examples/slurm/, rendered from the real recipes; regenerate
# with POSTTRAIN_REGENERATE=1 python -m pytest tests/unit/test_launch.py
SLURM_EXAMPLES = {
    "tulu3-sft-8x8.sbatch": ("recipes/tulu3/sft.yaml", []),
    "tulu3-dpo-zero3-1x8.sbatch": ("recipes/tulu3/dpo.yaml", []),
}


@pytest.mark.parametrize("name", sorted(SLURM_EXAMPLES))
def test_shipped_slurm_examples_are_what_launch_renders(name):
    import os
    import subprocess

    from posttrain.launch.slurm import render_sbatch

    repo = Path(__file__).resolve().parents[2]
    recipe, overrides = SLURM_EXAMPLES[name]
    loaded = load_run(repo / recipe, overrides)
    launch = loaded.spec.launch
    args = trainer_arguments(loaded, Device(cuda=True, bf16=True, world_size=launch.nodes * launch.gpus_per_node))
    text = render_sbatch(loaded, recipe, overrides, args, Path("/path/to/checkout/runs") / loaded.run_name,
                         python="python", workdir="/path/to/checkout")
    text = text.replace(str(CONFIG_DIR), "/path/to/checkout/src/posttrain/launch/configs")  # this clone's path
    example = repo / "examples" / "slurm" / name
    if os.environ.get("POSTTRAIN_REGENERATE"):
        example.parent.mkdir(parents=True, exist_ok=True)
        example.write_text(text)
    assert example.read_text() == text, f"{example} is stale; regenerate it (see the comment above)"
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert subprocess.run([str(shellcheck), str(example)], capture_output=True).returncode == 0
