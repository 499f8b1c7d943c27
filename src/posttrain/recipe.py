"""The one recipe schema: load YAML, follow `extends:`, apply overrides, validate, resolve.

Nothing here imports torch, transformers or TRL: `posttrain validate` answers in well under a
second. Every error names the file (and line) a key came from and its dotted key path.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from posttrain.config_fields import FieldSpec, dataclass_fields, value_matches
from posttrain.errors import RecipeError

KeyPath = tuple[Union[str, int], ...]

# ----------------------------------------------------------------------------- schema


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class TinyModelSpec(_Block):
    """Size knobs of the built-in tiny Llama model (`model.name_or_path: tiny`)."""

    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(4, gt=0)
    num_heads: int = Field(4, gt=0)
    intermediate_size: int = Field(512, gt=0)
    vocab_size: int = Field(320, ge=280)  # 256 bytes + specials + a few merges
    max_position_embeddings: int = Field(512, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


class ModelSpec(_Block):
    name_or_path: str = "tiny"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    chat_template: str | None = None  # chatml | tulu | path/to/template.jinja (for base models)
    tiny: TinyModelSpec = TinyModelSpec()


class TracesSpec(_Block):
    """Turn reasoning-tree records into traces (docs/trees.md)."""

    kind: Literal["shortcut", "journey", "pairs"]
    detours: int = Field(1, ge=0)
    detour_probability: float = Field(1.0, ge=0, le=1)
    detour_depth: int = Field(1, ge=1)
    reflection: str = "Wait, that is wrong: {critique}"
    backtrack: str = "Let me go back and redo that step."
    seed: int = 0


class OnPolicySpec(_Block):
    """DPO pairs sampled from the model being trained (docs/data.md): `samples` answers per task
    prompt, scored by `reward`; correct answers are paired with incorrect ones."""

    samples: int = Field(8, ge=2)  # answers per prompt (O1 Journey: 20)
    pairs: int = Field(2, ge=1)  # at most this many pairs per prompt (O1 Journey: 5)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, gt=0)
    reward: str = "verifier"  # a reward of 1 (>= threshold) is correct
    threshold: float = 1.0
    batch_size: int = Field(32, gt=0)  # prompts per generate call
    seed: int = 0


class DataSource(_Block):
    """One dataset: a local file (`path`), a hub dataset (`hub`) or a generated task (`task`)."""

    path: str | None = None
    hub: str | None = None
    task: str | None = None
    name: str | None = None  # hub dataset configuration
    split: str | None = None  # hub split; for tasks: train | heldout
    n: int | None = Field(None, gt=0)  # task: how many records
    seed: int = 0  # task: generator seed
    options: dict[str, Any] = {}  # task: generator knobs
    weight: float = Field(1.0, gt=0)
    columns: dict[str, str] = {}  # rename {their_column: our_column}
    format: Literal["gsm8k", "math", "tulu3_rlvr"] | None = None  # map onto the task format
    system_prompt: str | None = None  # prepended to chat prompts / messages as a system turn
    traces: TracesSpec | None = None  # the records are reasoning trees: build these traces
    on_policy: OnPolicySpec | None = None  # DPO: task records -> pairs sampled from the policy

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("path", "hub", "task") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a data source needs exactly one of 'path' (local file), 'hub' (dataset name) "
                f"or 'task' (generated); got {kinds or 'none'}"
            )
        if self.weight > 1 and self.weight != int(self.weight):
            raise ValueError(
                f"weight {self.weight}: use a fraction <= 1 to subsample, "
                "or a whole number of records (> 1) to up-sample"
            )
        return self

    @property
    def label(self) -> str:
        return self.path or self.hub or f"task:{self.task}:{self.split or 'train'}"


class DecontaminateSpec(_Block):
    """Check training records against every evaluation set (data.eval and eval.data)."""

    n: int = Field(8, gt=0)  # words per n-gram
    threshold: float = Field(0.5, gt=0, le=1)  # share of one eval record's n-grams
    action: Literal["report", "drop"] = "report"


class DataSpec(_Block):
    train: list[DataSource] = Field(min_length=1)
    eval: list[DataSource] = []
    eval_fraction: float | None = Field(None, gt=0, lt=1)
    decontaminate: DecontaminateSpec | None = None

    @model_validator(mode="after")
    def _one_eval(self):
        if self.eval and self.eval_fraction is not None:
            raise ValueError("give either 'eval' sources or 'eval_fraction', not both")
        return self


class BatchSpec(_Block):
    per_device: int = Field(8, gt=0)
    global_: int | None = Field(None, alias="global", gt=0)


class WandbSpec(_Block):
    project: str = "posttrain"
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    tags: list[str] = []
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"


class TrackingSpec(_Block):
    wandb: WandbSpec | None = None


class SlurmSpec(_Block):
    """The job script `posttrain launch --slurm` writes (see docs/launching.md)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # sbatch --time: minutes (30), "HH:MM:SS", "D-HH:MM:SS"
    job_name: str | None = None  # default: the run's name
    gpus: bool = True  # request --gpus-per-node (false on CPU partitions)
    cpus_per_task: int | None = Field(None, gt=0)
    signal_seconds: int = Field(300, ge=30)  # SIGUSR1 this long before the time limit: checkpoint, requeue
    requeue: bool = True  # on that signal, requeue the job; it resumes from the checkpoint
    directives: list[str] = []  # more #SBATCH lines, e.g. "--exclusive", "--mem=0", "--constraint=h100"
    setup: list[str] = []  # shell lines before training, e.g. "module load cuda/12.4"
    env: dict[str, str | int] = {}  # exported variables, e.g. NCCL_SOCKET_IFNAME: ib0, NCCL_DEBUG: WARN
    script: str | None = None  # where to write it (default: RUN_DIR/slurm/job.sbatch)

    @field_validator("time", mode="before")
    @classmethod
    def _minutes(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _signal_before_the_limit(self):
        if self.time is not None:
            limit = slurm_time_seconds(self.time)
            if self.signal_seconds >= limit:
                raise ValueError(f"signal_seconds ({self.signal_seconds}) must be shorter than the time "
                                 f"limit ({self.time} = {limit} s)")
        return self


def slurm_time_seconds(text: str) -> int:
    """sbatch --time in seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"time {text!r} is not a SLURM time (M, M:S, H:M:S, D-H, D-H:M or D-H:M:S)")
    days, a, b, c = match.groups()
    a, b, c = int(a), int(b or 0), int(c or 0)
    if days is not None:  # D-H[:M[:S]]
        return int(days) * 86400 + a * 3600 + b * 60 + c
    if c or match.group(4) is not None:  # H:M:S
        return a * 3600 + b * 60 + c
    return a * 60 + b  # M or M:S


class LaunchSpec(_Block):
    """How `posttrain launch` starts the run (see docs/launching.md)."""

    nodes: int = Field(1, gt=0)
    gpus_per_node: int = Field(1, gt=0)  # processes per node: GPUs, or CPU processes
    backend: Literal["auto", "python", "torchrun", "accelerate"] = "auto"
    zero: Literal[0, 1, 2, 3] = 0  # DeepSpeed ZeRO stage; 0: none
    offload: bool = False  # ZeRO-3: parameters and optimizer states on CPU
    fsdp: bool = False  # FSDP2 instead of DeepSpeed
    port: int = Field(29500, gt=0, lt=65536)
    slurm: SlurmSpec = SlurmSpec()

    @model_validator(mode="after")
    def _consistent(self):
        if self.zero and self.fsdp:
            raise ValueError("choose DeepSpeed ZeRO (zero) or FSDP (fsdp), not both")
        if self.offload and self.zero != 3:
            raise ValueError("offload needs zero: 3 (the shipped ZeRO-3 offload config)")
        if (self.zero or self.fsdp) and self.backend in ("python", "torchrun"):
            raise ValueError(f"ZeRO and FSDP run through accelerate; use backend: accelerate or auto, not {self.backend}")
        if self.backend == "python" and self.nodes * self.gpus_per_node > 1:
            raise ValueError("backend python starts one process; use torchrun or accelerate for several")
        return self


class RunSpec(_Block):
    name: str | None = None  # default: the recipe file's name
    dir: str = "runs"
    # Stop training (and save the final model as usual) once this many seconds of training have
    # passed, counted across resumes; the lr schedule still follows trainer.max_steps.
    max_train_seconds: float | None = Field(None, gt=0)


class EvalSpec(_Block):
    """Sample answers for held-out tasks after training and score them with a reward."""

    data: list[DataSource] = Field(min_length=1)
    reward: str = "numeric"  # or "verifier": each record's own `verifier` column
    n: int = Field(1, gt=0)  # samples per prompt
    k: list[int] = []  # pass@k and maj@k for each k (pass@1 always)
    temperature: float = Field(0.0, ge=0)  # 0: greedy
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    select_reward: str | None = None  # best-of-n and weighted majority by this reward
    max_new_tokens: int = Field(64, gt=0)
    batch_size: int = Field(64, gt=0)  # prompts per generate call
    baseline: bool = False  # also score the model before training

    @model_validator(mode="after")
    def _sampling(self):
        if self.n > 1 and self.temperature == 0:
            raise ValueError(f"n = {self.n} samples need temperature > 0 (greedy samples are identical)")
        if any(k < 1 or k > self.n for k in self.k):
            raise ValueError(f"every k must be between 1 and n ({self.n}); got {self.k}")
        return self


class RewardSpec(BaseModel):
    """A reward for RLVR: a registered name or a dotted path, its weight, and its options
    (every other key, checked against the function's keyword-only parameters)."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str
    weight: float = 1.0
    on_error: Literal["fail", "zero"] = "fail"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Recipe(_Block):
    description: str | None = None
    method: Literal["sft", "dpo", "rlvr"]
    model: ModelSpec = ModelSpec()
    data: DataSpec
    peft: dict[str, Any] | None = None
    trainer: dict[str, Any] = {}
    batch: BatchSpec = BatchSpec()
    tracking: TrackingSpec = TrackingSpec()
    launch: LaunchSpec = LaunchSpec()
    run: RunSpec = RunSpec()
    eval: EvalSpec | None = None
    rewards: list[RewardSpec] = []
    dynamic_sampling: "DynamicSamplingSpec | None" = None


class DynamicSamplingSpec(_Block):
    """rlvr: DAPO's dynamic sampling (posttrain/trainers/dynamic.py)."""

    max_retries: int = Field(4, ge=1)  # extra generation rounds per batch to replace zero-variance groups


Recipe.model_rebuild()


TRAINER_CONFIGS = {  # method -> TRL config dataclass, as (module, class)
    "sft": ("trl.trainer.sft_config", "SFTConfig"),
    "dpo": ("trl.trainer.dpo_config", "DPOConfig"),
    "rlvr": ("trl.trainer.grpo_config", "GRPOConfig"),
}
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
# Keys posttrain sets itself, and where the user says them instead.
MANAGED_KEYS = {
    "output_dir": "set by posttrain: the run directory is run.dir/run.name",
    "run_name": "set by posttrain from run.name",
    "per_device_train_batch_size": "use batch.per_device",
    "gradient_accumulation_steps": "derived from batch.global / (batch.per_device x world size)",
    "report_to": "use tracking: {wandb: {...}}; metrics.jsonl is always written",
    "resume_from_checkpoint": "use `posttrain run --resume`",
    "use_cpu": "set by posttrain when no GPU is present",
}

# ----------------------------------------------------------------------------- loading


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader that also reads `5e-4` as a float: YAML 1.1 (PyYAML) wants `5.0e-4`, and a
    learning rate silently read as a string is the classic recipe bug. Nor are `24:00:00` or
    `1:30` base-60 numbers (YAML 1.1): they stay strings, as in YAML 1.2 (a SLURM time limit)."""


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a file and line, or a command-line override."""

    file: Path | None = None
    line: int | None = None
    override: str | None = None

    def __str__(self) -> str:
        if self.override is not None:
            return f"command-line override '{self.override}'"
        return f"{self.file}:{self.line}" if self.line else str(self.file)

    @property
    def base_dir(self) -> Path:
        return self.file.parent if self.file else Path.cwd()


def dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)


def _line_map(node: yaml.Node, path: KeyPath = ()) -> dict[KeyPath, int]:
    lines = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            lines.update(_line_map(value, child))
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, path + (i,)))
    return lines


