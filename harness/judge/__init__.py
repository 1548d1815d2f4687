"""Judging allocations against the ground truth: how devices map to hardware (`identity`), the
oracle's verdicts (`oracle`), why claims are pending (`explain`), capacity left stranded
(`capacity`), what a run recorded (`record`), and how it is shown (`summary`, `report`).

Everything here reads fakedev's typed `Truth` and plain claim dicts; nothing here knows which
backend ran the cluster."""
