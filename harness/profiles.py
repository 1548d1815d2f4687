"""Driver profiles: how to start a DRA driver for one fake node, so any driver can be plugged in.

A profile is a command template plus environment and the way the driver sees the node's tree:
  sysfs-root   the command gets the tree through a flag or variable of its own ({tree})
  fakedev-run  the command runs inside `fakedev run --tree TREE --` (mount namespace, root)
Placeholders: {node} {tree} {kubeconfig} {registry_dir} {plugins_dir} {cdi_root} {python} {health_port}.
Profiles load from YAML (`--driver-profile FILE`) with the same fields.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ProfileError(ValueError):
    pass


@dataclass
class DriverProfile:
    name: str
    driver: str  # the DRA driver name (ResourceSlice spec.driver, socket names)
    command: list[str]
    tree_access: str = "sysfs-root"
    env: dict[str, str] = field(default_factory=dict)
    kind_chart: str | None = None  # for the kind backend: a Helm chart (path or oci://) ...
    kind_values: dict = field(default_factory=dict)  # ... and its values

    def argv(self, **values: str) -> list[str]:
        values = {"python": sys.executable, **values}
        try:
            argv = [a.format(**values) for a in self.command]
        except KeyError as e:
            raise ProfileError(f"driver profile {self.name}: unknown placeholder {e} in command") from None
        if self.tree_access == "fakedev-run":
            argv = [sys.executable, "-m", "fakedev.cli", "run", "--tree", values["tree"], "--", *argv]
        return argv


def refdriver(kind: str, extra: list[str] = ()) -> DriverProfile:
    driver = {"neuron": "neuron.aws.com", "efa": "dra.net"}[kind]
    return DriverProfile(
        name=f"refdriver-{kind}", driver=driver,
        command=["{python}", "-m", "refdriver.cli", kind, "--node-name", "{node}", "--kubeconfig", "{kubeconfig}",
                 "--sysfs-root", "{tree}", "--registry-dir", "{registry_dir}", "--plugins-dir", "{plugins_dir}",
                 "--cdi-root", "{cdi_root}", "--health-port", "{health_port}", *extra],
        kind_chart="deploy/chart/dra-harness-refdriver", kind_values={kind: {"enabled": True}},
    )


BUILTIN = {"refdriver-neuron": lambda: refdriver("neuron"), "refdriver-efa": lambda: refdriver("efa")}
DEFAULT = ["refdriver-neuron", "refdriver-efa"]


def load(path: str | Path) -> DriverProfile:
    data = yaml.safe_load(Path(path).read_text())
    allowed = {"name", "driver", "command", "tree_access", "env", "kind_chart", "kind_values"}
    if not isinstance(data, dict) or not {"name", "driver", "command"} <= set(data) or set(data) - allowed:
        raise ProfileError(f"{path}: a driver profile needs name, driver, command (optional: tree_access, env, "
                           "kind_chart, kind_values)")
    if data.get("tree_access", "sysfs-root") not in ("sysfs-root", "fakedev-run"):
        raise ProfileError(f"{path}: tree_access must be sysfs-root or fakedev-run")
    return DriverProfile(**data)


def resolve(name: str, extra_args: dict[str, list[str]] | None = None) -> DriverProfile:
    """A built-in profile by name, or a YAML profile file."""
    if name in BUILTIN:
        p = BUILTIN[name]()
        if extra_args and name in extra_args:
            p.command += extra_args[name]
        return p
    if Path(name).exists():
        return load(name)
    raise ProfileError(f"unknown driver profile {name!r} (built-in: {', '.join(BUILTIN)}, or a YAML file)")


def parse_driver_args(items: list[str]) -> dict[str, list[str]]:
    """`PROFILE=ARG` items (--driver-arg) -> profile -> extra arguments."""
    out: dict[str, list[str]] = {}
    for item in items:
        prof, _, arg = item.partition("=")
        if not arg:
            raise ProfileError(f"--driver-arg wants PROFILE=ARG, got {item!r}")
        out.setdefault(prof, []).append(arg)
    return out