def _read_yaml(path: Path) -> tuple[dict, dict[KeyPath, Origin]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(str(path), "", "file not found") from None
    except OSError as exc:
        raise RecipeError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        data = _yaml_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(where, "", f"invalid YAML: {problem}") from None
    if data is None:
        data, node = {}, None
    if not isinstance(data, dict):
        raise RecipeError(str(path), "", "a recipe must be a YAML mapping of keys to values")
    lines = _line_map(node) if node is not None else {}
    return data, {p: Origin(path, line) for p, line in lines.items()}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _merge_origins(
    base: dict[KeyPath, Origin], over: dict[KeyPath, Origin], over_data: dict
) -> dict[KeyPath, Origin]:
    """Origins after `_merge(base_data, over_data)`: the overriding file wins below any key it
    replaced outright (scalars and lists replace, mappings merge)."""
    replaced = [p for p in over if p and not isinstance(_get(over_data, p), dict)]
    kept = {p: o for p, o in base.items() if not any(p[: len(r)] == r for r in replaced)}
    kept.update(over)
    return kept


def _get(data, path: KeyPath):
    for part in path:
        data = data[part]
    return data


def _load_with_extends(path: Path, chain: tuple[Path, ...]) -> tuple[dict, dict[KeyPath, Origin]]:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise RecipeError(str(chain[-1]), "extends", f"extends cycle: {cycle}")
    data, origins = _read_yaml(path)
    parents = data.pop("extends", None)
    if parents is None:
        return data, origins
    if isinstance(parents, str):
        parents = [parents]
    if not (isinstance(parents, list) and all(isinstance(p, str) for p in parents)):
        raise RecipeError(str(origins[("extends",)]), "extends", "expected a path or a list of paths")
    merged, merged_origins = {}, {}
    for parent in parents:
        parent_path = path.parent / parent
        if not parent_path.is_file():
            raise RecipeError(
                str(origins[("extends",)]), "extends",
                f"file not found: {parent_path} (paths are relative to the recipe file)",
            )
        parent_data, parent_origins = _load_with_extends(parent_path, (*chain, path))
        merged_origins = _merge_origins(merged_origins, parent_origins, parent_data)
        merged = _merge(merged, parent_data)
    origins.pop(("extends",), None)
    return _merge(merged, data), _merge_origins(merged_origins, origins, data)


def apply_override(data: dict, origins: dict[KeyPath, Origin], override: str) -> None:
    """Apply `a.b.c=value` in place; the value is parsed as YAML (`1e-3`, `true`, `[1, 2]`)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise RecipeError("command line", override, "an override must look like key.path=value")
    try:
        value = _yaml_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise RecipeError("command line", key, f"cannot parse value {text!r} as YAML: {exc}") from None
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    target = data
    for i, part in enumerate(parts[:-1]):
        nxt = target[part] if isinstance(target, list) and isinstance(part, int) and part < len(target) \
            else (target.get(part) if isinstance(target, dict) else None)
        if nxt is None:
            if isinstance(target, list):
                raise RecipeError("command line", key, f"list index {part} is out of range")
            nxt = target[part] = {}
        if not isinstance(nxt, (dict, list)):
            raise RecipeError(
                "command line", key, f"'{dotted(tuple(parts[: i + 1]))}' is a value, not a mapping"
            )
        target = nxt
    last = parts[-1]
    if isinstance(target, list):
        if not isinstance(last, int) or last >= len(target):
            raise RecipeError("command line", key, f"list index {last} is out of range")
    target[last] = value
    path = tuple(parts)
    for p in [p for p in origins if p[: len(path)] == path]:
        del origins[p]
    origins[path] = Origin(override=override)


# ----------------------------------------------------------------------------- validation


def locate(origins: dict[KeyPath, Origin], source: Path, path: KeyPath) -> Origin:
    """Where `path` was set: the deepest key on it that a file or an override named."""
    for end in range(len(path), -1, -1):
        if path[:end] in origins:
            return origins[path[:end]]
    return Origin(source)


@dataclass
class LoadedRecipe:
    """A validated recipe plus where each of its values came from."""

    spec: Recipe
    source: Path
    origins: dict[KeyPath, Origin] = field(repr=False)
    raw: dict = field(repr=False)

    def origin(self, path: KeyPath) -> Origin:
        return locate(self.origins, self.source, path)

    def error(self, path: KeyPath, message: str) -> RecipeError:
        return RecipeError(str(self.origin(path)), dotted(path), message)

    @property
    def run_name(self) -> str:
        return self.spec.run.name or self.source.stem

    @property
    def world_size(self) -> int:
        return self.spec.launch.nodes * self.spec.launch.gpus_per_node


def _annotation_fields(annotation) -> dict[str, Any] | None:
    """Field names of the pydantic model inside an annotation (through Optional / list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_fields
    for arg in get_args(annotation):
        found = _annotation_fields(arg)
        if found is not None:
            return found
    return None


def _valid_keys_at(loc: tuple) -> list[str]:
    fields: dict[str, Any] | None = Recipe.model_fields
    for part in loc:
        if isinstance(part, int) or fields is None:
            continue
        info = fields.get(part)
        fields = _annotation_fields(info.annotation) if info else None
    if not fields:
        return []
    return [info.alias or name for name, info in fields.items()]


# Names people carry over from other tools, which spelling distance alone would not find.
ALIASES = {"rank": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "lr": "learning_rate",
           "epochs": "num_train_epochs", "steps": "max_steps", "max_seq_len": "max_length",
           "batch_size": "per_device", "grad_accum": "gradient_accumulation_steps"}


def _suggest(word: str, options) -> str:
    options = list(options)
    close = difflib.get_close_matches(str(word), options, n=3, cutoff=0.6)
    if ALIASES.get(word) in options and ALIASES[word] not in close:
        close.insert(0, ALIASES[word])
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _pydantic_error(recipe_path: Path, origins, exc: ValidationError) -> RecipeError:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))

    def error(path: KeyPath, message: str) -> RecipeError:
        return RecipeError(str(locate(origins, recipe_path, path)), dotted(path), message)

    kind = err["type"]
    if kind == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        valid = _valid_keys_at(parent)
        message = f"unknown key '{key}'{_suggest(key, valid)} (valid keys: {', '.join(valid)})"
        return error(loc, message)
    if kind == "missing":
        return error(loc, "required key is missing")
    got = err.get("input")
    shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
    return error(loc, f"{err['msg'].removeprefix('Value error, ')}{shown}")


