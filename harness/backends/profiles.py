"""Driver profiles: how to start a DRA driver for one fake node, so any driver can be plugged in.

A profile is a command template plus environment and the way the driver sees the node's tree:
  sysfs-root   the command gets the tree through a flag or variable of its own ({tree})
  fakedev-run  the command runs inside `fakedev run --tree TREE --` (mount namespace, root)
Placeholders (in `command` and `env`): {node} {tree} {kubeconfig} {kubelet_dir} {registry_dir}
{plugins_dir} {cdi_root} {python} {health_port} {bin_dir} (the control-plane binaries, where
`make bins` also builds upstream's e2e test driver) {imds_endpoint} (the node's fake IMDS, for
AWS_EC2_METADATA_SERVICE_ENDPOINT) {nri_socket} (the node's NRI runtime socket, for `nri: true`).
A profile with `nri: true` is also an NRI plugin (like DRANET): its nodes get an NRI runtime
stand-in, and under fakedev-run its socket directory appears at /var/run/nri, where NRI plugins
look by default.
Profiles load from YAML (`--driver FILE`) with the same fields.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fakedev import safeyaml

from .bins import ROOT
from .paths import check_name


class ProfileError(ValueError):
    pass


PLACEHOLDERS = {"node", "tree", "kubeconfig", "kubelet_dir", "registry_dir", "plugins_dir", "cdi_root", "python",
                "health_port", "bin_dir", "imds_endpoint", "nri_socket", "nodes_file"}
_PART = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def placeholders_in(text: str) -> list[str]:
    """The placeholders of a template, or ValueError naming what is not one: plain `{name}`
    substitution with `{{` and `}}` for literal braces, not str.format (whose `{0}`, `{x.attr}`
    and `{x[i]}` reach into Python objects, reliability-probe-2.md rows 1-5)."""
    out = []
    for m in _PART.finditer(text):
        tok = m.group(0)
        if tok in ("{{", "}}"):
            continue
        if m.group(1) is None:
            raise ValueError(f"a lone {tok!r} (write {tok * 2!r} for a literal brace)")
        if m.group(1) not in PLACEHOLDERS:
            raise ValueError(f"unknown placeholder {{{m.group(1)[:40]}}} (known: {', '.join(sorted(PLACEHOLDERS))}; "
                             "{{ and }} for literal braces)")
        out.append(m.group(1))
    return out


def fill(text: str, values: dict[str, str]) -> str:
    """`text` with its placeholders replaced (checked by placeholders_in)."""
    placeholders_in(text)

    def one(m: re.Match) -> str:
        tok = m.group(0)
        return tok[0] if tok in ("{{", "}}") else str(values.get(m.group(1), tok))

    return _PART.sub(one, text)


@dataclass
class DriverProfile:
    name: str
    driver: str  # the DRA driver name (ResourceSlice spec.driver, socket names)
    command: list[str]
    tree_access: str = "sysfs-root"
    env: dict[str, str] = field(default_factory=dict)
    kind_chart: str | None = None  # for the kind backend: a Helm chart (path or oci://) ...
    kind_values: dict = field(default_factory=dict)  # ... its values ({cluster} {api_host} {api_port} templated) ...
    kind_images: list[str] = field(default_factory=list)  # ... and the images it runs: local refs or .tar files, `kind load`ed
    device_classes: str | None = None  # YAML of the DeviceClasses the driver ships (path; relative: to the repo)
    identity: dict | None = None  # how its devices map to the hardware: one of name_pattern, pci_attribute, index_attribute
    nri: bool = False  # the driver is also an NRI plugin: its node needs a container runtime's NRI socket
    # host mode (many nodes per process, for scale): the command serving every node listed in
    # {nodes_file} that sees {tree}; None: the driver runs one process per node, always
    host_command: list[str] | None = None
    # built-in profiles only: binaries of `make bins` (in the cluster version's bin dir) that the
    # kind backend turns into images (binimage.py) and loads, binary name -> image ref
    kind_binary_images: dict[str, str] = field(default_factory=dict)

    source: str | None = None  # the YAML file it came from (relative paths in it are relative to that file)

    def device_classes_path(self) -> Path | None:
        if not self.device_classes:
            return None
        p = Path(self.device_classes)
        base = Path(self.source).parent if self.source else ROOT
        return p if p.is_absolute() else base / p

    def device_class_objects(self) -> list[dict]:
        """The DeviceClasses the driver ships, and nothing else: they are applied with admin
        rights, so a ClusterRoleBinding or a policy binding in the file could undo the driver
        scoping (reliability-probe-2.md row 10). Checked at load, before anything starts."""
        path = self.device_classes_path()
        if path is None:
            return []
        where = f"driver profile {self.name}: device_classes"
        try:
            docs = safeyaml.load_file(path, all_documents=True)
        except safeyaml.YamlLimitError as e:
            raise ProfileError(f"{where}: {e}") from None
        out = []
        for i, obj in enumerate(d for d in docs if d is not None):
            if not isinstance(obj, dict) or obj.get("kind") != "DeviceClass" or \
                    not str(obj.get("apiVersion", "")).startswith("resource.k8s.io/") or \
                    not isinstance(obj.get("metadata"), dict) or not isinstance(obj["metadata"].get("name"), str):
                kind = obj.get("kind") if isinstance(obj, dict) else type(obj).__name__
                raise ProfileError(f"{where}: {path}: document {i + 1} is a {str(kind)[:40]!r}, not a "
                                   "resource.k8s.io DeviceClass with a name (only DeviceClasses are applied)")
            out.append(obj)
        return out

    def environment(self, **values: str) -> dict[str, str]:
        """A clean environment: the profile's variables (templated like the command), the
        node's name, and only the basics of ours (PATH, locale, HOME, TMPDIR, PYTHONPATH).
        Anything else of the harness's environment (an AWS_CA_BUNDLE, a KUBECONFIG) stays out."""
        base = {k: os.environ[k] for k in CLEAN_ENV if k in os.environ}
        values = {"python": sys.executable, **values}
        try:
            own = {k: fill(v, values) for k, v in self.env.items()}
        except ValueError as e:
            raise ProfileError(f"driver profile {self.name}: env: {e}") from None
        return {**base, "PYTHONPATH": str(ROOT), "NODE_NAME": values.get("node", ""), **own}

    def host_argv(self, **values: str) -> list[str]:
        """The host-mode command, templated ({python} {tree} {nodes_file} {health_port})."""
        values = {"python": sys.executable, **values}
        return [fill(a, values) for a in self.host_command or []]

    def argv(self, binds: list[tuple[str, str]] = (), **values: str) -> list[str]:
        """The command, templated; under fakedev-run also the extra `binds` (DIR, PATH)."""
        values = {"python": sys.executable, **values}
        try:
            argv = [fill(a, values) for a in self.command]
        except ValueError as e:
            raise ProfileError(f"driver profile {self.name}: command: {e}") from None
        if self.tree_access == "fakedev-run":
            extra = [f"--bind={src}:{dst}" for src, dst in binds]
            argv = [sys.executable, "-m", "fakedev.cli", "run", "--tree", values["tree"], *extra, "--", *argv]
        return argv


