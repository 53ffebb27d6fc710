"""FusionSystem: temporal branch + exemplar branch + fusion UNet, frame by frame.

For each frame t of a sequence (all B sequences of a batch in lockstep):

    temporal ab_t, conf_t   = propagator.propagate(grey_t)           # flow from memory, frozen
    exemplar ab_e, sim_e    = exemplar(L_t, reference)               # correspondence + colour net
    ab                      = fusion(L_t, ab_t, conf_t, ab_e, sim_e)
    propagator.push(grey_t, ab)                                      # the fused output is remembered

The memory starts with the reference (when it is empty, i.e. after `reset_memory()`), so frame 0
is propagated from the exemplar. `forward_sequence` does not reset: a long video can be fed in
chunks and the memory carries over (the CLI streams that way); call `reset_memory()` at the start
of every new sequence, as the seed's training loop does.

Gradients: the memory is detached, so training backpropagates through each frame's exemplar
branch and fusion net but not from frame t into frame t-1 (truncated BPTT of one step; flows are
not differentiable anyway).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PolySpaceError
from .exemplar import ExemplarBranch
from .flow import DISFlow, FlowBackend
from .fusion_unet import FusionUNet
from .lab import frames_to_gray, l_to_gray, rgb_to_lab, split_lab
from .propagation import TemporalPropagator

# the seed's table of learning rates (exemplar part, fusion UNet) per strategy
RECOMMENDED_LR = {
    "pretrained": {"exemplar": 1e-5, "fusion": 1e-4},   # Strategy 1: fine-tune the correspondence
    "scratch": {"exemplar": 1e-4, "fusion": 1e-4},      # Strategy 2: train it from scratch
}


def reference_to_lab(references, size: tuple[int, int], device: torch.device | str) -> torch.Tensor:
    """References as uint8 RGB (B, Hr, Wr, 3) (numpy or tensor) or float Lab (B, 3, Hr, Wr)
    -> Lab (B, 3, H, W) at the working size (bilinear, antialiased)."""
    if isinstance(references, np.ndarray) or (isinstance(references, torch.Tensor) and references.dtype == torch.uint8):
        ref = torch.as_tensor(np.asarray(references) if isinstance(references, np.ndarray) else references)
        if ref.ndim != 4 or ref.shape[-1] != 3 or ref.dtype != torch.uint8:
            raise PolySpaceError(f"references: expected uint8 RGB (B, H, W, 3), got {ref.dtype} {tuple(ref.shape)}")
        rgb = ref.movedim(-1, 1).float().to(device) / 255.0
        if tuple(rgb.shape[-2:]) != tuple(size):
            rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
        return rgb_to_lab(rgb)
    if isinstance(references, torch.Tensor) and references.is_floating_point():
        if references.ndim != 4 or references.shape[1] != 3:
            raise PolySpaceError(f"references: expected Lab (B, 3, H, W), got {tuple(references.shape)}")
        ref = references.to(device)
        if tuple(ref.shape[-2:]) != tuple(size):
            ref = F.interpolate(ref, size=size, mode="bilinear", align_corners=False, antialias=True)
        return ref
    raise PolySpaceError(f"references: expected uint8 RGB images or a float Lab tensor, "
                         f"got {type(references).__name__}")


def _grey_frames(frames, frames_lab: torch.Tensor) -> np.ndarray:
    """uint8 (B, T, H, W) grey frames for the flow backend: from `frames` (uint8 RGB
    (B, T, H, W, 3) or grey (B, T, H, W)) or, when None, from the L channel of frames_lab."""
    if frames is None:
        return l_to_gray(split_lab(frames_lab)[0])
    arr = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if arr.dtype != np.uint8:
        raise PolySpaceError(f"frames: expected uint8, got {arr.dtype}")
    if arr.ndim == 5 and arr.shape[-1] == 3:
        arr = frames_to_gray(arr)
    if arr.shape != tuple(frames_lab.shape[:2]) + tuple(frames_lab.shape[-2:]):
        raise PolySpaceError(f"frames: shape {arr.shape} does not match frames_lab {tuple(frames_lab.shape)}")
    return arr


class FusionSystem(nn.Module):
    """See the module docstring. exemplar: ExemplarBranch; fusion_net: FusionUNet; flow: the
    temporal branch's FlowBackend (DIS when None); memory_size: recent frames remembered."""

    def __init__(self, exemplar: ExemplarBranch, fusion_net: FusionUNet | None = None,
                 flow: FlowBackend | None = None, memory_size: int = 3, decay: float = 0.95):
        super().__init__()
        self.exemplar = exemplar
        self.fusion_net = fusion_net or FusionUNet()
        self.propagator = TemporalPropagator(flow or DISFlow(), memory_size=memory_size, decay=decay)
        self.trained_size: int | None = None  # short side of the training frames (the CLI's working size)

    def reset_memory(self) -> None:
        """Forget the temporal memory (start of a new sequence)."""
        self.propagator.reset()

    def forward(self, frames_lab, frames=None, references=None, return_memflow: bool = False,
                return_branches: bool = False):
        """Same as forward_sequence (so DDP/Accelerate wrappers see the trainable computation)."""
        return self.forward_sequence(frames_lab, frames, references, return_memflow, return_branches)

    def forward_sequence(self, frames_lab, frames=None, references=None, return_memflow: bool = False,
                         return_branches: bool = False):
        """Colour a (chunk of a) sequence.

        frames_lab: Lab (B, T, 3, H, W) float (L in [0, 100]) or a list of T (B, 3, H, W); only L
        is used as input. frames: uint8 RGB (B, T, H, W, 3) / grey (B, T, H, W) for the flow, or
        None to take the grey from L. references: uint8 RGB (B, Hr, Wr, 3) or Lab (B, 3, Hr, Wr),
        resized to (H, W).

        Returns outputs: normalised ab (B, T, 2, H, W); with return_memflow also the temporal
        branch's ab (B, T, 2, H, W) and confidence (B, T, 1, H, W) (the seed's
        `outputs, memflow_outputs, memflow_confs`); with return_branches a dict of every
        intermediate (ab, temporal_ab, temporal_conf, exemplar_ab, exemplar_sim, gate)."""
        if isinstance(frames_lab, (list, tuple)):
            frames_lab = torch.stack(list(frames_lab), dim=1)
        if not isinstance(frames_lab, torch.Tensor) or frames_lab.ndim != 5 or frames_lab.shape[2] != 3:
            raise PolySpaceError(f"frames_lab: expected Lab (B, T, 3, H, W), got "
                                 f"{tuple(getattr(frames_lab, 'shape', ()))}")
        if references is None:
            raise PolySpaceError("forward_sequence: references is required (one exemplar per sequence)")
        device = next(self.fusion_net.parameters()).device
        frames_lab = frames_lab.to(device)
        b, t_len, _, h, w = frames_lab.shape
        grey = _grey_frames(frames, frames_lab)
        ref_lab = reference_to_lab(references, (h, w), device)
        if ref_lab.shape[0] != b:
            raise PolySpaceError(f"references: {ref_lab.shape[0]} references for {b} sequences")
        ref_l, ref_ab = split_lab(ref_lab)
        reference = self.exemplar.encode_reference(ref_l, ref_ab)
        if len(self.propagator) == 0:
            self.propagator.set_reference(l_to_gray(ref_l), ref_ab)

        keys = ("ab", "temporal_ab", "temporal_conf", "exemplar_ab", "exemplar_sim", "gate")
        out: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        l_all, _ = split_lab(frames_lab)
        for t in range(t_len):
            l = l_all[:, t]
            ab_t, conf_t = self.propagator.propagate(grey[:, t])
            ex = self.exemplar(l, reference=reference)
            fused = self.fusion_net(l, ab_t, conf_t, ex["ab"], ex["similarity"])
            self.propagator.push(grey[:, t], fused["ab"])
            for k, v in zip(keys, (fused["ab"], ab_t, conf_t, ex["ab"], ex["similarity"], fused["gate"])):
                out[k].append(v)
        stacked = {k: torch.stack(v, dim=1) for k, v in out.items()}
        if return_branches:
            return stacked
        if return_memflow:
            return stacked["ab"], stacked["temporal_ab"], stacked["temporal_conf"]
        return stacked["ab"]

    # ------------------------------------------------------------------ training
    def get_parameter_groups(self, lr_exemplar: float | None = None, lr_fusion: float | None = None) -> list[dict]:
        """Optimizer groups [exemplar part, fusion UNet] with the seed's learning rates for the
        branch's strategy unless given: pretrained 1e-5 / 1e-4, from scratch 1e-4 / 1e-4."""
        lrs = RECOMMENDED_LR["pretrained" if self.exemplar.pretrained else "scratch"]
        return [
            {"params": self.exemplar.trainable_parameters(),
             "lr": lrs["exemplar"] if lr_exemplar is None else lr_exemplar, "name": "exemplar"},
            {"params": list(self.fusion_net.parameters()),
             "lr": lrs["fusion"] if lr_fusion is None else lr_fusion, "name": "fusion"},
        ]

    # ------------------------------------------------------------------ files
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """folder/system.json + exemplar/ + fusion/ (safetensors + JSON configs)."""
        from ..io import atomic_write_json

        folder = Path(folder)
        self.exemplar.save_pretrained(folder / "exemplar")
        self.fusion_net.save_pretrained(folder / "fusion")
        atomic_write_json(folder / "system.json", {
            "kind": "fusion_system", "memory_size": self.propagator.memory_size,
            "decay": self.propagator.decay, "trained_size": self.trained_size,
            "trained_with_flow": self.propagator.backend.describe()})
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, flow: FlowBackend | None = None,
                        map_location: str | torch.device = "cpu") -> FusionSystem:
        """Load a saved system; `flow` picks the temporal branch's backend (DIS when None)."""
        folder = Path(folder)
        meta_path = folder / "system.json"
        if not meta_path.is_file():
            raise PolySpaceError(f"colorization checkpoint {folder}: no system.json; pass a folder "
                                 f"written by FusionSystem.save_pretrained "
                                 f"(e.g. runs/<preset>/08_colorization/checkpoint)")
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") != "fusion_system":
            raise PolySpaceError(f"{meta_path}: not a fusion-system checkpoint")
        exemplar = ExemplarBranch.from_pretrained(folder / "exemplar", map_location)
        fusion_net = FusionUNet.from_pretrained(folder / "fusion", map_location)
        system = cls(exemplar, fusion_net, flow=flow, memory_size=int(meta["memory_size"]),
                     decay=float(meta["decay"]))
        system.trained_size = meta.get("trained_size")
        return system
