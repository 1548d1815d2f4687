"""The one YAML loader for everything users hand in (topology specs, driver profiles,
golden-path kits, chart values): PyYAML's safe loader with limits, so a hostile file costs a
bounded amount of time and memory and fails with one line.

Limits: the document size, the number of alias uses (billion-laughs documents are built from
a few anchors used many times), and nesting depth. An alias bomb is rejected while composing,
before any object is built."""

from __future__ import annotations

import re
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


# Plain scalars YAML 1.1 (PyYAML, and kubectl's go-yaml) turns into numbers a reader does not
# expect: 010 is 8, 0x10 is 16, 1:30 is 90, 1_0 is 10 (reliability-probe-2.md rows 6, 27, 96).
# They are refused: write the decimal number, or quote the text.
_SURPRISING_NUMBER = re.compile(r"[-+]?(0[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+|[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"
                                r"|[0-9_.]*_[0-9_.]*)\Z")


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

    def _plain_number(self, node: yaml.ScalarNode) -> None:
        if node.style is None and _SURPRISING_NUMBER.match(node.value):
            raise YamlLimitError(f"line {node.start_mark.line + 1}", f"{node.value[:40]!r} is a YAML 1.1 number "
                                 "(octal, hex, base 60 or with '_'); write it in decimal, or quote it for text")

    def construct_yaml_int(self, node):  # type: ignore[override]
        self._plain_number(node)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node):  # type: ignore[override]
        self._plain_number(node)
        return super().construct_yaml_float(node)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        """Duplicate keys are refused: PyYAML keeps the last silently (rows 11, 23, 97)."""
        if isinstance(node, yaml.MappingNode):
            seen: set = set()
            for k, _ in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    ident = (k.tag, k.value)
                    if ident in seen:
                        raise YamlLimitError(f"line {k.start_mark.line + 1}", f"key {k.value[:40]!r} appears twice "
                                             "in one mapping")
                    seen.add(ident)
        return super().construct_mapping(node, deep=deep)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_yaml_float)
_BoundedLoader.add_constructor("tag:yaml.org,2002:map", _BoundedLoader.construct_yaml_map)


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


class _KubeDumper(yaml.SafeDumper):
    """A dumper whose strings survive YAML 1.1 readers: go-yaml v2 (kubectl, sigs.k8s.io/yaml)
    reads a plain y, Y, n or N as a boolean, so those are quoted too (row 29)."""


_KubeDumper.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))


def dumps_all(docs: list[Any]) -> str:
    """YAML for kubectl: every string that a YAML 1.1 reader would take for something else quoted."""
    return yaml.dump_all(docs, Dumper=_KubeDumper, sort_keys=False)
