"""The SLURM script against hostile recipe strings and overrides (issue 29): every value that
reaches the script is validated or quoted, and bash itself runs the rendered script with
stand-ins for srun, scontrol, scancel, the training Python and the vLLM server that record
their argv. Each case asserts that exactly the intended commands ran, with exactly the intended
words, and that nothing the values tried to run did."""

import os
import subprocess
from pathlib import Path

import pytest

from posttrain.cli import main
from posttrain.errors import RecipeError
from posttrain.recipe import load_run

BASE = "method: sft\ndata:\n  train:\n    - {task: arithmetic}\nbatch: {per_device: 2, global: 32}\n"
SERVED = ("method: rlvr\ndata:\n  train:\n    - {task: arithmetic}\nrewards: [{name: numeric}]\nbatch: {per_device: 8}\n"
          "trainer: {use_vllm: true, vllm_mode: server}\n")

# Each tries to run `touch PWNED-<n>` in the job's working directory, or to end a quoted or
# here-document context, when the script runs.
HOSTILE = [
    "trainer.hub_model_id=a$(touch PWNED-1)b",
    "trainer.hub_model_id=x`touch PWNED-2`",
    "trainer.hub_model_id=${HOME}$(touch PWNED-3)",
    "trainer.hub_model_id=x'; touch PWNED-4; echo '",
    'trainer.hub_model_id=x"; touch PWNED-5; echo "',
    "trainer.hub_model_id=TASK",
    "trainer.hub_model_id=\\$(touch PWNED-6)",
    "trainer.hub_model_id=${NODE_RANK}$(touch PWNED-7)",
]


