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
import glob
import inspect
import json
import math
import os
import platform
import select
import selectors
import shutil
import signal
import site
import struct
import subprocess
import sys
import sysconfig
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


def _unflooded(items):
    """`items`, unless more than 32 of them share one hash: values built to collide would make
    building the set or dict quadratic (a reply `encode` wrote never has equal members)."""
    if len(items) > 32:
        counts = {}
        for item in items:
            try:
                key = hash(item)
            except TypeError:
                raise ValueError("not plain data") from None
            counts[key] = counts.get(key, 0) + 1
            if counts[key] > 32:
                raise ValueError("not plain data: values built to collide in hashing")
    return items


def decode(data):
    """The plain value `encode` wrote; anything else raises ValueError. Linear in the size of
    the data: members that collide in hashing are refused (`_unflooded`)."""
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
            if tag == "__tuple__":
                return tuple(items)
            return {"__set__": set, "__frozenset__": frozenset}[tag](_unflooded(items))
        if tag == "__dict__" and type(item) is list and all(type(p) is list and len(p) == 2 for p in item):
            pairs = [(decode(k), decode(v)) for k, v in item]
            _unflooded([k for k, _ in pairs])
            return dict(pairs)
        if tag == "__bytes__" and type(item) is str:
            return base64.b64decode(item)
        if tag == "__complex__" and type(item) is list and len(item) == 2:
            return complex(float(item[0]), float(item[1]))
    raise ValueError("not plain data")


# ----------------------------------------------------------------------------- the child's bootstrap

# Trusted code the sandboxed interpreter runs first (it is `python -I -S -c BOOTSTRAP LIMITS`).
# It reads the program and its files from a pipe (limits["input"]; no directory of the host is
# shared), sets the limits, and hides the host's view: in "run" mode the program then runs as
# __main__; in "serve" mode it is loaded (as the module `solution`, so a `__main__` block does not
# run) and its functions are called on request (fd limits["requests"] in, fd limits["responses"]
# out). Whatever the program does to this code afterwards changes only its own answers.
_BOOTSTRAP = r"""
import json, os, resource, sys
limits = json.loads(sys.argv[1])
with os.fdopen(limits["input"], "rb") as stream:
    payload = json.loads(stream.read().decode("utf-8"))
for name, value in (("RLIMIT_CPU", limits["cpu"]), ("RLIMIT_AS", limits["memory"]),
                    ("RLIMIT_FSIZE", limits["file_size"]), ("RLIMIT_NOFILE", 64), ("RLIMIT_CORE", 0)):
    resource.setrlimit(getattr(resource, name), (value, value))
if limits["nproc"]:
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
for name, text in payload["files"].items():
    with open(name, "w", encoding="utf-8") as out:
        out.write(text)
source = payload["program"]
del payload
sys.path.extend(limits["paths"])
if limits["mode"] == "run":
    sys.argv = ["program.py", *limits["argv"]]
    exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
    sys.exit(0)
"""
_SERVE = r"""
requests = os.fdopen(limits["requests"], "r", encoding="utf-8")
responses = os.fdopen(limits["responses"], "w", encoding="utf-8")
def reply(message):
    responses.write(json.dumps(message) + "\n")
    responses.flush()
namespace = {"__name__": "solution"}
try:
    exec(compile(source, "solution.py", "exec"), namespace)
    loaded = None
except BaseException as exc:
    loaded = type(exc).__name__
names = {}
for key, value in list(namespace.items()):
    if key.startswith("__"):
        continue
    if type(value) is type(sys):
        names[key] = {"module": str(getattr(value, "__name__", ""))}
    elif callable(value):
        names[key] = {"callable": True}
    else:
        try:
            names[key] = {"value": encode(value)}
        except (TypeError, RecursionError):
            pass
reply({"loaded": loaded, "names": names})
for line in requests:
    try:
        request = json.loads(line)
        result = namespace[request["name"]](*decode(request["args"]), **decode(request["kwargs"]))
        reply({"value": encode(result)})
    except BaseException as exc:
        reply({"error": type(exc).__name__})
"""


# The serving child encodes and decodes with the very functions above (their source, as the
# sandbox cannot import posttrain).
_BOOTSTRAP = (_BOOTSTRAP + "import base64, math\n" + inspect.getsource(encode) + inspect.getsource(_unflooded)
              + inspect.getsource(decode) + _SERVE)


# ----------------------------------------------------------------------------- the syscall filter

