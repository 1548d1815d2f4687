"""What the fake hardware's error counters mean: the one place that says which count makes a
device failed (it must not run work) or degraded (it may, but should not take new work).

Neuron: neuron.ko's stats/hardware counters (NE §1.4). An uncorrected SRAM or HBM error is fatal
to the work on the device. mem_ecc_repairable_uncorrected counts HBM errors that a device reset
repairs (row repair); neuron.ko publishes no count of *corrected* errors, so this is the closest
thing to "correctable errors" the kernel shows.
EFA: the efa driver's hw_counters/no_completion_cmds counts admin commands that timed out; a
device that stops answering shows only there, since its port state is hard-coded ACTIVE
(efa_query_port in linux drivers/infiniband/hw/efa/efa_verbs.c; dra-features.md §3.4 cites
NVIDIA/NVSentinel#1750 treating efa_no_completion_cmds as fatal).
"""

from __future__ import annotations

ECC_COUNTERS = {"sram": "sram_ecc_uncorrected", "mem": "mem_ecc_uncorrected",
                "repairable": "mem_ecc_repairable_uncorrected"}
FATAL = {"neuron": ("sram_ecc_uncorrected", "mem_ecc_uncorrected"), "efa": ("no_completion_cmds",)}
DEGRADING = {"neuron": ("mem_ecc_repairable_uncorrected",), "efa": ()}


def classify(kind: str, counters: dict[str, int]) -> tuple[str, tuple[str, ...]]:
    """("ok" | "degraded" | "failed", the counts that say so)."""
    fatal = tuple(f"{k}={counters[k]}" for k in FATAL.get(kind, ()) if counters.get(k, 0) > 0)
    if fatal:
        return "failed", fatal
    degrading = tuple(f"{k}={counters[k]}" for k in DEGRADING.get(kind, ()) if counters.get(k, 0) > 0)
    return ("degraded", degrading) if degrading else ("ok", ())
