"""Cluster backends (local processes, kind, an existing kubeconfig), laid out like kind's
providers: each backend knows how to bring a ClusterSpec up and down; the rest of the harness
only sees a Cluster handle."""
