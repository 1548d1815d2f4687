"""Wake the driver when its tree changes: inotify on the directories hotplug and faults touch.

Called through libc from the global namespace (ctypes.CDLL(None)) so that umockdev's preload,
when present, redirects the watched paths to the fake tree like every other access.
"""

from __future__ import annotations

import ctypes
import os
import select

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x8, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_NONBLOCK, IN_CLOEXEC = 0x100, 0x200, 0x400, 0o4000, 0o2000000
MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF

_libc = ctypes.CDLL(None, use_errno=True)


def _poll(fds: list[int], timeout: float) -> list[int]:
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    return [fd for fd, _ in p.poll(timeout * 1000)]


class Watcher:
    def __init__(self) -> None:
        self.fd = -1
        # A self-pipe: wake() interrupts wait() at once (select() resumes after signals, PEP 475).
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except BlockingIOError:
            pass

    def rearm(self, paths: list[str]) -> int:
        """Replace all watches (directories of removed devices are gone); returns how many took."""
        self.close()
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            return 0
        return sum(1 for p in paths if _libc.inotify_add_watch(self.fd, os.fsencode(p), MASK) >= 0)

    def wait(self, timeout: float, debounce: float = 0.05) -> bool:
        """True when something changed within `timeout` seconds (events drained after a short debounce).
        poll(), not select(): a driver host serving hundreds of nodes has fds above FD_SETSIZE."""
        ready = _poll([self.wake_r] + ([self.fd] if self.fd >= 0 else []), timeout)
        if self.wake_r in ready:
            try:  # drained, or every later wait would return at once (a host woken by SIGHUP would spin)
                while os.read(self.wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            return True
        if not ready:
            return False
        while True:
            self._drain()
            if not _poll([self.fd], debounce):
                return True

    def _drain(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
