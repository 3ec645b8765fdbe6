"""Child processes of the benchmark: start pinned to a core, wait for readiness, read CPU and memory
from /proc, and stop everything on exit (also on Ctrl-C and SIGTERM)."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
_ALL: list[Proc] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused at once."""
    return free_port()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            kids.extend(int(x) for x in task.read_text().split())
    return kids


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(_children(p))
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and its descendants (all threads), in seconds."""
    ticks = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLK_TCK


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the main thread and of all other threads (thread pools, aiosqlite) of one process."""
    main = other = 0
    for stat_path in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError, ValueError):
            stat = stat_path.read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks = int(fields[11]) + int(fields[12])
            if stat_path.parent.name == str(pid):
                main += ticks
            else:
                other += ticks
    return main / CLK_TCK, other / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS summed over the process tree, in kB."""
    out = {"VmHWM": 0, "VmRSS": 0}
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in out:
                    out[key] += int(value.split()[0])
    return out


class Proc:
    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        cpu: str | None,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        full = ["taskset", "-c", cpu, *cmd] if cpu is not None else list(cmd)
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(  # noqa: S603
            full,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.popen.pid  # taskset execs the command: same pid
        _ALL.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def threads_cpu(self) -> tuple[float, float]:
        return thread_cpu(self.pid)

    def memory(self) -> dict[str, int]:
        return memory_kb(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        else:
            # Leftover children of a dead leader (nginx workers) share its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self._log.close()
        if self in _ALL:
            _ALL.remove(self)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all() -> None:
    for proc in list(reversed(_ALL)):
        with contextlib.suppress(Exception):
            proc.stop(timeout=5)


def install_cleanup() -> None:
    atexit.register(stop_all)

    def on_signal(sig: int, frame: object) -> None:
        stop_all()
        sys.exit(128 + sig)

    # Ctrl-C stays a KeyboardInterrupt (the run reports what it has, then stops everything); the
    # servers run in their own sessions, so only this process decides when they stop.
    signal.signal(signal.SIGTERM, on_signal)


def wait_http(url: str, proc: Proc, timeout: float = 30.0, ok: Sequence[int] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status in ok:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} not ready at {url} after {timeout}s ({last}):\n{proc.tail()}")
