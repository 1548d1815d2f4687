"""Generate the Python gRPC stubs of the kubelet protos with grpcio-tools (a build-time tool,
not a runtime dependency: `pip install '.[stubs]'`).

The protos are staged under kubeletapi/gen/ so generated imports read
`from kubeletapi.gen.dra_v1 import api_pb2`; proto packages stay exactly as upstream.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

PROTOS = ["pluginregistration", "dra_v1", "dra_v1beta1", "dra_health_v1", "dra_health_v1alpha1"]


def build(out_root: Path | None = None) -> Path:
    """Write kubeletapi/gen/<proto>/api_pb2{,_grpc}.py; returns the gen directory."""
    try:
        from grpc_tools import protoc
    except ImportError:
        raise SystemExit("kubeletapi.build needs grpcio-tools (pip install 'dra-harness[stubs]')") from None

    pkg_dir = Path(str(resources.files("kubeletapi")))
    out_root = out_root or pkg_dir.parent
    gen = pkg_dir / "gen"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "kubeletapi" / "gen"
        for name in PROTOS:
            (staged / name).mkdir(parents=True)
            shutil.copy(pkg_dir / "protos" / name / "api.proto", staged / name / "api.proto")
        include = str(Path(protoc.__file__).parent / "_proto")
        files = [f"kubeletapi/gen/{n}/api.proto" for n in PROTOS]
        rc = protoc.main(["grpc_tools.protoc", f"-I{tmp}", f"-I{include}", f"--python_out={out_root}",
                          f"--grpc_python_out={out_root}", *files])
        if rc != 0:
            raise SystemExit(f"protoc failed with status {rc}")
    for d in [gen, *(gen / n for n in PROTOS)]:
        (d / "__init__.py").touch()
    return gen


if __name__ == "__main__":
    print(f"generated stubs in {build()}", file=sys.stderr)
