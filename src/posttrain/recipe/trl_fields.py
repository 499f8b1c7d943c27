"""The `trainer:` and `peft:` blocks against the dataclasses they are built into (TRL's config
for the method, peft's LoraConfig): every key must be a field of the right type, keys TRL or
transformers removed say what replaced them, and keys posttrain sets say where to set them.

Fields are read from the installed packages' source (config_fields.py), without importing them.
"""

from __future__ import annotations

from posttrain.config_fields import FieldSpec, dataclass_fields, value_matches
from posttrain.errors import did_you_mean
from posttrain.methods import METHODS

PEFT_CONFIG = ("peft.tuners.lora.config", "LoraConfig")

# Keys TRL or transformers removed, and what replaced them.
REMOVED_KEYS = {
    "warmup_ratio": "removed in transformers 5: use warmup_steps (a value below 1 is a ratio)",
    "logging_dir": "removed in transformers 5: posttrain writes metrics.jsonl in the run directory",
    "max_seq_length": "renamed to max_length",
    "max_prompt_length": "removed in TRL 1.x: prompts are no longer truncated separately; "
    "use max_length (DPO) or max_completion_length (GRPO)",
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
}


def managed_keys(method: str) -> dict[str, str]:
    return {**MANAGED_KEYS, **METHODS[method].managed}


def trainer_fields(method: str) -> tuple[dict[str, FieldSpec], str]:
    module, cls = METHODS[method].config
    return dataclass_fields(module, cls), f"TRL {cls}"


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
            raise loaded.error(path, f"{value!r} is not one of {list(spec.choices)}")
