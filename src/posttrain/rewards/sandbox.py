"""Run untrusted Python where it can neither leave nor reach anything: bubblewrap.

Every call gets its own sandbox (`bwrap`, the tool Flatpak uses), built fresh and torn down after:

- **filesystem**: only the interpreter's own installation and /usr are visible, read-only; no
  /etc, /home, /root (but the interpreter), /work, /sys, no virtualenv, no posttrain. The working
  directory /work, /tmp and /dev/shm are private, size-limited, empty tmpfs mounts; nothing is
  shared between calls. The program's own files are copied in read-only.
- **processes**: new PID namespace with its own /proc: no trainer PID to find, no /proc/PID/mem,
  environ, cwd or ns to reach; no signals or ptrace to the outside. When the call returns (or
  the parent dies) the namespace is torn down and every process in it killed, whatever it did to
  its parent-death signal or session. The number of processes is limited (a pids cgroup as root;
  RLIMIT_NPROC for other users).
- **network**: new network namespace: no interface but its own loopback, no abstract unix
  sockets of the host, and no filesystem unix socket is visible.
- **user**: an unprivileged user (uid 65534) in a user namespace, no capabilities, no further
  user namespaces (`--disable-userns`): it cannot mount, remount, chroot or raise a limit.
- **resources**: CPU seconds, address space, file size, open files and no core dumps per
  process (rlimits set before the program runs); a memory cgroup over the whole call as root;
  wall time enforced by the parent; stdout and stderr read with a byte limit (the call is
  stopped when it is exceeded), so the caller's memory stays bounded.

Where bubblewrap is missing or cannot create its namespaces, nothing runs: `SandboxUnavailable`
says what to install. docs/rewards.md states the threat model.

`run_untrusted` runs a program to completion (stdin/stdout tests). `Candidate` keeps a program
loaded and calls its functions across a pipe with arguments and results as plain data, so that
tests can be judged in another process than the one the program controls (code.py).
"""

from __future__ import annotations

import base64
import inspect
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from posttrain.errors import UserError
from posttrain.threads import SINGLE_THREAD

NOBODY = 65534
_CGROUP_ROOT = Path("/sys/fs/cgroup")


class SandboxUnavailable(UserError):
    """The sandbox cannot run on this machine; untrusted code is then not run at all."""


# ----------------------------------------------------------------------------- plain data


def encode(value):
    """A value as plain JSON data, tagged so that it decodes to the same plain types. Anything
    but None, bool, int, float, str, bytes, complex, list, tuple, set, frozenset and dict of
    those raises TypeError: an object cannot cross (its __eq__ could say anything)."""
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        return value if abs(value) < 2 ** 53 else {"__int__": str(value)}
    if kind is float:
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if kind is list:
        return [encode(v) for v in value]
    if kind is tuple:
        return {"__tuple__": [encode(v) for v in value]}
    if kind in (set, frozenset):
        return {"__" + kind.__name__ + "__": [encode(v) for v in value]}
    if kind is dict:
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if kind is bytes:
        return {"__bytes__": base64.b64encode(value).decode()}
    if kind is complex:
        return {"__complex__": [value.real, value.imag]}
    raise TypeError(f"a {kind.__name__} is not plain data")


def decode(data):
    """The plain value `encode` wrote; anything else raises ValueError."""
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is list:
        return [decode(v) for v in data]
    if type(data) is dict and len(data) == 1:
        (tag, item), = data.items()
        if tag == "__int__" and type(item) is str:
            return int(item)
        if tag == "__float__" and item in ("nan", "inf", "-inf"):
            return float(item)
        if tag in ("__tuple__", "__set__", "__frozenset__") and type(item) is list:
            items = [decode(v) for v in item]
            return {"__tuple__": tuple, "__set__": set, "__frozenset__": frozenset}[tag](items)
        if tag == "__dict__" and type(item) is list and all(type(p) is list and len(p) == 2 for p in item):
            return {decode(k): decode(v) for k, v in item}
        if tag == "__bytes__" and type(item) is str:
            return base64.b64decode(item)
        if tag == "__complex__" and type(item) is list and len(item) == 2:
            return complex(float(item[0]), float(item[1]))
    raise ValueError("not plain data")


# ----------------------------------------------------------------------------- the child's bootstrap

