"""The `trainer:` and `peft:` blocks against the dataclasses they are built into (TRL's config
for the method, peft's LoraConfig): every key must be a field of the right type, keys TRL or
transformers removed say what replaced them, and keys posttrain sets say where to set them.

Fields are read from the installed packages' source (config_fields.py), without importing them.
"""

from __future__ import annotations

import math

from posttrain.config_fields import FieldSpec, dataclass_fields, enum_values, value_matches
from posttrain.errors import did_you_mean
from posttrain.methods import METHODS

PEFT_CONFIG = ("peft.tuners.lora.config", "LoraConfig")

# Keys TRL or transformers removed, and what replaced them.
REMOVED_KEYS = {
    "warmup_ratio": "removed in transformers 5: use warmup_steps (a value below 1 is a ratio)",
    "logging_dir": "removed in transformers 5: posttrain writes metrics.jsonl in the run directory",
    "max_seq_length": "renamed to max_length",
    "max_prompt_length": "removed in TRL 1.x: prompts are no longer truncated separately; for methods that "
    "generate, data.max_prompt_length drops longer prompts (counted); else use max_length",
    "rpo_alpha": "removed in TRL 1.x: use loss_type: [sigmoid, sft] with loss_weights: [1.0, ALPHA]",
    "evaluation_strategy": "renamed to eval_strategy",
    "overwrite_output_dir": "use `posttrain run --overwrite`",
    "group_by_length": "replaced in transformers 5 by train_sampling_strategy: group_by_length",
}
# Keys posttrain sets itself for every method, and where the user says them instead; a
# method's own are in its row of methods.py.
MANAGED_KEYS = {
    "output_dir": "set by posttrain: the run directory is run.dir/run.name",
    "run_name": "set by posttrain from run.name",
    "per_device_train_batch_size": "use batch.per_device",
    "gradient_accumulation_steps": "derived from batch.global / (batch.per_device x world size)",
    "report_to": "use tracking: {wandb: {...}}; metrics.jsonl is always written",
    "resume_from_checkpoint": "use `posttrain run --resume`",
    "use_cpu": "set by posttrain when no GPU is present",
    "model_init_kwargs": "posttrain loads the model itself, so TRL would ignore these: use the model block "
    "(dtype, attn_implementation, revision, trust_remote_code, quantization for 4-/8-bit)",
    "deepspeed": "use launch.zero (a shipped ZeRO config) or launch.deepspeed_config (a DeepSpeed JSON of your own)",
}


def _positive(v):
    return v > 0


def _non_negative(v):
    return v >= 0


# Numeric bounds of trainer and peft keys that TRL and peft do not check before training starts
# (a negative or NaN learning rate trains, or fails at the first step): key -> (test, what it must be).
TRAINER_BOUNDS = {
    "learning_rate": (_positive, "a positive number"),
    "num_train_epochs": (_positive, "a positive number (or set max_steps)"),
    "max_steps": (lambda v: v == -1 or v > 0, "a positive number of steps (or -1: use num_train_epochs)"),
    "warmup_steps": (_non_negative, "0 or more (a value below 1 is a ratio of the steps)"),
    "weight_decay": (_non_negative, "0 or more"),
    "max_grad_norm": (_non_negative, "0 or more"),
    "adam_beta1": (lambda v: 0 <= v < 1, "in [0, 1)"), "adam_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_epsilon": (_positive, "a positive number"),
    "logging_steps": (_positive, "a positive number"), "save_steps": (_positive, "a positive number"),
    "eval_steps": (_positive, "a positive number"),
    "beta": (_non_negative, "0 or more"), "temperature": (_positive, "a positive number"),
    "max_length": (_positive, "a positive number of tokens (or null)"),
    "max_completion_length": (_positive, "a positive number of tokens"),
    "seed": (lambda v: 0 <= v < 2 ** 32, "in [0, 2**32)"), "data_seed": (lambda v: 0 <= v < 2 ** 32, "in [0, 2**32)"),
}
PEFT_BOUNDS = {
    "r": (_positive, "a positive rank"), "lora_alpha": (_positive, "a positive number"),
    "lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
}
SCHEDULERS = ("transformers.trainer_utils", "SchedulerType")


def check_values(loaded, key: str, block: dict, bounds: dict) -> None:
    """Numbers in range and finite (`.nan` and `.inf` are numbers to YAML)."""
    for name, value in block.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise loaded.error((key, name), f"{value!r} is not a finite number")
        if name in bounds and not bounds[name][0](value):
            raise loaded.error((key, name), f"must be {bounds[name][1]} (got {value!r})")
    if key == "trainer" and isinstance(block.get("lr_scheduler_type"), str):
        names = enum_values(*SCHEDULERS)
        if block["lr_scheduler_type"] not in names:
            raise loaded.error((key, "lr_scheduler_type"), f"unknown scheduler '{block['lr_scheduler_type']}'"
                               f"{did_you_mean(block['lr_scheduler_type'], names)} (schedulers: {', '.join(names)})")


def managed_keys(method: str) -> dict[str, str]:
    return {**MANAGED_KEYS, **METHODS[method].managed}


def trainer_fields(method: str) -> tuple[dict[str, FieldSpec], str]:
    module, cls = METHODS[method].config
    return dataclass_fields(module, cls), (f"TRL {cls}" if module.startswith("trl.") else f"{cls} ({module})")


def peft_fields() -> dict[str, FieldSpec]:
    return dataclass_fields(*PEFT_CONFIG)


def check_dataclass_block(loaded, key: str, block: dict, fields: dict[str, FieldSpec], what: str,
                          managed: dict[str, str] | None = None) -> None:
    for name, value in block.items():
        path = (key, name)
        if name in REMOVED_KEYS and name not in fields:
            raise loaded.error(path, REMOVED_KEYS[name])
        if managed and name in managed:
            raise loaded.error(path, managed[name])
        spec = fields.get(name)
        if spec is None:
            raise loaded.error(path, f"{what} has no field '{name}'{did_you_mean(name, fields)}")
        if not value_matches(value, spec.annotation):
            raise loaded.error(path, f"expected {spec.annotation}, got {value!r}")
        if spec.choices and value not in spec.choices and not (
            isinstance(value, list) and all(v in spec.choices for v in value)
        ):
            bad = next((v for v in value if v not in spec.choices), value) if isinstance(value, list) else value
            raise loaded.error(path, f"{bad!r} is not one of {', '.join(map(repr, spec.choices))} "
                                     f"({what}){did_you_mean(bad, spec.choices)}")
