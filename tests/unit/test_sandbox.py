"""The code sandbox against a hostile program: every probe below tries to leave the sandbox, reach
the caller (this test process stands in for the trainer) or forge a score, and each asserts that
it got nothing and that the caller is unharmed. As the suite runs in CI: root, Python under
/root. Where bubblewrap is missing the sandbox refuses to run (the last tests)."""

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from shutil import which as shutil_which

import pytest

import posttrain
from posttrain.rewards import REWARDS, build_reward
from posttrain.rewards import sandbox as sandbox_module
from posttrain.rewards.sandbox import (Candidate, CandidateError, Limits, SandboxUnavailable, decode, encode,
                                       run_untrusted, sandbox_problem)

pytestmark = pytest.mark.skipif(sandbox_problem() is not None, reason=f"{sandbox_problem()}")

REPO = Path(__file__).resolve().parents[2]
ESCAPED = "ESCAPED"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """What a hostile program would go after: a secret file, listeners of every kind, this
    process's PID and environment, posttrain's installed files."""
    root = tmp_path_factory.mktemp("host")
    canary = root / "canary.txt"
    canary.write_text("the trainer's data")
    os.chmod(root, 0o755)
    os.chmod(canary, 0o644)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    abstract = f"posttrain-probe-{uuid.uuid4().hex[:8]}"
    unix_abstract = socket.socket(socket.AF_UNIX)
    unix_abstract.bind("\0" + abstract)
    unix_abstract.listen()
    path = root / "s.sock"
    unix_path = socket.socket(socket.AF_UNIX)
    unix_path.bind(str(path))
    unix_path.listen()
    os.chmod(path, 0o777)
    os.environ["POSTTRAIN_PROBE_SECRET"] = "hunter2"
    package = Path(posttrain.__file__).parent / "rewards" / "code.py"
    values = {"pid": os.getpid(), "port": tcp.getsockname()[1], "canary": str(canary), "abstract": abstract,
              "sock": str(path), "package_file": str(package), "site": str(Path(json.__file__).parent.parent / "site-packages"),
              "repo": str(REPO), "venv": sys.prefix, "root": str(root)}
    yield values, {"package_text": package.read_text()}
    for s in (tcp, unix_abstract, unix_path):
        s.close()
    os.environ.pop("POSTTRAIN_PROBE_SECRET", None)


def run(program: str, host_values: dict, **limits):
    return run_untrusted(program.format(**host_values), **{"wall_seconds": 10, **limits})


