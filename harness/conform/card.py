"""The report card as text, from the JUnit report of a conform run: one line per check (PASS,
FAIL with its first line of reason, N/A with why), grouped as KEP-5970's contract and the
oracle's part, and a verdict line. JUnit is what CI keeps; this is what a person reads."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from . import CHECKS


@dataclass
class Outcome:
    check: str
    status: str  # PASS | FAIL | N/A | NOT RUN
    detail: str = ""
    seconds: float = 0.0


def outcomes(junit: Path) -> dict[str, Outcome]:
    """check name -> its outcome, from pytest's JUnit XML (testcases named test_<check>)."""
    out: dict[str, Outcome] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        if not name.startswith("test_"):
            continue
        check, secs = name[len("test_"):], float(case.get("time") or 0)
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            text = (bad.get("message") or bad.text or "").strip()
            out[check] = Outcome(check, "FAIL", _first(text), secs)
        elif skip is not None:
            reason = (skip.get("message") or "").strip()
            status = "N/A" if "not applicable" in reason else "SKIP"
            out[check] = Outcome(check, status, reason.split("not applicable: ", 1)[-1], secs)
        else:
            out[check] = Outcome(check, "PASS", "", secs)
    return out


def _first(text: str) -> str:
    """The line of a failure that says what went wrong (pytest prefixes AssertionError: ...)."""
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("assert ", "+", "where")):
            return line.removeprefix("AssertionError: ").removeprefix("Failed: ")[:300]
    return text[:300]


def render(driver: str, profile: str, where: str, results: dict[str, Outcome]) -> str:
    lines = [f"report card: {driver} (profile {profile}) on {where}", ""]
    for part, title in (("contract", "the DRA driver contract (KEP-5970's seven behaviours)"),
                        ("oracle", "judged against the true topology (dra-harness oracle)")):
        lines.append(title)
        for c in (c for c in CHECKS if c.part == part):
            o = results.get(c.name, Outcome(c.name, "NOT RUN"))
            lines.append(f"  {o.status:<7} {c.name:<13} {o.detail or c.what}")
        lines.append("")
    counts = {s: sum(1 for o in results.values() if o.status == s) for s in ("PASS", "FAIL", "N/A", "SKIP")}
    verdict = "FAILS" if counts["FAIL"] else "PASSES"
    lines.append(f"{driver} {verdict}: {counts['PASS']} passed, {counts['FAIL']} failed, "
                 f"{counts['N/A']} not applicable" + (f", {counts['SKIP']} skipped" if counts["SKIP"] else ""))
    return "\n".join(lines) + "\n"
