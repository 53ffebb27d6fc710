"""Optical flow between grey frames, behind one small interface, plus warping and confidence.

Convention (OpenCV's): `flow = backend.flow(src, dst)` is a float32 (H, W, 2) array of (dx, dy)
such that src[y, x] ~ dst[y + dy, x + dx]. To bring colours of an earlier frame s into the
current frame t we therefore compute flow(t, s) and sample frame s at x + flow (`warp`).

Backends (all frozen; none is trained here):
    dis        OpenCV DIS (Kroeger et al. 2016), medium preset. Default: no weights, fast on CPU.
    farneback  OpenCV Farneback polynomial-expansion flow. No weights.
    raft       torchvision RAFT (raft_small / raft_large) from a local weights file (.pth state
               dict or .safetensors); never downloaded.
    memflow    an external MemFlow checkout (github.com/DQiaole/MemFlow) + its checkpoint, imported
               from the given path, as the seed's FusionSystem did; its memory is carried across
               the consecutive frames of a sequence (sequence_flows) until reset().
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PolySpaceError
from ..io import load_safetensors

FLOW_BACKENDS = ("dis", "farneback", "raft", "memflow")


def _check_pair(src: np.ndarray, dst: np.ndarray, who: str) -> None:
    for name, img in (("src", src), ("dst", dst)):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 2:
            raise PolySpaceError(f"{who}: {name} must be a uint8 (H, W) grey frame, got "
                                 f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")
    if src.shape != dst.shape:
        raise PolySpaceError(f"{who}: frames differ in size {src.shape} vs {dst.shape}; "
                             f"resize them to one working size first")


class FlowBackend:
    """Base class: `flow(src, dst)` -> (H, W, 2) float32 for any pair of frames.

    A backend with a memory of the sequence (MemFlow) also answers `sequence_flows(prev, cur,
    stream)` for consecutive frames, fed once per new frame in temporal order, and forgets the
    sequence on `reset()`; `stateful` says whether it has such a memory. For the others
    sequence_flows is two `flow` calls and reset does nothing."""

    name = "base"
    stateful = False

    def flow(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def sequence_flows(self, prev: np.ndarray, cur: np.ndarray, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(flow(cur, prev), flow(prev, cur)) for consecutive frames prev -> cur of sequence
        `stream` (the index in the batch): what the temporal branch needs to bring the previous
        frame's colours into the current one and to check the match both ways."""
        return self.flow(cur, prev), self.flow(prev, cur)

    def reset(self) -> None:
        """Start of a new sequence (every stream): forget what the backend remembers."""

    def describe(self) -> dict:
        return {"backend": self.name}


