"""Checking one recipe: the schema, then the rules that span blocks. Pure: a check never changes
the recipe; paths relative to the recipe file are resolved into a new spec before the checks run.

Every error names the file (and line) a key came from and its dotted key path.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from posttrain.errors import RecipeError, did_you_mean
from posttrain.models import BUILTIN, is_gguf
from posttrain.methods import METHOD_KEYS, METHODS, methods_taking
from posttrain.recipe.load import KeyPath, Origin, dotted, locate
from posttrain.recipe.schema import SEARCH_STRATEGIES, DataSource, Recipe, RewardRef
from posttrain.recipe.trl_fields import (PEFT_BOUNDS, TRAINER_BOUNDS, check_dataclass_block, check_values, managed_keys,
                                         peft_fields, trainer_fields)
from posttrain.rewards import REWARDS, resolve_reward, reward_options
from posttrain.rundir import holds_model, run_path
from posttrain.tasks import TASKS, check_judge_ref
from posttrain.tasks.gym import check_gym_task, is_gym_task

DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class LoadedRecipe:
    """A validated recipe plus where each of its values came from. `raw` is the recipe's data as
    written (after extends and overrides); `spec` the validated blocks, with local paths resolved."""

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
    def run_dir(self) -> Path:
        return run_path(self.spec.run.dir, self.run_name)

    @property
    def world_size(self) -> int:
        return self.spec.launch.nodes * self.spec.launch.gpus_per_node

    @property
    def accumulation(self) -> int:
        return gradient_accumulation(self, self.world_size)


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


# ----------------------------------------------------------------------------- schema errors


def _annotation_fields(annotation) -> dict[str, Any] | None:
    """Field names of the pydantic model inside an annotation (through Optional / list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_fields
    for arg in get_args(annotation):
        found = _annotation_fields(arg)
        if found is not None:
            return found
    return None


def _valid_keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    fields: dict[str, Any] | None = model.model_fields
    for part in loc:
        if isinstance(part, int) or fields is None:
            continue
        info = fields.get(part)
        fields = _annotation_fields(info.annotation) if info else None
    if not fields:
        return []
    return [info.alias or name for name, info in fields.items()]


def pydantic_error(model: type[BaseModel], source: Path, origins, exc: ValidationError,
                   prefix: KeyPath = ()) -> RecipeError:
    """A pydantic error as a RecipeError naming the file, line and key (under `prefix`)."""
    err = exc.errors()[0]
    loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))

    def error(path: KeyPath, message: str) -> RecipeError:
        return RecipeError(str(locate(origins, source, path)), dotted(path), message)

    kind = err["type"]
    if kind == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        valid = _valid_keys_at(model, parent[len(prefix):])
        return error(loc, f"unknown key '{key}'{did_you_mean(key, valid)} (valid keys: {', '.join(valid)})")
    if kind == "missing":
        return error(loc, "required key is missing")
    got = err.get("input")
    shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
    return error(loc, f"{err['msg'].removeprefix('Value error, ')}{shown}")


# ----------------------------------------------------------------------------- paths


def _looks_local(value: str) -> bool:
    return value.startswith((".", "/", "~")) or value.endswith(DATA_SUFFIXES)


def resolve_path(origins, source: Path, path: KeyPath, value: str, must_exist: bool) -> str:
    """A path as the recipe wrote it, made absolute against the directory of the file that set
    it (an override's: the working directory). `~` and environment variables (`$VAR`, `${VAR}`)
    are expanded; an unset variable is an error naming it."""
    import re

    unset = [name for name in re.findall(r"\$\{?(\w+)\}?", value) if name not in os.environ]
    if unset:
        raise RecipeError(str(locate(origins, source, path)), dotted(path),
                          f"{value} names ${unset[0]}, which is not set in the environment")
    candidate = Path(os.path.expandvars(os.path.expanduser(value)))
    if not candidate.is_absolute():
        candidate = locate(origins, source, path).base_dir / candidate
    if must_exist and not candidate.exists():
        raise RecipeError(str(locate(origins, source, path)), dotted(path),
                          f"file not found: {candidate} (relative paths are relative to the recipe file)")
    return str(candidate.resolve()) if candidate.exists() else value


