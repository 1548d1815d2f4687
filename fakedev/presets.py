"""EC2 instance presets shipped as YAML spec files in fakedev/presets/."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml


@cache
def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("presets").iterdir()
                  if p.name.endswith(".yaml"))


@cache
def _text(name: str) -> str:
    return resources.files(__package__).joinpath("presets").joinpath(f"{name}.yaml").read_text()


def raw(name: str) -> dict:
    """The preset as parsed YAML (a fresh copy each call, so merging cannot alter the cache)."""
    return yaml.safe_load(_text(name))


def text(name: str) -> str:
    return _text(name)
