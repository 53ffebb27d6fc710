"""Temporal branch (MemFlow's role in the seed): carry colours forward along optical flow.

A `TemporalPropagator` keeps a bounded memory of already-coloured frames: the reference
(long-term, kept for the whole sequence unless `keep_reference=False`) plus the `memory_size`
most recent outputs (short-term ring). For a new grey frame it computes flow from the frame to
every memory frame and back, warps each memory frame's ab (and its confidence) into the new
frame, scores each warp by forward-backward consistency times a per-step decay, and blends the
candidates per pixel with weights conf^sharpness — in effect picking, pixel by pixel, the memory
frame that still sees that point (a background revealed after an occlusion is found in an
older frame). It has no trainable parameters: it is frozen by construction.

All tensors are batched: the B sequences of a batch move in lockstep, flows are computed per
sequence on CPU (OpenCV) and moved to the ab tensors' device. A flow backend with a memory of its
own (MemFlow) gives the flows to the previous frame from that memory (`sequence_flows`, one
stream per sequence of the batch, advanced once per frame), and `reset()` clears it too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import PolySpaceError
from .flow import FlowBackend, flow_to_tensor, forward_backward_confidence, warp


@dataclass
class MemoryFrame:
    gray: np.ndarray        # (B, H, W) uint8, what the flow backend sees
    ab: torch.Tensor        # (B, 2, H, W) normalised ab
    conf: torch.Tensor      # (B, 1, H, W) in [0, 1]
    age: int = 0            # frames since it was stored
    in_sequence: bool = False  # pushed as a frame of the sequence (not the reference)


class TemporalPropagator:
    """Warps the ab of remembered frames onto each new frame; see the module docstring.

    backend: a FlowBackend. memory_size: recent frames kept (>= 1). decay: confidence factor per
    frame of age (older memories lose ties against recent ones). sharpness: exponent of the
    confidence weights (higher = closer to a per-pixel argmax)."""

    def __init__(self, backend: FlowBackend, memory_size: int = 3, decay: float = 0.95,
                 sharpness: float = 4.0, keep_reference: bool = True):
        if memory_size < 1:
            raise PolySpaceError(f"memory_size={memory_size}: must be at least 1")
        if not 0.0 < decay <= 1.0:
            raise PolySpaceError(f"decay={decay}: must be in (0, 1]")
        self.backend = backend
        self.memory_size, self.decay, self.sharpness = memory_size, decay, sharpness
        self.keep_reference = keep_reference
        self.reference: MemoryFrame | None = None
        self.recent: deque[MemoryFrame] = deque(maxlen=memory_size)

    # ------------------------------------------------------------------ memory
    def reset(self) -> None:
        """Forget everything (call at the start of every sequence), the flow backend's memory too."""
        self.reference = None
        self.recent.clear()
        self.backend.reset()

    def __len__(self) -> int:
        return len(self.recent) + (self.reference is not None)

    def set_reference(self, gray: np.ndarray, ab: torch.Tensor) -> None:
        """Store the exemplar (gray (B, H, W) uint8, ab (B, 2, H, W)) with full confidence."""
        entry = MemoryFrame(np.asarray(gray), ab.detach(), torch.ones_like(ab[:, :1]))
        if self.keep_reference:
            self.reference = entry
        else:
            self._append(entry)

    def push(self, gray: np.ndarray, ab: torch.Tensor, conf: torch.Tensor | None = None) -> None:
        """Remember a coloured frame (gray (B, H, W) uint8, ab (B, 2, H, W), conf (B, 1, H, W)
        or None = fully trusted). Stored detached: gradients never flow through the memory."""
        conf = torch.ones_like(ab[:, :1]) if conf is None else conf
        self._append(MemoryFrame(np.asarray(gray), ab.detach(), conf.detach(), in_sequence=True))

    def _append(self, entry: MemoryFrame) -> None:
        for old in self.recent:
            old.age += 1
        if self.reference is not None:
            self.reference.age += 1
        self.recent.append(entry)  # deque(maxlen) drops the oldest: memory stays bounded

    # ------------------------------------------------------------------ propagation
    def _warp_entry(self, gray: np.ndarray, entry: MemoryFrame) -> tuple[torch.Tensor, torch.Tensor]:
        if entry.gray.shape != gray.shape:
            raise PolySpaceError(f"temporal branch: frame size {gray.shape[1:]} differs from the "
                                 f"memory's {entry.gray.shape[1:]}; keep one working size per sequence")
        device = entry.ab.device
        if entry.in_sequence and entry.age == 0 and self.backend.stateful:
            # the previous frame: the backend's own memory of the sequence (MemFlow) answers,
            # one stream per sequence of the batch, advanced once per new frame
            pairs = [self.backend.sequence_flows(m, g, stream=i) for i, (g, m) in enumerate(zip(gray, entry.gray))]
            to_mem = flow_to_tensor([p[0] for p in pairs], device)
            from_mem = flow_to_tensor([p[1] for p in pairs], device)
        else:
            to_mem = flow_to_tensor([self.backend.flow(g, m) for g, m in zip(gray, entry.gray)], device)
            from_mem = flow_to_tensor([self.backend.flow(m, g) for g, m in zip(gray, entry.gray)], device)
        ab, _ = warp(entry.ab, to_mem)
        mem_conf, _ = warp(entry.conf, to_mem)
        conf = forward_backward_confidence(to_mem, from_mem) * mem_conf * self.decay ** entry.age
        return ab, conf.clamp(0.0, 1.0)

    def propagate(self, gray: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Colours for the grey frames `gray` (B, H, W) uint8 from the memory.

        Returns (ab (B, 2, H, W), conf (B, 1, H, W) in [0, 1]). Where no memory frame sees a pixel
        (content entering the view, a disocclusion seen nowhere) conf is ~0 and ab is ~0 (grey)."""
        gray = np.asarray(gray)
        if gray.dtype != np.uint8 or gray.ndim != 3:
            raise PolySpaceError(f"temporal branch: frames must be uint8 (B, H, W), got {gray.dtype} {gray.shape}")
        entries = ([self.reference] if self.reference is not None else []) + list(self.recent)
        if not entries:
            raise PolySpaceError("temporal branch: memory is empty; call set_reference() or push() "
                                 "with a coloured frame first")
        abs_, confs = zip(*(self._warp_entry(gray, e) for e in entries))
        ab = torch.stack(abs_)        # (K, B, 2, H, W)
        conf = torch.stack(confs)     # (K, B, 1, H, W)
        weights = conf.pow(self.sharpness)
        weights = weights / weights.sum(0).clamp(min=1e-8)
        return (weights * ab).sum(0), conf.max(0).values


def propagate_sequence(propagator: TemporalPropagator, grays: np.ndarray, ref_gray: np.ndarray,
                       ref_ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The temporal branch on its own: colours from the reference carried through a sequence.

    grays (B, T, H, W) uint8, ref_gray (B, H, W) uint8, ref_ab (B, 2, H, W). Each output is
    remembered with its own confidence, so colour that has travelled far (or come from nowhere)
    does not outvote the reference. Returns (ab (B, T, 2, H, W), conf (B, T, 1, H, W))."""
    propagator.reset()
    propagator.set_reference(ref_gray, ref_ab)
    abs_, confs = [], []
    for t in range(grays.shape[1]):
        ab, conf = propagator.propagate(grays[:, t])
        propagator.push(grays[:, t], ab, conf)
        abs_.append(ab)
        confs.append(conf)
    return torch.stack(abs_, 1), torch.stack(confs, 1)
