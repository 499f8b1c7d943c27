"""What a recipe becomes on a machine: the device it trains on, and the exact keyword arguments
for the method's TRL config (the recipe's `trainer:` block plus what posttrain decides)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml

from posttrain.recipe.check import LoadedRecipe, gradient_accumulation


@dataclass(frozen=True)
class Device:
    """What the run will train on, as far as recipe resolution cares."""

    cuda: bool
    bf16: bool
    world_size: int = 1
    described: bool = False  # the machine a launch block describes, not the one this runs on

    @classmethod
    def detect(cls) -> "Device":
        import torch

        cuda = torch.cuda.is_available()
        return cls(
            cuda=cuda,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
        )


def describes_target(loaded: LoadedRecipe) -> bool:
    """Whether the recipe writes a `launch:` block: then it describes the machine it is for."""
    return any(path[:1] == ("launch",) for path in loaded.origins)


def target_device(loaded: LoadedRecipe) -> Device:
    """The machine the recipe's launch block describes: nodes x gpus_per_node processes, on GPUs
    (with bf16, as on every GPU since Ampere) unless `launch.slurm.gpus: false` says the
    partition has none. What `show`, `plan` and `launch --dry-run / --slurm` resolve for."""
    launch = loaded.spec.launch
    gpus = launch.slurm.gpus
    return Device(cuda=gpus, bf16=gpus, world_size=launch.nodes * launch.gpus_per_node, described=True)


def resolution_device(loaded: LoadedRecipe, here: bool = False) -> Device:
    """The target of a recipe with a launch block; this machine when asked (`here`) or when the
    recipe describes no other."""
    return Device.detect() if here or not describes_target(loaded) else target_device(loaded)


def trainer_defaults(loaded: LoadedRecipe, args: dict[str, Any]) -> dict[str, Any]:
    """The TRL config fields the trainer receives at their declared defaults (those `args` does
    not set), read from TRL's source; a field whose default is computed shows as `<computed>`."""
    from posttrain.config_fields import NO_DEFAULT
    from posttrain.recipe.trl_fields import trainer_fields

    fields, _ = trainer_fields(loaded.spec.method)
    return {name: ("<computed>" if spec.default is NO_DEFAULT else spec.default)
            for name, spec in sorted(fields.items()) if name not in args}


def trainer_arguments(loaded: LoadedRecipe, device: Device) -> dict[str, Any]:
    """The keyword arguments for the TRL config: the recipe's, plus what posttrain decides.

    On a machine without CUDA: bf16 off (TRL defaults it on, which fails on CPU), use_cpu on
    (without it two CPU processes train independently), gradient checkpointing off (it halves
    the speed of small CPU models and saves memory nobody is short of).

    SFT batch layout stays TRL's padded, randomly sampled batches: on CPU they train 2.2-2.5x the
    real tokens/s of padding-free or packed rows (bench/sft_overhead.py, docs/benchmarks.md).
    """
    args = dict(loaded.spec.trainer)
    for old in ("gradient_checkpointing", "gradient_checkpointing_kwargs"):  # transformers 5 renamed them;
        if old in args:                                                       # the old names only warn
            args.setdefault(old.replace("gradient", "activation"), args.pop(old))
    if device.cuda:
        args.setdefault("bf16", device.bf16)
        if args.get("fp16"):
            args["bf16"] = False
    else:
        for key in ("bf16", "fp16"):
            if args.get(key):
                raise loaded.error(
                    ("trainer", key),
                    f"{key}: true needs a GPU and this machine has none; remove the key "
                    "(posttrain turns bf16 on for GPUs that support it) or set it to false",
                )
        if args.get("use_vllm") and not device.described:  # refused by `run` here, rendered for a target
            raise loaded.error(("trainer", "use_vllm"), "vLLM generation needs a GPU and this machine has none; "
                               "remove use_vllm (generation then uses Hugging Face generate)")
        args.update(bf16=False, fp16=False, use_cpu=True)
        args.setdefault("activation_checkpointing", False)
        args.setdefault("dataloader_pin_memory", False)
    if loaded.spec.model.quantization is not None and not device.described and not _importable("bitsandbytes"):
        raise loaded.error(("model", "quantization"), "quantized loading needs bitsandbytes, which this machine "
                           "lacks: pip install 'posttrain[qlora]'")
    args["per_device_train_batch_size"] = loaded.spec.batch.per_device
    args["gradient_accumulation_steps"] = gradient_accumulation(loaded, device.world_size)
    return args


def _importable(name: str) -> bool:
    """Whether `name` could be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules: not importable
        return False


def check_vllm_installed(loaded: LoadedRecipe) -> None:
    """`use_vllm` needs the vllm package where the run starts (not where a recipe resolves: a
    login node rendering a SLURM job for GPU nodes may lack it)."""
    import importlib.util

    if loaded.spec.trainer.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        raise loaded.error(("trainer", "use_vllm"), "use_vllm: true needs the vllm package: pip install vllm "
                           "(a version TRL supports; see TRL's vLLM integration docs)")


def resolved_dict(loaded: LoadedRecipe, device: Device | None = None, trl_args: dict | None = None) -> dict[str, Any]:
    """The recipe with every default filled in and, given a device, the trainer arguments:
    what `posttrain show` prints and what a run records. A run passes `trl_args`, exactly the
    keyword arguments its TRL config is built with, and they are the `trainer:` block."""
    out = loaded.spec.model_dump(by_alias=True, exclude_none=True)
    out["run"]["name"] = loaded.run_name
    if device is not None:
        out["trainer"] = dict(trl_args) if trl_args is not None else trainer_arguments(loaded, device)
        out["device"] = {"cuda": device.cuda, "bf16": device.bf16, "world_size": device.world_size}
    return out


def shown(loaded: LoadedRecipe, here: bool = False) -> dict[str, Any]:
    """What `posttrain show` prints for one recipe: resolved for its target (or this machine),
    with `trainer_defaults`, every other field of the TRL config at its declared default."""
    out = resolved_dict(loaded, resolution_device(loaded, here))
    out["trainer_defaults"] = trainer_defaults(loaded, out["trainer"])
    return out


def to_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def eval_engine(loaded: LoadedRecipe, device: Device) -> str:
    """The engine that generates eval answers: "vllm", "hf" (posttrain's loop) or "generate"
    (model.generate) — a key of sampling.ENGINES. `engine: vllm` where the run
    starts without a GPU or without the package is an error that names the key (before
    training, not after); `auto` takes vllm only where both are there."""
    spec = loaded.spec.eval
    requested = spec.engine if spec is not None else "hf"
    usable = device.cuda and _importable("vllm")
    if requested == "vllm" and not usable:
        lacking = "a GPU, and this machine has none" if not device.cuda else "the vllm package: pip install vllm"
        raise loaded.error(("eval", "engine"), f"engine: vllm needs {lacking}; use engine: hf (or auto)")
    if requested in ("hf", "generate"):
        return requested
    return "vllm" if requested == "vllm" or (requested == "auto" and usable) else "hf"
