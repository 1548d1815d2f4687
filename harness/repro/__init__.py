"""Bugs that reproduce in one command: `capture` a cluster into a bundle (capture.py, with
`--anonymise`: anonymise.py), `repro` it on fake hardware (repro.py)."""
