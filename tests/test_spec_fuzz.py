"""Fuzz the spec loader: whatever the input, it loads or raises SpecError (one line), never
anything else. Inputs are arbitrary YAML-shaped data and valid presets with random damage."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakedev import presets, spec

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["0000:10:1c.0", "pci0000:10", "efa1", "trn1", "sw0", "-1"]))
keys = st.one_of(st.sampled_from(sorted(spec.TOP_KEYS | {"index", "bdf", "parent", "efa", "numa_node", "name",
                                                          "cpus", "id", "torus", "connected", "remove"})),
                 st.text(max_size=6))
data = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(keys, c, max_size=5)),
                    max_leaves=25)


def _loads_or_spec_error(obj) -> None:
    try:
        spec.load_data(obj, "fuzz")
    except spec.SpecError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz: ")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data)
def test_arbitrary_data(obj):
    _loads_or_spec_error(obj)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(presets.names()), st.data())
def test_damaged_presets(name, draw):
    d = copy.deepcopy(spec.dump(spec.load_preset(name)))
    for _ in range(draw.draw(st.integers(1, 3))):
        path = _random_path(d, draw)
        _damage(d, path, draw.draw(scalars | st.lists(scalars, max_size=3) | st.just("__delete__")))
    _loads_or_spec_error(d)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text):
    try:
        spec.load_text(text, "fuzz")
    except spec.SpecError as e:
        assert "\n" not in str(e)


def _random_path(d, draw) -> list:
    path, cur = [], d
    while isinstance(cur, (dict, list)) and cur and draw.draw(st.booleans()):
        k = draw.draw(st.sampled_from(sorted(cur) if isinstance(cur, dict) else list(range(len(cur)))))
        path.append(k)
        cur = cur[k]
    return path


def _damage(d, path, value) -> None:
    if not path:
        return
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    if value == "__delete__":
        del cur[path[-1]]
    else:
        cur[path[-1]] = value


def test_yaml_round_trip_of_dump_is_valid():
    for name in presets.names():
        text = yaml.safe_dump(spec.dump(spec.load_preset(name)))
        spec.load_text(text)


# -- YAML structure: anchors and aliases, odd strings, control characters (issue: hostile input)

anchor_names = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


@st.composite
def aliased_yaml(draw) -> str:
    """A spec whose values are anchored blocks reused through aliases, nested a few levels."""
    names = draw(st.lists(anchor_names, min_size=1, max_size=4, unique=True))
    lines = ["preset: trn1.2xlarge", "memory_gib:"]
    for i, n in enumerate(names):
        refs = draw(st.lists(st.sampled_from(names[:i]) if i else st.just("x"), min_size=1, max_size=12))
        items = ",".join(f"*{r}" if i else r for r in refs)
        lines.append(f"  - &{n} [{items}]")
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(aliased_yaml())
def test_aliases_never_expand_into_memory_or_messages(text):
    try:
        spec.load_text(text, "fuzz")
    except spec.SpecError as e:
        assert "\n" not in str(e) and len(str(e)) < 400, str(e)[:500]


odd = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["instance_type", "neuron_driver_version", "seed"]), odd)
def test_odd_strings_with_control_characters(key, value):
    text = f"preset: trn1.2xlarge\n{key}: {yaml.safe_dump(value, default_style=chr(34)).strip()}\n"
    try:
        t = spec.load_text(text, "fuzz")
    except spec.SpecError as e:
        assert "\n" not in str(e)
        return
    for v in (t.instance_type, t.neuron_driver_version):  # whatever got in is printable, one line
        assert v.isprintable() and "\n" not in v