def _source_lists(raw: dict) -> list[KeyPath]:
    data, evaluation = raw.get("data") or {}, raw.get("eval") or {}
    lists = [("data", "train"), ("data", "eval")] if isinstance(data, dict) else []
    return lists + ([("eval", "data")] if isinstance(evaluation, dict) else [])


def with_resolved_paths(raw: dict, spec: Recipe, origins, source: Path) -> dict:
    """A copy of `raw` with every local data file and a local model directory made absolute;
    `raw` itself is left as written."""
    out = copy.deepcopy(raw)
    for prefix in _source_lists(raw):
        block = out
        for part in prefix:
            block = block.get(part) if isinstance(block, dict) else None
        for i, item in enumerate(block or []):
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                key = (*prefix, i, "path")
                item["path"] = resolve_path(origins, source, key, item["path"], must_exist=True)
                if not item["path"].endswith(DATA_SUFFIXES):
                    raise RecipeError(str(locate(origins, source, key)), dotted(key),
                                      "expected a .jsonl, .json or .parquet file")
    model = _model_source(spec.model.name_or_path, spec.model.gguf_file,
                          lambda key, value, exist: resolve_path(origins, source, ("model", key), value, exist),
                          lambda key: str(locate(origins, source, ("model", key))))
    if model:
        out.setdefault("model", {}).update(model)
    return out


def _model_source(name: str, gguf: str | None, resolve, where) -> dict:
    """The model block's local paths made absolute and checked ({} when nothing is local): a
    model directory holds a config.json, a file is a GGUF file, `gguf_file` inside a local
    directory (or a path of its own) exists and is GGUF. Built-in and hub names pass as written."""
    out = {}
    if name != "tiny" and name not in BUILTIN and _looks_local(name):
        name = out["name_or_path"] = resolve("name_or_path", name, True)
        if Path(name).is_file() and gguf is None and not is_gguf(Path(name)):
            raise RecipeError(where("name_or_path"), "model.name_or_path",
                              f"{name} is a file but not a GGUF file; a model directory saved with "
                              "save_pretrained (such as a run's final/) or a .gguf file is expected")
        if Path(name).is_dir() and gguf is None and not holds_model(Path(name)):
            raise RecipeError(where("name_or_path"), "model.name_or_path",
                              f"{name} holds no model (no config.json): a model directory saved with "
                              "save_pretrained, such as a run's final/, or a .gguf file (model.gguf_file) is expected")
    if gguf is None:
        return out
    inside = Path(name).is_dir() and not Path(gguf).is_absolute() and not _looks_local(gguf)
    candidate = Path(name) / gguf if inside else Path(resolve("gguf_file", gguf, Path(name).is_dir()))
    if not candidate.exists() and not inside:
        return out  # a file of a hub repository, fetched when the model loads
    if not candidate.exists() or not is_gguf(candidate):
        raise RecipeError(where("gguf_file"), "model.gguf_file",
                          f"file not found: {candidate}" if not candidate.exists() else f"{candidate} is not a GGUF file")
    out["gguf_file"] = str(candidate.resolve())
    return out


# ----------------------------------------------------------------------------- the rules


def validate(raw: dict, origins: dict[KeyPath, Origin], source: Path) -> LoadedRecipe:
    """Check a single-run recipe's data; returns it validated, with local paths resolved."""
    try:
        written = Recipe.model_validate(raw)
        spec = Recipe.model_validate(with_resolved_paths(raw, written, origins, source))
    except ValidationError as exc:
        raise pydantic_error(Recipe, source, origins, exc) from None
    loaded = LoadedRecipe(spec, source, origins, raw)
    check(loaded)
    return loaded


