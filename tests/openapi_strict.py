"""Strict validation of Kubernetes objects against a release's OpenAPI v3 schema (from the
k8s.io/kubernetes module: api/openapi-spec/v3), like `kubectl apply --validate=strict`:
unknown fields, wrong types, missing required fields and bad enum values fail."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path


@cache
def spec_dir(version: str) -> Path:
    out = subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], capture_output=True,
                         text=True, cwd="/tmp", env=None)
    d = json.loads(out.stdout)
    if "Dir" not in d:
        raise RuntimeError(f"cannot download k8s.io/kubernetes@{version}: {d.get('Error')}")
    return Path(d["Dir"]) / "api/openapi-spec/v3"


@cache
def _schemas(version: str, group: str, ver: str) -> dict:
    name = f"api__{ver}_openapi.json" if not group else f"apis__{group}__{ver}_openapi.json"
    return json.loads((spec_dir(version) / name).read_text())["components"]["schemas"]


def schema_for(version: str, api_version: str, kind: str) -> tuple[dict, dict]:
    group, _, ver = api_version.rpartition("/")
    comps = _schemas(version, group, ver)
    for s in comps.values():
        for gvk in s.get("x-kubernetes-group-version-kind", []):
            if gvk["group"] == group and gvk["version"] == ver and gvk["kind"] == kind:
                return s, comps
    raise KeyError(f"Kubernetes {version} has no {api_version} {kind}")


def validate(obj: dict, version: str) -> list[str]:
    s, comps = schema_for(version, obj["apiVersion"], obj["kind"])
    errors: list[str] = []
    _check(obj, s, comps, f"{obj['kind']}/{obj['metadata'].get('name')}", errors)
    return errors


def _resolve(s: dict, comps: dict) -> dict:
    while True:
        if "$ref" in s:
            s = comps[s["$ref"].rsplit("/", 1)[1]]
        elif "allOf" in s and len(s["allOf"]) == 1:
            s = {**{k: v for k, v in s.items() if k != "allOf"}, **_resolve(s["allOf"][0], comps)}
        else:
            return s


def _check(v, s: dict, comps: dict, path: str, errors: list[str]) -> None:
    ref = s.get("$ref", "") or next((a.get("$ref", "") for a in s.get("allOf", []) if isinstance(a, dict)), "")
    if ref.endswith("runtime.RawExtension"):  # opaque driver parameters: any JSON object (RawExtension)
        if not isinstance(v, dict):
            errors.append(f"{path}: want an object, got {type(v).__name__}")
        return
    s = _resolve(s, comps)
    if s.get("x-kubernetes-int-or-string"):
        if not isinstance(v, (int, str)) or isinstance(v, bool):
            errors.append(f"{path}: want int or string, got {type(v).__name__}")
        return
    if s.get("x-kubernetes-preserve-unknown-fields") and not s.get("properties"):
        return
    t = s.get("type")
    if t == "object" or "properties" in s:
        if not isinstance(v, dict):
            errors.append(f"{path}: want an object, got {type(v).__name__}")
            return
        props = s.get("properties", {})
        for req in s.get("required", []):
            if req not in v:
                errors.append(f"{path}.{req}: required field missing")
        for k, val in v.items():
            if k in props:
                _check(val, props[k], comps, f"{path}.{k}", errors)
            elif "additionalProperties" in s:
                if isinstance(s["additionalProperties"], dict):
                    _check(val, s["additionalProperties"], comps, f"{path}.{k}", errors)
            else:
                errors.append(f"{path}.{k}: unknown field")
    elif t == "array":
        if not isinstance(v, list):
            errors.append(f"{path}: want an array, got {type(v).__name__}")
            return
        for i, item in enumerate(v):
            _check(item, s.get("items", {}), comps, f"{path}[{i}]", errors)
    elif t == "string":
        if not isinstance(v, str):
            errors.append(f"{path}: want a string, got {type(v).__name__}")
        elif "enum" in s and v not in s["enum"]:
            errors.append(f"{path}: {v!r} not in {s['enum']}")
    elif t == "integer":
        if not isinstance(v, int) or isinstance(v, bool):
            errors.append(f"{path}: want an integer, got {type(v).__name__}")
    elif t == "boolean":
        if not isinstance(v, bool):
            errors.append(f"{path}: want a boolean, got {type(v).__name__}")
    elif t == "number":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            errors.append(f"{path}: want a number, got {type(v).__name__}")
