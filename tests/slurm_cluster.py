"""A one-node SLURM cluster on localhost for tests of the SLURM profile: Debian's slurm-wlm and
munge (installed when missing), partitions `cpu` and `gpu` as the profile names them, four CPUs
and four fake GPUs (gres files /dev/null and friends), so that jobs run side by side. Needs
root: the config must live at /etc/slurm/slurm.conf."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
MARKER = "# xrayfactory test cluster"
MUNGE_PID = Path("/run/munge/munged.pid")


def _conf(state: Path) -> str:
    return f"""{MARKER} (written by tests/slurm_cluster.py, removed when the test ends)
ClusterName=xrayfactory-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={state}/state
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=3600
DefMemPerCPU=1000
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=4 RealMemory=256000 Gres=gpu:4 State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
"""


def _install() -> None:
    """apt-get install slurm-wlm munge, unless the daemons are already there."""
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        if r.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _stop(pid_file: Path) -> None:
    pid = _alive(pid_file)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if _alive(pid_file) is None:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _wait_idle(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        r = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True)
        out = r.stdout + r.stderr
        if (
            r.returncode == 0
            and out.split()
            and all(state == "idle" for state in out.split()[1::2])
        ):
            return
        time.sleep(0.5)
    pytest.fail(f"SLURM node not idle after {timeout} s: {out}")


@contextmanager
def local_cluster(state: Path) -> Iterator[Path]:
    """Start munged (unless running), slurmctld and slurmd; stop what was started, by PID."""
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (/etc/slurm, daemons)")
    if CONF.exists() and not CONF.read_text().startswith(MARKER):
        pytest.skip(f"{CONF} belongs to a real SLURM installation: not touching it")
    _install()
    for sub in ("state", "spool"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(_conf(state))
    GRES.write_text(
        f"{MARKER}\nNodeName=localhost Name=gpu File=/dev/null,/dev/zero,/dev/full,/dev/urandom\n"
    )
    started: list[Path] = []
    try:
        if _alive(MUNGE_PID) is None:
            MUNGE_PID.parent.mkdir(parents=True, exist_ok=True)
            shutil.chown(MUNGE_PID.parent, "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, timeout=30)
            started.append(MUNGE_PID)
        for cmd, pid_file in (
            (["slurmctld"], state / "slurmctld.pid"),
            (["slurmd", "-N", "localhost"], state / "slurmd.pid"),
        ):
            subprocess.run(cmd, check=True, timeout=30)
            started.append(pid_file)
        _wait_idle(30)
        yield state
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True, timeout=30)
        for pid_file in reversed(started):
            _stop(pid_file)
        for path in (CONF, GRES):
            path.unlink(missing_ok=True)


def jobs() -> list[dict[str, str]]:
    """Every job slurmctld remembers (MinJobAge is an hour), as scontrol's key=value fields."""
    r = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, timeout=30
    )
    out = []
    for line in r.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "JobId" in fields:
            out.append(fields)
    return out