def check(loaded: LoadedRecipe) -> None:
    """Every rule that spans blocks; raises the first problem as a RecipeError."""
    spec = loaded.spec
    method = METHODS[spec.method]
    fields, what = trainer_fields(spec.method)
    check_dataclass_block(loaded, "trainer", spec.trainer, fields, what, managed_keys(spec.method))
    check_values(loaded, "trainer", spec.trainer, TRAINER_BOUNDS)
    if spec.peft is not None:
        check_dataclass_block(loaded, "peft", spec.peft, peft_fields(), "peft.LoraConfig")
        check_values(loaded, "peft", spec.peft, PEFT_BOUNDS)
    _check_method_keys(loaded)
    _check_trainer_flags(loaded)
    loaded.accumulation  # noqa: B018 - raises when the batch arithmetic is impossible
    for rule in method.checks:
        rule(loaded)
    if spec.data.decontaminate and not (spec.data.eval or spec.eval):
        raise loaded.error(("data", "decontaminate"),
                           "there is no evaluation set to check against; add data.eval or an eval block")
    _check_chat_template(loaded)
    _check_deepspeed_config(loaded)
    _check_quantization(loaded)
    _check_teacher_device(loaded)
    _check_vllm_server(loaded)
    for i, reward in enumerate(spec.rewards):
        check_reward(loaded.error, loaded.raw, ("rewards", i), reward)
        if reward.gate is not None:
            check_reward(loaded.error, loaded.raw, ("rewards", i, "gate"), reward.gate)
    for prefix, sources in ((("data", "train"), spec.data.train), (("data", "eval"), spec.data.eval),
                            (("eval", "data"), spec.eval.data if spec.eval else [])):
        _check_sources(loaded, prefix, sources)
    if spec.eval is not None:
        check_reward(loaded.error, loaded.raw, ("eval", "reward"), spec.eval.reward)
        if spec.eval.select_reward:
            check_reward(loaded.error, loaded.raw, ("eval", "select_reward"), spec.eval.select_reward)
        _check_test_time(loaded)


def _check_test_time(loaded: LoadedRecipe) -> None:
    """eval.test_time has the models its strategies need; a method whose model rates answers
    (reward, prm) evaluates the model it starts from, by test-time curves only."""
    spec, evaluation = loaded.spec, loaded.spec.eval
    test_time, generating = evaluation.test_time, METHODS[spec.method].model == "causal_lm"
    if not generating:  # the method's own check asks for test_time
        if evaluation.baseline:
            raise loaded.error(("eval", "baseline"), f"method {spec.method}: there is no before and after of the "
                               "policy to compare; remove baseline")
    if test_time is None:
        return
    has_prm = test_time.prm is not None or spec.method == "prm"
    searching = [s for s in test_time.strategies if s in SEARCH_STRATEGIES]
    if searching and not has_prm:
        raise loaded.error(("eval", "test_time", "prm"), f"{', '.join(searching)} need a process reward model to "
                           "guide the search: give test_time.prm (a method: prm run's final/)")
    ranking = [s for s in test_time.strategies if s in ("best_of_n", "weighted_majority")]
    if ranking and not (has_prm or test_time.verifier is not None or spec.method == "reward"):
        raise loaded.error(("eval", "test_time", "verifier"), f"{', '.join(ranking)} need a verifier to rank "
                           "answers: give test_time.verifier (a reward, e.g. {name: reward_model, path: ...}) "
                           "or test_time.prm")
    if test_time.verifier is not None:
        check_reward(loaded.error, loaded.raw, ("eval", "test_time", "verifier"), test_time.verifier)
    if "lookahead" in test_time.strategies and test_time.lookahead == 0:
        raise loaded.error(("eval", "test_time", "lookahead"), "strategy lookahead with lookahead: 0 is beam search; "
                           "give lookahead >= 1")


_KEY_NAMES = {"rewards": "rewards are used", "dynamic_sampling": "dynamic sampling is",
              "on_policy": "on-policy pairs are", "reward_preflight": "the reward preflight is",
              "eval_greedy": "greedy in-training evaluation is", "teacher": "a teacher model is",
              "rollouts": "the rollout engine is"}


