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
