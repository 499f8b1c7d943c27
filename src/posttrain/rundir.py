"""The run directory: every artefact's path, checkpoint completion, atomic writes, and which
process writes. Nothing else in posttrain spells an artefact's name.

    runs/<name>/recipe.resolved.yaml  the recipe, every default filled in; its trainer: block is
                                      exactly the arguments TRL's config was built with
                env.json              package versions, git commit, host, device, data fingerprints
                metrics.jsonl         one line per logging step
                checkpoints/          TRL checkpoints; complete ones hold posttrain-complete.json
                final/                the trained model (adapter/ beside it for LoRA runs)
                eval/                 report.json, report.md, samples.jsonl, baseline.json
                stage.json            a pipeline stage's summary row
    runs/<pipeline>/summary.{json,md} and runs/<experiment>/comparison.{json,md,png}, trees.{jsonl,json}

Imports nothing from posttrain but its errors: every layer may use it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from posttrain.errors import UserError

COMPLETE = "posttrain-complete.json"
MARKER = ".posttrain-run"  # in every directory posttrain made for a run, a pipeline or an experiment
LOCK = ".posttrain.lock"  # held while a run, pipeline or experiment is running there


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old content or the new, never half of it. The
    temporary file gets a fresh name and is created exclusively without following a link, so
    nothing planted beside the file (a `.NAME.tmp` symlink) is written through; the rename
    replaces a link at `path` itself, never its target."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, value) -> None:
    write_atomic(path, json.dumps(value, indent=2) + "\n")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def holds_model(directory: Path) -> bool:
    """A saved model directory (from_pretrained loads it): its config.json is there."""
    return (Path(directory) / "config.json").is_file()


def run_path(run_dir: str, name: str) -> Path:
    """Where a run named `name` under `run.dir` lives (the one place this is computed)."""
    return Path(run_dir) / name


def has_control(text: str) -> bool:
    """Whether `text` holds a control character (a newline, a carriage return, a tab, NUL, ...)."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a run (or a stage) inside run.dir, or None: it must be a name or a
    relative path that stays inside run.dir, so that no run writes or deletes outside it."""
    if has_control(name):
        return f"{name!r} holds a control character (a newline, a tab, ...); a run's name is one plain line"
    path = PurePosixPath(name.replace("\\", "/"))
    if not name.strip() or path.is_absolute() or name.startswith("~"):
        return f"'{name}' is not a name inside run.dir (use a plain name such as my-run, or set run.dir)"
    if any(part in ("..", ".") for part in PurePosixPath(name).parts) or name.strip() in (".", ""):
        return f"'{name}' leaves run.dir or names it itself; use a plain name such as my-run"
    return None


# ----------------------------------------------------------------------------- ownership and locks


def mark_as_run_directory(path: Path) -> None:
    """Mark `path` as posttrain's, so that --overwrite may remove it later (rank 0)."""
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.is_file():
        marker.write_text("a directory posttrain made; `posttrain run --overwrite` may remove it\n")