def refdriver(kind: str, extra: list[str] = (), name: str | None = None,
              classes: str = "refdriver/manifests/deviceclasses.yaml") -> DriverProfile:
    driver = {"neuron": "neuron.aws.com", "efa": "dra.net"}[kind]
    return DriverProfile(
        name=name or f"refdriver-{kind}", driver=driver,
        command=["{python}", "-m", "refdriver.cli", kind, "--node-name", "{node}", "--kubeconfig", "{kubeconfig}",
                 "--sysfs-root", "{tree}", "--registry-dir", "{registry_dir}", "--plugins-dir", "{plugins_dir}",
                 "--cdi-root", "{cdi_root}", "--health-port", "{health_port}", *extra],
        kind_chart="deploy/chart/dra-harness-refdriver",
        kind_values={kind: {"enabled": True, **({"args": list(extra)} if extra else {})}},
        device_classes=classes,
        host_command=["{python}", "-m", "refdriver.cli", kind, "--sysfs-root", "{tree}", "--host-nodes", "{nodes_file}",
                      "--health-port", "{health_port}", *extra],
    )


def e2e_test_driver() -> DriverProfile:
    """Upstream's e2e DRA test driver, built on the kubeletplugin library, run unmodified: the
    example of plugging in a Go driver (research/external-drivers.md Part 1)."""
    return DriverProfile(
        name="e2e-test-driver", driver="test-driver.cdi.k8s.io",
        command=["{bin_dir}/test-driver", "-v=5", "--kubeconfig={kubeconfig}", "kubelet-plugin", "--node-name={node}",
                 "--plugin-registration-path={registry_dir}", "--datadir={plugins_dir}", "--cdi-dir={cdi_root}",
                 "--num-devices=4"],
        device_classes="clusters/drivers/e2e-test-driver.deviceclass.yaml",
        # on kind: the same binary as an image, in a DaemonSet with upstream e2e's volumes
        kind_chart="clusters/drivers/e2e-test-driver",
        kind_binary_images={"test-driver": "localhost/dra-test-driver:local"},
    )