def standins(tmp_path: Path) -> Path:
    """srun (runs its command after the options), scontrol, scancel, python and trl that record
    their arguments, NUL-separated, one file per program."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record"
    record.mkdir()
    scripts = {
        "srun": 'while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n',
        "scontrol": 'case "$1 $2" in\n  "show hostnames") echo node1; echo node2 ;;\n'
                    '  "show node") echo "NodeName=$3 NodeAddr=10.0.0.$RANDOM" ;;\nesac\n',
        "scancel": "exit 0\n",
        "python-standin": f'printf "%s\\0" "$@" > {record}/python\n',
        "trl": f'printf "%s\\0" "$@" > {record}/trl\n',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    return bin_dir


def render(write_recipe, tmp_path, text: str, overrides: list[str]) -> Path:
    path = write_recipe(text + f"run: {{dir: {tmp_path / 'runs'}}}\n")
    script = tmp_path / "job.sbatch"
    assert main(["launch", str(path), *overrides, f"launch.slurm.script={script}", "--slurm", "--dry-run"]) == 0
    return script


def run_script(script: Path, tmp_path: Path, bin_dir: Path) -> subprocess.CompletedProcess:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node[1-2]",
           "SLURM_NODEID": "0", "HOME": str(tmp_path)}
    text = script.read_text().replace("\n#SBATCH --chdir=", "\n#SBATCH --chdir-was=")
    job = tmp_path / "job-here.sbatch"
    job.write_text(text)
    return subprocess.run(["bash", str(job)], cwd=work, env=env, capture_output=True, text=True, timeout=60)


def recorded(tmp_path: Path, name: str) -> list[str]:
    data = (tmp_path / "record" / name).read_bytes()
    return data.split(b"\0")[:-1] and [w.decode() for w in data.split(b"\0")[:-1]]


def pwned(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.rglob("PWNED-*"))


@pytest.mark.parametrize("override", HOSTILE)
def test_a_hostile_override_reaches_the_task_as_one_word_and_runs_nothing(write_recipe, tmp_path, override):
    bin_dir = standins(tmp_path)
    launch = f"launch: {{nodes: 2, gpus_per_node: 4, slurm: {{gpus: false, python: {bin_dir / 'python-standin'}}}}}\n"
    script = render(write_recipe, tmp_path, BASE + launch, [override])
    done = run_script(script, tmp_path, bin_dir)
    assert done.returncode == 0, done.stderr
    argv = recorded(tmp_path, "python")
    assert pwned(tmp_path) == []
    # exactly the words meant: the override as one word, the placeholders replaced by their values
    assert override.replace("${NODE_RANK}", "0") in argv and argv[-1] == "--resume"
    assert argv[:5] == ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node"]
    assert argv[argv.index("--rdzv_id") + 1] == "4242"
    assert argv[argv.index("--rdzv_endpoint") + 1].startswith("10.0.0.")


def test_with_a_vllm_server_node_every_word_is_still_data(write_recipe, tmp_path):
    bin_dir = standins(tmp_path)
    launch = ("launch: {nodes: 1, gpus_per_node: 8, slurm: {gpus: false, python: " + str(bin_dir / "python-standin")
              + ", env: {EVIL: '$(touch PWNED-env)'}, vllm_server: {port: 8011, args: ['--x', '$(touch PWNED-arg)', "
              "'`touch PWNED-tick`']}}}\n")
    script = render(write_recipe, tmp_path, SERVED + launch, ["trainer.hub_model_id=${VLLM_ADDR}$(touch PWNED-8)"])
    done = run_script(script, tmp_path, bin_dir)
    assert done.returncode == 0, done.stderr
    assert pwned(tmp_path) == []
    argv = recorded(tmp_path, "python")
    host = next(w for w in argv if w.startswith("trainer.vllm_server_host="))
    assert host.startswith("trainer.vllm_server_host=10.0.0.")  # the placeholder posttrain wrote, filled in
    # a placeholder in a user's word is filled in as text too, and what follows it stays text
    assert any(w.startswith("trainer.hub_model_id=10.0.0.") and w.endswith("$(touch PWNED-8)") for w in argv)
    server = recorded(tmp_path, "trl")
    assert server[-3:] == ["--x", "$(touch PWNED-arg)", "`touch PWNED-tick`"]


@pytest.mark.parametrize("slurm,key", [
    ("{job_name: \"a\\ntouch PWNED\"}", "launch.slurm.job_name"),
    ("{partition: \"gpu --uid=0\"}", "launch.slurm.partition"),
    ("{account: \"a\\rb\"}", "launch.slurm.account"),
    ("{qos: \"high\\n#SBATCH --x\"}", "launch.slurm.qos"),
    ("{time: \"10\\nrm -rf x\"}", "launch.slurm.time"),
    ("{directives: [\"--exclusive\\ntouch PWNED\"]}", "launch.slurm.directives"),
    ("{setup: [\"module load x\\ntouch PWNED\"]}", "launch.slurm.setup"),
    ("{env: {\"A;touch PWNED\": 1}}", "launch.slurm.env"),
    ("{env: {\"A B\": 1}}", "launch.slurm.env"),
    ("{env: {A: \"x\\ny\"}}", "launch.slurm.env"),
    ("{python: \"/usr/bin/python\\ntouch PWNED\"}", "launch.slurm.python"),
    ("{vllm_server: {args: [\"--x\\ny\"]}}", "launch.slurm.vllm_server.args"),
])
def test_recipe_strings_that_would_become_shell_lines_are_refused(write_recipe, slurm, key):
    with pytest.raises(RecipeError) as info:
        load_run(write_recipe(BASE + f"launch: {{slurm: {slurm}}}\n"))
    assert info.value.key.startswith(key), (info.value.key, str(info.value))


@pytest.mark.parametrize("name", ["a\nb", "run\r", "x\x1b[2J", "tab\there"])
def test_a_run_name_with_a_control_character_is_refused(write_recipe, name):
    import json

    with pytest.raises(RecipeError, match="control character"):
        load_run(write_recipe(BASE + f"run: {{name: {json.dumps(name)}}}\n"))
