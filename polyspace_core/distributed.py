"""One Accelerator factory for every trainer (fusion, FFN, colorization).

Accelerate keeps its state in a process-wide singleton: once one trainer made an Accelerator
for, say, bf16 on CPU, the next one asking for fp32 fails. Inside a distributed launch
(`accelerate launch` / `torchrun`, WORLD_SIZE > 1) that state belongs to the launcher and is kept;
in a single process (a notebook kernel, a test session, a plain CLI run) it is cleared first, so
stages can train one after the other with different devices or precisions.
"""

from __future__ import annotations

import os

import torch

from .errors import PolySpaceError
from .seeding import best_device


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> bf16 on CUDA where supported, else fp16 on CUDA, "no" elsewhere."""
    if precision == "auto":
        if device.type != "cuda":
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in ("no", "fp16", "bf16"):
        raise PolySpaceError(f"mixed_precision={precision!r}: use auto, no, fp16 or bf16")
    return precision


def make_accelerator(device: str | torch.device = "auto", mixed_precision: str = "auto",
                     gradient_accumulation_steps: int = 1):
    """An Accelerator for `device` ("auto" = CUDA > MPS > CPU) and `mixed_precision`."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    dev = device if isinstance(device, torch.device) else best_device(str(device))
    precision = resolve_precision(mixed_precision, dev)
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state(reset_partial_state=True)  # private, but the state is ours here
    return Accelerator(cpu=dev.type == "cpu", mixed_precision=precision,
                       gradient_accumulation_steps=gradient_accumulation_steps)