BUILTIN = {"refdriver-neuron": lambda: refdriver("neuron"), "refdriver-efa": lambda: refdriver("efa"),
           # the profile setting for EFA sharing (refdriver/sharing.py): shares by bandwidth
           "refdriver-efa-shared": lambda: refdriver("efa", ["--share-efa"], "refdriver-efa-shared"),
           # NeuronCores as partitions (refdriver/partitions.py), with the classes that tell them apart
           "refdriver-neuron-partitioned": lambda: refdriver("neuron", ["--partition-cores"], "refdriver-neuron-partitioned",
                                                             "refdriver/manifests/deviceclasses-partitioned.yaml"),
           "e2e-test-driver": e2e_test_driver}
DEFAULT = ["refdriver-neuron", "refdriver-efa"]


CLEAN_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "TMPDIR", "USER", "LOGNAME")
DRIVER_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?\Z")  # a DNS subdomain, as DRA driver names are
FIELDS = {"name", "driver", "command", "tree_access", "env", "kind_chart", "kind_values", "kind_images", "device_classes",
          "identity", "nri"}
KIND_PLACEHOLDERS = {"cluster", "api_host", "api_port"}  # what kind_values may name: the cluster, not one node
NEEDS = {"local": ("command", "the local backend runs the driver's command per node"),
         "kind": ("kind_chart", "the kind backend installs the driver's Helm chart")}


