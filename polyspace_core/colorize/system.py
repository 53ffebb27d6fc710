"""FusionSystem: temporal branch + exemplar branch + fusion UNet, frame by frame.

For each frame t of a sequence (all B sequences of a batch in lockstep):

    temporal ab_t, conf_t   = propagator.propagate(grey_t)           # flow from memory, frozen
    exemplar ab_e, sim_e    = exemplar(L_t, reference)               # correspondence + colour net
    ab                      = fusion(L_t, ab_t, conf_t, ab_e, sim_e)
    propagator.push(grey_t, ab)                                      # the fused output is remembered

The memory starts with the reference (when it is empty, i.e. after `reset_memory()`), so frame 0
is propagated from the exemplar. `forward_sequence` resets the memory itself when a sequence
starts: `reset=None` (the default) resets when the references differ from those the memory was
started with, and carries the memory over when they are the same, so a long video fed in chunks
with its one reference continues (the CLI streams that way); `reset=True/False` says it outright.
`reset_memory()` (the seed's call at the start of every sequence) forgets everything: the
temporal memory, the flow backend's (MemFlow's) and the exemplar branch's previous frame.

Construction. `FusionSystem(exemplar, fusion_net, flow)` from parts, or the seed's call
(docs/seed 004, "Fusion Training Guide"):

    FusionSystem(memflow_path=..., swintexco_path=..., memflow_ckpt=..., swintexco_ckpt=..., fusion_net=...)

    memflow_path + memflow_ckpt   the temporal branch's flow: MemFlow imported from the checkout,
                                  its memory carried across the sequence (flow.MemFlowAdapter);
                                  without them the flow is `flow` or OpenCV DIS
    swintexco_ckpt = a folder     Strategy 1: SwinTExCo's release (embed_net.pth, nonlocal_net.pth,
                                  colornet.pth; released.py) or a branch saved by save_pretrained;
                                  the non-local net is fine-tuned (lr 1e-5), embedding and colour
                                  net frozen
    swintexco_ckpt = None         Strategy 2: SwinTExCo's networks with the pretrained Swin V2
                                  backbone `swin_backbone` (default: timm's swinv2_cr_tiny_ns_224,
                                  the release's, read from the offline HF cache or a local
                                  file/folder; never downloaded), the non-local net from scratch
                                  (lr 1e-4), the colour net random and frozen as in the seed
    swintexco_path                the seed's SwinTExCo checkout: checked to exist and recorded; its
                                  code is not imported (swintexco.py implements the networks)
    fusion_net                    the fusion net (FusionUNet; the seed's SimpleFusionNet role)

`get_parameter_groups()` gives the seed's learning rates for the strategy; `describe_weights()`
says where every part's weights come from ("random" for the built-in demo's embedding).

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
from .flow import DISFlow, FlowBackend, MemFlowAdapter
from .fusion_unet import FusionUNet
from .lab import frames_to_gray, l_to_gray, rgb_to_lab, split_lab
from .propagation import TemporalPropagator

# the seed's table of learning rates (exemplar part, fusion UNet) per strategy
RECOMMENDED_LR = {
    "pretrained": {"exemplar": 1e-5, "fusion": 1e-4},   # Strategy 1: fine-tune the correspondence
    "scratch": {"exemplar": 1e-4, "fusion": 1e-4},      # Strategy 2: train it from scratch
}
# Strategy 2's backbone: the one SwinTExCo's release uses (src/models/vit/embed.py), by hub id
DEFAULT_SWIN_BACKBONE = "timm/swinv2_cr_tiny_ns_224.sw_in1k"


def load_exemplar(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The exemplar branch in `folder`: SwinTExCo's release (embed_net.pth, ...), a SwinTExCoBranch
    or an ExemplarBranch saved by save_pretrained; anything else is one line naming the folder."""
    from ..io import read_json
    from .released import load_released
    from .swintexco import SwinTExCoBranch

    folder = Path(folder)
    if (folder / "embed_net.pth").is_file():
        return load_released(folder, map_location=map_location)
    kind = read_json(folder / "config.json").get("kind") if (folder / "config.json").is_file() else None
    if kind == "swintexco_branch":
        return SwinTExCoBranch.from_pretrained(folder, map_location)
    if kind == "exemplar_branch":
        return ExemplarBranch.from_pretrained(folder, map_location)
    raise PolySpaceError(f"exemplar checkpoint {folder}: neither SwinTExCo's release (embed_net.pth, "
                         f"nonlocal_net.pth, colornet.pth) nor a branch written by save_pretrained "
                         f"(config.json kind {kind!r})")