def _check_method_keys(loaded: LoadedRecipe) -> None:
    """Keys only some methods take (rewards, dynamic_sampling, on_policy) are errors elsewhere."""
    spec, method = loaded.spec, METHODS[loaded.spec.method]
    used = {"rewards": [("rewards",)] if spec.rewards else [],
            "dynamic_sampling": [("dynamic_sampling",)] if spec.dynamic_sampling is not None else [],
            "reward_preflight": [("reward_preflight",)] if spec.reward_preflight is not None else [],
            "eval_greedy": [("eval_greedy",)] if spec.eval_greedy else [],
            "teacher": [("teacher",)] if spec.teacher is not None else [],
            "rollouts": [("rollouts",)] if spec.rollouts is not None else [],
            "on_policy": [("data", "train", i, "on_policy") for i, s in enumerate(spec.data.train)
                          if s.on_policy is not None]}
    for key in METHOD_KEYS:
        if used[key] and key not in method.keys:
            takers = " or ".join(methods_taking(key))
            raise loaded.error(used[key][0], f"{_KEY_NAMES[key]} for method: {takers}, not {spec.method}")
    for i, source in enumerate(spec.data.train):
        if source.on_policy is not None and source.traces is not None:
            raise loaded.error(("data", "train", i, "on_policy"), "a source is task records (on_policy) "
                               "or reasoning trees (traces), not both")


def _check_trainer_flags(loaded: LoadedRecipe) -> None:
    spec, trainer = loaded.spec, loaded.spec.trainer
    if trainer.get("bf16") and trainer.get("fp16"):
        raise loaded.error(("trainer", "fp16"), "bf16 and fp16 are both true; choose one")
    strategy = trainer.get("hub_strategy", "every_save")
    if trainer.get("push_to_hub") and strategy not in ("end", "every_save"):
        raise loaded.error(("trainer", "hub_strategy"), f"{strategy!r}: posttrain pushes final/ (and adapter/) "
                           "when the run ends; use end or every_save (both push at the end) and find the "
                           "checkpoints in the run directory")
    if trainer.get("padding_free") and spec.method == "dpo":
        raise loaded.error(("trainer", "padding_free"), "TRL's DPOTrainer ignores padding_free (since its "
                           "refactor it warns and pads as usual); remove the key")
    if (trainer.get("padding_free") and spec.method == "sft" and not trainer.get("packing")
            and trainer.get("max_length", 1) is not None):
        raise loaded.error(("trainer", "padding_free"),
                           "padding_free without packing needs max_length: null (TRL truncates otherwise)")
    budgets = [k for k in ("max_train_tokens", "max_train_flops") if getattr(spec.run, k) is not None]
    if budgets and not METHODS[spec.method].counts_tokens:
        raise loaded.error(("run", budgets[0]), f"TRL's trainer for method {spec.method} does not count the tokens it "
                           "trains on, so this budget could never be reached; use run.max_train_seconds or "
                           "trainer.max_steps")
    if spec.eval_greedy and trainer.get("eval_strategy", "no") == "no":
        raise loaded.error(("eval_greedy",), "there is no in-training evaluation to make greedy: set "
                           "trainer.eval_strategy (steps or epoch) and eval data")
    if spec.eval_greedy and trainer.get("use_vllm"):
        raise loaded.error(("eval_greedy",), "greedy in-training evaluation reaches Hugging Face generation only; "
                           "remove use_vllm or eval_greedy")
    if spec.data.max_prompt_length is not None and not _generates(spec):
        raise loaded.error(("data", "max_prompt_length"), f"method {spec.method} does not generate from prompts "
                           "(trainer.max_length bounds what it trains on); remove the key")
    if not spec.data.has_eval and trainer.get("eval_strategy", "no") != "no":
        raise loaded.error(("trainer", "eval_strategy"), "evaluation is on but there is no eval data; "
                           "add data.eval, data.eval_fraction or data.eval_size")


def _generates(spec) -> bool:
    """Whether the run samples from prompts (data.max_prompt_length applies): RL methods, GKD's
    share of student answers, sources sampled on-policy, and sampled reasoning trees."""
    row = METHODS[spec.method]
    return row.generates or row.samples_some or any(s.on_policy is not None or s.build_trees is not None
                                                    for s in spec.data.train)


def _check_vllm_server(loaded: LoadedRecipe) -> None:
    spec, trainer = loaded.spec, loaded.spec.trainer
    if spec.launch.slurm.vllm_server is None:
        return
    key = ("launch", "slurm", "vllm_server")
    if spec.method != "rlvr" or not trainer.get("use_vllm") or trainer.get("vllm_mode", "colocate") != "server":
        raise loaded.error(key, "a vLLM server node serves GRPO's generation: it needs method: rlvr with "
                           "trainer.use_vllm: true and trainer.vllm_mode: server")
    for name in ("vllm_server_host", "vllm_server_base_url", "vllm_server_port"):
        written = name in trainer and loaded.origin(("trainer", name)).override is None
        if written:  # the job script passes host and port on its command line
            raise loaded.error(("trainer", name), f"with launch.slurm.vllm_server the job sets {name} from the "
                               "server node it starts (its address is known only when the job runs); remove it")


