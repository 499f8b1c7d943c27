"""What every trainer shares: preparing the run directory, model and tokenizer loading, the
chat-template preflight, the run records, tracking, and saving the final model. The order in
which a run uses them is written once, in trainers/skeleton.py."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path

from posttrain import models
from posttrain.chat_templates import install_chat_template, set_template_kwargs
from posttrain.errors import UserError, did_you_mean
from posttrain.recipe import Device, LoadedRecipe, to_yaml, trainer_arguments
from posttrain.rundir import RunDir, checkpoint_path, is_main_process, write_atomic, write_json
from posttrain.tiny import tiny_model_path
from posttrain.threads import available_cores
from posttrain.trainers import budget, faults

PACKAGES = ["posttrain", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
            "deepspeed", "wandb", "math-verify", "tokenizers", "pydantic"]


def _git_commit(directory: Path) -> dict | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=directory, capture_output=True,
                               text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def _versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def starting_policy(context):
    """The causal LM a reward or process reward model's run starts from, loaded once (for
    sampling on-policy pairs or reasoning trees; the trained model is a classifier made from it).
    `context.extra.pop("policy")` frees it."""
    if "policy" not in context.extra:
        from posttrain.rewards.model_reward import outside_zero3

        with outside_zero3():  # a plain replica for sampling, even when the trained model is sharded
            policy = load_model(context.loaded, model_path(context.loaded), context.device, kind="causal_lm")
        context.extra["policy"] = policy.to("cuda") if context.device.cuda else policy
    return context.extra["policy"]


def hardware_name(device: Device) -> str:
    """What ran it, in words: the GPU's name and count, or the CPU's model and its cores."""
    import torch

    if device.cuda:
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {available_cores()} cores"


def environment_record(loaded: LoadedRecipe, device: Device, data_fingerprints: dict) -> dict:
    import torch

    return {
        "command": sys.argv,
        "python": platform.python_version(),
        "packages": _versions(),
        "git": _git_commit(loaded.source.parent),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": {
            "type": "cuda" if device.cuda else "cpu",
            "name": torch.cuda.get_device_name(0) if device.cuda else platform.processor() or "cpu",
            "count": torch.cuda.device_count() if device.cuda else 1,
            "cpu_threads": torch.get_num_threads(),
            "cpu_cores_available": available_cores(),
            "bf16": device.bf16,
            "world_size": device.world_size,
        },
        "model": model_record(loaded),
        "data": data_fingerprints,
    }


def write_run_records(run: RunDir, loaded: LoadedRecipe, device: Device, resolved: dict,
                      data_fingerprints: dict) -> None:
    """recipe.resolved.yaml (its trainer: block exactly TRL's arguments) and env.json (rank 0)."""
    if is_main_process():
        write_atomic(run.resolved_recipe, to_yaml(resolved))
        write_json(run.env, environment_record(loaded, device, data_fingerprints))


# ----------------------------------------------------------------------------- TRL config


def trl_arguments(loaded: LoadedRecipe, device: Device, run: RunDir, own) -> dict:
    """Every keyword argument the method's TRL config is built with, assembled in this one place:
    the recipe's trainer block with what posttrain decides for the device and the batch
    (recipe/device.py), where this run writes, the method's own managed keys (`own`), and
    TRL's report_to."""
    args = trainer_arguments(loaded, device)
    args["output_dir"] = str(run.checkpoints)
    args["run_name"] = loaded.run_name
    args["save_total_limit"] = None  # posttrain rotates, after a checkpoint is complete (faults.py)
    args.update(own(loaded))
    args["report_to"] = tracking_targets(loaded)
    if args.get("push_to_hub"):  # posttrain pushes final/ when the run ends (hub_push.py)
        from posttrain.trainers.hub_push import arguments_for_trl

        args = arguments_for_trl(args)
    return args


def build_config(loaded: LoadedRecipe, config_class, args: dict):
    """Build TRL's config dataclass; its own checks (contradictory options) become user errors."""
    try:
        return config_class(**args)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{loaded.source}: trainer: {config_class.__name__} rejected the "
                        f"settings: {exc}") from None