class DISFlow(FlowBackend):
    """OpenCV Dense Inverse Search flow (medium preset); deterministic, CPU, no weights."""

    name = "dis"

    def __init__(self, preset: str = "medium"):
        import cv2

        presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                   "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                   "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
        if preset not in presets:
            raise PolySpaceError(f"DIS flow preset={preset!r}: use one of {', '.join(presets)}")
        self.preset = preset
        self._preset_id = presets[preset]

    def flow(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        import cv2

        _check_pair(src, dst, "dis flow")
        # a fresh DIS object per pair: a reused one answers the same pair differently after its
        # first call (by pixels on textured frames), so flows would depend on what came before
        # (18 us to create one, against milliseconds for calc)
        return cv2.DISOpticalFlow_create(self._preset_id).calc(src, dst, None).astype(np.float32, copy=False)

    def describe(self) -> dict:
        return {"backend": self.name, "preset": self.preset}


class FarnebackFlow(FlowBackend):
    """OpenCV Farneback flow; window size scales with the frame so small frames still work."""

    name = "farneback"

    def __init__(self, levels: int = 3, iterations: int = 5):
        self.levels, self.iterations = levels, iterations

    def flow(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        import cv2

        _check_pair(src, dst, "farneback flow")
        winsize = int(np.clip(min(src.shape) // 6, 7, 21)) | 1
        out = cv2.calcOpticalFlowFarneback(src, dst, None, pyr_scale=0.5, levels=self.levels,
                                           winsize=winsize, iterations=self.iterations,
                                           poly_n=5, poly_sigma=1.1, flags=0)
        return out.astype(np.float32, copy=False)

    def describe(self) -> dict:
        return {"backend": self.name, "levels": self.levels, "iterations": self.iterations}


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad (B, C, H, W) on the bottom/right to a multiple of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


class RAFTFlow(FlowBackend):
    """torchvision RAFT loaded from a local weights file. Grey frames are replicated to RGB and
    scaled to [-1, 1] (RAFT's input range); frames are padded to a multiple of 8."""

    name = "raft"
    MIN_SIDE = 128

    def __init__(self, weights: str | os.PathLike, variant: str = "raft_small",
                 device: str | torch.device = "cpu", num_flow_updates: int = 12):
        from torchvision.models import optical_flow

        if variant not in ("raft_small", "raft_large"):
            raise PolySpaceError(f"RAFT variant={variant!r}: use raft_small or raft_large")
        weights = Path(weights) if weights is not None else None
        if weights is None or not weights.is_file():
            raise PolySpaceError(f"RAFT weights {weights}: file not found; pass --raft-weights with "
                                 f"a local {variant} state dict (.pth or .safetensors) — nothing is "
                                 f"downloaded, or use --flow dis")
        model = getattr(optical_flow, variant)(weights=None, progress=False)
        state = load_state_dict_file(weights)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise PolySpaceError(f"RAFT weights {weights}: do not fit torchvision {variant} "
                                 f"({first}); check the variant") from None
        self.model = model.eval().requires_grad_(False).to(device)
        self.variant, self.weights, self.device = variant, str(weights), torch.device(device)
        self.num_flow_updates = num_flow_updates

    @torch.no_grad()
    def flow(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        _check_pair(src, dst, "raft flow")
        h, w = src.shape
        pair = torch.from_numpy(np.stack([src, dst])).float().to(self.device)
        pair = (pair / 127.5 - 1.0)[:, None].expand(-1, 3, -1, -1)
        # RAFT's correlation pyramid needs >= 128 px; smaller frames are upsampled, flow scaled back
        scale = max(1.0, self.MIN_SIDE / min(h, w))
        if scale > 1.0:
            pair = F.interpolate(pair, size=(math.ceil(h * scale), math.ceil(w * scale)), mode="bilinear",
                                 align_corners=False)
        pair, (hs, ws) = _pad_to_multiple(pair, 8)
        flow = self.model(pair[:1], pair[1:], num_flow_updates=self.num_flow_updates)[-1][:, :, :hs, :ws]
        if scale > 1.0:
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = flow * torch.tensor([w / ws, h / hs], device=flow.device).view(1, 2, 1, 1)
        return flow[0].permute(1, 2, 0).float().cpu().numpy()

    def describe(self) -> dict:
        return {"backend": self.name, "variant": self.variant, "weights": self.weights}


def load_state_dict_file(path: Path) -> dict:
    """A state dict from .safetensors or a torch file (weights_only; {'model': sd} accepted)."""
    if path.suffix == ".safetensors":
        return load_safetensors(path, fix="download or convert the flow weights again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code in it, or not a torch file at all
        raise PolySpaceError(f"{path}: cannot be read as a weights-only torch state dict "
                             f"({type(e).__name__}); re-save it with torch.save(model.state_dict())") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise PolySpaceError(f"{path}: holds a {type(state).__name__}, not a state dict")
    # checkpoints saved from DataParallel/DDP carry a 'module.' prefix
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


class MemFlowAdapter(FlowBackend):
    """Flow from an external MemFlow checkout (the seed's `memflow_path` + `memflow_ckpt`), run
    with its memory across the sequence.

    From `memflow_path` it imports what MemFlow's inference.py uses: `core.Networks.build_network`,
    `configs.<stage>_memflownet.get_cfg` and `inference.inference_core_skflow.InferenceCore`
    (`clear_memory()`, `step(images, end, add_pe, flow_init) -> (flow_low, flow_up)` with images
    (1, 2, 3, H, W) in [-1, 1]; the core adds each step's key/value to its memory every
    cfg.mem_every steps and reads the memory in every later step). Nothing of MemFlow is vendored.

    Consecutive frames (`sequence_flows`, fed once per new frame) go through two InferenceCores
    per sequence that live until `reset()`: one on the pairs (t-1, t) for the forward flow and one
    on (t, t-1) for the backward flow, each reading the motion it stored for earlier frames, as
    inference.py runs a clip. Any other pair (the reference, older memory frames: `flow`) goes
    through a fresh core, i.e. two-frame MemFlow, because MemFlow's memory only means something
    for a temporally ordered stream. Frames are padded to a multiple of 8 (bottom/right,
    replicate) and the flow is cropped back. The checkpoint is a released MemFlow file
    (MemFlowNet_sintel.pth, ...): a state dict of build_network's model (cnet.*, fnet.*,
    update_block.*, att.*), optionally under "model" and with DataParallel's "module." prefix, as
    inference.py accepts; anything else is a one-line error naming the file.
    """

    name = "memflow"
    stateful = True
    _PACKAGES = ("core", "configs", "inference", "utils")

    def __init__(self, memflow_path: str | os.PathLike, checkpoint: str | os.PathLike,
                 stage: str = "sintel", device: str | torch.device = "cpu"):
        from ..checkpoints import load_state_dict_strict

        root = Path(memflow_path) if memflow_path else None
        if root is None or not (root / "core" / "Networks").is_dir():
            raise PolySpaceError(f"MemFlow checkout {memflow_path}: not found (no core/Networks "
                                 f"inside); clone github.com/DQiaole/MemFlow there and pass "
                                 f"--memflow-path, or use --flow dis")
        ckpt = Path(checkpoint) if checkpoint else None
        if ckpt is None or not ckpt.is_file():
            raise PolySpaceError(f"MemFlow checkpoint {checkpoint}: file not found; pass "
                                 f"--memflow-ckpt with e.g. MemFlowNet_sintel.pth")
        build_network, get_cfg, InferenceCore = self._import(root, stage)
        cfg = get_cfg()
        if _cfg_get(cfg, "warm_start", False):
            raise PolySpaceError(f"MemFlow config {stage}: warm_start is set; the adapter runs without "
                                 f"it, as MemFlow's released configs do")
        model = build_network(cfg)
        load_state_dict_strict(model, load_state_dict_file(ckpt), ckpt, against=f"MemFlow's {cfg_name(cfg)}")
        self.model = model.eval().requires_grad_(False).to(device)
        self.cfg, self.device, self.stage = cfg, torch.device(device), stage
        self.root, self.checkpoint = str(root), str(ckpt)
        self.add_pe = bool(_cfg_get(cfg, "rope", False))
        self._core_class = InferenceCore
        self._streams: dict[int, tuple] = {}

    @classmethod
    def _import(cls, root: Path, stage: str):
        import importlib

        # MemFlow's top-level package names are generic (core, configs, ...): drop any cached
        # module of those names that is not from this checkout, so the right one is imported
        for name in list(sys.modules):
            if name.split(".")[0] in cls._PACKAGES:
                file = getattr(sys.modules[name], "__file__", None) or ""
                if not file.startswith(str(root)):
                    del sys.modules[name]
        for p in (str(root), str(root / "core")):  # MemFlow imports both ways internally
            if p not in sys.path:
                sys.path.insert(0, p)
        try:
            build_network = importlib.import_module("core.Networks").build_network
            get_cfg = importlib.import_module(f"configs.{stage}_memflownet").get_cfg
            InferenceCore = importlib.import_module("inference.inference_core_skflow").InferenceCore
        except (ImportError, AttributeError) as e:
            raise PolySpaceError(f"MemFlow checkout {root}: import failed ({e}); check the "
                                 f"checkout and its requirements (stage={stage!r})") from None
        return build_network, get_cfg, InferenceCore

    def _pair(self, first: np.ndarray, second: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        pair = torch.from_numpy(np.stack([first, second])).float().to(self.device)
        pair = (2.0 * pair / 255.0 - 1.0)[:, None].expand(-1, 3, -1, -1)
        pair, size = _pad_to_multiple(pair, 8)
        return pair[None], size

    def _step(self, core, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        pair, (h, w) = self._pair(first, second)
        _, flow = core.step(pair, end=False, add_pe=self.add_pe, flow_init=None)
        return flow[0][:, :h, :w].permute(1, 2, 0).float().cpu().numpy()

    @torch.no_grad()
    def flow(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Two-frame MemFlow (a fresh core): for pairs that are not consecutive in the stream."""
        _check_pair(src, dst, "memflow flow")
        return self._step(self._core_class(self.model, config=self.cfg), src, dst)

    @torch.no_grad()
    def sequence_flows(self, prev: np.ndarray, cur: np.ndarray, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
        _check_pair(prev, cur, "memflow flow")
        if stream not in self._streams:
            self._streams[stream] = (self._core_class(self.model, config=self.cfg),
                                     self._core_class(self.model, config=self.cfg))
        forward_core, backward_core = self._streams[stream]
        to_prev = self._step(backward_core, cur, prev)
        to_cur = self._step(forward_core, prev, cur)
        return to_prev, to_cur

    def reset(self) -> None:
        """Forget every sequence's memory (their cores are dropped; new ones start empty)."""
        for cores in self._streams.values():
            for core in cores:
                core.clear_memory()
        self._streams.clear()

    def describe(self) -> dict:
        return {"backend": self.name, "path": self.root, "checkpoint": self.checkpoint,
                "stage": self.stage, "memory": "carried across consecutive frames until reset"}


def _cfg_get(cfg, key: str, default):
    """A key of MemFlow's yacs CfgNode (a dict) or of a plain dict/namespace."""
    if hasattr(cfg, "get"):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def cfg_name(cfg) -> str:
    """The network name a MemFlow config builds (for messages)."""
    return str(_cfg_get(cfg, "network", "network"))


class CachedFlow(FlowBackend):
    """Memoises a stateless backend by frame content (training revisits the same frame pairs
    every epoch; the flow of a pair never changes). LRU with `max_items` entries."""

    def __init__(self, backend: FlowBackend, max_items: int = 20000):
        self.backend, self.max_items = backend, max_items
        self.name = backend.name
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def flow(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        h = hashlib.blake2b(digest_size=16)
        h.update(np.asarray(src.shape, np.int64).tobytes())
        h.update(np.ascontiguousarray(src).tobytes())
        h.update(np.ascontiguousarray(dst).tobytes())
        key = h.digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            self.hits += 1
            return self._cache[key]
        self.misses += 1
        out = self.backend.flow(src, dst)
        self._cache[key] = out
        if len(self._cache) > self.max_items:
            self._cache.popitem(last=False)
        return out

    @property
    def stateful(self) -> bool:
        return self.backend.stateful

    def sequence_flows(self, prev: np.ndarray, cur: np.ndarray, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
        if self.backend.stateful:  # a memory's answer depends on the history, not on the pair alone
            return self.backend.sequence_flows(prev, cur, stream)
        return super().sequence_flows(prev, cur, stream)

    def reset(self) -> None:
        self.backend.reset()

    def describe(self) -> dict:
        return self.backend.describe()


def build_flow_backend(name: str = "dis", *, raft_weights: str | None = None,
                       raft_variant: str = "raft_small", memflow_path: str | None = None,
                       memflow_ckpt: str | None = None, memflow_stage: str = "sintel",
                       device: str | torch.device = "cpu") -> FlowBackend:
    """The flow backend called `name` (dis, farneback, raft, memflow) with its weights."""
    if name == "dis":
        return DISFlow()
    if name == "farneback":
        return FarnebackFlow()
    if name == "raft":
        return RAFTFlow(raft_weights, variant=raft_variant, device=device)
    if name == "memflow":
        return MemFlowAdapter(memflow_path, memflow_ckpt, stage=memflow_stage, device=device)
    raise PolySpaceError(f"flow backend {name!r}: unknown; use one of {', '.join(FLOW_BACKENDS)}")


# ----------------------------------------------------------------------------- warping

def flow_to_tensor(flows: np.ndarray | list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, H, W, 2) numpy flows (or a list of (H, W, 2)) -> (B, 2, H, W) float32 tensor."""
    arr = np.stack(flows) if isinstance(flows, list) else flows
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().to(device)


def warp(x: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample x (B, C, H, W) at p + flow(p) (flow (B, 2, H, W) in pixels, (dx, dy)).

    Bilinear, differentiable in x. Returns (warped (B, C, H, W), inside (B, 1, H, W)) where
    `inside` is 1 where the sample point lies in the frame and 0 where it fell outside (content
    entering the view has no source; its warped value is 0 there)."""
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=flow.dtype),
                            torch.arange(w, device=x.device, dtype=flow.dtype), indexing="ij")
    px = xs[None] + flow[:, 0]
    py = ys[None] + flow[:, 1]
    grid = torch.stack([2.0 * px / max(w - 1, 1) - 1.0, 2.0 * py / max(h - 1, 1) - 1.0], dim=-1)
    warped = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros",
                           align_corners=True)
    inside = ((px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)).to(x.dtype)[:, None]
    return warped, inside


def forward_backward_confidence(flow_ts: torch.Tensor, flow_st: torch.Tensor) -> torch.Tensor:
    """Confidence in [0, 1] (B, 1, H, W) that flow_ts (t -> s) is right, from the cycle t -> s -> t.

    e = flow_ts(p) + flow_st(p + flow_ts(p)) is ~0 for a correct, unoccluded match. We use
    exp(-|e|^2 / (0.01 (|flow_ts|^2 + |flow_st'|^2) + 0.5)): the soft version of the occlusion
    test of Sundaram et al. (2010), which is exactly e^-1 at their hard threshold. Points that
    leave the frame get 0."""
    back, inside = warp(flow_st, flow_ts)
    err = (flow_ts + back).pow(2).sum(1, keepdim=True)
    scale = 0.01 * (flow_ts.pow(2).sum(1, keepdim=True) + back.pow(2).sum(1, keepdim=True)) + 0.5
    return torch.exp(-err / scale) * inside
