"""Run a function over many items in worker processes, each item bounded in time, from any
thread or process.

math-verify bounds its own time with `signal.alarm`, which works only on the main thread, and
TRL runs async reward functions on a worker thread. A child process can be stopped from
anywhere: `BoundedPool.map(fn, items)` hands the items out to up to `processes` workers, which
answer item by item; a worker whose current item runs past `seconds` is killed, that item is
reported as a timeout, and a fresh worker takes over the rest of its share. So one call uses
every core it is given, and no item, however pathological, holds a call for longer than its
bound.

The workers are plain child interpreters started with `subprocess`, not `multiprocessing`: they
fork no threaded parent (torch, tokenizers), and they also work inside daemonic processes such
as `multiprocessing.Pool` workers, which may not have multiprocessing children. Work travels to
them pickled over stdin (the caller's own functions and data: the function must be importable by
name); what comes back is never unpickled: each reply is JSON of plain data (sandbox.encode /
decode), so a worker that something took over can send wrong numbers at most, never code. Each
worker is single-threaded (OMP/MKL threads 1) and runs with a scrubbed environment: the locale,
paths and caches it needs (WORKER_ENV), none of the caller's tokens or keys.

These workers are for functions that treat a model's text as data (math-verify's parsers, the
IFEval checks, reasoning-gym scorers that only compare). A scorer that may evaluate text runs in
the sandbox instead (rewards/gym.py, docs/rewards.md).
"""

from __future__ import annotations

import json
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

from posttrain.rewards.sandbox import decode, encode
from posttrain.threads import cores_per_rank, single_thread_env

_SERVE = "from posttrain.rewards.bounded import serve; serve()"
_HEADER = struct.Struct("<I")
STARTUP_SECONDS = 60.0


MAX_REPLY = 1 << 20  # bytes of one reply frame
# What a worker inherits of the caller's environment: nothing else (no tokens, no keys).
WORKER_ENV = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "NLTK_DATA",
              "POSTTRAIN_CACHE", "XDG_CACHE_HOME", "PYTHONHASHSEED")


