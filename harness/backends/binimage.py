"""A container image holding one static binary, written as a `docker save` archive with the
standard library: how a Go driver built from its module (upstream's e2e test driver, built by
`make bins`) reaches kind's nodes without a registry or a Docker build (`kind load image-archive`
imports it into each node's containerd).

The archive is the Docker image format v1.2 as `docker save` writes it: `manifest.json`, the
image config (`<sha256>.json`) and one layer tar. The binary is its only file, so the image
needs no base and no shell."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def write(binary: Path, ref: str, out: Path, args: list[str] | None = None) -> Path:
    """`ref` (e.g. localhost/dra-test-driver:local) running `/<binary name> [args]`, written to `out`
    (via a temporary file and a rename: a half-written archive is never loaded)."""
    name = binary.name
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.USTAR_FORMAT) as layer:
        _add(layer, "tmp/.keep", b"", 0o644)  # a /tmp, as Go programs expect (os.TempDir)
        _add(layer, name, binary.read_bytes(), 0o755)
    layer_bytes = layer_buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
        "os": "linux",
        "config": {"Entrypoint": [f"/{name}"], "Cmd": list(args or []), "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"dra-harness: {name} built from its Go module"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]).encode()
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, config_name, config)
        _add(tar, layer_name, layer_bytes)
        _add(tar, "manifest.json", manifest)
    os.replace(tmp, out)
    return out