def _check_dataclass_block(
    loaded: LoadedRecipe, key: str, block: dict, fields: dict[str, FieldSpec], what: str
) -> None:
    for name, value in block.items():
        path = (key, name)
        if name in REMOVED_KEYS and name not in fields:
            raise loaded.error(path, REMOVED_KEYS[name])
        if key == "trainer" and name in MANAGED_KEYS:
            raise loaded.error(path, MANAGED_KEYS[name])
        spec = fields.get(name)
        if spec is None:
            raise loaded.error(
                path, f"{what} has no field '{name}'{_suggest(name, fields)}"
            )
        if not value_matches(value, spec.annotation):
            raise loaded.error(path, f"expected {spec.annotation}, got {value!r}")
        if spec.choices and value not in spec.choices and not (
            isinstance(value, list) and all(v in spec.choices for v in value)
        ):
            raise loaded.error(path, f"{value!r} is not one of {list(spec.choices)}")


def gradient_accumulation(loaded: LoadedRecipe, world_size: int) -> int:
    """Grad accumulation steps so that global = per_device x accumulation x world size."""
    batch = loaded.spec.batch
    if batch.global_ is None:
        return 1
    per_step = batch.per_device * world_size
    if batch.global_ % per_step:
        lower = max(per_step, batch.global_ // per_step * per_step)
        raise loaded.error(
            ("batch", "global"),
            f"{batch.global_} is not a multiple of per_device ({batch.per_device}) x world size "
            f"({world_size}) = {per_step}; use {lower} or {lower + per_step}, "
            "or change batch.per_device",
        )
    return batch.global_ // per_step


def _resolve_local_path(loaded: LoadedRecipe, path: KeyPath, value: str, must_exist: bool) -> str:
    candidate = Path(os.path.expanduser(value))
    if not candidate.is_absolute():
        candidate = loaded.origin(path).base_dir / candidate
    if must_exist and not candidate.exists():
        raise loaded.error(
            path, f"file not found: {candidate} (relative paths are relative to the recipe file)"
        )
    return str(candidate.resolve()) if candidate.exists() else value


def _looks_local(value: str) -> bool:
    return value.startswith((".", "/", "~")) or value.endswith((".jsonl", ".json", ".parquet"))


def _check_sources(loaded: LoadedRecipe, prefix: KeyPath, sources: list[DataSource]) -> None:
    from posttrain.data.tasks import TASKS  # pure Python, cheap

    for i, source in enumerate(sources):
        path = (*prefix, i)
        if source.path is not None:
            source.path = _resolve_local_path(loaded, (*path, "path"), source.path, must_exist=True)
            if not source.path.endswith((".jsonl", ".json", ".parquet")):
                raise loaded.error((*path, "path"), "expected a .jsonl, .json or .parquet file")
        if source.task is not None:
            if source.task not in TASKS:
                raise loaded.error(
                    (*path, "task"), f"unknown task '{source.task}'{_suggest(source.task, TASKS)} "
                    f"(tasks: {', '.join(TASKS)})"
                )
            if source.split not in (None, "train", "heldout"):
                raise loaded.error((*path, "split"), "a task split is 'train' or 'heldout'")


def validate(loaded_raw: dict, origins: dict[KeyPath, Origin], source: Path) -> LoadedRecipe:
    try:
        spec = Recipe.model_validate(loaded_raw)
    except ValidationError as exc:
        raise _pydantic_error(source, origins, exc) from None
    loaded = LoadedRecipe(spec, source, origins, loaded_raw)

    module, cls = TRAINER_CONFIGS[spec.method]
    _check_dataclass_block(loaded, "trainer", spec.trainer, dataclass_fields(module, cls), f"TRL {cls}")
    if spec.peft is not None:
        peft_fields = dataclass_fields(*PEFT_CONFIG)
        _check_dataclass_block(loaded, "peft", spec.peft, peft_fields, "peft.LoraConfig")

    trainer = spec.trainer
    if trainer.get("bf16") and trainer.get("fp16"):
        raise loaded.error(("trainer", "fp16"), "bf16 and fp16 are both true; choose one")
    if trainer.get("padding_free") and not trainer.get("packing") and trainer.get("max_length", 1) is not None:
        raise loaded.error(
            ("trainer", "padding_free"),
            "padding_free without packing needs max_length: null (TRL truncates otherwise)",
        )
    if not spec.data.eval and spec.data.eval_fraction is None and trainer.get("eval_strategy", "no") != "no":
        raise loaded.error(
            ("trainer", "eval_strategy"),
            "evaluation is on but there is no eval data; add data.eval or data.eval_fraction",
        )
    if spec.method == "dpo":
        _check_dpo_losses(loaded)
    for i, source in enumerate(spec.data.train):
        if source.on_policy is not None:
            if spec.method != "dpo":
                raise loaded.error(("data", "train", i, "on_policy"), "on-policy pairs are for method: dpo")
            if source.traces is not None:
                raise loaded.error(("data", "train", i, "on_policy"), "a source is task records (on_policy) "
                                   "or reasoning trees (traces), not both")
            _check_reward_name(loaded, ("data", "train", i, "on_policy", "reward"), source.on_policy.reward)
    accumulation = gradient_accumulation(loaded, loaded.world_size)
    if spec.method == "rlvr":
        _check_generation_groups(loaded, accumulation)
    if spec.dynamic_sampling is not None and spec.method != "rlvr":
        raise loaded.error(("dynamic_sampling",), "dynamic sampling is for method: rlvr")
    if spec.data.decontaminate and not (spec.data.eval or spec.eval):
        raise loaded.error(("data", "decontaminate"),
                           "there is no evaluation set to check against; add data.eval or an eval block")

    template = spec.model.chat_template
    if template is not None and template not in ("chatml", "tulu"):
        if not template.endswith(".jinja"):
            raise loaded.error(("model", "chat_template"), "expected chatml, tulu or a path to a .jinja file")
        _resolve_local_path(loaded, ("model", "chat_template"), template, must_exist=True)
    name = spec.model.name_or_path
    if name != "tiny" and _looks_local(name):
        spec.model.name_or_path = _resolve_local_path(loaded, ("model", "name_or_path"), name, True)
    _check_rewards(loaded)
    _check_sources(loaded, ("data", "train"), spec.data.train)
    _check_sources(loaded, ("data", "eval"), spec.data.eval)
    if spec.eval is not None:
        _check_sources(loaded, ("eval", "data"), spec.eval.data)
        _check_reward_name(loaded, ("eval", "reward"), spec.eval.reward)
        if spec.eval.select_reward:
            _check_reward_name(loaded, ("eval", "select_reward"), spec.eval.select_reward)
    return loaded


def _check_dpo_losses(loaded: LoadedRecipe) -> None:
    trainer = loaded.spec.trainer
    losses = trainer.get("loss_type", ["sigmoid"])
    if "exo_pair" in losses and trainer.get("label_smoothing", 0.0) <= 0:
        raise loaded.error(("trainer", "label_smoothing"), "loss_type exo_pair needs label_smoothing > 0 "
                           "(EXO's epsilon, e.g. 1.0e-3)")
    weights = trainer.get("loss_weights")
    if weights is not None and len(weights) != len(losses):
        raise loaded.error(("trainer", "loss_weights"), f"{len(weights)} weights for {len(losses)} loss "
                           f"types {losses}; give one weight per loss type")


def _check_generation_groups(loaded: LoadedRecipe, accumulation: int) -> None:
    """GRPO samples num_generations completions per prompt; one generation batch must hold
    whole groups. batch.per_device counts completions, not prompts."""
    trainer, per_device = loaded.spec.trainer, loaded.spec.batch.per_device
    generations = trainer.get("num_generations", 8)
    steps = trainer.get("steps_per_generation") or accumulation
    batch = trainer.get("generation_batch_size") or per_device * loaded.world_size * steps
    if generations < 2:
        raise loaded.error(("trainer", "num_generations"), "GRPO needs at least 2 generations per prompt "
                           "(advantages compare completions of the same prompt)")
    if batch % generations:
        fits = [g for g in range(2, generations) if batch % g == 0]
        per_device_fix = generations // math.gcd(generations, loaded.world_size * steps)
        raise loaded.error(
            ("trainer", "num_generations"),
            f"the generation batch (batch.per_device {per_device} x world size {loaded.world_size} x "
            f"steps_per_generation {steps} = {batch} completions) is not a multiple of num_generations "
            f"({generations}); make batch.per_device a multiple of {per_device_fix}"
            + (f", or set num_generations to {fits[-1]}" if fits else ""),
        )
    if loaded.spec.dynamic_sampling is not None and (per_device * steps) % generations:
        raise loaded.error(("dynamic_sampling",), f"each process's generation batch (batch.per_device "
                           f"{per_device} x steps_per_generation {steps}) must hold whole groups "
                           f"of num_generations ({generations}) to drop and replace them")


def _check_reward_name(loaded: LoadedRecipe, path: KeyPath, name: str):
    from posttrain.rewards import REWARDS, resolve_reward  # pure Python, no torch

    try:
        return resolve_reward(name)
    except LookupError as exc:
        suggestion = _suggest(name, REWARDS) if "." not in name and ":" not in name else ""
        message = f"unknown reward '{name}'{suggestion}" if suggestion else str(exc)
        raise loaded.error(path, message) from None


def _check_rewards(loaded: LoadedRecipe) -> None:
    from posttrain.rewards import reward_options

    spec = loaded.spec
    if spec.rewards and spec.method != "rlvr":
        raise loaded.error(("rewards",), f"rewards are used by method rlvr, not {spec.method}")
    if spec.method == "rlvr" and not spec.rewards:
        raise loaded.error(("rewards",), "method rlvr needs at least one reward, e.g. "
                           "rewards: [{name: math}]")
    for i, reward in enumerate(spec.rewards):
        fn = _check_reward_name(loaded, ("rewards", i, "name"), reward.name)
        accepted = reward_options(fn)
        for option, value in reward.options.items():
            if option not in accepted:
                raise loaded.error(("rewards", i, option), f"reward '{reward.name}' has no option "
                                   f"'{option}'{_suggest(option, accepted)} (options: "
                                   f"{', '.join(accepted) or 'none'}; also name, weight, on_error)")


@dataclass
class Pipeline:
    """A recipe with `stages:`: each stage a full recipe (the shared keys merged under the
    stage's own), run in order, each starting from the previous stage's final model."""

    source: Path
    name: str
    stages: list[tuple[str, LoadedRecipe]]
    # A comparison stage -> the stage it stands in for: it starts from the model that stage
    # started from, trains for as long as that stage trained, and no later stage builds on it.
    instead_of: dict[str, str] = field(default_factory=dict)


def _validate_stage(data: dict, origins, source: Path, index: int) -> tuple[str, LoadedRecipe]:
    stage = data["stages"][index]
    prefix = ("stages", index)
    if not isinstance(stage, dict):
        raise RecipeError(str(locate(origins, source, prefix)), dotted(prefix), "a stage is a mapping of recipe keys")
    stage = dict(stage)
    name = stage.pop("name", None) or stage.get("method")
    stage.pop("instead_of", None)  # a pipeline key, checked in _load_pipeline
    shared = {k: v for k, v in data.items() if k != "stages"}
    shared_origins = {p: o for p, o in origins.items() if p[:1] != ("stages",)}
    own_origins = {p[2:]: o for p, o in origins.items()
                   if p[:2] == prefix and len(p) > 2 and p[2] not in ("name", "instead_of")}
    merged = _merge(shared, stage)
    merged_origins = _merge_origins(shared_origins, own_origins, stage)
    merged.setdefault("run", {})
    try:
        return str(name), validate(merged, merged_origins, source)
    except RecipeError as exc:
        path = tuple(int(p) if p.isdigit() else p for p in exc.key.split(".")) if exc.key else ()
        from_stage = any(path[: len(k)] == k or k[: len(path)] == path for k in own_origins)
        key = dotted(prefix + path) if from_stage else exc.key
        raise RecipeError(exc.where, key, exc.message) from None


def _load_pipeline(data: dict, origins, source: Path) -> Pipeline:
    where = str(locate(origins, source, ("stages",)))
    if "method" in data:
        raise RecipeError(where, "method", "a pipeline gives each stage its own method; remove the top-level one")
    if not isinstance(data["stages"], list) or not data["stages"]:
        raise RecipeError(where, "stages", "expected a list of stages, e.g. [{method: sft, ...}, {method: dpo, ...}]")
    stages = [_validate_stage(data, origins, source, i) for i in range(len(data["stages"]))]
    names = [name for name, _ in stages]
    for i, name in enumerate(names):
        if names.index(name) != i:
            raise RecipeError(str(locate(origins, source, ("stages", i))), f"stages.{i}.name",
                              f"two stages are named '{name}'; give each a unique name")
    instead_of = {}
    for i, stage in enumerate(data["stages"]):
        if "instead_of" not in stage:
            continue
        target, key = stage["instead_of"], ("stages", i, "instead_of")
        earlier = [n for n, _ in stages[:i] if n not in instead_of]
        if target not in earlier:
            raise RecipeError(str(locate(origins, source, key)), dotted(key),
                              f"'{target}' is not an earlier stage (instead_of names a stage above this one "
                              f"that this stage is compared with: {', '.join(earlier) or 'none yet'})")
        instead_of[names[i]] = target
    run_name = (data.get("run") or {}).get("name") or source.stem
    return Pipeline(source, run_name, stages, instead_of)


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> LoadedRecipe | Pipeline:
    """Load, merge, override and validate a recipe (or a pipeline of them). Raises RecipeError
    on any problem."""
    source = Path(path)
    data, origins = _load_with_extends(source, ())
    for override in overrides:
        apply_override(data, origins, override)
    if "stages" in data:
        return _load_pipeline(data, origins, source.resolve())
    if "experiment" in data:
        from posttrain.experiments.journey import load_experiment

        return load_experiment(data, origins, source.resolve())
    return validate(data, origins, source.resolve())


# ----------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Device:
    """What the run will train on, as far as recipe resolution cares."""

    cuda: bool
    bf16: bool
    world_size: int = 1

    @classmethod
    def detect(cls) -> "Device":
        import torch

        cuda = torch.cuda.is_available()
        return cls(
            cuda=cuda,
            bf16=cuda and torch.cuda.is_bf16_supported(),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
        )


def trainer_arguments(loaded: LoadedRecipe, device: Device) -> dict[str, Any]:
    """The keyword arguments for the TRL config: the recipe's, plus what posttrain decides.

    On a machine without CUDA: bf16 off (TRL defaults it on, which fails on CPU), use_cpu on
    (without it two CPU processes train independently), gradient checkpointing off (it halves
    the speed of small CPU models and saves memory nobody is short of).

    SFT batch layout stays TRL's padded, randomly sampled batches: on CPU they train 2.2-2.5x the
    real tokens/s of padding-free or packed rows (bench/sft_overhead.py, docs/benchmarks.md).
    """
    args = dict(loaded.spec.trainer)
    if "gradient_checkpointing" in args:  # transformers 5 renamed it; the old name only warns
        args.setdefault("activation_checkpointing", args.pop("gradient_checkpointing"))
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
        if args.get("use_vllm"):  # TRL's vLLM generation (vllm_mode: colocate | server)
            raise loaded.error(("trainer", "use_vllm"), "vLLM generation needs a GPU and this machine has none; "
                               "remove use_vllm (generation then uses Hugging Face generate)")
        args.update(bf16=False, fp16=False, use_cpu=True)
        args.setdefault("activation_checkpointing", False)
        args.setdefault("dataloader_pin_memory", False)
    args["per_device_train_batch_size"] = loaded.spec.batch.per_device
    args["gradient_accumulation_steps"] = gradient_accumulation(loaded, device.world_size)
    return args


def check_vllm_installed(loaded: LoadedRecipe) -> None:
    """`use_vllm` needs the vllm package where the run starts (not where a recipe resolves: a
    login node rendering a SLURM job for GPU nodes may lack it)."""
    import importlib.util

    if loaded.spec.trainer.get("use_vllm") and importlib.util.find_spec("vllm") is None:
        raise loaded.error(("trainer", "use_vllm"), "use_vllm: true needs the vllm package: pip install vllm "
                           "(a version TRL supports; see TRL's vLLM integration docs)")


def resolved_dict(loaded: LoadedRecipe, device: Device | None = None) -> dict[str, Any]:
    """The recipe with every default filled in (and, given a device, the trainer arguments
    posttrain will pass): what `posttrain show` prints and what a run records."""
    out = loaded.spec.model_dump(by_alias=True, exclude_none=True)
    out["run"]["name"] = loaded.run_name
    if device is not None:
        out["trainer"] = trainer_arguments(loaded, device)
        out["device"] = {"cuda": device.cuda, "bf16": device.bf16, "world_size": device.world_size}
    return out


def to_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
