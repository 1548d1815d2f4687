"""fakedev: faithful fake sysfs/devfs trees of AWS Neuron and EFA nodes.

The small public API (the CLI is built on it):

    topo = fakedev.load_preset("trn2.48xlarge")      # or load_spec("node.yaml")
    fakedev.generate(topo, "/tmp/node1")              # atomic render
    tree = fakedev.Tree("/tmp/node1")                 # mutations: remove, unbind, set_numa_none, ...
    tree.remove("neuron3")
    truth = fakedev.truth_of("/tmp/node1")            # what is really aligned (for oracles)
"""

from __future__ import annotations

import os

from . import presets
from .model import Topology, ena_mac
from .mutate import MutationError, Tree
from .spec import SpecError, load_file as load_spec, load_preset, load_text
from .tree import TreeError, generate, is_tree
from .truth import Alignment, DevNode, Truth, TruthDevice


def truth_of(root: str | os.PathLike) -> Truth:
    """Ground truth of a rendered tree (model plus mutation state)."""
    from . import tree
    from .truth import truth

    topo, state = tree.load(root)
    return truth(topo, state)


__all__ = ["Alignment", "DevNode", "ena_mac", "Truth", "TruthDevice", "presets", "Topology", "Tree", "MutationError", "SpecError", "TreeError", "load_spec", "load_preset", "load_text",
           "generate", "is_tree", "truth_of"]