# Each program prints ESCAPED when it got what it should not have.
PROBES = {
    "read /etc/shadow": "try:\n    open('/etc/shadow').read(); print('ESCAPED')\nexcept OSError: pass",
    "read /etc/passwd": "try:\n    open('/etc/passwd').read(); print('ESCAPED')\nexcept OSError: pass",
    "read the trainer's data file": "try:\n    open({canary!r}).read(); print('ESCAPED')\nexcept OSError: pass",
    "list the host's /root": "import os\ntry:\n    print('ESCAPED' if set(os.listdir('/root')) - {{'.pyenv'}} else '')\nexcept OSError: pass",
    "read the project": "try:\n    open({repo!r} + '/README.md').read(); print('ESCAPED')\nexcept OSError: pass",
    "read the virtualenv": "try:\n    open({venv!r} + '/pyvenv.cfg').read(); print('ESCAPED')\nexcept OSError: pass",
    "find the trainer in /proc": (
        "import os\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n        try:\n"
        "            if b'pytest' in open('/proc/' + p + '/cmdline', 'rb').read(): print('ESCAPED')\n"
        "        except OSError: pass"),
    "see the trainer's pid": "import os\nprint('ESCAPED' if os.path.exists('/proc/{pid}') and {pid} > 5 else '')",
    "write the trainer's memory": "try:\n    open('/proc/{pid}/mem', 'r+b'); print('ESCAPED')\nexcept OSError: pass",
    "read the trainer's environment": "try:\n    open('/proc/{pid}/environ').read(); print('ESCAPED')\nexcept OSError: pass",
    "read the trainer's cwd": "import os\ntry:\n    os.listdir('/proc/{pid}/cwd'); print('ESCAPED')\nexcept OSError: pass",
    "read through the trainer's root": "try:\n    open('/proc/{pid}/root/etc/shadow'); print('ESCAPED')\nexcept OSError: pass",
    "setns into the trainer's network": (
        "import ctypes, os, socket\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "try:\n    fd = os.open('/proc/{pid}/ns/net', os.O_RDONLY)\n    ok = libc.setns(fd, 0x40000000) == 0\n"
        "except OSError: ok = False\n"
        "if ok:\n    try:\n        socket.create_connection(('127.0.0.1', {port}), timeout=1); print('ESCAPED')\n"
        "    except OSError: pass"),
    "connect to a 127.0.0.1 listener": (
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1); print('ESCAPED')\n"
        "except OSError: pass"),
    "connect with _socket": (
        "import _socket\ns = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\ns.settimeout(1)\n"
        "try:\n    s.connect(('127.0.0.1', {port})); print('ESCAPED')\nexcept OSError: pass"),
    "connect to an abstract unix socket": (
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect('\\0' + {abstract!r}); print('ESCAPED')\n"
        "except OSError: pass"),
    "connect to a unix socket on a path": (
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({sock!r}); print('ESCAPED')\n"
        "except OSError: pass"),
    "reach the internet": (
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1); print('ESCAPED')\n"
        "except OSError: pass"),
    "append to posttrain's own code": "try:\n    open({package_file!r}, 'a').write('#'); print('ESCAPED')\nexcept OSError: pass",
    "plant a .pth file": "try:\n    open({site!r} + '/evil.pth', 'w').write('import os'); print('ESCAPED')\nexcept OSError: pass",
    "write next to the trainer's data": "try:\n    open({root!r} + '/planted', 'w').write('x'); print('ESCAPED')\nexcept OSError: pass",
    "mount a tmpfs": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print('ESCAPED' if libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0 else '')"),
    "remount /usr read-write": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print('ESCAPED' if libc.mount(None, b'/usr', None, 0x20 | 0x1000, None) == 0 else '')"),
    "chroot": "import os\ntry:\n    os.chroot('/tmp'); print('ESCAPED')\nexcept OSError: pass",
    "a nested user namespace": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('ESCAPED' if libc.unshare(0x10000000) == 0 else '')"),
    "kill the trainer": "import os, signal\ntry:\n    os.kill({pid}, signal.SIGKILL); print('ESCAPED')\nexcept OSError: pass",
    "kill every process": "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError: pass",
    "signal its parent": "import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGTERM)\nexcept OSError: pass",
    "ptrace the trainer": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint('ESCAPED' if libc.ptrace(16, {pid}, 0, 0) == 0 else '')"),
    "read the caller's environment": (
        "import os\nprint('ESCAPED' if 'POSTTRAIN_PROBE_SECRET' in os.environ or "
        "b'hunter2' in open('/proc/1/environ', 'rb').read() else '')"),
    "open /dev/mem and /dev/kmsg": (
        "for d in ('/dev/mem', '/dev/kmsg', '/dev/sda', '/dev/vda'):\n    try:\n        open(d, 'rb'); print('ESCAPED', d)\n"
        "    except OSError: pass"),
    "look at /sys": "import os\nprint('ESCAPED' if os.path.isdir('/sys') and os.listdir('/sys') else '')",
    "join a cgroup": (
        "try:\n    open('/sys/fs/cgroup/cgroup.procs', 'w').write('1'); print('ESCAPED')\nexcept OSError: pass"),
    "set the clock": "import time\ntry:\n    time.clock_settime(time.CLOCK_REALTIME, 0); print('ESCAPED')\nexcept OSError: pass",
    "raise its own limits": (
        "import resource\ntry:\n    resource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6)); print('ESCAPED')\n"
        "except (ValueError, OSError): pass"),
    "become root again": "import os\ntry:\n    os.setuid(0); print('ESCAPED')\nexcept OSError: pass",
}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_probe_gets_nothing(host, name):
    values, before = host
    result = run(PROBES[name], values)
    assert ESCAPED not in result.stdout, (name, result)
    # the caller is unharmed: alive (this line runs), its files and listeners as they were
    assert Path(values["package_file"]).read_text() == before["package_text"]
    assert not Path(values["site"], "evil.pth").exists() and not Path(values["root"], "planted").exists()
    with socket.create_connection(("127.0.0.1", values["port"]), timeout=2):
        pass


def test_nothing_it_writes_reaches_the_host_or_the_next_call(host):
    values, _ = host
    token = uuid.uuid4().hex
    writer = f"for d in ('/tmp', '/dev/shm', '/work'):\n    open(d + '/{token}', 'w').write('state')\nprint('wrote')"
    assert run(writer, values).stdout.strip() == "wrote"
    assert not Path("/tmp", token).exists() and not Path("/dev/shm", token).exists()
    reader = (f"import os\nprint(sum(os.path.exists(d + '/{token}') for d in ('/tmp', '/dev/shm', '/work')))")
    assert run(reader, values).stdout.strip() == "0"


