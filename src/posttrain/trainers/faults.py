"""Surviving the cluster: stop signals, complete checkpoints, and a disk-space preflight.

- SIGTERM or SIGUSR1 (SLURM's warning before the time limit, a preemption, `kill`): training
  stops at the end of the current step on every rank (the ranks agree through one all-reduce),
  a checkpoint is saved, and the process exits with EXIT_INTERRUPTED (75, "try again"); the run
  continues with `posttrain run RECIPE --resume`.
- A checkpoint counts only once every rank has finished writing it: rank 0 then writes its
  completion marker (rundir.py) into it. Resume loads the newest complete checkpoint and deletes
  incomplete ones (a `kill -9` in the middle of a save), so a half-written checkpoint is never
  loaded. `save_total_limit` is applied by posttrain after the marker is written, so the last
  complete checkpoint is never rotated away before its successor is complete.
- Before training starts, the free space where checkpoints go must hold one checkpoint plus
  the final model (estimated from the parameter count); otherwise the run stops with the figures.
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
from pathlib import Path

from posttrain.errors import UserError
from posttrain.trainers.budget import full_numel
from posttrain.rundir import checkpoint_path, completion_record, is_complete, mark_complete, rotate

EXIT_INTERRUPTED = 75  # EX_TEMPFAIL: interrupted on purpose; resume to continue
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, signame: str, step: int, checkpoint: Path):
        super().__init__(f"received {signame}; saved {checkpoint} at step {step}")
        self.signame, self.step, self.checkpoint = signame, step, checkpoint


class _StopRequest:
    signum: int | None = None
    training: bool = False  # between the trainer's first step and its end (the fault callback says)

    def install(self) -> None:
        """Catch the stop signals and Ctrl-C (main thread only; elsewhere the defaults stay)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)
        signal.signal(signal.SIGINT, self._interrupt)

    def _interrupt(self, signum, frame) -> None:
        """Ctrl-C during training checkpoints like SIGTERM; a second one, or one outside training,
        stops at once (KeyboardInterrupt)."""
        if not self.training or self.signum is not None:
            raise KeyboardInterrupt
        print("posttrain: Ctrl-C: saving a checkpoint at the end of this step "
              "(Ctrl-C again stops at once, without one)", file=sys.stderr, flush=True)
        self.signum = signum

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            print(f"posttrain: received {signal.Signals(signum).name}; saving a checkpoint at the end "
                  "of this step", file=sys.stderr, flush=True)
        self.signum = signum


STOP = _StopRequest()


def all_agree(flag: bool) -> bool:
    """True on every rank when it is True on any (one all-reduce; no-op in one process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def fault_callback(checkpoints: Path, save_total_limit: int | None, max_train_seconds: float | None = None,
                   resumed_from: Path | None = None, meter=None, max_train_tokens: int | None = None,
                   max_train_flops: float | None = None):
    """A TrainerCallback: stop and checkpoint on a signal; mark checkpoints complete; rotate;
    end training (not interrupt it) once `max_train_seconds` of training have passed, or the
    `meter` (trainers/budget.py) has counted `max_train_tokens` tokens or `max_train_flops` FLOPs.

    The training time, tokens and FLOPs so far are stored in each checkpoint's completion
    marker, so a resumed run spends only what is left of the budget."""
    import time

    from transformers import TrainerCallback

    spent_before = 0.0
    if resumed_from is not None and is_complete(resumed_from):
        spent_before = float(completion_record(resumed_from).get("train_seconds", 0.0))

    def budget_spent() -> str | None:
        if max_train_seconds is not None and guard.spent() >= max_train_seconds:
            return f"the time budget of {max_train_seconds:.0f} s (run.max_train_seconds)"
        if meter is not None and max_train_tokens is not None and meter.tokens() >= max_train_tokens:
            return f"the token budget of {max_train_tokens:,} (run.max_train_tokens)"
        if meter is not None and max_train_flops is not None and meter.flops() >= max_train_flops:
            return f"the compute budget of {max_train_flops:.3g} FLOPs (run.max_train_flops)"
        return None

    class Faults(TrainerCallback):
        stopped_at: int | None = None  # a stop signal ended training here
        budget_spent_at: int | None = None  # the time budget ended training here
        started = time.monotonic()

        def spent(self) -> float:
            return spent_before + time.monotonic() - self.started

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()
            STOP.training = True

        def on_train_end(self, args, state, control, **kwargs):
            STOP.training = False

        def on_step_end(self, args, state, control, **kwargs):
            if all_agree(STOP.signum is not None):
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            elif all_agree((why := budget_spent()) is not None):
                control.should_training_stop = True
                self.budget_spent_at = state.global_step
                if state.is_world_process_zero:
                    print(f"posttrain: {why or 'the budget'} is spent; "
                          f"training ends at step {state.global_step} of {state.max_steps}", flush=True)
            return control

        def on_save(self, args, state, control, **kwargs):
            barrier()  # every rank's shards, optimizer and RNG states are on disk
            if state.is_world_process_zero:
                mark_complete(checkpoint_path(checkpoints, state.global_step), state.global_step, self.spent(),
                              meter.spent() if meter is not None else None)
                rotate(checkpoints, save_total_limit)
            return control

    guard = Faults()
    return guard


def checkpoint_bytes(model) -> tuple[int, int]:
    """(bytes of one checkpoint, bytes of the final model) for `model`: weights in their dtype
    plus, for trainable parameters, Adam's two fp32 moments."""
    numel = full_numel
    weights = sum(numel(p) * p.element_size() for p in model.parameters())
    trainable = sum(numel(p) for p in model.parameters() if p.requires_grad)
    return weights + 8 * trainable, weights


def check_free_space(directory: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise UserError(f"{directory}: {free / 2**30:.2f} GiB free, but {what} needs about "
                        f"{needed / 2**30:.2f} GiB; free some space or set run.dir elsewhere")