def _check_quantization(loaded: LoadedRecipe) -> None:
    spec = loaded.spec
    if spec.model.quantization is None:
        return
    if spec.peft is None:
        raise loaded.error(("model", "quantization"), "quantized weights are frozen: add a peft block to train LoRA "
                           "adapters on them (QLoRA), or remove model.quantization")
    launch = spec.launch
    if launch.zero == 3 or launch.fsdp or launch.deepspeed_config:
        raise loaded.error(("model", "quantization"), "quantized loading with ZeRO-3, FSDP or one's own DeepSpeed "
                           "configuration is not supported by posttrain; use data parallelism (zero 0, 1 or 2)")


def _check_teacher_device(loaded: LoadedRecipe) -> None:
    """teacher.device: one process that holds both models (a launcher's ranks each hold their
    own teacher, which ZeRO-3 shards instead)."""
    spec = loaded.spec
    if spec.teacher is None or spec.teacher.device is None:
        return
    launch = spec.launch
    if loaded.world_size > 1 or launch.zero or launch.fsdp or launch.deepspeed_config:
        raise loaded.error(("teacher", "device"), "a teacher device of its own needs one process holding both "
                           "models; with several processes, or DeepSpeed/FSDP, remove teacher.device (launch.zero: 3 "
                           "shards the teacher over the ranks instead)")


