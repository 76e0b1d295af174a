"""A throw-away single-node SLURM cluster with job accounting, for tests: munge, MariaDB, slurmdbd, slurmctld, slurmd.

Every daemon runs in the foreground as root inside a private network namespace that has only a loopback
interface, so nothing listens on any address but that namespace's 127.0.0.1; each command also gets a private
mount namespace in which the cluster's folders cover /etc/slurm and /run/munge (the paths SLURM's job steps and
clients fall back to), so two clusters on one machine never collide and the host's files are never touched.
Commands that talk to the cluster run through `SlurmCluster.command`. Every wait has a deadline:
a cluster that cannot start (or whose accounting does not answer) raises `ClusterError`, it never hangs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

LOGGER = logging.getLogger(__name__)
REQUIRED_PROGRAMS = ("munged", "mungekey", "munge", "unmunge", "mariadbd", "mariadb-install-db", "slurmdbd",
                     "slurmctld", "slurmd", "sbatch", "scancel", "sacct", "sacctmgr", "sinfo", "ip", "nsenter")
CLUSTER_NAME = "memamba"
PARTITION = "debug"
ACCOUNT = "memamba_test"
DB_USER, DB_PASSWORD = "slurm", "slurm-test"
ETC_SLURM, RUN_MUNGE = Path("/etc/slurm"), Path("/run/munge")
MUNGE_SOCKET = RUN_MUNGE / "munge.socket.2"
BIND_MOUNTS = 'mount --bind "$1" /etc/slurm && mount --bind "$2" /run/munge && shift 2 && exec "$@"'


class ClusterError(RuntimeError):
    """The test cluster did not start or does not answer in time."""


def missing_programs() -> list[str]:
    """Programs the cluster needs that are not on PATH (Debian: slurm-wlm, slurmdbd, munge, mariadb-server)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in REQUIRED_PROGRAMS if shutil.which(name, path=path) is None]


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    """Poll `check` every 0.5 s; raise ClusterError naming `what` (and the log's tail) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise ClusterError(f"{what} not ready after {timeout:.0f} s\n{tail}")


class SlurmCluster:
    """One node named after this host, partition `debug`, account `memamba_test`, accounting in MariaDB."""

    def __init__(self, root: Path, timeout: float = 60.0) -> None:
        self.root = root
        self.timeout = timeout
        self.netns = f"memamba-slurm-{os.getpid()}-{root.name}"
        self.host = socket.gethostname().split(".")[0]
        self.env = {**os.environ, "PATH": os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])}
        self.env.pop("SLURM_CONF", None)
        self._daemons: list[tuple[str, subprocess.Popen[bytes]]] = []

    def command(self, args: Sequence[str]) -> list[str]:
        """`args` run inside the cluster's network namespace, with its /etc/slurm and /run/munge."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount", "--propagation", "private",
                "sh", "-c", BIND_MOUNTS, "sh", str(self.root / "etc"), str(self.root / "munge"), *args]

    def run(self, args: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the cluster's namespaces (never raises on exit code)."""
        return subprocess.run(self.command(args), env=self.env, capture_output=True, text=True,
                              timeout=timeout or self.timeout)

    def start(self) -> None:
        """Write the configuration, start every daemon and wait until a job can be submitted and accounted."""
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in ("etc", "munge", "state", "spool", "mysql", "logs"):
            (self.root / folder).mkdir(mode=0o755, exist_ok=True)
        for mount_point in (ETC_SLURM, RUN_MUNGE):
            mount_point.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True, timeout=30)
        # A second loopback address: getaddrinfo(AI_ADDRCONFIG), which the daemons use to bind, finds no IPv4
        # at all when 127.0.0.1 is the only address.
        for args in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", "127.0.0.2/8", "dev", "lo"]):
            subprocess.run(["ip", "netns", "exec", self.netns, *args], check=True, capture_output=True, timeout=30)
        self._start_munge()
        self._start_database()
        self._write_slurm_config()
        self._start_daemon("slurmdbd", ["slurmdbd", "-D"])
        wait_until(lambda: self._ok(["sacctmgr", "-n", "list", "cluster"]), self.timeout, "slurmdbd",
                   self.root / "logs" / "slurmdbd.log")
        for entity in (["cluster", CLUSTER_NAME], ["account", ACCOUNT, f"cluster={CLUSTER_NAME}"],
                       ["user", "root", f"account={ACCOUNT}", f"defaultaccount={ACCOUNT}"]):
            self._check(["sacctmgr", "-i", "add", *entity])
        self._start_daemon("slurmctld", ["slurmctld", "-D"])
        self._start_daemon("slurmd", ["slurmd", "-D", "-N", self.host])
        wait_until(self._node_idle, self.timeout, "slurmd node idle", self.root / "logs" / "slurmd.log")
        wait_until(lambda: self._ok(["sacct", "-n", "-X", "--starttime", "now-1hour"]), self.timeout,
                   "sacct (job accounting)", self.root / "logs" / "slurmctld.log")

    def stop(self) -> None:
        """Cancel leftover jobs, stop the daemons (newest first, SIGTERM then SIGKILL), remove the namespace."""
        if any(name == "slurmctld" and process.poll() is None for name, process in self._daemons):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run(["scancel", "--user", "root", "--full"], timeout=20)
        for name, process in reversed(self._daemons):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    LOGGER.warning("%s did not stop on SIGTERM; killing it", name)
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=20)
        self._daemons.clear()
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, timeout=30)

    def _start_daemon(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        log = (self.root / "logs" / f"{name}.out").open("wb")
        process = subprocess.Popen(self.command(args), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._daemons.append((name, process))
        return process

    def _ok(self, args: Sequence[str]) -> bool:
        try:
            return self.run(args, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _check(self, args: Sequence[str]) -> str:
        result = self.run(args)
        if result.returncode != 0:
            raise ClusterError(f"{' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def _node_idle(self) -> bool:
        result = self.run(["sinfo", "-h", "-N", "-o", "%T"], timeout=10)
        return result.returncode == 0 and result.stdout.strip() == "idle"

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True, capture_output=True, timeout=30)
        self._start_daemon("munged", [
            "munged", "--foreground", "--force", f"--socket={MUNGE_SOCKET}", f"--key-file={key}",
            f"--pid-file={self.root / 'munged.pid'}", f"--log-file={self.root / 'logs' / 'munged.log'}",
            f"--seed-file={self.root / 'munged.seed'}",
        ])
        wait_until(lambda: self._ok(["sh", "-c", "munge -n | unmunge"]), self.timeout, "munged",
                   self.root / "logs" / "munged.log")

    def _start_database(self) -> None:
        datadir, socket_path = self.root / "mysql", self.root / "mysql.sock"
        install = subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            capture_output=True, text=True, timeout=120,
        )
        if install.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed: {install.stdout[-2000:]}{install.stderr[-2000:]}")
        self._start_daemon("mariadbd", [
            "mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={socket_path}", "--user=root",
            "--bind-address=127.0.0.1", "--port=3306", f"--pid-file={self.root / 'mysqld.pid'}",
            f"--log-error={self.root / 'logs' / 'mariadbd.log'}", "--innodb-buffer-pool-size=32M",
        ])
        client = ["mariadb", "--no-defaults", f"--socket={socket_path}", "-uroot"]
        wait_until(lambda: self._ok([*client, "-e", "SELECT 1"]), self.timeout, "MariaDB",
                   self.root / "logs" / "mariadbd.log")
        grants = " ".join(
            f"CREATE USER '{DB_USER}'@'{host}' IDENTIFIED BY '{DB_PASSWORD}';"
            f" GRANT ALL ON slurm_acct_db.* TO '{DB_USER}'@'{host}';"
            for host in ("localhost", "127.0.0.1")
        )
        self._check([*client, "-e", grants])

    def _write_slurm_config(self) -> None:
        root, logs = self.root, self.root / "logs"
        auth = "AuthType=auth/munge\n"
        dbd = root / "etc" / "slurmdbd.conf"
        dbd.write_text(
            auth
            + "DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort=6819\nSlurmUser=root\n"
            + f"PidFile={root / 'slurmdbd.pid'}\nLogFile={logs / 'slurmdbd.log'}\n"
            + "StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort=3306\n"
            + f"StorageUser={DB_USER}\nStoragePass={DB_PASSWORD}\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)
        node = self._check(["slurmd", "-C"]).splitlines()[0]
        (root / "etc" / "slurm.conf").write_text(
            f"ClusterName={CLUSTER_NAME}\nSlurmctldHost={self.host}(127.0.0.1)\n"
            + auth
            + "CredType=cred/munge\nSlurmUser=root\nSlurmdUser=root\n"
            + f"StateSaveLocation={root / 'state'}\nSlurmdSpoolDir={root / 'spool'}\n"
            + f"SlurmctldPidFile={root / 'slurmctld.pid'}\nSlurmdPidFile={root / 'slurmd.pid'}\n"
            + f"SlurmctldLogFile={logs / 'slurmctld.log'}\nSlurmdLogFile={logs / 'slurmd.log'}\n"
            + "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
            + "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            + "SchedulerType=sched/backfill\nMpiDefault=none\nReturnToService=2\nMailProg=/bin/true\n"
            + "AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
            + "AccountingStoragePort=6819\nAccountingStorageEnforce=associations\n"
            + "AccountingStoreFlags=job_comment\nJobCompType=jobcomp/none\n"
            + f"{node} NodeAddr=127.0.0.1 State=UNKNOWN\n"
            + f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        )
