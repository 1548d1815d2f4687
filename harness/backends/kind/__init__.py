"""The kind backend: one kind worker per fake node, its tree mounted with extraMounts, device
nodes created inside the node, the reference drivers deployed with their Helm chart."""
