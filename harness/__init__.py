"""dra-harness: clusters, the oracle, the platform kit and the pytest plugin."""

import os as _os

# gRPC's fork handlers off, before grpc is first imported (it reads this once). Our processes
# fork only to exec (drivers, control-plane components, tools); with fork support on, gRPC
# restarts its poller in the forked child, whose epoll fd close_fds has just closed, and about
# 1 child in 150 dies with SIGABRT before exec: "Epoll1Poller ... epoll_wait error: Bad file
# descriptor" (grpc/grpc#43055, fix proposed in grpc/grpc#43157; measured with grpcio 1.85.3 in
# tests/test_spawn_under_grpc.py). That was the driver that "died at once" after a restart or
# an un-share. Set it to 1 yourself to keep gRPC's fork support.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
