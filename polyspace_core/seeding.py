"""Seeding: python, numpy and torch from one seed; deterministic algorithms on CPU."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so importing this module stays cheap
    import torch


def seed_everything(seed: int, deterministic: bool = True) -> int:
    """Seed python, numpy and torch. With `deterministic`, torch uses deterministic
    algorithms (warn-only, so a GPU op without a deterministic kernel still runs) and
    cuDNN autotuning is off, which makes CPU runs repeat bit for bit."""
    import numpy as np
    import torch

    if not isinstance(seed, int) or isinstance(seed, bool):
        from .errors import PolySpaceError
        raise PolySpaceError(f"seed must be an integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        # torch.use_deterministic_algorithms also imports torch._inductor to set its flag, which
        # costs seconds in every new process (each notebook kernel); nothing here compiles with
        # inductor, so set the ATen flag directly unless inductor is already loaded.
        import sys
        if "torch._inductor" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch._C._set_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # cuBLAS needs this for deterministic matmuls on GPU; harmless on CPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return seed


def best_device(prefer: str = "auto") -> torch.device:
    """CUDA > MPS > CPU for `auto`; otherwise the named device, checked to exist."""
    import torch

    from .errors import PolySpaceError

    if prefer == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(prefer)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PolySpaceError(f"device {prefer!r} requested but CUDA is not available; use device=auto or cpu")
    return dev
