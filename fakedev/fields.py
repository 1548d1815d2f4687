"""Typed readers of spec fields: each checks one value and raises SpecError with its exact
path. Error messages quote user input only through `short`, so a huge or aliased structure can
never be expanded into a message."""

from __future__ import annotations

import re
import reprlib
from typing import Any, Callable

from .model import parse_bdf, parse_root

_REPR = reprlib.Repr()  # Python 3.11 takes no keyword arguments here
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 40, 40


def short(obj: Any) -> str:
    """A bounded repr of user input: constant cost, whatever the object's size or sharing."""
    return _REPR.repr(obj)


class SpecError(ValueError):
    """A spec problem at a field path; str() is the one line users see."""

    def __init__(self, path: str, problem: str, source: str = "spec") -> None:
        self.path, self.problem, self.source = path or "<top>", problem, source
        super().__init__(_one_line(f"{source}: {self.path}: {problem}"))


def _one_line(text: str) -> str:
    """Errors quote user input; control characters in it must not break the one-line promise."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)



def read_map(obj: Any, path: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(obj, dict):
        raise SpecError(path, f"expected a mapping, got {type(obj).__name__}")
    for k in obj:
        if not isinstance(k, str):
            raise SpecError(path, f"keys must be strings, got {short(k)}")
        if k not in allowed:
            raise SpecError(join(path, k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
    for k in sorted(required):
        if k not in obj:
            raise SpecError(join(path, k), "required key is missing")
    return obj


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def read_list(obj: Any, path: str) -> list:
    if not isinstance(obj, list):
        raise SpecError(path, f"expected a list, got {type(obj).__name__}")
    return obj


def read_int(obj: Any, path: str, lo: int, hi: int) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int):
        raise SpecError(path, f"expected an integer, got {short(obj)}")
    if not lo <= obj <= hi:
        raise SpecError(path, f"{obj} is out of range {lo}..{hi}")
    return obj


def read_str(obj: Any, path: str, pattern: re.Pattern | None = None, what: str = "") -> str:
    """A string; with `pattern`, the *whole* string must match (no trailing newline slips by)."""
    if not isinstance(obj, str):
        raise SpecError(path, f"expected a string, got {short(obj)}")
    if pattern is not None and not pattern.fullmatch(obj):
        raise SpecError(path, f"{short(obj)} is not {what or 'valid'}")
    return obj


def _read_hex(obj: Any, path: str, hi: int, what: str) -> int:
    """A number given as a YAML int or as hex text ('efa1', '0xefa1')."""
    if isinstance(obj, str):
        try:
            obj = int(obj, 16)
        except ValueError:
            raise SpecError(path, f"{short(obj)} is not {what}") from None
    return read_int(obj, path, 0, hi)


def read_hex16(obj: Any, path: str) -> int:
    """A 16-bit PCI id given as 0xefa1 (YAML int) or 'efa1'/'0xefa1' (string)."""
    return _read_hex(obj, path, 0xFFFF, "a hex PCI id")


def read_bus(obj: Any, path: str) -> int:
    return _read_hex(obj, path, 0xFF, "a hex bus number")


def _read_parsed(obj: Any, path: str, parse: Callable[[str], Any]) -> str:
    """A string the model's parser accepts; its complaint becomes the error."""
    s = read_str(obj, path)
    try:
        parse(s)
    except ValueError as e:
        raise SpecError(path, str(e)) from None
    return s


def read_bdf(obj: Any, path: str) -> str:
    return _read_parsed(obj, path, parse_bdf)


def read_root_name(obj: Any, path: str) -> str:
    return _read_parsed(obj, path, parse_root)


def opt(d: dict, key: str, path: str, read: Callable[[Any, str], Any], default: Any = None) -> Any:
    return read(d[key], join(path, key)) if key in d and d[key] is not None else default
