"""`make bench`: the numbers the issues name, measured (main.py), and the runs that make them:
scale.py (host-mode scale beside scheduler_perf, schedperf.py; partitions and shared EFAs),
taints.py (faults to evictions), legacy.py (what pods asking by count lose), soak.py."""