# Trusted code the sandboxed interpreter runs first (it is `python -I -S -c BOOTSTRAP LIMITS`).
# In "run" mode the program then runs as __main__; in "serve" mode it is loaded and its functions
# are called on request (fd limits["requests"] in, fd limits["responses"] out). Whatever the
# program does to this code afterwards changes only its own answers.
_BOOTSTRAP = r"""
import json, os, resource, shutil, sys
limits = json.loads(sys.argv[1])
for name, value in (("RLIMIT_CPU", limits["cpu"]), ("RLIMIT_AS", limits["memory"]),
                    ("RLIMIT_FSIZE", limits["file_size"]), ("RLIMIT_NOFILE", 64), ("RLIMIT_CORE", 0)):
    resource.setrlimit(getattr(resource, name), (value, value))
if limits["nproc"]:
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
for name in os.listdir("/in"):
    if name != "program.py":
        shutil.copy("/in/" + name, name)
source = open("/in/program.py", encoding="utf-8").read()
if limits["mode"] == "run":
    sys.argv = ["program.py"]
    exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
    sys.exit(0)
"""
_SERVE = r"""
requests = os.fdopen(limits["requests"], "r", encoding="utf-8")
responses = os.fdopen(limits["responses"], "w", encoding="utf-8")
def reply(message):
    responses.write(json.dumps(message) + "\n")
    responses.flush()
namespace = {"__name__": "__main__"}
try:
    exec(compile(source, "solution.py", "exec"), namespace)
    loaded = None
except BaseException as exc:
    loaded = type(exc).__name__
names = {}
for key, value in list(namespace.items()):
    if key.startswith("__"):
        continue
    if callable(value):
        names[key] = {"callable": True}
    else:
        try:
            names[key] = {"value": encode(value)}
        except (TypeError, RecursionError):
            pass
reply({"loaded": loaded, "names": names})
for line in requests:
    request = json.loads(line)
    try:
        result = namespace[request["name"]](*decode(request["args"]), **decode(request["kwargs"]))
        reply({"value": encode(result)})
    except BaseException as exc:
        reply({"error": type(exc).__name__})
"""


# The serving child encodes and decodes with the very functions above (their source, as the
# sandbox cannot import posttrain).
_BOOTSTRAP = (_BOOTSTRAP + "import base64, math\n" + inspect.getsource(encode) + inspect.getsource(decode)
              + _SERVE)


# ----------------------------------------------------------------------------- availability


@lru_cache(maxsize=1)
def _bwrap_flags() -> tuple[str, ...]:
    """bwrap's options beyond 0.4 that this version has."""
    helped = subprocess.run(["bwrap", "--help"], capture_output=True, text=True).stdout
    return tuple(flag for flag in ("--disable-userns",) if flag in helped)


def _interpreter() -> tuple[str, str]:
    """The real interpreter (not a virtualenv's link to it) and the installation to mount."""
    executable = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.base_prefix)
    return executable, prefix


def _system_mounts() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


@lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """Why untrusted code cannot run on this machine, or None when it can (checked once)."""
    if shutil.which("bwrap") is None:
        return ("the code sandbox needs bubblewrap, which is not installed: `apt-get install bubblewrap` "
                "(Debian/Ubuntu) or your distribution's package")
    try:
        result = run_untrusted("print(6 * 7)", wall_seconds=20, _checked=True)
    except OSError as exc:
        return f"bubblewrap does not start: {exc}"
    if result.stdout.strip() != "42":
        return ("bubblewrap cannot create its namespaces here (user namespaces may be disabled: "
                f"sysctl kernel.unprivileged_userns_clone=1, or run as root): {result.stderr.strip()[-300:]}")
    return None


def require_sandbox() -> None:
    problem = sandbox_problem()
    if problem:
        raise SandboxUnavailable(problem)


# ----------------------------------------------------------------------------- cgroups (as root)


