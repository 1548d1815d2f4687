"""The local backend: real etcd, kube-apiserver, kube-scheduler and kube-controller-manager as
processes on loopback, fake nodes as Node objects whose drivers see their own fakedev trees."""