# Syscalls a program has no use for and that reach state outside its namespaces: the kernel
# keyrings (not namespaced), ptrace and cross-process memory, io_uring, userfaultfd,
# perf_event_open, bpf, module and kexec loading, mounts and namespaces. Each fails with EPERM.
DENIED_SYSCALLS = ("add_key", "request_key", "keyctl", "ptrace", "process_vm_readv", "process_vm_writev",
                   "kcmp", "pidfd_getfd", "process_madvise", "io_uring_setup", "io_uring_enter",
                   "io_uring_register", "userfaultfd", "perf_event_open", "bpf", "kexec_load",
                   "kexec_file_load", "init_module", "finit_module", "delete_module", "setns", "unshare",
                   "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
                   "mount_setattr", "open_by_handle_at", "name_to_handle_at", "fanotify_init", "syslog",
                   "acct", "swapon", "swapoff", "reboot", "quotactl", "personality")
_SYSCALLS = {  # (AUDIT_ARCH_*, numbers); from the kernel's unistd tables
    "x86_64": (0xC000003E, {
        "add_key": 248, "request_key": 249, "keyctl": 250, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438, "process_madvise": 440, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "userfaultfd": 323, "perf_event_open": 298, "bpf": 321,
        "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
        "setns": 308, "unshare": 272, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
        "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsmount": 432, "mount_setattr": 442,
        "open_by_handle_at": 304, "name_to_handle_at": 303, "fanotify_init": 300, "syslog": 103, "acct": 163,
        "swapon": 167, "swapoff": 168, "reboot": 169, "quotactl": 179, "personality": 135}),
    "aarch64": (0xC00000B7, {
        "add_key": 217, "request_key": 218, "keyctl": 219, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "kcmp": 272, "pidfd_getfd": 438, "process_madvise": 440, "io_uring_setup": 425,
        "io_uring_enter": 426, "io_uring_register": 427, "userfaultfd": 282, "perf_event_open": 241, "bpf": 280,
        "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273, "delete_module": 106,
        "setns": 268, "unshare": 97, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
        "move_mount": 429, "open_tree": 428, "fsopen": 430, "fsmount": 432, "mount_setattr": 442,
        "open_by_handle_at": 265, "name_to_handle_at": 264, "fanotify_init": 262, "syslog": 116, "acct": 89,
        "swapon": 224, "swapoff": 225, "reboot": 142, "quotactl": 60, "personality": 92}),
}