def remove_run_directory(path: Path) -> None:
    """--overwrite: remove `path`, but only a directory posttrain marked as its own."""
    if not path.exists():
        return
    if not any(child.name != LOCK for child in path.iterdir()):
        return  # nothing but the lock this process just took: a new directory, nothing to remove
    if not (path / MARKER).is_file():
        raise UserError(f"{path}: --overwrite removes only directories posttrain made (they hold {MARKER}); "
                        "this one does not: remove it yourself, or choose another run.name / run.dir")
    for child in path.iterdir():  # all but the lock this process holds there
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """One process at a time in a run directory: a second `posttrain run` on it fails at once,
    naming the holder. A lock left by a dead process on this host, or by an earlier run of the
    same SLURM job (a requeued job), is taken over. Only the main process locks."""

    def __init__(self, directory: Path):
        self.path = directory / LOCK
        self.held = False

    def _owner(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                "slurm_restart": os.environ.get("SLURM_RESTART_COUNT", "0")}

    def _stale(self, holder: dict) -> bool:
        """A holder that is certainly gone: a process on this host that no longer runs, or an
        earlier start of this same SLURM job (a requeued job: its restart count is lower). Two
        runs in one allocation share the job id but not the restart count: the live one holds."""
        me = self._owner()
        try:
            earlier = int(holder.get("slurm_restart") or 0) < int(me["slurm_restart"] or 0)
        except ValueError:
            earlier = False
        if holder.get("slurm_job_id") and holder.get("slurm_job_id") == me["slurm_job_id"] and earlier:
            return True
        try:
            pid = int(holder.get("pid", 0))
        except (TypeError, ValueError):
            return False
        return holder.get("host") == me["host"] and pid > 0 and not _alive(pid)

    def acquire(self) -> "RunLock":
        if not is_main_process():
            return self
        for _ in range(2):
            # The lock appears with its owner already in it (written aside, then hard-linked into
            # place, which fails if it exists): a second process never sees it empty and never
            # takes an empty lock for a stale one.
            staged = self.path.with_name(f"{LOCK}.{os.getpid()}.tmp")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                blocker = next((p for p in [self.path.parent, *self.path.parent.parents] if p.exists() and not p.is_dir()),
                               self.path.parent)
                raise UserError(f"run directory {self.path.parent}: {blocker} is a file, not a directory; "
                                "choose another run.dir or run.name") from None
            except OSError as exc:
                raise UserError(f"run directory {self.path.parent}: cannot write there: {exc.strerror or exc}") from None
            try:
                staged.write_text(json.dumps(self._owner()) + "\n")
                os.link(staged, self.path)
            except FileExistsError:
                try:
                    holder = json.loads(self.path.read_text() or "{}")
                except (OSError, json.JSONDecodeError):
                    holder = {}
                if holder and not self._stale(holder):
                    raise UserError(f"{self.path.parent} is in use by posttrain process {holder.get('pid')} on "
                                    f"{holder.get('host')}; wait for it to finish (if that process is gone, "
                                    f"delete {self.path})") from None
                self.path.unlink(missing_ok=True)  # stale (or left half-written by an older version)
                continue
            except OSError as exc:
                raise UserError(f"run directory {self.path.parent}: cannot write there: {exc.strerror or exc}") from None
            finally:
                staged.unlink(missing_ok=True)
            self.held = True
            return self
        raise UserError(f"{self.path}: could not take the run directory's lock")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ----------------------------------------------------------------------------- checkpoints


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE).is_file()


def mark_complete(checkpoint: Path, step: int, train_seconds: float | None = None, spent: dict | None = None) -> None:
    """The completion marker: the step, the training time so far and what else was spent
    (`spent`: trained tokens and estimated FLOPs), so a resumed run counts on from there."""
    record = {"step": step} if train_seconds is None else {"step": step, "train_seconds": round(train_seconds, 3)}
    record.update(spent or {})
    write_atomic(checkpoint / COMPLETE, json.dumps(record) + "\n")


def completion_record(checkpoint: Path) -> dict:
    return json.loads((checkpoint / COMPLETE).read_text())


def checkpoints_by_step(directory: Path) -> list[tuple[int, Path]]:
    found = [(int(p.name.rpartition("-")[2]), p) for p in directory.glob("checkpoint-*")
             if p.is_dir() and p.name.rpartition("-")[2].isdigit()]
    return sorted(found)


def checkpoint_path(checkpoints: Path, step: int) -> Path:
    """Where TRL saves the checkpoint of `step`."""
    return checkpoints / f"checkpoint-{step}"


def checkpoint_step(checkpoint: Path | None) -> int:
    return int(checkpoint.name.rpartition("-")[2]) if checkpoint else 0


def _prunable(directory: Path, path: Path) -> bool:
    """Whether posttrain may delete the checkpoint `path` of `directory` (a run's checkpoints/):
    only a real directory inside the run directory, never through a symlink out of it (a
    checkpoints/ linked to scratch, a checkpoint-N linked elsewhere)."""
    root = os.path.realpath(directory.parent)
    inside = os.path.realpath(path).startswith(root + os.sep)
    if path.is_symlink() or directory.is_symlink() or not inside:
        print(f"posttrain: not removing {path}: it lies outside the run directory, through a symbolic link")
        return False
    return True


def remove_incomplete(directory: Path) -> list[Path]:
    """Delete checkpoints that never got their completion marker (rank 0 only); never through
    a symlink out of the run directory (`_prunable`)."""
    removed = [p for _, p in checkpoints_by_step(directory) if not is_complete(p) and _prunable(directory, p)]
    for path in removed:
        print(f"posttrain: removing incomplete checkpoint {path} (interrupted while it was written)")
        shutil.rmtree(path, ignore_errors=True)
    return removed