def build_seed_exemplar(swintexco_path: str | os.PathLike | None, swintexco_ckpt: str | os.PathLike | None,
                        swin_backbone: str | os.PathLike | None, image_size: int = 224) -> nn.Module:
    """The exemplar branch of the seed's constructor (see the module docstring). image_size: the
    network size of a fresh SwinTExCo branch (Strategy 2; 224 is the release's, smaller sizes are
    for quick runs); a checkpoint keeps its own, so another value with swintexco_ckpt is an error."""
    from .swintexco import build_swintexco_branch

    if swintexco_path is not None and not Path(swintexco_path).is_dir():
        raise PolySpaceError(f"swintexco_path {swintexco_path}: not a folder; pass the SwinTExCo checkout "
                             f"or leave it out (its code is not needed here)")
    if swintexco_ckpt is not None:
        if image_size != 224:
            raise PolySpaceError(f"swintexco_ckpt {swintexco_ckpt}: the checkpoint fixes the network size; "
                                 f"image_size={image_size} applies to a fresh branch (swintexco_ckpt=None) only")
        return load_exemplar(swintexco_ckpt)
    if swin_backbone is None:
        raise PolySpaceError("swintexco_ckpt=None (Strategy 2) needs swin_backbone: a local file/folder of "
                             f"timm's swinv2_cr_tiny_ns_224 weights or a cached hub id ({DEFAULT_SWIN_BACKBONE})")
    return build_swintexco_branch(swin_backbone, image_size=image_size)


def _pil_to_uint8(images, size: tuple[int, int] | None, what: str) -> np.ndarray:
    """A PIL image or a list of them -> uint8 RGB (N, H, W, 3), resized (bilinear) to `size`
    (h, w) when given, else all must share one size."""
    from PIL import Image

    items = list(images) if isinstance(images, (list, tuple)) else [images]
    out = []
    for img in items:
        if not isinstance(img, Image.Image):
            raise PolySpaceError(f"{what}: expected PIL images, got {type(img).__name__}")
        img = img.convert("RGB")
        if size is not None and img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        out.append(np.array(img, dtype=np.uint8))  # a copy: PIL's buffer is read-only
    if len({a.shape for a in out}) > 1:
        raise PolySpaceError(f"{what}: images differ in size {sorted({a.shape for a in out})}")
    return np.stack(out)


def _is_pil(x) -> bool:
    from PIL import Image

    while isinstance(x, (list, tuple)) and x:
        x = x[0]
    return isinstance(x, Image.Image)