def _own_cgroup(controller: str) -> Path | None:
    """This process's cgroup directory for `controller` (v1 hierarchy or v2 unified), if writable."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            directory = _CGROUP_ROOT / controller / path.lstrip("/")
        elif controllers == "" and (_CGROUP_ROOT / "cgroup.controllers").is_file():
            if controller not in (_CGROUP_ROOT / "cgroup.controllers").read_text().split():
                continue
            directory = _CGROUP_ROOT / path.lstrip("/")
        else:
            continue
        if directory.is_dir() and os.access(directory, os.W_OK):
            return directory
    return None


class _CallGroup:
    """A pids (and memory) cgroup for one call, as root; every process of the call is in it."""

    def __init__(self, max_processes: int, memory_bytes: int):
        self.dirs: list[Path] = []
        if os.geteuid() != 0:
            return
        name = f"posttrain-sandbox-{uuid.uuid4().hex[:12]}"
        for controller, files in (("pids", {"pids.max": str(max_processes)}),
                                  ("memory", {"memory.limit_in_bytes": str(memory_bytes),
                                              "memory.max": str(memory_bytes)})):
            parent = _own_cgroup(controller)
            if parent is None:
                continue
            directory = parent / name
            try:
                directory.mkdir()
            except OSError:
                continue
            wrote = False
            for file, value in files.items():
                if (directory / file).exists():
                    try:
                        (directory / file).write_text(value)
                        wrote = True
                    except OSError:
                        pass
            if wrote:
                self.dirs.append(directory)
            else:
                directory.rmdir()

    @property
    def limits_processes(self) -> bool:
        return any((d / "pids.max").exists() for d in self.dirs)

    def wrap(self, command: list[str]) -> list[str]:
        """`command`, started by a shell that first moves itself into the cgroups."""
        if not self.dirs:
            return command
        procs = " ".join(str(d / "cgroup.procs") for d in self.dirs)
        return ["/bin/sh", "-c", f'for p in {procs}; do echo $$ > "$p" || exit 97; done; exec "$@"', "sh", *command]

    def close(self) -> None:
        for directory in self.dirs:
            for _ in range(50):
                try:
                    pids = (directory / "cgroup.procs").read_text().split()
                    for pid in pids:
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    directory.rmdir()
                    break
                except OSError:
                    time.sleep(0.02)


# ----------------------------------------------------------------------------- running


@dataclass
class SandboxResult:
    returncode: int | None  # None: stopped by the parent (wall time or output limit)
    stdout: str
    stderr: str
    isolation: str = "bubblewrap"
    timed_out: bool = False
    truncated: bool = False  # stdout or stderr went over the byte limit


@dataclass
class Limits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024  # address space per process
    file_size_mb: int = 16
    disk_mb: int = 64  # each of /work, /tmp and /dev/shm
    output_bytes: int = 1 << 20  # each of stdout and stderr
    max_processes: int = 32


def _command(limits: Limits, indir: str, mode: str, fds: tuple[int, int] = (-1, -1)) -> list[str]:
    executable, prefix = _interpreter()
    size = str(limits.disk_mb << 20)
    child = {"cpu": limits.cpu_seconds, "memory": limits.memory_mb << 20, "file_size": limits.file_size_mb << 20,
             "nproc": limits.max_processes if os.geteuid() != 0 else 0, "mode": mode,
             "requests": fds[0], "responses": fds[1]}
    return ["bwrap", "--unshare-all", *_bwrap_flags(), "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            *_system_mounts(), "--ro-bind", prefix, prefix, "--ro-bind", indir, "/in",
            "--proc", "/proc", "--dev", "/dev",
            "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/dev/shm", "--size", size, "--tmpfs", "/work",
            "--chdir", "/work", "--clearenv", "--setenv", "HOME", "/work",
            *(flag for key, value in SINGLE_THREAD.items() for flag in ("--setenv", key, value)),
            executable, "-I", "-S", "-c", _BOOTSTRAP, json.dumps(child)]


class _Output:
    """Drain a pipe on a thread, keeping at most `limit` bytes; `over` is set past the limit."""

    def __init__(self, pipe, limit: int, on_over):
        self.chunks, self.size, self.over = [], 0, False
        self.thread = threading.Thread(target=self._drain, args=(pipe, limit, on_over), daemon=True)
        self.thread.start()

    def _drain(self, pipe, limit, on_over):
        while True:
            chunk = pipe.read1(65536)  # a BufferedReader: what is there, up to 64 KiB
            if not chunk:
                break
            if self.size < limit:
                self.chunks.append(chunk[: limit - self.size])
            self.size += len(chunk)
            if self.size > limit and not self.over:
                self.over = True
                on_over()

    def text(self) -> str:
        self.thread.join(5)
        return b"".join(self.chunks).decode("utf-8", errors="replace")


class _Process:
    """One sandboxed interpreter: started in its cgroup, output drained with limits, killed whole."""

    def __init__(self, limits: Limits, program: str, files: dict[str, str] | None, mode: str,
                 pass_fds: tuple[int, int] = (-1, -1)):
        self.limits = limits
        self.indir = tempfile.mkdtemp(prefix="posttrain-sandbox-")
        os.chmod(self.indir, 0o755)
        for name, text in {**(files or {}), "program.py": program}.items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"a sandbox file is a plain name, not {name!r}")
            Path(self.indir, name).write_text(text, encoding="utf-8")
            os.chmod(Path(self.indir, name), 0o644)
        self.group = _CallGroup(limits.max_processes, (limits.memory_mb + 3 * limits.disk_mb + 64) << 20)
        command = self.group.wrap(_command(limits, self.indir, mode, pass_fds))
        self.deadline = time.monotonic() + limits.wall_seconds
        self.stopped = False
        self.popen = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env={"PATH": "/usr/bin:/bin"}, start_new_session=True,
                                      pass_fds=[fd for fd in pass_fds if fd >= 0])
        self.stdout = _Output(self.popen.stdout, limits.output_bytes, self.stop)
        self.stderr = _Output(self.popen.stderr, limits.output_bytes, self.stop)

    def stop(self) -> None:
        self.stopped = True
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # bwrap; its PID namespace dies with it
        except (ProcessLookupError, PermissionError):
            pass

    def feed(self, text: str) -> None:
        def write():
            try:
                self.popen.stdin.write(text.encode("utf-8"))
                self.popen.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        threading.Thread(target=write, daemon=True).start()

    def finish(self) -> SandboxResult:
        timed_out = False
        try:
            self.popen.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
        self.close()
        over = self.stdout.over or self.stderr.over
        code = None if timed_out or (self.stopped and over) else self.popen.returncode
        stderr = self.stderr.text() + ("\nkilled at the wall-time limit" if timed_out else "")
        return SandboxResult(code, self.stdout.text(), stderr, timed_out=timed_out, truncated=over)

    def close(self) -> None:
        self.stop()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.group.close()
        shutil.rmtree(self.indir, ignore_errors=True)


def run_untrusted(program: str, *, stdin: str = "", wall_seconds: float = 10.0, cpu_seconds: int = 10,
                  memory_mb: int = 1024, file_size_mb: int = 16, disk_mb: int = 64, output_bytes: int = 1 << 20,
                  max_processes: int = 32, files: dict[str, str] | None = None, _checked: bool = False) -> SandboxResult:
    """Run `program` (Python source) to completion in a fresh sandbox; `files` are copied into
    its working directory. Raises SandboxUnavailable where the sandbox cannot run."""
    if not _checked:
        require_sandbox()
    limits = Limits(wall_seconds, cpu_seconds, memory_mb, file_size_mb, disk_mb, output_bytes, max_processes)
    process = _Process(limits, program, files, "run")
    process.feed(stdin)
    return process.finish()


# ----------------------------------------------------------------------------- calling a program's functions


class CandidateError(Exception):
    """A call into the sandboxed program failed: it raised, returned something that is not plain
    data, answered out of protocol, or ran out of time."""


class Candidate:
    """A program loaded in a sandbox whose functions the caller invokes across a pipe:

        with Candidate(source, Limits(wall_seconds=5)) as candidate:
            candidate.names            # {name: {"callable": True} | {"value": plain}}
            candidate.call("add", [1, 2], {})   # -> 3, or raises CandidateError

    Arguments and results cross as plain data (`encode` / `decode`), so nothing the program does
    inside its own interpreter can reach the caller's."""

    def __init__(self, program: str, limits: Limits, response_bytes: int = 1 << 20):
        require_sandbox()
        self.limits, self.response_bytes = limits, response_bytes
        to_child, self._requests = os.pipe()
        self._responses, from_child = os.pipe()
        try:
            self.process = _Process(limits, program, None, "serve", (to_child, from_child))
        finally:
            os.close(to_child)
            os.close(from_child)
        self.process.feed("")
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._responses, selectors.EVENT_READ)
        self._buffer = b""
        hello = self._read()
        if not isinstance(hello, dict) or not isinstance(hello.get("names"), dict):
            raise CandidateError("the program did not load")
        self.load_error = hello.get("loaded")
        self.names = hello["names"]

    def _read(self):
        while b"\n" not in self._buffer:
            remaining = self.process.deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise CandidateError("out of time")
            chunk = os.read(self._responses, 65536)
            if not chunk:
                raise CandidateError("the program stopped")
            self._buffer += chunk
            if len(self._buffer) > self.response_bytes:
                raise CandidateError("an answer over the size limit")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            raise CandidateError("an answer that is not JSON") from None

    def call(self, name: str, args: list, kwargs: dict):
        try:
            request = json.dumps({"name": name, "args": encode(list(args)), "kwargs": encode(dict(kwargs))})
        except TypeError as exc:
            raise CandidateError(f"an argument is not plain data ({exc})") from None
        try:
            os.write(self._requests, (request + "\n").encode())
        except OSError:
            raise CandidateError("the program stopped") from None
        answer = self._read()
        if not isinstance(answer, dict) or len(answer) != 1:
            raise CandidateError("an answer out of protocol")
        if "error" in answer:
            raise CandidateError(f"the program raised {answer['error']}")
        try:
            return decode(answer.get("value"))
        except ValueError:
            raise CandidateError("an answer that is not plain data") from None

    def close(self) -> SandboxResult:
        for fd in (self._requests, self._responses):
            try:
                os.close(fd)
            except OSError:
                pass
        self._selector.close()
        return self.process.finish()

    def __enter__(self) -> "Candidate":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
