"""The kubelet's plugin protos (registration, DRA v1 and v1beta1) and their generated stubs."""