@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "/work"])
def test_filling_its_disk_stops_at_the_limit_and_leaves_nothing(host, where):
    values, _ = host
    free_before = os.statvfs("/tmp").f_bavail * os.statvfs("/tmp").f_frsize
    program = (f"import os\nn = 0\ntry:\n    with open('{where}/fill', 'wb') as f:\n        for _ in range(400):\n"
               "            f.write(b'x' * (1 << 20)); f.flush(); n += 1\nexcept OSError as e:\n    pass\nprint(n)")
    result = run(program, values, disk_mb=16, file_size_mb=512)
    assert int(result.stdout.strip() or 0) <= 16
    free_after = os.statvfs("/tmp").f_bavail * os.statvfs("/tmp").f_frsize
    assert free_after > free_before - (64 << 20)  # the host's /tmp did not take it


def _host_processes_with(token: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_no_process_outlives_the_call(host):
    values, _ = host
    token = f"survivor-{uuid.uuid4().hex}"
    program = ("import ctypes, os, subprocess, sys, time\n"
               "libc = ctypes.CDLL(None)\n"
               "if os.fork() == 0:\n    os.setsid()\n    libc.prctl(1, 0)  # clear the parent-death signal\n"
               f"    if os.fork() == 0:\n        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{token}'])\n"
               "    os._exit(0)\ntime.sleep(0.5)\nprint('started')")
    result = run(program, values, wall_seconds=5)
    assert "started" in result.stdout
    time.sleep(0.5)
    assert _host_processes_with(token) == []


def test_a_fork_bomb_is_bounded_and_the_caller_keeps_working(host):
    values, _ = host
    started = time.monotonic()
    run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass", values, wall_seconds=3)
    assert time.monotonic() - started < 20
    assert subprocess.run(["true"]).returncode == 0  # the caller can still start processes


def test_memory_cpu_and_wall_time_are_limited(host):
    values, _ = host
    memory = run("x = bytearray(3 << 30)\nprint('allocated')", values, memory_mb=512)
    assert "MemoryError" in memory.stderr and "allocated" not in memory.stdout
    cpu = run("while True:\n    pass", values, cpu_seconds=1, wall_seconds=20)
    assert cpu.returncode not in (0, None)
    started = time.monotonic()
    sleeper = run("import time\ntime.sleep(60)", values, wall_seconds=1.5)
    assert sleeper.timed_out and sleeper.returncode is None and time.monotonic() - started < 10
    big = run("open('/work/big', 'wb').write(b'x' * (64 << 20))\nprint('wrote')", values, file_size_mb=8)
    assert "wrote" not in big.stdout
    files = run("fs = []\ntry:\n    for i in range(1000): fs.append(open('/work/f%d' % i, 'w'))\nexcept OSError: pass\n"
                "print(len(fs))", values)
    assert int(files.stdout.strip()) < 64


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_endless_output_is_cut_at_the_byte_limit_and_the_caller_stays_small(host, stream):
    values, _ = host
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = run(f"import sys\nwhile True:\n    sys.{stream}.write('x' * 65536)", values, output_bytes=1 << 20,
                 wall_seconds=20)
    assert time.monotonic() - started < 15 and result.truncated and result.returncode is None
    assert len(getattr(result, stream)) <= 1 << 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: under 200 MB


def test_the_sandbox_runs_as_an_unprivileged_user_with_its_own_pid_namespace(host):
    values, _ = host
    result = run("import os\nprint(os.getuid(), os.getgid(), os.getpid())", values)
    uid, gid, pid = map(int, result.stdout.split())
    assert (uid, gid) == (65534, 65534) and pid < 10


# ----------------------------------------------------------------------------- forging a score

TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(-5, 5) == 0"]
FORGERIES = {
    "an object equal to everything": "class A:\n    def __eq__(self, other): return True\ndef add(a, b): return A()",
    "an int subclass equal to everything": (
        "class I(int):\n    def __eq__(self, other): return True\n    __hash__ = int.__hash__\ndef add(a, b): return I(0)"),
    "a str that prints like the answer": "def add(a, b): return str(a + b)",
    "reading a nonce through frames": (
        "import sys\nf = sys._getframe()\nwhile f:\n    for v in f.f_locals.values():\n"
        "        if isinstance(v, str) and len(v) == 32: print(v + '3')\n    f = f.f_back\ndef add(a, b): return -1"),
    "replacing exec and compile": (
        "import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.compile = lambda *a, **k: None\n"
        "def add(a, b): return -1"),
    "rewriting the tests through gc": (
        "import gc\nfor o in gc.get_objects():\n    if isinstance(o, list) and any(isinstance(x, str) and 'assert' in x for x in o):\n"
        "        o[:] = ['pass'] * len(o)\ndef add(a, b): return -1"),
    "exiting before the tests": "import os\nos._exit(0)",
    "raising SystemExit when called": "def add(a, b): raise SystemExit(0)",
    "a fake protocol answer on load": (
        "import os\nfor fd in range(3, 10):\n    try: os.write(fd, b'{\"value\": 3}\\n')\n    except OSError: pass\n"
        "def add(a, b): return -1"),
    "printing success": "print('3\\n4\\n0\\npassed\\n' * 5)\ndef add(a, b): return -1",
    "an answer too deep to encode": "def add(a, b):\n    x = []\n    for _ in range(100000): x = [x]\n    return x",
    "an answer too big to carry": "def add(a, b): return 'x' * (8 << 20)",
    "hanging when called": "def add(a, b):\n    while True: pass",
    "killing its own serving loop": "import sys\nsys.stdin.close()\ndef add(a, b): return -1",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forgery_scores_nothing(name):
    assert REWARDS["code"]([FORGERIES[name]], tests=[TESTS], timeout=4) == [0.0], name


def test_honest_and_partly_right_programs_score_what_they_earn():
    programs = ["```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b):\n    return a - b if a < 0 else a + b",
                "def add(a, b):\n    return 3"]
    assert REWARDS["code"](programs, tests=[TESTS] * 3, timeout=5) == [1.0, pytest.approx(2 / 3), pytest.approx(1 / 3)]


def test_humaneval_style_check_functions_and_plain_data_results():
    program = "def sort_pairs(xs):\n    return sorted(tuple(x) for x in xs)\nLIMIT = {'a': (1, 2)}"
    check = ("def check(candidate):\n    assert candidate([[2, 1], [1, 2]]) == [(1, 2), (2, 1)]\n"
             "    assert LIMIT == {'a': (1, 2)}\ncheck(sort_pairs)")
    assert REWARDS["code"]([program], tests=[[check]], timeout=5) == [1.0]


def test_stdin_stdout_cases_cannot_read_the_expected_outputs(host):
    values, _ = host
    cases = [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5\n", "output": "10"}]
    honest = "a, b = map(int, input().split())\nprint(a + b)"
    assert REWARDS["code"]([honest], test_cases=[cases]) == [1.0]
    snooping = ("import os\nfound = ''\nfor path in ['/proc/{pid}/cwd', {root!r}, '/work', '/tmp']:\n"
                "    try:\n        for n in os.listdir(path): found += open(os.path.join(path, n)).read()\n"
                "    except OSError: pass\nprint(found or 'nothing')").format(**values)
    assert REWARDS["code"]([snooping], test_cases=[cases]) == [0.0]


def test_plain_data_round_trips_and_nothing_else_crosses():
    values = [None, True, 3, -2 ** 70, 1.5, float("inf"), "s", b"\x00b", 1 + 2j, [1, (2, 3)], {1, 2},
              frozenset({"a"}), {"k": [1], 2: (3,)}]
    for value in values:
        assert decode(json.loads(json.dumps(encode(value)))) == value
    for bad in (object(), lambda: 1, type("I", (int,), {})(1)):
        with pytest.raises(TypeError):
            encode(bad)
    with pytest.raises(ValueError):
        decode({"__tuple__": [1], "extra": 2})


def test_candidate_calls_functions_across_the_pipe():
    with Candidate("def add(a, b):\n    return a + b\nX = [1, 2]", Limits(wall_seconds=5)) as candidate:
        assert candidate.names == {"add": {"callable": True}, "X": {"value": [1, 2]}}
        assert candidate.call("add", [(1,), (2,)], {}) == (1, 2)
        with pytest.raises(CandidateError, match="raised TypeError"):
            candidate.call("add", [1, "a"], {})


def test_the_code_reward_runs_from_a_thread():
    out = []
    thread = threading.Thread(target=lambda: out.append(REWARDS["code"](["x = 1"], tests=[["assert x == 1"]])))
    thread.start()
    thread.join(30)
    assert out == [[1.0]]


def test_without_bubblewrap_nothing_runs_and_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None)
    sandbox_module.sandbox_problem.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
            run_untrusted("print(1)")
        lenient = build_reward("code", {}, on_error="zero")  # even so: not a score of 0, an error
        with pytest.raises(SandboxUnavailable):
            lenient(["def add(a, b): return a + b"], tests=[TESTS])
    finally:
        monkeypatch.undo()
        sandbox_module.sandbox_problem.cache_clear()
    assert sandbox_problem() is None


def test_where_bubblewrap_cannot_make_its_namespaces_nothing_runs(tmp_path, monkeypatch):
    """A bwrap that fails as it does where user namespaces are disabled: the sandbox refuses."""
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(sandbox_module, "_bwrap_flags", lambda: ())
    sandbox_module.sandbox_problem.cache_clear()
    original = sandbox_module._command
    monkeypatch.setattr(sandbox_module, "_command", lambda *a, **k: [str(fake), *original(*a, **k)[1:]])
    try:
        assert "cannot create its namespaces" in sandbox_problem()
        with pytest.raises(SandboxUnavailable, match="No permissions to creating new namespace"):
            REWARDS["code"](["def add(a, b): return a + b"], tests=[TESTS])
    finally:
        monkeypatch.undo()
        sandbox_module.sandbox_problem.cache_clear()
    assert sandbox_problem() is None


ORDINARY_USER_HELPER = r"""
import importlib.util, json, os, socket, sys, tempfile
sys.path.insert(0, sys.argv[1])  # src/: posttrain.errors, without the reward modules' dependencies
spec = importlib.util.spec_from_file_location("sandbox", sys.argv[1] + "/posttrain/rewards/sandbox.py")
sandbox = importlib.util.module_from_spec(spec)
sys.modules["sandbox"] = sandbox
spec.loader.exec_module(sandbox)
root = tempfile.mkdtemp()
canary = os.path.join(root, "canary.txt")
open(canary, "w").write("the trainer's data")
tcp = socket.socket(); tcp.bind(("127.0.0.1", 0)); tcp.listen()
sock = os.path.join(root, "s.sock"); unix = socket.socket(socket.AF_UNIX); unix.bind(sock); unix.listen()
abstract = socket.socket(socket.AF_UNIX); abstract.bind("\0posttrain-user-probe"); abstract.listen()
os.environ["POSTTRAIN_PROBE_SECRET"] = "hunter2"
values = {"pid": os.getpid(), "port": tcp.getsockname()[1], "canary": canary, "abstract": "posttrain-user-probe",
          "sock": sock, "package_file": sys.argv[1] + "/posttrain/rewards/code.py", "site": root,
          "repo": sys.argv[1], "venv": root, "root": root}
probes = json.load(open(sys.argv[2]))
print(json.dumps({"problem": sandbox.sandbox_problem(), "uid": os.getuid(),
                  "results": {name: sandbox.run_untrusted(p.format(**values), wall_seconds=10).stdout
                              for name, p in probes.items()}}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists() or not shutil_which("setpriv"),
                    reason="needs root (to become an ordinary user), setpriv and a system Python")
def test_as_an_ordinary_user_the_probes_get_nothing_either(tmp_path):
    """The same probes, with the sandbox started by an ordinary user (uid 65534, the system's
    Python): no cgroups then, RLIMIT_NPROC instead, and user namespaces made without root."""
    import shutil
    import tempfile

    # Where the ordinary user can read: a copy of the modules the sandbox needs.
    shared = Path(tempfile.mkdtemp(prefix="posttrain-user-probe-", dir="/tmp"))
    try:
        source = REPO / "src" / "posttrain"
        for name in ("__init__.py", "errors.py", "threads.py", "rewards/sandbox.py"):
            (shared / "posttrain" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / name, shared / "posttrain" / name)
        (shared / "posttrain" / "rewards" / "code.py").write_text("# stands in for posttrain's installed code\n")
        helper, probes = shared / "helper.py", shared / "probes.json"
        helper.write_text(ORDINARY_USER_HELPER)
        probes.write_text(json.dumps(PROBES))
        for path in [shared, *shared.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        done = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3",
                               str(helper), str(shared), str(probes)], capture_output=True, text=True, timeout=600,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(shared)}, cwd=shared)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["uid"] == 65534
    if report["problem"]:
        pytest.fail(f"the sandbox does not run as an ordinary user here: {report['problem']}")
    escaped = {name: out for name, out in report["results"].items() if ESCAPED in out}
    assert not escaped and len(report["results"]) == len(PROBES)
