"""`dra-harness`: the command line (main.py), with `e2e` (e2e.py) and `replay` (replay.py)."""

from .main import main

__all__ = ["main"]
