"""Where the project checkout is: the folder that holds params/ and notebooks/.

Every layer may need it (a feature store manifest records `data/zoo/...` relative to it), so it
lives here, below the notebook layer, and `workspace.py` builds on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import PolySpaceError

ROOT_ENV = "POLYSPACE_ROOT"


def project_root() -> Path:
    """The checkout that holds params/ and notebooks/: $POLYSPACE_ROOT, else the folder above this
    package (editable install), else the nearest parent of the cwd that has params/ and pyproject.toml."""
    env = os.environ.get(ROOT_ENV)
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / "params").is_dir():
            raise PolySpaceError(f"{ROOT_ENV}={env}: no params/ folder there; point it at the project checkout")
        return root
    candidates = [Path(__file__).resolve().parent.parent, *Path.cwd().resolve().parents]
    candidates.insert(1, Path.cwd().resolve())
    for root in candidates:
        if (root / "params").is_dir() and (root / "pyproject.toml").is_file():
            return root
    raise PolySpaceError("cannot find the project root (a folder with params/ and pyproject.toml); "
                         f"run from inside the checkout or set {ROOT_ENV}")