def init_distributed(device: Device) -> None:
    """Under DeepSpeed (accelerate launch with a ZeRO config), start the process group before any
    model is loaded: TRL loads reference models itself, and inside ZeRO-3's `zero.Init` an
    uninitialised group looks like world size 1, so every rank would hold a different shard
    layout (DeepSpeed then sees world size 1 inside zero.Init). Harmless when already initialised."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() not in ("true", "1"):
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        import deepspeed

        deepspeed.init_distributed(dist_backend="nccl" if device.cuda else "gloo")


# ----------------------------------------------------------------------------- metrics


def metrics_callback(run: RunDir, resume_step: int):
    """A TrainerCallback appending every log line to metrics.jsonl (rank 0 only).

    On resume, lines logged after the checkpoint's step are dropped first: they belong to the
    interrupted tail of the run that is about to be redone.
    """
    from transformers import TrainerCallback

    if is_main_process():
        kept = []
        if resume_step and run.metrics.is_file():
            kept = [line for line in run.metrics.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
        write_atomic(run.metrics, "".join(line + "\n" for line in kept))

    class MetricsJsonl(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                entry = {"step": state.global_step, "epoch": state.epoch, **logs}
                with run.metrics.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")

    return MetricsJsonl()


# ----------------------------------------------------------------------------- model


def model_path(loaded: LoadedRecipe) -> str:
    """The directory (or hub name) the recipe's base model loads from: the tiny model's cached
    directory, a GGUF's converted one (posttrain/models.py), else name_or_path."""
    spec = loaded.spec.model
    if spec.name_or_path == "tiny":
        return str(tiny_model_path(spec.tiny))
    try:
        return models.local_model(spec.name_or_path, spec.gguf_file, spec.revision)
    except UserError as exc:
        raise loaded.error(("model", "gguf_file" if spec.gguf_file else "name_or_path"), str(exc)) from None


def model_record(loaded: LoadedRecipe) -> dict:
    """Where the run's base model came from (env.json): the GGUF file and its SHA-256 where one."""
    spec = loaded.spec.model
    if spec.name_or_path == "tiny":
        return {"name_or_path": "tiny", "directory": model_path(loaded)}
    return models.source_record(spec.name_or_path, spec.gguf_file, spec.revision)


def _torch_dtype(name: str, device: Device):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.bf16 else torch.float32
    return getattr(torch, name)


def _hub_options(loaded: LoadedRecipe, path: str) -> dict:
    """revision and trust_remote_code apply to the recipe's own model, not to a saved final/."""
    spec = loaded.spec.model
    own = path in (spec.name_or_path, model_path(loaded))
    return {"revision": spec.revision if own else None, "trust_remote_code": spec.trust_remote_code}


def load_tokenizer(loaded: LoadedRecipe, path: str):
    """The tokenizer at `path`, rendering with the recipe's model.chat_template_kwargs."""
    try:
        tokenizer = models.load_tokenizer(path, **_hub_options(loaded, path))
    except UserError as exc:
        raise loaded.error(("model", "name_or_path"), str(exc)) from None
    if loaded.spec.model.chat_template_kwargs:
        set_template_kwargs(tokenizer, loaded.spec.model.chat_template_kwargs)
    return tokenizer


