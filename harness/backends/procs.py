"""Processes the harness starts: logged to files, tied to their parent's life, stopped by PID.

A process is identified by (pid, start time) so a PID the kernel reused is never signalled.
Children get PR_SET_PDEATHSIG=SIGKILL: if the process that owns them dies, however it dies,
they die too; nothing outlives its owner.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Proc:
    name: str
    pid: int
    start_time: int  # clock ticks since boot (/proc/PID/stat field 22)
    log: str
    argv: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parens):
    [0] state, [11] utime, [12] stime, [19] start time; None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    f = stat(pid)
    return int(f[19]) if f else None


def alive(p: Proc) -> bool:
    f = stat(p.pid)  # one read: the start time says it is ours, the state that it is no zombie
    return f is not None and int(f[19]) == p.start_time and f[0] != "Z"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (0 when it is gone)."""
    f = stat(pid)
    return (int(f[11]) + int(f[12])) / CLK_TCK if f else 0.0


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgid(0, 0)  # own process group: a terminal's Ctrl-C goes to the owner, which stops us in order


def spawn(name: str, argv: list[str], log: Path, env: dict | None = None, cwd: str | None = None,
          tie_to_parent: bool = True, pass_fds: tuple[int, ...] = (), pipes: bool = False) -> tuple[Proc, subprocess.Popen]:
    """`pipes`: stdin and stdout are pipes to us (a line protocol); stderr still goes to the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab", buffering=0)
    try:
        popen = subprocess.Popen(argv, stdout=subprocess.PIPE if pipes else out,
                                 stderr=out if pipes else subprocess.STDOUT,
                                 stdin=subprocess.PIPE if pipes else subprocess.DEVNULL, env=env,
                                 cwd=cwd, preexec_fn=_die_with_parent if tie_to_parent else None,
                                 start_new_session=not tie_to_parent, pass_fds=pass_fds)
    finally:
        out.close()
    st = start_time(popen.pid) or 0
    return Proc(name, popen.pid, st, str(log), list(argv)), popen


def stop(p: Proc, timeout: float = 10.0, popen: subprocess.Popen | None = None) -> None:
    """SIGTERM, then SIGKILL after `timeout`; reaps the child when we own it."""
    stop_all([(p, popen)], timeout)


def stop_all(items: list[tuple[Proc, subprocess.Popen | None]], timeout: float = 5.0) -> None:
    """SIGTERM every process at once, then SIGKILL whatever is left after `timeout`."""
    live = [(p, po) for p, po in items if alive(p)]
    for p, _ in live:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for p, po in live:
        while alive(p) and time.monotonic() < deadline:
            if po is not None:
                try:
                    po.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.05)
        if alive(p):
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if po is not None:
            po.wait(timeout=10)


def tail(path: str | Path, lines: int = 20) -> str:
    try:
        data = Path(path).read_bytes()[-8192:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
