"""The one YAML loader for everything users hand in (topology specs, driver profiles,
golden-path kits, chart values): PyYAML's safe loader with limits, so a hostile file costs a
bounded amount of time and memory and fails with one line.

Limits: the document size, the number of alias uses (billion-laughs documents are built from
a few anchors used many times), and nesting depth. An alias bomb is rejected while composing,
before any object is built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a trn2u spec is ~20 KiB
MAX_ALIASES = 64  # anchors are handy for a few shared blocks, not for thousands
MAX_DEPTH = 64


class YamlLimitError(ValueError):
    """A document over a limit or not YAML; str() is one line: `source: where: problem`."""

    def __init__(self, where: str, problem: str, source: str = "<yaml>") -> None:
        self.where, self.problem, self.source = where, problem, source
        text = f"{source}: {where}: {problem}"
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YamlLimitError(f"line {mark.line + 1}", f"more than {MAX_ALIASES} alias uses "
                                     "(an alias bomb?); expand the document by hand")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlLimitError(f"line {mark.line + 1}", f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_size(text: str | bytes, source: str) -> str:
    if len(text) > MAX_BYTES:
        raise YamlLimitError("<file>", f"larger than {MAX_BYTES // 1024} KiB", source)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise YamlLimitError("<file>", f"not UTF-8 (byte {e.start})", source) from None
    return text


def _error(e: Exception, source: str) -> YamlLimitError:
    if isinstance(e, YamlLimitError):
        return YamlLimitError(e.where, e.problem, source)
    if isinstance(e, yaml.YAMLError):
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "<yaml>"
        return YamlLimitError(where, f"invalid YAML: {getattr(e, 'problem', None) or str(e).splitlines()[0]}", source)
    return YamlLimitError("<yaml>", f"invalid YAML: {str(e)[:100]}", source)


def loads_all(text: str | bytes, source: str = "<yaml>") -> list[Any]:
    """Every document of a YAML stream, within the limits."""
    text = _check_size(text, source)
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader already rejects some characters here
        out = []
        while loader.check_data():
            out.append(loader.get_data())
        return out
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:  # YamlLimitError is a ValueError
        raise _error(e, source) from None
    finally:
        if loader is not None:
            loader.dispose()


def loads(text: str | bytes, source: str = "<yaml>") -> Any:
    """A single-document YAML text, within the limits (an empty document is None)."""
    docs = loads_all(text, source)
    if len(docs) > 1:
        raise YamlLimitError("<yaml>", f"expected one YAML document, found {len(docs)}", source)
    return docs[0] if docs else None


def load_file(path: str | Path, all_documents: bool = False) -> Any:
    """Read and parse a file; errors name it. Reads at most MAX_BYTES + 1 bytes."""
    p = Path(path)
    try:
        if not p.is_file():
            raise YamlLimitError("<file>", "not a regular file" if p.exists() else "no such file", str(p))
        with open(p, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise YamlLimitError("<file>", f"cannot read: {e.strerror}", str(p)) from None
    return loads_all(data, str(p)) if all_documents else loads(data, str(p))