def check_vllm_server(loaded: LoadedRecipe, poll_seconds: float = 2.0) -> str | None:
    """GRPO with `vllm_mode: server`: before anything loads, wait (up to trainer.vllm_server_timeout,
    TRL's 240 s by default) for the server's /health/ to answer, so an unreachable address is
    an error naming it, not a hang inside TRL. Returns the URL that answered (None: no server)."""
    import time
    import urllib.error
    import urllib.request

    trainer = loaded.spec.trainer
    if not trainer.get("use_vllm") or trainer.get("vllm_mode", "colocate") != "server":
        return None
    base = trainer.get("vllm_server_base_url") or (
        f"http://{trainer.get('vllm_server_host', '0.0.0.0')}:{trainer.get('vllm_server_port', 8000)}")
    url = base.rstrip("/") + "/health/"
    deadline = time.monotonic() + trainer.get("vllm_server_timeout", 240.0)
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    print(f"posttrain: the vLLM server at {base} answers")
                    return url
        except (urllib.error.URLError, OSError) as exc:
            reason = exc
        if time.monotonic() >= deadline:
            key = "vllm_server_base_url" if trainer.get("vllm_server_base_url") else "vllm_server_host"
            raise loaded.error(("trainer", key), f"no vLLM server answers at {url} ({reason}) within "
                               f"vllm_server_timeout ({trainer.get('vllm_server_timeout', 240.0):g} s); start "
                               "`trl vllm-serve` there, or use vllm_mode: colocate")
        time.sleep(poll_seconds)


def check_quantization_backend(loaded: LoadedRecipe) -> None:
    """model.quantization needs bitsandbytes where the run starts (not where a recipe resolves)."""
    if loaded.spec.model.quantization is None:
        return
    import importlib

    try:
        importlib.import_module("bitsandbytes")
    except ImportError as exc:
        raise loaded.error(("model", "quantization"), f"quantized loading needs bitsandbytes ({exc}): "
                           "pip install 'posttrain[qlora]'") from None


def quantization_config(loaded: LoadedRecipe, device: Device):
    """transformers' BitsAndBytesConfig for the recipe's model.quantization (None without)."""
    from transformers import BitsAndBytesConfig

    q = loaded.spec.model.quantization
    if q is None:
        return None
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                              bnb_4bit_compute_dtype=_torch_dtype(q.compute_dtype, device),
                              bnb_4bit_use_double_quant=q.double_quant)


def load_model(loaded: LoadedRecipe, path: str, device: Device, quantize: bool = False, kind: str | None = None):
    """The model at `path`, of the method's model kind (or `kind`, a row of methods.MODEL_KINDS),
    with the model block's dtype, revision, trust_remote_code and attention; quantized as
    model.quantization says when `quantize` (the base model a QLoRA run trains on), with peft's
    k-bit preparation (norms in fp32, input gradients on)."""
    from posttrain.methods import MODEL_KINDS, model_kind

    spec = loaded.spec.model
    auto_class, extra, _ = MODEL_KINDS[kind or model_kind(loaded.spec.method, loaded.spec.trainer)]
    kwargs = {"dtype": _torch_dtype(spec.dtype, device), **_hub_options(loaded, path), **extra}
    if spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    quantized = quantize and spec.quantization is not None
    if quantized:
        kwargs["quantization_config"] = quantization_config(loaded, device)
        kwargs["dtype"] = _torch_dtype(spec.quantization.compute_dtype, device)
        # bitsandbytes places the weights when they load: each process's own device
        kwargs["device_map"] = {"": f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if device.cuda else "cpu"}
    try:
        model = models.load_pretrained(auto_class, path, **kwargs)
    except UserError as exc:
        raise loaded.error(("model", "name_or_path"), str(exc)) from None
    if quantized:
        from peft import prepare_model_for_kbit_training

        checkpointing = loaded.spec.trainer.get("activation_checkpointing",
                                                loaded.spec.trainer.get("gradient_checkpointing", False))
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=bool(checkpointing and device.cuda))
        q = spec.quantization
        detail = f"{q.quant_type}, compute {kwargs['dtype']}" + (", double quant" if q.double_quant else "") if q.bits == 4 else ""
        print(f"posttrain: base model loaded in {q.bits}-bit{f' ({detail})' if detail else ''} for LoRA training")
    return model