def _check_deepspeed_config(loaded: LoadedRecipe) -> None:
    """launch.deepspeed_config: an existing JSON file with a zero_optimization block."""
    import json

    value = loaded.spec.launch.deepspeed_config
    if value is None:
        return
    key = ("launch", "deepspeed_config")
    path = Path(resolve_path(loaded.origins, loaded.source, key, value, must_exist=True))
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise loaded.error(key, f"{path} is not a readable JSON DeepSpeed configuration: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("zero_optimization"), dict):
        raise loaded.error(key, f"{path} has no zero_optimization block; it is not a DeepSpeed configuration")
    loaded.spec.launch.deepspeed_config = str(path)


def is_inline_template(value: str) -> bool:
    """A chat_template value that is the Jinja text itself, not a name or a file."""
    return "{{" in value or "{%" in value


def _check_chat_template(loaded: LoadedRecipe) -> None:
    template = loaded.spec.model.chat_template
    if template is None or template in ("chatml", "tulu") or is_inline_template(template):
        return
    if not template.endswith(".jinja"):
        raise loaded.error(("model", "chat_template"),
                           "expected chatml, tulu, a path to a .jinja file or the template's Jinja text")
    resolve_path(loaded.origins, loaded.source, ("model", "chat_template"), template, must_exist=True)


def _written(raw, path: KeyPath):
    """The value at `path` of a recipe's data as written, or None."""
    for part in path:
        if isinstance(raw, dict):
            raw = raw.get(part)
        elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        else:
            return None
    return raw


def check_judge(error, path: KeyPath, judge) -> None:
    """A step judge: a task's, a dotted path, or a model judge with its options (tasks.resolve_judge)."""
    try:
        check_judge_ref(judge)
    except (LookupError, ValueError) as exc:
        raise error(path, str(exc)) from None


def check_reward(error, raw: dict, path: KeyPath, ref: RewardRef | str):
    """A reward reference (a name, or a block with options) names a reward that exists and
    takes those options. `error(path, message)` makes the error; `raw` is the recipe's data as
    written (a name written bare is blamed on its own key, one in a block on `name`)."""
    name = ref if isinstance(ref, str) else ref.name
    options = {} if isinstance(ref, str) else ref.options
    name_path = (*path, "name") if isinstance(_written(raw, path), dict) else path
    try:
        fn = resolve_reward(name)
    except LookupError as exc:
        suggestion = did_you_mean(name, REWARDS) if "." not in name and ":" not in name else ""
        raise error(name_path, f"unknown reward '{name}'{suggestion}" if suggestion else str(exc)) from None
    accepted = reward_options(fn)
    for option, value in options.items():
        if option not in accepted:
            extra = "name, weight, gate, truncated, on_error" if path[:1] == ("rewards",) else "name, on_error"
            raise error((*path, option), f"reward '{name}' has no option '{option}'{did_you_mean(option, accepted)} "
                                         f"(options: {', '.join(accepted) or 'none'}; also {extra})")
        expected = _option_type(accepted[option])
        if expected is not None and not _is_a(value, expected):
            raise error((*path, option), f"reward '{name}' takes {option} as {expected.__name__} "
                                         f"(its default is {accepted[option].default!r}); got {value!r}")
    for option, parameter in accepted.items():
        if parameter.default is parameter.empty and option not in options:
            raise error(path, f"reward '{name}' needs the option '{option}', e.g. {{name: {name}, {option}: ...}}")
    check = getattr(fn, "check_options", None)
    if check is not None:
        try:
            check(**options)
        except ValueError as exc:
            raise error(path, f"reward '{name}': {exc}") from None
    return fn


def _option_type(parameter) -> type | None:
    """The type a reward option takes, from its default (None when it has none to go by)."""
    default = parameter.default
    if default is parameter.empty or default is None:
        return None
    return type(default)


def _is_a(value, expected: type) -> bool:
    if expected is bool or isinstance(value, bool):
        return type(value) is expected
    if expected is float:
        return isinstance(value, (int, float))
    return isinstance(value, expected)


def check_task_options(error, path: KeyPath, source: DataSource) -> None:
    """A generated task's options are its generator's keyword parameters (tasks/)."""
    import inspect

    parameters = inspect.signature(TASKS[source.task]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # passed on to another generator, which checks them when it runs
    known = [name for name in parameters if name not in ("n", "split", "seed")]
    for option in source.options:
        if option not in known:
            raise error((*path, "options", option), f"task {source.task} has no option '{option}'"
                               f"{did_you_mean(option, known)} (its options: {', '.join(known)})")


def _check_sources(loaded: LoadedRecipe, prefix: KeyPath, sources: list[DataSource]) -> None:
    for i, source in enumerate(sources):
        path = (*prefix, i)
        if source.task is not None:
            if is_gym_task(source.task):
                try:
                    check_gym_task(source.task, source.options)
                except ValueError as exc:
                    raise loaded.error((*path, "task"), str(exc)) from None
            elif source.task not in TASKS:
                raise loaded.error((*path, "task"), f"unknown task '{source.task}'{did_you_mean(source.task, TASKS)} "
                                   f"(tasks: {', '.join(TASKS)}, or reasoning_gym/<name>)")
            else:
                check_task_options(loaded.error, path, source)
            if source.split not in (None, "train", "heldout"):
                raise loaded.error((*path, "split"), "a task split is 'train' or 'heldout'")
        elif source.n is not None:  # n counts generated records; it would be ignored here
            raise loaded.error((*path, "n"), "n is how many records a task generates; for a file or hub "
                               "dataset, max_samples takes the first N")
        if source.on_policy is not None:
            check_reward(loaded.error, loaded.raw, (*path, "on_policy", "reward"), source.on_policy.reward)
        if source.build_trees is not None:
            if loaded.spec.method != "prm":
                raise loaded.error((*path, "build_trees"), "trees are sampled from the starting model by method: prm "
                                   f"only, not {loaded.spec.method}; build them with posttrain data build-trees")
            if source.traces is None:
                raise loaded.error((*path, "build_trees"), "sampled trees become training records through "
                                   "traces: add traces: {kind: steps}")
            if source.build_trees.keep_unsolved and source.traces.kind != "steps":
                raise loaded.error((*path, "build_trees", "keep_unsolved"), "a tree with no correct path gives no "
                                   f"{source.traces.kind} trace; keep_unsolved is for traces: {{kind: steps}}")
            check_reward(loaded.error, loaded.raw, (*path, "build_trees", "reward"), source.build_trees.reward)
            check_judge(loaded.error, (*path, "build_trees", "judge"), source.build_trees.judge)
