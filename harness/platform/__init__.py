"""The platform kit: a golden-path menu a platform team owns (kit.py: load, validate, render to
Kubernetes objects) and where each class fits on each EC2 preset (check.py)."""
