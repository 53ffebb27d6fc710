"""PolySpace Workspace: the tested package behind the notebooks.

One folder per study (features/align/fusion for PolySpace, ffn/ for FFN, colorize/ for
colorization) over a shared video/ and datasets/ layer. Notebooks only call into here.
"""

__version__ = "0.1.0"
