"""gunicorn on a free loopback port: start, readiness, worker PIDs and memory, stop."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.progress import log

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SERVER_START_S = 15.0
GRACEFUL_TIMEOUT_S = 3  # gunicorn's wait for busy workers on SIGTERM
STOP_WAIT_S = GRACEFUL_TIMEOUT_S + 3.0  # then the master is killed
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Server:
    port: int
    process: subprocess.Popen[bytes]
    workers: int
    threads: int
    worker_class: str
    version: str

    def describe(self) -> str:
        return (
            f"gunicorn {self.version} on {HOST}:{self.port}: {self.workers} {self.worker_class} "
            f"workers x {self.threads} thread(s), 'app:create_app()', master pid "
            f"{self.process.pid}"
        )


def free_port() -> int:
    """A port the kernel just handed out; gunicorn binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A pre-exec hook: if the bench itself is killed outright (SIGKILL, no cleanup), the
    kernel sends gunicorn SIGTERM rather than leaving it serving. libc is loaded here, in the
    parent, so the child only makes one system call between fork and exec."""
    libc = _libc()
    if libc is None:
        return None

    def hook() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


def worker_pids(master: int) -> list[int]:
    """The master's child processes, from /proc (every task's children list)."""
    pids: set[int] = set()
    for children in Path(f"/proc/{master}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in children.read_text().split())
    return sorted(pids)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, and from smaps_rollup its Pss (shared pages
    split among the processes sharing them) and USS (pages only it holds), in MB (MiB)."""
    found: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    with contextlib.suppress(OSError):
        private = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "Pss":
                found["Pss"] = int(value.split()[0]) / 1024
            elif key in ("Private_Clean", "Private_Dirty"):
                private += int(value.split()[0])
        found["USS"] = private / 1024
    return found


CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def cpu_seconds(pid: int) -> tuple[float, int] | None:
    """utime + stime of a process (all its threads) and its minor page faults so far, from
    /proc/<pid>/stat; None if it is gone. Faults show memory handed back and taken again
    (argon2's 19 MiB faulted in afresh at each hash would be ~4,900 of them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command (which may hold spaces) start at field 3, the state.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S, int(fields[7])


def gunicorn_cpu(server: Server) -> dict[int, tuple[float, int]]:
    """CPU seconds and minor faults so far of the master and each worker, by pid: the whole
    server's cost."""
    pids = [server.process.pid, *worker_pids(server.process.pid)]
    found = {pid: cpu_seconds(pid) for pid in pids}
    return {pid: reading for pid, reading in found.items() if reading is not None}


@dataclass(frozen=True)
class PhaseCpu:
    """The whole server's CPU over one load phase: utime + stime of the master and workers,
    read before and after it, and the units of work (sign-ins, requests) it completed."""

    seconds: float
    units: int
    requests_per_unit: int
    # False if a worker started or ended during the phase: its CPU would be missed.
    same_processes: bool
    minor_faults: int = 0

    @classmethod
    def between(
        cls,
        before: dict[int, tuple[float, int]],
        after: dict[int, tuple[float, int]],
        units: int,
        requests_per_unit: int,
    ) -> PhaseCpu:
        both = [pid for pid in after if pid in before]
        seconds = sum(after[pid][0] - before[pid][0] for pid in both)
        faults = sum(after[pid][1] - before[pid][1] for pid in both)
        return cls(seconds, units, requests_per_unit, set(before) == set(after), faults)

    @property
    def faults_per_unit(self) -> float | None:
        return self.minor_faults / self.units if self.units else None

    @property
    def per_unit_s(self) -> float | None:
        return self.seconds / self.units if self.units else None

    @property
    def per_request_s(self) -> float | None:
        per_unit = self.per_unit_s
        return None if per_unit is None else per_unit / self.requests_per_unit


def gunicorn_memory(server: Server) -> dict[int, dict[str, float]]:
    """Memory of the master and each worker, by pid."""
    pids = [server.process.pid, *worker_pids(server.process.pid)]
    return {pid: memory_mb(pid) for pid in pids}


def _is_gunicorn(pid: int) -> bool:
    try:
        return b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def log_tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def wait_until_healthy(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log_tail(log_path)}")
        conn = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer /healthz in {SERVER_START_S:.0f} s")


def stop_gunicorn(process: subprocess.Popen[bytes]) -> None:
    """TERM (graceful, bounded by --graceful-timeout), then KILL; then any worker that
    outlived its master, checked to still be a gunicorn process before it is signalled."""
    workers = worker_pids(process.pid)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for pid in workers:
        if _is_gunicorn(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def gunicorn(workers: int, threads: int, log_path: Path) -> Iterator[Server]:
    port = free_port()
    worker_class = "sync" if threads == 1 else "gthread"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        worker_class,
        "--graceful-timeout",
        str(GRACEFUL_TIMEOUT_S),
        "--log-level",
        "warning",
        "--access-logfile",
        "/dev/null",
        # The production settings (preload, connections per worker); the flags above win.
        "--config",
        str(ROOT / "gunicorn.conf.py"),
    ]
    with open(log_path, "wb") as server_log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            # Called between fork and exec; no client threads exist yet.
            preexec_fn=_die_with_parent_hook(),
        )
        try:
            wait_until_healthy(port, process, log_path)
            version = importlib.metadata.version("gunicorn")
            yield Server(port, process, workers, threads, worker_class, version)
        finally:
            stop_gunicorn(process)
            log("gunicorn stopped")