def load(path: str | Path) -> DriverProfile:
    """A profile from YAML (bounded loader); every problem is one line naming the file and field."""
    try:
        data = safeyaml.load_file(path)
    except safeyaml.YamlLimitError as e:
        raise ProfileError(str(e)) from None
    if not isinstance(data, dict) or not {"name", "driver"} <= set(data) or set(data) - FIELDS or \
            not ({"command", "kind_chart"} & set(data)):
        raise ProfileError(f"{path}: a driver profile needs name, driver, and command (local backend) or kind_chart "
                           "(kind backend) (optional: tree_access, env, kind_values, kind_images, device_classes, "
                           "identity, nri)")
    try:
        check_name(data["name"], "profile name")
    except ValueError as e:
        raise ProfileError(f"{path}: name: {e}") from None
    if not isinstance(data["driver"], str) or not DRIVER_NAME_RE.match(data["driver"]):
        raise ProfileError(f"{path}: driver: must be a DNS subdomain like neuron.example.com")
    if "command" in data and (not isinstance(data["command"], list) or not data["command"] or
                              not all(isinstance(a, str) and "\0" not in a for a in data["command"])):
        raise ProfileError(f"{path}: command: must be a non-empty list of strings")
    data.setdefault("command", [])
    images = data.get("kind_images") or []
    if not isinstance(images, list) or not all(isinstance(i, str) and i and "\0" not in i and not i.startswith("-")
                                               for i in images):
        raise ProfileError(f"{path}: kind_images: must be a list of image references or .tar files")
    data["kind_images"] = [str((Path(path).parent / i).resolve()) if i.endswith((".tar", ".tar.gz")) and
                           not Path(i).is_absolute() else i for i in images]
    _check_kind_values(data.get("kind_values") or {}, f"{path}: kind_values")
    if data["name"] in BUILTIN:
        raise ProfileError(f"{path}: name: {data['name']!r} is a built-in profile's name; pick another")
    env = data.get("env") or {}
    if not isinstance(env, dict):
        raise ProfileError(f"{path}: env: must map variable names to strings")
    for k, v in env.items():
        if not isinstance(k, str) or not ENV_NAME_RE.match(k):
            raise ProfileError(f"{path}: env: {str(k)[:40]!r} is not a variable name (letters, digits, '_')")
        if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, str) and "\0" in v):
            raise ProfileError(f"{path}: env.{k}: must be a string (quote it: YAML reads true as a boolean)")
    data["env"] = {k: str(v) for k, v in env.items()}
    for field_name, texts in (("command", data["command"]), *((f"env.{k}", [v]) for k, v in data["env"].items())):
        for t in texts:
            try:
                placeholders_in(t)
            except ValueError as e:
                raise ProfileError(f"{path}: {field_name}: {e}") from None
    if data.get("tree_access", "sysfs-root") not in ("sysfs-root", "fakedev-run"):
        raise ProfileError(f"{path}: tree_access must be sysfs-root or fakedev-run")
    for key in ("kind_chart", "device_classes"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ProfileError(f"{path}: {key}: must be a path or reference")
    if not isinstance(data.get("kind_values") or {}, dict):
        raise ProfileError(f"{path}: kind_values: must be a mapping")
    if not isinstance(data.get("nri", False), bool):
        raise ProfileError(f"{path}: nri: must be true or false")
    ident = data.get("identity")
    if ident is not None and (not isinstance(ident, dict) or len(ident) != 1 or
                              set(ident) - {"name_pattern", "pci_attribute", "index_attribute"} or
                              not all(isinstance(v, str) for v in ident.values())):
        raise ProfileError(f"{path}: identity: one of name_pattern, pci_attribute or index_attribute (a string)")
    if "name_pattern" in (ident or {}):
        try:
            re.compile(ident["name_pattern"])
        except re.error as e:
            raise ProfileError(f"{path}: identity: name_pattern: {e}") from None
    chart = data.get("kind_chart")
    if chart and "://" not in chart and not Path(chart).is_absolute():
        data["kind_chart"] = str((Path(path).parent / chart).resolve())  # a user's chart sits beside their profile
    prof = DriverProfile(**data, source=str(Path(path).resolve()))
    prof.device_class_objects()  # the file exists and holds only DeviceClasses, before anything starts
    return prof


def resolve(name: str, extra_args: dict[str, list[str]] | None = None) -> DriverProfile:
    """A built-in profile by name, or a YAML profile file; `extra_args` are keyed by profile name."""
    if name in BUILTIN:
        p = BUILTIN[name]()
    elif Path(name).is_file():
        p = load(name)
    else:
        raise ProfileError(f"unknown driver profile {name[:80]!r} (built-in: {', '.join(BUILTIN)}, or a YAML file)")
    if extra_args:
        more = list(extra_args.get(name, [])) + (list(extra_args.get(p.name, [])) if p.name != name else [])
        p.command = p.command + more
        if p.host_command:
            p.host_command = p.host_command + more
    return p


def _check_kind_values(v: object, where: str) -> None:
    """Every string in the values names only cluster-level placeholders."""
    if isinstance(v, dict):
        for k, x in v.items():
            _check_kind_values(x, f"{where}.{str(k)[:40]}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _check_kind_values(x, f"{where}[{i}]")
    elif isinstance(v, str):
        try:
            bad = [n for n in placeholders_in(v) if n not in KIND_PLACEHOLDERS]
        except ValueError as e:
            raise ProfileError(f"{where}: {e}") from None
        if bad:
            raise ProfileError(f"{where}: {{{bad[0]}}} is a per-node placeholder; kind values may name "
                               f"{', '.join('{' + n + '}' for n in sorted(KIND_PLACEHOLDERS))}")


def kind_values(prof: DriverProfile, **values: str) -> dict:
    """The profile's chart values with {cluster} {api_host} {api_port} filled in."""
    def fill_all(v):
        if isinstance(v, dict):
            return {k: fill_all(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fill_all(x) for x in v]
        return fill(v, values) if isinstance(v, str) else v
    return fill_all(prof.kind_values)


def check_set(names: list[str], extra_args: dict[str, list[str]], backend: str | None = None) -> list[DriverProfile]:
    """The profiles of one node, each valid, no two for one driver name (they would bind the
    same sockets, rows 12-13), every --driver-arg aimed at one of them (row 19), and each with
    what `backend` needs to start it (a command, a chart)."""
    profs = [resolve(n, extra_args) for n in names]
    if backend in NEEDS:
        key, why = NEEDS[backend]
        for p in profs:
            if not getattr(p, key) and p.name not in BUILTIN:
                raise ProfileError(f"driver profile {p.name}: {why}, and the profile has no `{key}`")
    by_driver: dict[str, str] = {}
    for n, p in zip(names, profs):
        if p.driver in by_driver:
            raise ProfileError(f"profiles {by_driver[p.driver]!r} and {n!r} both serve driver {p.driver} on one node; "
                               "give each driver once")
        by_driver[p.driver] = n
    known = set(names) | {p.name for p in profs}
    for target in extra_args:
        if target not in known:
            raise ProfileError(f"--driver-arg {target!r}=...: no such profile in this cluster "
                               f"(profiles: {', '.join(sorted(known))})")
    return profs


def parse_driver_args(items: list[str]) -> dict[str, list[str]]:
    """`PROFILE=ARG` items (--driver-arg) -> profile -> extra arguments."""
    out: dict[str, list[str]] = {}
    for item in items:
        prof, _, arg = item.partition("=")
        if not arg:
            raise ProfileError(f"--driver-arg wants PROFILE=ARG, got {item!r}")
        out.setdefault(prof, []).append(arg)
    return out