def load_model_and_tokenizer(loaded: LoadedRecipe, device: Device, path: str | None = None,
                             preflight: bool = True):
    """A model and its tokenizer: the recipe's base model unless `path` names another (a
    trained final/ saves its own template). The base model gets the chat template the recipe
    names; `preflight` runs the chat-template checks."""
    base = model_path(loaded)
    path = path or base
    tokenizer = load_tokenizer(loaded, path)
    model = load_model(loaded, path, device, quantize=path == base)
    spec = loaded.spec.model
    # SFT's trainer.eos_token is TRL's way of naming the end-of-turn token: TRL applies it only
    # inside the trainer, after the preflight below, so it is applied here first.
    eos_token = spec.eos_token or loaded.spec.trainer.get("eos_token")
    if (spec.chat_template or eos_token or spec.pad_token) and path == base:
        key = "chat_template" if spec.chat_template else "name_or_path"
        install_chat_template(tokenizer, model, spec.chat_template, loaded.origin(("model", key)).base_dir, eos_token,
                              spec.pad_token)
    if loaded.spec.trainer.get("assistant_only_loss") and path == base and preflight:  # training, not evaluation
        mark_assistant_turns(loaded, tokenizer)
    if getattr(model.config, "pad_token_id", None) is None:  # a sequence classifier finds the last token by it
        model.config.pad_token_id = tokenizer.pad_token_id
    if preflight:
        from posttrain.methods import METHODS

        if METHODS[loaded.spec.method].generates:  # prompts rendered, answers sampled, never templated
            preflight_generation(tokenizer, getattr(model, "generation_config", None), loaded.spec.model.name_or_path,
                                 loaded.spec.trainer.get("generation_kwargs") or {})
        else:
            preflight_chat_template(tokenizer, getattr(model, "generation_config", None),
                                    loaded.spec.model.name_or_path)
    return model, tokenizer


def mark_assistant_turns(loaded: LoadedRecipe, tokenizer) -> None:
    """trainer.assistant_only_loss needs `{% generation %}` markers in the chat template (TRL
    reads the assistant's tokens from them). A template without them is replaced by its marked
    equivalent where posttrain knows one (rendering byte-identical: chat_templates.py), else the
    run stops in one line naming model.chat_template."""
    from posttrain.chat_templates import has_generation_markers, with_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return
    name = loaded.spec.model.name_or_path
    marked = with_generation_markers(tokenizer.chat_template) if tokenizer.chat_template else None
    if marked is None:
        raise loaded.error(("trainer", "assistant_only_loss"),
                           f"the chat template of {name} has no {{% generation %}} markers, which assistant-only "
                           "loss needs, and posttrain knows no marked equivalent of it; set model.chat_template: "
                           "chatml (or a .jinja template with the markers), or assistant_only_loss: false")
    tokenizer.chat_template = marked
    print(f"posttrain: the chat template of {name} has no {{% generation %}} markers; assistant-only loss uses "
          "an equivalent ChatML template with them (it renders every conversation identically)")


