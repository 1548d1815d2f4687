"""Helper of test_spawn_under_grpc.py (run as a script in a fresh interpreter, so the
environment is read before grpc is imported): spawn `/bin/true` N times through procs.spawn
while gRPC channels open and close on other threads, as the supervisor's kubelet stand-in does,
and print how many children died before exec.

`--grpc-default`: without our packages (so gRPC keeps its default fork support), children made
with subprocess.Popen and a preexec_fn, as procs.spawn makes them: the failure itself."""

import os
import subprocess
import sys
import tempfile
import threading
from concurrent import futures
from pathlib import Path

DEFAULT = "--grpc-default" in sys.argv
if DEFAULT:
    os.environ.pop("GRPC_ENABLE_FORK_SUPPORT", None)
else:
    import harness  # noqa: F401  (first: what it sets must be in place before grpc loads)
import grpc  # noqa: E402


def spawn(argv: list[str], log: Path) -> subprocess.Popen:
    if DEFAULT:
        with open(log, "ab") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=os.setpgrp)
    from harness.backends import procs

    return procs.spawn("true", argv, log)[1]


def main(n: int) -> None:
    d = Path(tempfile.mkdtemp(prefix="spawn-grpc-"))
    srv = grpc.server(futures.ThreadPoolExecutor(2))
    sock = d / "s.sock"
    srv.add_insecure_port(f"unix:{sock}")
    srv.start()
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            with grpc.insecure_channel(f"unix:{sock}") as ch:
                try:
                    grpc.channel_ready_future(ch).result(timeout=1)
                except grpc.FutureTimeoutError:
                    pass

    threading.Thread(target=chatter, daemon=True).start()
    died = []
    for i in range(n):
        log = d / f"{i}.log"
        popen = spawn(["/bin/true"], log)
        if popen.wait() != 0:
            died.append(f"child {i}: exit {popen.returncode}: {log.read_text()[:160].strip()}")
        log.unlink()
    stop.set()
    srv.stop(0)
    print(f"{len(died)} of {n} children died before exec")
    for line in died[:3]:
        print(line)


if __name__ == "__main__":
    main(int(sys.argv[1]))
