"""The kubelet stand-in's retry thread outlives a failed round: an API server that refuses the
connection while pods' health is patched (no ApiException, a urllib3 error) once ended the
thread, and every later failed prepare stayed Pending for good. Here a round fails on purpose
and the next rounds must still run (a test double of the rest of the stand-in: the thread's
own loop is the real one)."""

from __future__ import annotations

import threading
import time

from harness.backends.local.kubelet_standin import KubeletStandIn


def test_a_failed_round_does_not_end_the_retry_thread():
    s = KubeletStandIn.__new__(KubeletStandIn)
    s.stop_event, s.health_due, s.lock, s.retry = threading.Event(), threading.Event(), threading.Lock(), {}
    rounds: list[float] = []

    def refresh():
        if not rounds:
            raise ConnectionRefusedError("the API server is restarting")

    s._refresh_health = refresh
    s._retry_starts = lambda: rounds.append(time.monotonic())
    s.health_due.set()
    t = threading.Thread(target=s._retry_loop, daemon=True)
    t.start()
    end = time.monotonic() + 5
    while len(rounds) < 3 and time.monotonic() < end:
        time.sleep(0.05)
    s.stop_event.set()
    t.join(2)
    assert len(rounds) >= 3, f"only {len(rounds)} retry round(s) ran after the failed one"