def preflight_generation(tokenizer, generation_config, model_name: str, generation_kwargs: dict) -> None:
    """What RL needs of the template and the tokenizer: a prompt that renders (with the generation
    prompt), and something that ends a sampled answer (an EOS token, or a stop string in
    trainer.generation_kwargs). An assistant turn is never templated in RL (an R1-Zero-style
    plain-text template may end it with a newline), so preflight_chat_template's check of how
    that turn ends does not apply."""
    where = f"model {model_name}"
    if tokenizer.chat_template:
        try:
            tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - jinja raises many kinds
            raise UserError(f"{where}: the chat template fails to render a prompt: {exc}") from None
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    eos = [e for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
    if not eos and tokenizer.eos_token_id is None and not generation_kwargs.get("stop_strings"):
        raise UserError(f"{where}: nothing ends a sampled answer: the tokenizer has no EOS token, the generation "
                        "config none, and trainer.generation_kwargs no stop_strings; every completion would run "
                        "to max_completion_length")


def preflight_chat_template(tokenizer, generation_config, model_name: str) -> None:
    """Check that the chat template renders and that the token ending an assistant turn is the
    tokenizer's EOS and one of the generation config's EOS tokens. When they differ, a trained
    model never stops generating: the most reported failure in open-r1 and LLaMA-Factory."""
    where = f"model {model_name}"
    if not tokenizer.chat_template:
        raise UserError(f"{where}: the tokenizer has no chat template; chat data cannot be rendered")
    marker = "\u2063posttrain-marker\u2063"
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": marker}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception as exc:  # noqa: BLE001 - jinja raises many kinds
        raise UserError(f"{where}: the chat template fails to render a conversation: {exc}") from None
    if marker not in rendered:
        raise UserError(f"{where}: the chat template drops the assistant's message")
    after = rendered.split(marker, 1)[1]
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    ids = tokenizer(after, add_special_tokens=False).input_ids
    end = next((i for i in ids if i in special), None)
    if end is None:
        raise UserError(
            f"{where}: the chat template ends an assistant turn with {after!r}, which holds no special "
            "token; the model could not learn where to stop"
        )
    end_token = tokenizer.convert_ids_to_tokens(end)
    if end != tokenizer.eos_token_id:
        raise UserError(
            f"{where}: the chat template ends assistant turns with {end_token!r} but the tokenizer's "
            f"EOS is {tokenizer.eos_token!r}: a trained model would not stop. Use a tokenizer whose "
            f"eos_token is {end_token!r} (tokenizer.eos_token = {end_token!r}; save it with the model)"
        )
    if generation_config is None:  # a model that does not generate (a reward model)
        return
    eos = generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    if end not in eos:
        raise UserError(
            f"{where}: the chat template ends assistant turns with {end_token!r} (id {end}) but the "
            f"generation config's eos_token_id is {eos}: generation would not stop. Add {end} to "
            "generation_config.json's eos_token_id"
        )


# ----------------------------------------------------------------------------- tracking


def _wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_mode(mode: str) -> str:
    """`auto`: WANDB_MODE if set, else online when an API key is configured, else offline."""
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if _wandb_key_configured() else "offline")


def tracking_targets(loaded: LoadedRecipe) -> list[str]:
    """TRL's `report_to`: W&B on the main process when the recipe asks for it."""
    spec = loaded.spec.tracking.wandb
    return ["wandb"] if spec is not None and spec.mode != "disabled" and is_main_process() else []


def start_tracking(loaded: LoadedRecipe, run: RunDir, resolved: dict) -> None:
    """Start W&B when the recipe asks for it (on the main process), with the resolved recipe as
    its config. Offline runs keep their files under the run directory; `wandb sync` uploads
    them later."""
    if not tracking_targets(loaded):
        return
    import wandb

    spec = loaded.spec.tracking.wandb

    mode = wandb_mode(spec.mode)
    if spec.mode == "auto" and mode == "offline" and not os.environ.get("WANDB_MODE"):
        print("posttrain: no W&B API key found; logging offline (upload later with `wandb sync`)")
    id_file = run.wandb_id
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
    write_atomic(id_file, run_id)
    try:
        wandb.init(project=spec.project, entity=spec.entity, name=spec.name or loaded.run_name,
                   group=spec.group, tags=spec.tags or None, config=resolved, dir=str(run.path),
                   mode=mode, id=run_id, resume="allow")
    except Exception as exc:  # noqa: BLE001 - wandb raises UsageError, CommError, ...
        raise UserError(f"tracking.wandb: W&B did not start ({type(exc).__name__}: {exc}); "
                        "set tracking.wandb.mode=offline to log without an account") from None


