"""Seeding: python, numpy and torch from one seed; deterministic algorithms on CPU."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to `threads` inside the block (None: left as they are).
    CPU results depend on the thread count (reductions split differently), so a result that must
    be the same on every machine fixes it."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rng_state() -> dict:
    """The state of every random generator seed_everything seeds (python, numpy, torch CPU and
    CUDA), as JSON: a run that stops between phases records it so that the phase after a restart
    draws the same numbers as in an uninterrupted run."""
    import numpy as np
    import torch

    version, keys, gauss = random.getstate()
    name, mt, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(keys), gauss], "numpy": [name, mt.tolist(), pos, has_gauss, cached],
             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Put back a state from rng_state()."""
    import numpy as np
    import torch

    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    name, mt, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(mt, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


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


def training_seeds(seeds, seed: int) -> list[int]:
    """The seeds a cheap training stage repeats over: `seeds` (a list parameter) when given, else
    the notebook's own `seed`. The first one's run is the one later stages read; the others give
    the spread (mean +- std over seeds) the report shows beside each figure."""
    from .errors import PolySpaceError

    out = [seed] if seeds is None or len(seeds) == 0 else list(seeds)
    for s in out:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise PolySpaceError(f"seeds: {s!r} is not a non-negative integer")
    if len(set(out)) != len(out):
        raise PolySpaceError(f"seeds: {out} repeats a seed; each run needs its own")
    return out