def _frame(obj) -> bytes:
    """A request: the caller's own function and data."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _reply_frame(batch: int, status: str, value) -> bytes:
    """A reply, as plain data: a value that is not plain data is reported as an error."""
    try:
        data = json.dumps([batch, status, encode(value)]).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        data = json.dumps([batch, "error", f"a result that is not plain data ({exc})"]).encode()
    return _HEADER.pack(len(data)) + data


def _parse_reply(data: bytes):
    """(batch, status, value) from a reply frame; ValueError for anything out of protocol."""
    try:
        batch, status, value = json.loads(data)
        value = decode(value)
    except Exception:  # noqa: BLE001 - whatever it is, it is not a reply
        raise ValueError("a reply out of protocol") from None
    if type(batch) is not int or status not in ("start", "ok", "error"):
        raise ValueError("a reply out of protocol")
    if status == "error":
        value = str(value)[:500]
    return batch, status, value


def worker_env() -> dict:
    """The scrubbed environment of a worker (WORKER_ENV), importing what this process imports."""
    base = {key: os.environ[key] for key in WORKER_ENV if key in os.environ}
    return single_thread_env(dict(base, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))


def _read_exactly(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def serve() -> None:
    """A worker's loop: read (batch, fn, [args, ...]); answer ("start") once it is ready, then
    each item as ("ok", result) or ("error", message), one frame per item as soon as it is
    done, every frame tagged with its batch (so a late frame is never taken for another's)."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints from the function must not corrupt the channel
    warmed: dict = {}
    while True:
        try:
            (size,) = _HEADER.unpack(_read_exactly(stdin, _HEADER.size))
            batch, fn, items = pickle.loads(_read_exactly(stdin, size))
        except (EOFError, KeyboardInterrupt):
            return
        if not warmed.get(fn):
            # A fresh worker's first call imports lazily (sympy's parsers, nltk's data): it is
            # made once, outside the items' bound, with the function's own `warm_args`.
            warm_args = getattr(fn, "warm_args", None)
            if warm_args is not None:
                try:
                    fn(*warm_args)
                except Exception:  # noqa: BLE001 - the items will report it
                    pass
            warmed[fn] = True
        stdout.write(_reply_frame(batch, "start", None))  # imported and warm: the items' time starts now
        stdout.flush()
        for args in items:
            try:
                reply = _reply_frame(batch, "ok", fn(*args))
            except BaseException as exc:  # noqa: BLE001 - reported to the caller, who decides
                reply = _reply_frame(batch, "error", f"{type(exc).__name__}: {exc}")
            stdout.write(reply)
            stdout.flush()


def default_processes() -> int:
    """The cores this process may run on, shared with the other ranks on this node (torchrun
    and accelerate set LOCAL_WORLD_SIZE)."""
    return cores_per_rank()


class _Worker:
    def __init__(self):
        env = worker_env()
        self.process = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.fd = self.process.stdout.fileno()
        self.buffer = bytearray()
        self.pending: deque[int] = deque()  # indices of the items it was given, in order
        self.deadline = 0.0
        self.batch = 0

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, fn, indices: list[int], items: Sequence[tuple], seconds: float) -> bool:
        self.batch += 1
        self.pending = deque(indices)
        # Until the worker says it has started (a fresh one imports the function's module
        # first), it is given STARTUP_SECONDS more; the items' own bound starts then.
        self.deadline = time.monotonic() + seconds + STARTUP_SECONDS
        try:
            self.process.stdin.write(_frame((self.batch, fn, [tuple(items[i]) for i in indices])))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def replies(self) -> list | None:
        """The complete replies that have arrived (None when the worker has gone)."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            return None
        self.buffer += chunk
        out = []
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if size > MAX_REPLY:
                return None  # out of protocol: treated as a worker that died
            if len(self.buffer) < _HEADER.size + size:
                break
            try:
                batch, status, value = _parse_reply(bytes(self.buffer[_HEADER.size : _HEADER.size + size]))
            except ValueError:
                return None
            del self.buffer[: _HEADER.size + size]
            if batch == self.batch:  # frames of an earlier batch (a warm-up) are not answers
                out.append((status, value))
        return out

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class BoundedPool:
    """`map(fn, items)` -> one ("ok", result) | ("error", message) | ("timeout", None) per item.

    `seconds` bounds each item; `processes` caps the workers (default: the cores available).
    Workers are started on first use and kept for the next call. Thread-safe (calls queue).
    """

    def __init__(self, seconds: float, processes: int | None = None):
        self.seconds = float(seconds)
        self.processes = max(1, int(processes or default_processes()))
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def _take(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive():
                return worker
            worker.stop()
        return _Worker()

    def map(self, fn: Callable, items: Sequence[tuple]) -> list[tuple[str, Any]]:
        n = len(items)
        results: list[tuple[str, Any] | None] = [None] * n
        if n == 0:
            return []
        with self._lock:
            workers = min(self.processes, n)
            # Several small shares per worker, so a slow share does not leave the others idle.
            share = max(1, -(-n // (workers * 4)))
            queue = deque(list(range(i, min(i + share, n))) for i in range(0, n, share))
            busy: dict[int, _Worker] = {}

            def hand_out(worker: _Worker) -> None:
                while queue:
                    indices = queue.popleft()
                    if worker.send(fn, indices, items, self.seconds):
                        busy[worker.fd] = worker
                        return
                    worker.stop()  # it died between calls: a fresh one takes the share
                    worker = _Worker()
                self._idle.append(worker)

            def restart(worker: _Worker) -> None:
                """Replace a stopped or stuck worker; what it had not done goes back first."""
                del busy[worker.fd]
                rest = list(worker.pending)
                worker.stop()
                if rest:
                    queue.appendleft(rest)
                if queue:
                    hand_out(_Worker())
                else:  # a replacement warms up now, so the next call does not wait for it
                    fresh = _Worker()
                    if fresh.send(fn, [], [], self.seconds):
                        self._idle.append(fresh)

            for _ in range(workers):
                if queue:
                    hand_out(self._take())
            while busy:
                timeout = max(0.0, min(w.deadline for w in busy.values()) - time.monotonic())
                ready, _, _ = select.select(list(busy), [], [], timeout)
                for fd in ready:
                    worker = busy[fd]
                    replies = worker.replies()
                    if replies is None:  # it died on its current item (memory, a signal)
                        results[worker.pending.popleft()] = ("error", "the worker process died")
                        restart(worker)
                        continue
                    for reply in replies:
                        if reply[0] != "start":
                            results[worker.pending.popleft()] = reply
                    if replies:
                        worker.deadline = time.monotonic() + self.seconds
                    if not worker.pending:
                        del busy[fd]
                        hand_out(worker)
                now = time.monotonic()
                for worker in [w for w in busy.values() if w.deadline <= now]:
                    results[worker.pending.popleft()] = ("timeout", None)
                    restart(worker)
        return results  # type: ignore[return-value]

    def warm(self, fn: Callable, *args) -> None:
        """Start the workers now, import `fn`'s module in them and (given `args`) call it once,
        so that the first real items are not kept waiting for imports."""
        with self._lock:
            workers = [w for w in self._idle if w.alive()]
            workers += [_Worker() for _ in range(self.processes - len(workers))]
            self._idle = []
            for worker in workers:
                worker.send(fn, [0] if args else [], [args], self.seconds)
            for worker in workers:
                expected, got = 2 if args else 1, 0  # its start frame, and the one result
                while got < expected:
                    replies = worker.replies()
                    if replies is None:
                        break
                    got += len(replies)
                worker.pending.clear()
                self._idle.append(worker)

    def close(self) -> None:
        with self._lock:
            for worker in self._idle:
                worker.stop()
            self._idle.clear()


def call_bounded(pool: BoundedPool, fn: Callable, *args) -> tuple[str, Any]:
    """One item through `pool`."""
    return pool.map(fn, [args])[0]
