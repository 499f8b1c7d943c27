"""A real two-node SLURM cluster on this machine, for tests: Debian's slurmctld, two slurmd
(n1, n2) and munge on loopback, all as root, with a private configuration, state and ports, so
an existing SLURM installation is left alone. `.ci/run` installs the packages.

    python tests/distributed/slurm_cluster.py start DIR   # prints the SLURM_CONF to export
    python tests/distributed/slurm_cluster.py stop DIR
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "scontrol")
CONTROLLER_PORT = 16817
NODE_PORTS = {"n1": 17001, "n2": 17002}

CONF = """\
ClusterName=posttrain-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket},cred_expire=10
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
SchedulerType=sched/backfill
SchedulerTimeSlice=5
MessageTimeout=20
KillWait=30
InactiveLimit=0
MinJobAge=600
JobRequeue=1
{nodes}
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def available() -> str | None:
    """None when a cluster can be started here, else why not."""
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        return f"SLURM is not installed (missing {', '.join(missing)}; .ci/run installs it)"
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root"
    return None


def _run(*argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def start(root: Path) -> dict[str, str]:
    """Start munge, slurmctld and two slurmd under `root`; returns the environment for clients."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "munge", *(f"spool/{name}" for name in NODE_PORTS)):
        (root / sub).mkdir(parents=True, exist_ok=True)
    munge = root / "munge"
    key = munge / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    shutil.chown(munge, "munge", "munge")
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    munge.chmod(0o700)
    socket_path = munge / "munge.socket"
    done = _run("runuser", "-u", "munge", "--", "munged", "--key-file", str(key), "--socket", str(socket_path),
                "--pid-file", str(munge / "munged.pid"), "--log-file", str(munge / "munged.log"),
                "--seed-file", str(munge / "munged.seed"), "--force")
    if done.returncode:
        raise RuntimeError(f"munged did not start: {done.stderr}")
    host = socket.gethostname().split(".")[0]
    nodes = "\n".join(f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs=1 "
                      f"RealMemory=2000 State=UNKNOWN" for name, port in NODE_PORTS.items())
    conf = root / "slurm.conf"
    conf.write_text(CONF.format(host=host, controller_port=CONTROLLER_PORT, munge_socket=socket_path,
                                root=root, nodes=nodes))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for argv in (["slurmctld", "-i"], *(["slurmd", "-N", name] for name in NODE_PORTS)):
        done = _run(*argv, env=env)
        if done.returncode:
            raise RuntimeError(f"{argv[0]} did not start: {done.stderr}\n{_logs(root)}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = _run("sinfo", "-h", "-o", "%N %t", "-N", env=env).stdout
        if out.count("idle") == len(NODE_PORTS):
            return {"SLURM_CONF": str(conf)}
        time.sleep(0.5)
    raise RuntimeError(f"the nodes never became idle: {out}\n{_logs(root)}")


def _logs(root: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(root.glob("*.log")))


def stop(root: Path) -> None:
    for pid_file in [*root.glob("slurmd-*.pid"), root / "slurmctld.pid", root / "munge" / "munged.pid"]:
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
    time.sleep(1)


if __name__ == "__main__":
    command, directory = sys.argv[1], Path(sys.argv[2]).resolve()
    if command == "start":
        print(f"export SLURM_CONF={start(directory)['SLURM_CONF']}")
    else:
        stop(directory)
