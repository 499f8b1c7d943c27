"""The command for a recipe's `launch:` block.

- one process: `python -m posttrain run RECIPE`
- data parallel: `torchrun --nproc_per_node G` (one node: --standalone; several: c10d
  rendezvous on the head node, whose address comes from $MASTER_ADDR, set by the caller or
  by the SLURM script)
- DeepSpeed ZeRO-1/2/3 (+offload) or FSDP2: `accelerate launch --config_file <shipped config>`,
  with processes, machines and mixed precision on the command line so they always agree with
  the recipe (an accelerate config whose mixed precision differs from the trainer's bf16 fails).
"""

from __future__ import annotations

import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def accelerate_config(launch) -> Path:
    if launch.fsdp:
        return CONFIG_DIR / "fsdp2.yaml"
    if launch.zero:
        return CONFIG_DIR / ("zero3-offload.yaml" if launch.offload else f"zero{launch.zero}.yaml")
    return CONFIG_DIR / "ddp.yaml"


def backend_of(launch) -> str:
    if launch.backend != "auto":
        return launch.backend
    if launch.zero or launch.fsdp or launch.deepspeed_config:
        return "accelerate"
    return "torchrun" if launch.nodes * launch.gpus_per_node > 1 else "python"


def mixed_precision(trainer_args: dict) -> str:
    if trainer_args.get("bf16"):
        return "bf16"
    return "fp16" if trainer_args.get("fp16") else "no"


def render_command(loaded, recipe: str, overrides: list[str], trainer_args: dict,
                   python: str = sys.executable, rendezvous_id: str = "posttrain") -> list[str]:
    """argv that runs `recipe` (with `overrides`) as its launch block says. `rendezvous_id` names a
    multi-node torchrun rendezvous (the same on every node; a SLURM job passes its job id)."""
    launch = loaded.spec.launch
    program = ["-m", "posttrain", "run", recipe, *overrides]
    backend = backend_of(launch)
    if backend == "python":
        return [python, *program]
    if backend == "torchrun":
        rendezvous = (["--standalone"] if launch.nodes == 1 else
                      ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"${{MASTER_ADDR}}:{launch.port}",
                       "--rdzv_id", rendezvous_id])
        return [python, "-m", "torch.distributed.run", "--nnodes", str(launch.nodes),
                "--nproc_per_node", str(launch.gpus_per_node), *rendezvous, *program]
    config = (["--use_deepspeed", "--deepspeed_config_file", launch.deepspeed_config] if launch.deepspeed_config
              else ["--config_file", str(accelerate_config(launch))])
    command = [python, "-m", "accelerate.commands.launch", *config,
               "--num_machines", str(launch.nodes), "--num_processes", str(launch.nodes * launch.gpus_per_node),
               "--mixed_precision", mixed_precision(trainer_args)]
    if trainer_args.get("use_cpu") and not (launch.zero or launch.fsdp or launch.deepspeed_config):
        command.append("--multi_gpu")  # DDP over gloo on CPU (--cpu would start one process)
    if launch.nodes > 1:
        command += ["--machine_rank", "${NODE_RANK}", "--main_process_ip", "${MASTER_ADDR}",
                    "--main_process_port", str(launch.port), "--rdzv_backend", "c10d"]
    return [*command, *program]