def finish_tracking(summary: dict) -> None:
    """Close the W&B run this process started, if any, with the evaluation in its summary."""
    wandb = sys.modules.get("wandb")  # never imported when tracking is off
    if wandb is not None and wandb.run is not None:
        wandb.run.summary.update(summary)
        wandb.finish()


# ----------------------------------------------------------------------------- shared steps


def lora_config(loaded: LoadedRecipe):
    """The recipe's `peft:` block as a peft.LoraConfig, or None for full fine-tuning."""
    if not loaded.spec.peft:
        return None
    from peft import LoraConfig

    from posttrain.methods import MODEL_KINDS, model_kind

    task = MODEL_KINDS[model_kind(loaded.spec.method, loaded.spec.trainer)][2]
    options = dict(loaded.spec.peft)
    if task == "TOKEN_CLS" and options.get("target_modules") == "all-linear":
        # peft trains the head whole (modules_to_save); all-linear would also put LoRA on it
        options.setdefault("exclude_modules", ["score", "classifier"])
    return LoraConfig(task_type=task, **options)  # SEQ_CLS / TOKEN_CLS: the head trains too


def check_lora_targets(loaded: LoadedRecipe, model) -> None:
    """Every module `peft.target_modules` names must exist in the model (peft raises a traceback
    at run time otherwise); 'all-linear' and regular expressions are peft's to resolve."""
    targets = (loaded.spec.peft or {}).get("target_modules")
    if not targets or isinstance(targets, str):
        return
    names = [name for name, _ in model.named_modules()]
    leaves = sorted({name.rpartition(".")[2] for name, module in model.named_modules()
                     if type(module).__name__ in ("Linear", "Conv1D", "Embedding")})
    for target in targets:
        if not any(name == target or name.endswith("." + target) for name in names):
            raise loaded.error(("peft", "target_modules"), f"'{target}' names no module of {loaded.spec.model.name_or_path}"
                               f"{did_you_mean(target, leaves)} (its layers: {', '.join(leaves)}; or all-linear)")


def source_records(sources) -> dict:
    """What the run records about each data source: fingerprint, size, records used (and,
    when decontamination ran, how many overlapped the evaluation sets and were dropped)."""
    records = {}
    for s in sources:
        records[s.label] = {"fingerprint": s.fingerprint, "records": len(s.records), "used": s.used}
        if s.instruction is not None:
            records[s.label]["instruction"] = s.instruction
        if s.skipped:
            records[s.label]["skipped_no_steps"] = s.skipped
        if s.contaminated is not None:  # decontamination checked it
            records[s.label].update(contaminated=s.contaminated, dropped=s.dropped)
    return records


def data_seed(args: dict) -> int:
    """The seed that shuffles and samples the data: TrainingArguments' data_seed, else seed."""
    return args.get("data_seed") or args.get("seed", 42)


def train_and_save(trainer, loaded: LoadedRecipe, run: RunDir, checkpoint: Path | None) -> dict:
    """Train (from the checkpoint, if resuming) and save the final model. A stop signal during
    training saves a checkpoint and raises faults.Interrupted instead (see faults.py)."""
    faults.STOP.install()
    if is_main_process():
        checkpoint_size, final_size = faults.checkpoint_bytes(trainer.model)
        faults.check_free_space(run.checkpoints, checkpoint_size + final_size, "one checkpoint plus the final model")
    spent_before = faults.completion_record(checkpoint) if checkpoint and faults.is_complete(checkpoint) else {}
    meter = budget.Meter(loaded.spec.method, loaded.spec.trainer, spent_before)
    meter.attach(trainer)
    spec = loaded.spec.run
    guard = faults.fault_callback(run.checkpoints, loaded.spec.trainer.get("save_total_limit"),
                                  spec.max_train_seconds, checkpoint, meter, spec.max_train_tokens, spec.max_train_flops)
    trainer.add_callback(guard)
    with _disk_errors_reported(run, "saving a checkpoint"), models.weights_only_loading():
        # resuming loads weights only: a planted pickle in checkpoints/ is refused (--trust-checkpoint)
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if guard.stopped_at is not None:
        name = signal_name(faults.STOP.signum)
        raise faults.Interrupted(name, guard.stopped_at, checkpoint_path(run.checkpoints, guard.stopped_at))
    with _disk_errors_reported(run, "saving final/"):
        fresh_base = None
        if loaded.spec.model.quantization is not None:  # merge into the 16-bit base, not the quantized one
            fresh_base = lambda: load_model(loaded, model_path(loaded), Device.detect())  # noqa: E731
        save_final(trainer, trainer.processing_class, run, merge_lora=loaded.spec.peft is not None,
                   fresh_base=fresh_base)
    spent = {"train_seconds": guard.spent(), **meter.spent(), "steps": trainer.state.global_step}  # across resumes
    if is_main_process():
        write_json(run.spent, spent)
    return {**result.metrics, **spent}