def rotate(directory: Path, limit: int | None) -> None:
    """Keep the newest `limit` complete checkpoints."""
    if not limit:
        return
    complete = [p for _, p in checkpoints_by_step(directory) if is_complete(p)]
    for path in complete[:-limit]:
        if _prunable(directory, path):
            shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunDir:
    """One run's directory; a pipeline's or experiment's top directory is one too for what a
    SLURM job writes there (the job script and its log)."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def final_staging(self) -> Path:
        return self.path / "final.tmp"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    def sampled_trees(self, index: int) -> Path:
        """The reasoning trees a run sampled for its index-th `build_trees:` source."""
        return self.path / "trees" / f"source-{index}.jsonl"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def spent(self) -> Path:
        """What training spent: seconds, tokens, estimated FLOPs, steps (trainers/budget.py)."""
        return self.path / "spent.json"

    @property
    def lock(self) -> RunLock:
        return RunLock(self.path)

    @property
    def resolved_recipe(self) -> Path:
        return self.path / "recipe.resolved.yaml"

    @property
    def previous_recipe(self) -> Path:
        """The resolved recipe a run had before it was resumed with --allow-changes."""
        return self.path / "recipe.resolved.before-resume.yaml"

    @property
    def env(self) -> Path:
        return self.path / "env.json"

    @property
    def wandb_id(self) -> Path:
        return self.path / "wandb_id"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def stage_record(self) -> Path:
        return self.path / "stage.json"

    @property
    def slurm_script(self) -> Path:
        return self.path / "slurm" / "job.sbatch"

    def slurm_log(self, job: str) -> Path:
        return self.path / f"slurm-{job}.out"

    @property
    def finished(self) -> bool:
        """final/ holds a saved model (written last, by a rename, so it is whole)."""
        return holds_model(self.final)

    @property
    def evaluated(self) -> bool:
        """Finished, and its evaluation report written."""
        return self.finished and EvalDir(self.eval_dir).report.is_file()

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint that every rank finished writing."""
        complete = [p for _, p in checkpoints_by_step(self.checkpoints) if is_complete(p)]
        return complete[-1] if complete else None


@dataclass(frozen=True)
class EvalDir:
    """An evaluation's output: the run's eval/, or wherever `posttrain eval --output` says."""

    path: Path

    @property
    def report(self) -> Path:
        return self.path / "report.json"

    @property
    def report_markdown(self) -> Path:
        return self.path / "report.md"

    @property
    def samples(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def baseline(self) -> Path:
        return self.path / "baseline.json"

    @property
    def baseline_samples(self) -> Path:
        return self.path / "baseline_samples.jsonl"

    @property
    def test_time(self) -> Path:
        return self.path / "test_time.json"

    @property
    def test_time_markdown(self) -> Path:
        return self.path / "test_time.md"

    @property
    def test_time_plot(self) -> Path:
        return self.path / "test_time.png"

    @property
    def test_time_questions(self) -> Path:
        return self.path / "test_time.jsonl"


@dataclass(frozen=True)
class GroupDir:
    """The directory of a pipeline or an experiment: one RunDir per stage, and its summaries."""

    path: Path

    def stage(self, name: str) -> RunDir:
        return RunDir(self.path / name)

    @property
    def lock(self) -> RunLock:
        return RunLock(self.path)

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def summary_markdown(self) -> Path:
        return self.path / "summary.md"

    @property
    def comparison(self) -> Path:
        return self.path / "comparison.json"

    @property
    def comparison_markdown(self) -> Path:
        return self.path / "comparison.md"

    @property
    def comparison_plot(self) -> Path:
        return self.path / "comparison.png"

    @property
    def trees(self) -> Path:
        return self.path / "trees.jsonl"

    @property
    def trees_stats(self) -> Path:
        return self.path / "trees.json"


def prepare(run: RunDir, resume: bool, overwrite: bool) -> Path | None:
    """Create (or reopen) a run directory; returns the checkpoint to resume from.

    A finished run is never overwritten unless asked; an unfinished one with checkpoints needs
    --resume (continue) or --overwrite (start over), so no work is lost by accident.
    """
    if overwrite and is_main_process():
        remove_run_directory(run.path)
    checkpoint = run.last_checkpoint() if run.path.exists() else None
    where = f"run directory {run.path}"
    if run.finished and not overwrite:
        raise UserError(f"{where} holds a finished run; pass --overwrite to replace it, "
                        "or choose another name with run.name=NAME")
    if checkpoint and not resume:
        raise UserError(f"{where} holds an unfinished run (last checkpoint: {checkpoint.name}); "
                        "pass --resume to continue it or --overwrite to start over")
    if resume and checkpoint is None:
        print(f"posttrain: no checkpoint in {run.checkpoints}; starting from the beginning")
    if is_main_process():
        try:
            run.checkpoints.mkdir(parents=True, exist_ok=True)
            mark_as_run_directory(run.path)
            probe = run.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"{where}: cannot write there: {exc.strerror or exc}") from None
        remove_incomplete(run.checkpoints)
    return checkpoint