def frames_from_pil(frames, b: int, t: int, size: tuple[int, int]) -> np.ndarray:
    """The seed's frames_pil: a list over time of PIL images (one sequence) or of lists of B PIL
    images (a batch) -> uint8 RGB (B, T, H, W, 3) at `size`."""
    if not isinstance(frames, (list, tuple)) or len(frames) != t:
        raise PolySpaceError(f"frames: expected a list of {t} frames (PIL), got {type(frames).__name__} "
                             f"of {len(frames) if isinstance(frames, (list, tuple)) else '?'}")
    per_time = [_pil_to_uint8(f, size, "frames") for f in frames]   # each (B, H, W, 3)
    if per_time[0].shape[0] != b:
        raise PolySpaceError(f"frames: {per_time[0].shape[0]} images per time step for {b} sequences")
    return np.stack(per_time, axis=1)


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

    def __init__(self, exemplar: nn.Module | None = None, fusion_net: nn.Module | None = None,
                 flow: FlowBackend | None = None, memory_size: int = 3, decay: float = 0.95, *,
                 memflow_path: str | os.PathLike | None = None, memflow_ckpt: str | os.PathLike | None = None,
                 memflow_stage: str = "sintel", swintexco_path: str | os.PathLike | None = None,
                 swintexco_ckpt: str | os.PathLike | None = None,
                 swin_backbone: str | os.PathLike | None = DEFAULT_SWIN_BACKBONE,
                 device: str | torch.device = "cpu"):
        super().__init__()
        seed_exemplar = swintexco_path is not None or swintexco_ckpt is not None
        if exemplar is None:
            if not seed_exemplar:
                raise PolySpaceError("FusionSystem: give exemplar= (e.g. build_exemplar_branch(), the demo) or "
                                     "the seed's swintexco_path= / swintexco_ckpt=")
            exemplar = build_seed_exemplar(swintexco_path, swintexco_ckpt, swin_backbone)
        elif seed_exemplar:
            raise PolySpaceError("FusionSystem: give exemplar= or swintexco_path/swintexco_ckpt, not both")
        if memflow_path is not None or memflow_ckpt is not None:
            if flow is not None:
                raise PolySpaceError("FusionSystem: give flow= or memflow_path/memflow_ckpt, not both")
            flow = MemFlowAdapter(memflow_path, memflow_ckpt, stage=memflow_stage, device=device)
        self.exemplar = exemplar
        self.fusion_net = fusion_net or FusionUNet()
        self.propagator = TemporalPropagator(flow or DISFlow(), memory_size=memory_size, decay=decay)
        self.trained_size: int | None = None  # short side of the training frames (the CLI's working size)
        self.swintexco_path = str(swintexco_path) if swintexco_path is not None else None
        self._memory_reference: torch.Tensor | None = None  # the references the memory started with
        self._reference_cache: tuple[torch.Tensor, object] | None = None

    def reset_memory(self) -> None:
        """Forget the temporal memory, the flow backend's and the exemplar's previous frame and
        the cached reference encoding (start of a new sequence)."""
        self.propagator.reset()
        if hasattr(self.exemplar, "reset_memory"):
            self.exemplar.reset_memory()
        self._memory_reference = None
        self._reference_cache = None

    def _encode_reference(self, ref_lab: torch.Tensor):
        """The exemplar branch's encoding of the references (Lab (B, 3, H, W)). Without gradients
        (inference) it is kept until reset_memory() and reused while the same references come
        back, so a video fed in chunks embeds its reference once; with gradients (training) it
        is made anew each call, since the keys depend on weights an optimizer step changes."""
        cached = self._reference_cache
        if (not torch.is_grad_enabled() and cached is not None and cached[0].shape == ref_lab.shape
                and cached[0].device == ref_lab.device and torch.equal(cached[0], ref_lab)):
            return cached[1]
        encoding = self.exemplar.encode_reference(*split_lab(ref_lab))
        self._reference_cache = None if torch.is_grad_enabled() else (ref_lab, encoding)
        return encoding

    def describe_weights(self) -> dict[str, str]:
        """Where each part's weights come from, for reports and run summaries: embedding,
        correspondence, colornet (the exemplar branch's describe_weights), fusion, flow, and
        `summary`: "random" when the exemplar embedding is the built-in demo's random one, else
        "pretrained: <source>"."""
        out = dict(self.exemplar.describe_weights())
        out["fusion"] = "loaded" if getattr(self, "_loaded", False) else "trained here"
        flow = self.propagator.backend.describe()
        weights = flow.get("checkpoint") or flow.get("weights")
        out["flow"] = f"pretrained: {flow['backend']} {weights}" if weights else f"{flow['backend']} (no weights)"
        out["summary"] = "random" if out["embedding"] == "random" else out["embedding"]
        return out

    def forward(self, frames_lab, frames=None, references=None, return_memflow: bool = False,
                return_branches: bool = False, reset: bool | None = None):
        """Same as forward_sequence (so DDP/Accelerate wrappers see the trainable computation)."""
        return self.forward_sequence(frames_lab, frames, references, return_memflow, return_branches, reset)

    def forward_sequence(self, frames_lab, frames=None, references=None, return_memflow: bool = False,
                         return_branches: bool = False, reset: bool | None = None):
        """Colour a (chunk of a) sequence.

        frames_lab: Lab (B, T, 3, H, W) float (L in [0, 100]) or a list of T (B, 3, H, W); only L
        is used as input. frames: uint8 RGB (B, T, H, W, 3) / grey (B, T, H, W) for the flow, the
        seed's frames_pil (a list over time of PIL images, or of lists of B PIL images), or None
        to take the grey from L. references: uint8 RGB (B, Hr, Wr, 3), Lab (B, 3, Hr, Wr), or PIL
        (an image, or a list of B), resized to (H, W). reset: see the module docstring (None:
        a new sequence when the references differ from the memory's).

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
        if frames is not None and _is_pil(frames):
            frames = frames_from_pil(frames, b, t_len, (h, w))
        if _is_pil(references):
            references = _pil_to_uint8(references, (h, w), "references")
        grey = _grey_frames(frames, frames_lab)
        ref_lab = reference_to_lab(references, (h, w), device)
        if ref_lab.shape[0] != b:
            raise PolySpaceError(f"references: {ref_lab.shape[0]} references for {b} sequences")
        if reset is None:
            mem = self._memory_reference
            same = (mem is not None and mem.shape == ref_lab.shape and mem.device == ref_lab.device
                    and torch.equal(mem, ref_lab.detach()))
            reset = not same
        if reset:
            self.reset_memory()
        self._memory_reference = ref_lab.detach()
        ref_l, ref_ab = split_lab(ref_lab)
        reference = self._encode_reference(ref_lab)
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
        branch's strategy unless given (RECOMMENDED_LR): pretrained 1e-5 / 1e-4, from scratch
        1e-4 / 1e-4. The exemplar group holds what the strategy trains (trainable_parameters)."""
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
        exemplar = load_exemplar(folder / "exemplar", map_location)
        fusion_net = FusionUNet.from_pretrained(folder / "fusion", map_location)
        system = cls(exemplar, fusion_net, flow=flow, memory_size=int(meta["memory_size"]),
                     decay=float(meta["decay"]))
        system.trained_size = meta.get("trained_size")
        system._loaded = True
        return system
