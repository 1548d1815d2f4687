"""The kubelet's plugin APIs, apart from any driver or kubelet: registration
(`pluginregistration`), DRA v1 and v1beta1, as upstream keeps them in `k8s.io/kubelet`.

The `.proto` files are upstream's, package names unchanged, so the gRPC method paths
(`/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/...`) are the kubelet's. Their Python stubs are
generated at install time (`python -m kubeletapi.build`, run by `make install`) into
`kubeletapi/gen/`; both sides import them from here:

    from kubeletapi.gen.dra_v1 import api_pb2, api_pb2_grpc

Nothing of ours is imported here: reference drivers and the harness's kubelet side both depend
on this package, and on nothing of each other.
"""

import os as _os

# gRPC's fork handlers off, before grpc is first imported (it reads this once). Our processes
# fork only to exec (drivers, control-plane components, tools); with fork support on, gRPC
# restarts its poller in the forked child, whose epoll fd close_fds has just closed, and about
# 1 child in 150 dies with SIGABRT before exec: "Epoll1Poller ... epoll_wait error: Bad file
# descriptor" (grpc/grpc#43055, fix proposed in grpc/grpc#43157; measured with grpcio 1.85.3 in
# tests/test_spawn_under_grpc.py). That was the driver that "died at once" after a restart or
# an un-share. Set it to 1 yourself to keep gRPC's fork support.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
