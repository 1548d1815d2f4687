"""Generate Python gRPC stubs from the kubelet protos with grpcio-tools.

The protos are staged under refdriver/_gen/ so the generated imports read
`from refdriver._gen.dra_v1 import api_pb2`; proto packages stay exactly as upstream, which
is what makes the method paths (/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/...) match the kubelet's.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTOS = ["pluginregistration", "dra_v1", "dra_v1beta1"]


def build(out_root: Path | None = None) -> Path:
    from grpc_tools import protoc  # dev dependency: only needed to (re)generate

    pkg_dir = Path(str(resources.files("refdriver")))
    out_root = out_root or pkg_dir.parent
    gen = pkg_dir / "_gen"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "refdriver" / "_gen"
        for name in PROTOS:
            (staged / name).mkdir(parents=True)
            shutil.copy(pkg_dir / "protos" / name / "api.proto", staged / name / "api.proto")
        include = str(Path(protoc.__file__).parent / "_proto")
        files = [f"refdriver/_gen/{n}/api.proto" for n in PROTOS]
        rc = protoc.main(["grpc_tools.protoc", f"-I{tmp}", f"-I{include}", f"--python_out={out_root}",
                          f"--grpc_python_out={out_root}", *files])
        if rc != 0:
            raise SystemExit(f"protoc failed with status {rc}")
    for d in [gen, *(gen / n for n in PROTOS)]:
        (d / "__init__.py").touch()
    return gen


if __name__ == "__main__":
    print(f"generated stubs in {build()}", file=sys.stderr)
