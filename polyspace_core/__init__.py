"""PolySpace Workspace: the tested package behind the notebooks.

One folder per study (features/, align/, fusion/ and efficiency/ for PolySpace, ffn/ for FFN,
colorize/ for colorization) over shared video/, datasets/ and backbones/ layers and a few
utilities; workspace.py and report/ are the notebook layer on top. Imports run one way, from
data up to the notebooks (docs/CONVENTIONS.md; tests/test_layers.py checks it). Notebooks only
call into here.
"""

__version__ = "0.1.0"