@lru_cache(maxsize=1)
def seccomp_filter() -> bytes | None:
    """The classic-BPF program bwrap installs (`--seccomp FD`): the DENIED_SYSCALLS fail with
    EPERM, as does every call through another ABI (x32, i386 on x86_64); None where this
    machine's architecture is not one the table knows."""
    machine = platform.machine().lower()
    arch, numbers = _SYSCALLS.get({"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine), (None, None))
    if arch is None:
        return None
    deny = 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
    program = [(0x20, 0, 0, 4), (0x15, 1, 0, arch), (0x06, 0, 0, deny),  # ld arch; jeq; ret deny
               (0x20, 0, 0, 0)]  # ld nr
    if arch == 0xC000003E:
        program += [(0x35, 0, 1, 0x40000000), (0x06, 0, 0, deny)]  # x32 syscalls
    for name in DENIED_SYSCALLS:
        program += [(0x15, 0, 1, numbers[name]), (0x06, 0, 0, deny)]
    program.append((0x06, 0, 0, 0x7FFF0000))  # SECCOMP_RET_ALLOW
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


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
def hidden_paths() -> tuple[str, ...]:
    """Installed packages inside the trees the sandbox mounts (the interpreter's installation,
    /usr): every site-packages and dist-packages directory, and any other import path that is not
    the standard library. Each is covered by an empty read-only tmpfs, so that where posttrain
    is installed into the base interpreter (Docker, conda) neither it nor its dependencies are
    visible inside."""
    _, prefix = _interpreter()
    stdlib = {os.path.realpath(p) for p in (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"])}
    stdlib |= {os.path.join(p, "lib-dynload") for p in stdlib}
    candidates = set(sys.path) | set(site.getsitepackages()) | {site.getusersitepackages()}
    for pattern in ("site-packages", "dist-packages"):
        for root in (prefix, "/usr", "/usr/local"):
            candidates |= set(glob.glob(f"{root}/lib*/python3*/{pattern}")) | set(glob.glob(f"{root}/lib*/python3/{pattern}"))
    mounted = (prefix, "/usr", "/lib", "/lib64", "/bin", "/sbin")
    hidden = set()
    for path in candidates:
        real = os.path.realpath(path) if path else ""
        if (real and os.path.isdir(real) and real not in stdlib and not any(s.startswith(real + os.sep) for s in stdlib)
                and any(real == m or real.startswith(m.rstrip("/") + "/") for m in mounted)):
            hidden.add(real)
    return tuple(sorted(hidden))


@lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """Why untrusted code cannot run on this machine, or None when it can (checked once)."""
    if shutil.which("bwrap") is None:
        return ("the code sandbox needs bubblewrap, which is not installed: `apt-get install bubblewrap` "
                "(Debian/Ubuntu) or your distribution's package")
    if seccomp_filter() is None:
        return (f"the code sandbox's syscall filter knows x86_64 and aarch64, not {platform.machine()}: "
                "untrusted code is not run here")
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


def _sweep_stale_groups() -> None:
    """Remove the empty call cgroups that a caller killed before its cleanup left behind (older
    than five minutes, so that a group another caller has just made is never taken)."""
    for controller in ("pids", "memory"):
        parent = _own_cgroup(controller)
        if parent is None:
            continue
        for directory in parent.glob("posttrain-sandbox-*"):
            try:
                if time.time() - directory.stat().st_mtime > 300 and not (directory / "cgroup.procs").read_text().strip():
                    directory.rmdir()
            except OSError:
                pass


class _CallGroup:
    """A pids (and memory) cgroup for one call, as root; every process of the call is in it."""

    def __init__(self, max_processes: int, memory_bytes: int):
        self.dirs: list[Path] = []
        if os.geteuid() != 0:
            return
        name = f"posttrain-sandbox-{uuid.uuid4().hex[:12]}"
        _sweep_stale_groups()
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


def _command(limits: Limits, mode: str, fds: dict[str, int], paths: tuple[str, ...] = (),
             argv: tuple[str, ...] = ()) -> list[str]:
    """bwrap's command line. `fds`: the pipes the child gets ("input": the program, "seccomp": the
    filter, "requests" / "responses" in serve mode); `paths` are mounted read-only and importable
    (a trusted server's libraries; never for a model's program)."""
    executable, prefix = _interpreter()
    size = str(limits.disk_mb << 20)
    child = {"cpu": limits.cpu_seconds, "memory": limits.memory_mb << 20, "file_size": limits.file_size_mb << 20,
             "nproc": limits.max_processes if os.geteuid() != 0 else 0, "mode": mode, "input": fds["input"],
             "requests": fds.get("requests", -1), "responses": fds.get("responses", -1),
             "paths": list(paths), "argv": list(argv)}
    hidden = [p for p in hidden_paths() if p not in paths]
    return ["bwrap", "--unshare-all", *_bwrap_flags(), "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--seccomp", str(fds["seccomp"]),
            *_system_mounts(), "--ro-bind", prefix, prefix,
            *(flag for path in hidden for flag in ("--tmpfs", path)),
            "--proc", "/proc", "--dev", "/dev",
            "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/dev/shm", "--size", size, "--tmpfs", "/work",
            *(flag for path in paths for flag in ("--ro-bind", path, path)),
            *(flag for path in hidden for flag in ("--remount-ro", path)),
            "--chdir", "/work", "--clearenv", "--setenv", "HOME", "/work",
            *(flag for key, value in SINGLE_THREAD.items() for flag in ("--setenv", key, value)),
            "--", executable, "-I", "-S", "-c", _BOOTSTRAP, json.dumps(child)]


class _Output:
    """Drain a pipe on a thread, keeping at most `limit` bytes; `over` is set past the limit."""

    def __init__(self, pipe, limit: int, on_over):
        self.chunks, self.size, self.over = [], 0, False
        self.thread = threading.Thread(target=self._drain, args=(pipe, limit, on_over), daemon=True)
        self.thread.start()

    def _drain(self, pipe, limit, on_over):
        while True:
            try:
                chunk = pipe.read1(65536)  # a BufferedReader: what is there, up to 64 KiB
            except (OSError, ValueError):
                break
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


def _writer(fd: int, data: bytes) -> threading.Thread:
    """Write `data` to `fd` on a thread, then close it (a pipe the child reads at start)."""
    def write():
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view[:65536]):]
        except OSError:
            pass
        finally:
            os.close(fd)
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


class _Process:
    """One sandboxed interpreter: started in its cgroup, output drained with limits, killed whole.
    Nothing of the host's filesystem is written for it: the program, its files, bwrap's own
    arguments (`--args`, so that /proc/1/cmdline inside shows none of the host's paths) and the
    syscall filter all arrive through pipes."""

    def __init__(self, limits: Limits, program: str, files: dict[str, str] | None, mode: str,
                 pass_fds: dict[str, int] | None = None, paths: tuple[str, ...] = (), argv: tuple[str, ...] = ()):
        self.limits = limits
        for name in files or {}:
            if "/" in name or name.startswith(".") or name == "program.py" or not name:
                raise ValueError(f"a sandbox file is a plain name, not {name!r}")
        filter_bytes = seccomp_filter()
        if filter_bytes is None:
            raise SandboxUnavailable(sandbox_problem() or "no syscall filter for this machine")
        self.group = _CallGroup(limits.max_processes, (limits.memory_mb + 3 * limits.disk_mb + 64) << 20)
        ends: list[int] = []  # the child's ends, closed here once it has started
        try:
            input_read, input_write = os.pipe()
            seccomp_read, seccomp_write = os.pipe()
            args_read, args_write = os.pipe()
            ends += [input_read, seccomp_read, args_read]
            fds = {"input": input_read, "seccomp": seccomp_read, **(pass_fds or {})}
            command = _command(limits, mode, fds, paths, argv)
            self.deadline = time.monotonic() + limits.wall_seconds
            self.stopped = False
            split = command.index("--") if "--" in command else len(command)
            writers = [_writer(seccomp_write, filter_bytes),
                       _writer(args_write, b"".join(arg.encode() + b"\0" for arg in command[1:split])),
                       _writer(input_write, json.dumps({"program": program, "files": files or {}}).encode())]
            self.popen = subprocess.Popen(self.group.wrap([command[0], "--args", str(args_read), *command[split:]]),
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          env={"PATH": "/usr/bin:/bin"}, cwd="/", start_new_session=True,
                                          pass_fds=[*ends, *(pass_fds or {}).values()])
        except BaseException:
            self.group.close()
            for fd in ends:
                os.close(fd)
            raise
        for fd in ends:
            os.close(fd)
        self.writers = writers
        self.stdout = _Output(self.popen.stdout, limits.output_bytes, self.stop)
        self.stderr = _Output(self.popen.stderr, limits.output_bytes, self.stop)

    def stop(self) -> None:
        self.stopped = True
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # bwrap; its PID namespace dies with it
        except (ProcessLookupError, PermissionError):
            pass

    def feed(self, text: str) -> None:
        """Write the program's stdin on a thread (a program that never reads cannot block the
        caller: the write ends when the process is stopped)."""
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
        for pipe in (self.popen.stdin,):
            try:
                pipe.close()
            except (OSError, ValueError):
                pass
        for output in (self.stdout, self.stderr):
            output.thread.join(5)
        for writer in self.writers:
            writer.join(5)
        for pipe in (self.popen.stdout, self.popen.stderr):
            try:
                pipe.close()
            except (OSError, ValueError):
                pass


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


# ----------------------------------------------------------------------------- talking to a sandboxed process


class CandidateError(Exception):
    """A call into the sandboxed program failed: it raised, returned something that is not plain
    data, answered out of protocol, or ran out of time."""


class _Channel:
    """JSON lines to and from a sandboxed process over two pipes, every read and every write
    bounded by the process's deadline (or the one given), every answer bounded in size. Nothing
    read is ever unpickled or evaluated; every failure of the channel is a CandidateError."""

    def _open(self, program: str, limits: Limits, mode: str, response_bytes: int,
              paths: tuple[str, ...] = (), argv_fds: bool = False) -> None:
        self.limits, self.response_bytes = limits, response_bytes
        self._requests = self._responses = -1
        self._selector = selectors.DefaultSelector()
        self._buffer = b""
        self.process = None
        to_child, self._requests = os.pipe()
        self._responses, from_child = os.pipe()
        try:
            argv = (str(to_child), str(from_child)) if argv_fds else ()
            self.process = _Process(limits, program, None, mode, {"requests": to_child, "responses": from_child},
                                    paths, argv)
        except BaseException:
            self._close_pipes()
            raise
        finally:
            os.close(to_child)
            os.close(from_child)
        self.process.feed("")
        os.set_blocking(self._requests, False)
        self._selector.register(self._responses, selectors.EVENT_READ)

    def _send(self, message, deadline: float | None = None) -> None:
        try:
            data = memoryview((json.dumps(message) + "\n").encode())
        except (TypeError, ValueError, RecursionError) as exc:
            raise CandidateError(f"a request that is not plain data ({exc})") from None
        deadline = self.process.deadline if deadline is None else deadline
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CandidateError("out of time")
            try:
                _, ready, _ = select.select([], [self._requests], [], remaining)
                if ready:
                    data = data[os.write(self._requests, data[:65536]):]
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                raise CandidateError("the program stopped") from None

    def _read(self, deadline: float | None = None):
        deadline = self.process.deadline if deadline is None else deadline
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise CandidateError("out of time")
            try:
                chunk = os.read(self._responses, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise CandidateError("the program stopped")
            self._buffer += chunk
            if len(self._buffer) > self.response_bytes:
                raise CandidateError("an answer over the size limit")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except (ValueError, RecursionError):
            raise CandidateError("an answer that is not JSON (or nested too deep)") from None

    def _close_pipes(self) -> None:
        for fd in (self._requests, self._responses):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._requests = self._responses = -1
        try:
            self._selector.close()
        except (OSError, ValueError):
            pass

    def close(self) -> SandboxResult | None:
        self._close_pipes()
        if self.process is None:
            return None
        process, self.process = self.process, None
        return process.finish()


class Candidate(_Channel):
    """A program loaded in a sandbox whose functions the caller invokes across a pipe:

        with Candidate(source, Limits(wall_seconds=5)) as candidate:
            candidate.names            # {name: {"callable": True} | {"value": plain} | {"module": name}}
            candidate.call("add", [1, 2], {})   # -> 3, or raises CandidateError

    Arguments and results cross as plain data (`encode` / `decode`), so nothing the program does
    inside its own interpreter can reach the caller's. A program that does not load in its wall
    time (it sleeps, serves, loops) raises CandidateError, and everything it had (the sandbox,
    pipes, threads, cgroups) is gone by then."""

    def __init__(self, program: str, limits: Limits, response_bytes: int = 1 << 20):
        require_sandbox()
        self.process = None
        self._open(program, limits, "serve", response_bytes)
        try:
            hello = self._read()
            if not isinstance(hello, dict) or not isinstance(hello.get("names"), dict):
                raise CandidateError("the program did not load")
            names = {}
            for name, entry in hello["names"].items():
                if isinstance(name, str) and isinstance(entry, dict) and len(entry) == 1:
                    names[name] = entry
            self.load_error = hello.get("loaded") if isinstance(hello.get("loaded"), (str, type(None))) else "?"
            self.names = names
        except BaseException:
            self.close()
            raise

    def call(self, name: str, args: list, kwargs: dict):
        try:
            args, kwargs = encode(list(args)), encode(dict(kwargs))
        except (TypeError, RecursionError) as exc:
            raise CandidateError(f"an argument is not plain data ({exc})") from None
        if self.process is None:
            raise CandidateError("the program stopped")
        self._send({"name": name, "args": args, "kwargs": kwargs})
        answer = self._read()
        if not isinstance(answer, dict) or len(answer) != 1:
            raise CandidateError("an answer out of protocol")
        if "error" in answer:
            raise CandidateError(f"the program raised {str(answer['error'])[:100]}")
        try:
            return decode(answer.get("value"))
        except Exception:  # noqa: BLE001 - not plain data, collisions, unhashable keys, nesting
            raise CandidateError("an answer that is not plain data") from None

    def __enter__(self) -> "Candidate":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Server(_Channel):
    """A trusted program (posttrain's own source, never a model's) running in the sandbox, with
    `paths` mounted read-only and importable, answering one JSON line per JSON line it is sent.
    It finds its two pipes' descriptors in sys.argv[1:3]. Used for scorers that may evaluate the
    text they are given (rewards/gym.py): the text is data to the caller, and whatever it makes
    the scorer do stays inside."""

    def __init__(self, source: str, limits: Limits, paths: tuple[str, ...] = (), response_bytes: int = 1 << 20):
        require_sandbox()
        self.process = None
        self._open(source, limits, "run", response_bytes, paths, argv_fds=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.popen.poll() is None

    def close(self) -> None:
        """Stop the server now (it may be in the middle of an item): the sandbox, its pipes,
        threads and cgroups go with it."""
        self._close_pipes()
        if self.process is not None:
            process, self.process = self.process, None
            process.close()

    def request(self, message, seconds: float):
        """The server's answer to `message` (JSON), or CandidateError when it does not answer
        within `seconds`, stops, or answers something that is not JSON."""
        deadline = time.monotonic() + seconds
        self._send(message, deadline)
        return self._read(deadline)
