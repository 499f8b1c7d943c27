"""How many CPU threads posttrain's processes use: one place for the fact.

Two torch processes that each take every core thrash (a 10x slowdown was measured on 2 cores),
and torch counts the machine's cores, not the ones this process may use. So:

- the trainer (and `posttrain eval`, `posttrain data ...`) sets torch's threads to the cores this
  process may run on (CPU affinity, and a cgroup CPU quota where one is set), shared with the
  other ranks on the node (LOCAL_WORLD_SIZE, set by torchrun and accelerate), and says so;
  OMP_NUM_THREADS, where the user (or torchrun) set it, wins;
- helper processes (reward workers, the code sandbox) run with one thread each
  (`single_thread_env`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "NUMEXPR_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def single_thread_env(base: dict | None = None) -> dict:
    """An environment for a helper process: `base` (default: this one's) with one thread."""
    return {**(os.environ if base is None else base), **SINGLE_THREAD}


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The cgroup's CPU quota in cores (cgroup v2 cpu.max, or v1 cfs quota / period); None if
    unlimited or unknown."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def local_ranks() -> int:
    """Processes on this node (torchrun and accelerate set LOCAL_WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def cores_per_rank() -> int:
    return max(1, available_cores() // local_ranks())


def configure_threads(quiet: bool = False) -> int:
    """Set torch's intra-op threads for this process and say how many; returns the number."""
    import torch

    cores, ranks = available_cores(), local_ranks()
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        threads, why = int(given), "OMP_NUM_THREADS"
    else:
        threads, why = max(1, cores // ranks), f"{cores} cores available" + (f", {ranks} processes on this node" if ranks > 1 else "")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if not quiet and os.environ.get("RANK", "0") in ("0", ""):
        print(f"posttrain: {threads} CPU thread{'s' if threads != 1 else ''} per process ({why})")
    return threads