@contextlib.contextmanager
def _disk_errors_reported(run: RunDir, what: str):
    """A full, over-quota or read-only disk while saving: a user error that says what is kept."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        shutil.rmtree(run.final_staging, ignore_errors=True)
        last = run.last_checkpoint()
        kept = f"the last complete checkpoint, {last.name}, is kept" if last else "no checkpoint was complete"
        raise UserError(f"{run.path}: {os.strerror(exc.errno)} while {what}; {kept}. Free space, then "
                        "continue with --resume") from None


def signal_name(signum: int | None) -> str:
    import signal

    return signal.Signals(signum).name if signum else "a stop request"


# ----------------------------------------------------------------------------- saving


def zero_stage(trainer) -> int:
    """The DeepSpeed ZeRO stage the trainer runs under (0: no DeepSpeed)."""
    if not getattr(trainer, "is_deepspeed_enabled", False):
        return 0
    plugin = trainer.accelerator.state.deepspeed_plugin
    return int(plugin.zero_stage) if plugin else 0


def tied_duplicates(model) -> list[str]:
    """Names of parameters that are another parameter (tied output embeddings): a state dict
    given to save_pretrained keeps them, and a normal checkpoint stores each tensor once."""
    seen, duplicates = set(), []
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            duplicates.append(name)
        seen.add(id(param))
    return duplicates


def save_final(trainer, tokenizer, run: RunDir, merge_lora: bool, fresh_base=None) -> None:
    """Save the trained model into final/ atomically: written to final.tmp/, then renamed.

    A LoRA run saves its adapter under adapter/ and the merged model under final/, so final/
    always loads with AutoModelForCausalLM.from_pretrained. A QLoRA run (`fresh_base` given: it
    loads the base model unquantized) merges its adapter into that 16-bit base, so final/ is a
    plain model and not a quantized one.
    """
    staging = run.final_staging
    gathered = zero_stage(trainer) == 3 and not merge_lora
    state = None
    if gathered:
        # Each rank holds a shard of every parameter: all ranks join the gather (the shipped
        # configs set stage3_gather_16bit_weights_on_model_save), rank 0 gets it and writes.
        state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if trainer.is_world_process_zero():
        model = trainer.model
        if gathered:
            model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
            for name in tied_duplicates(model):
                state.pop(name, None)
        shutil.rmtree(staging, ignore_errors=True)
        if merge_lora:
            adapter = run.adapter
            shutil.rmtree(adapter, ignore_errors=True)
            model.save_pretrained(adapter)
            if fresh_base is not None:
                from peft import PeftModel

                base = fresh_base()
                if base.get_input_embeddings().weight.shape[0] != len(tokenizer):
                    base.resize_token_embeddings(len(tokenizer))  # tokens the chat template added
                model = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
            else:
                model = model.merge_and_unload()
        model.save_pretrained(staging, state_dict=state)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(run.final, ignore_errors=True)
        staging.rename(run.final)
    if gathered:
        faults.barrier()
