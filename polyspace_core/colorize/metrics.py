"""Video colorization metrics on uint8 RGB frames, computed in float64.

- psnr: 10 log10(255^2 / MSE) over all pixels and channels (the same as
  skimage.metrics.peak_signal_noise_ratio with data_range=255). Frames are cast to float before
  subtracting: uint8 differences wrap around (3 - 5 = 254), a bug in some public eval scripts.
- ssim: scikit-image's `structural_similarity` with its defaults (a 7x7 uniform window, sample
  covariances, K1 = 0.01, K2 = 0.03), data_range=255, averaged over the three RGB channels: the
  choice of the published colorization tables (they call skimage with these defaults).
- ssim_gaussian: Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), population
  covariances, averaged over the valid region and the three channels (= skimage's
  structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255, channel_axis=-1)); the paper's window, kept under its own name.
- cdc: colour distribution consistency (Liu et al., TCVC 2021): Jensen-Shannon divergence
  (natural log) between the 256-bin histograms of each RGB channel of frames t and t+d, averaged
  over t, channels and d in (1, 2, 4). Lower = temporally more consistent colours.
- warp_error: E_warp of Lai et al., "Learning Blind Video Temporal Consistency" (ECCV 2018), as
  their evaluate_WarpError.py computes it. For each pair (t, t+1): forward flow F (t -> t+1) and
  backward flow B (t+1 -> t) from the INPUT video (here the grey frames every method sees, so every
  method faces the same motion); output frame t+1 warped into frame t along F (bilinear, sample
  points clamped to the border like FlowNet2's Resample2d); a non-occlusion mask M in frame t
  (Ruder et al.'s test, Lai's thresholds: occluded where |F + B(x + F)|^2 > 0.01 (|F|^2 +
  |B(x + F)|^2) + 0.5, or on a motion boundary |grad F|^2 > 0.01 |F|^2 + 0.002 with forward
  differences); E = sum M (warped - O_t)^2 / (3 sum M). SCALE: RGB in [0, 1], the squared error
  MEANED over the three channels (Lai's N counts the mask over 3 channels) and the non-occluded
  pixels, then averaged over the T-1 pairs of a video and over videos; no x1000. The flow is
  chosen by the caller from an estimator the methods do not use (evaluate.metric_flow_backend:
  RAFT from local weights, else Farneback when the methods use DIS), so the metric cannot favour
  the branch that propagates along the same flow.
- colorfulness: Hasler & Suesstrunk (2003), sigma_rgyb + 0.3 mu_rgyb on 0..255 RGB.
- lpips / fid: torchmetrics (LPIPS AlexNet with torchmetrics' bundled linear layers, FID over
  Inception-v3 pool features via torch-fidelity's network) when their pretrained weights are on
  this machine; `perceptual_scorers` never downloads: without the files it returns a one-line
  reason per metric, which the evaluation records and the report shows.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PolySpaceError

CDC_DISTANCES = (1, 2, 4)


def _as_frames(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != ndim or x.shape[-1] != 3:
        shape = "(H, W, 3)" if ndim == 3 else "(T, H, W, 3)"
        raise PolySpaceError(f"{name}: expected uint8 RGB {shape}, got {x.dtype} {x.shape}")
    return x


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise PolySpaceError(f"prediction {a.shape} and ground truth {b.shape} differ in shape")


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB of a uint8 RGB frame (H, W, 3) against the ground truth; inf if identical."""
    pred, gt = _as_frames(pred, "psnr pred", 3), _as_frames(gt, "psnr gt", 3)
    _same_shape(pred, gt)
    mse = np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM of a uint8 RGB frame (H, W, 3) against the ground truth with scikit-image's default
    7x7 uniform window (the published tables' choice; see the module docstring)."""
    from skimage.metrics import structural_similarity

    pred, gt = _as_frames(pred, "ssim pred", 3), _as_frames(gt, "ssim gt", 3)
    _same_shape(pred, gt)
    if min(pred.shape[:2]) < 7:
        raise PolySpaceError(f"ssim: frames of {pred.shape[:2]} are smaller than the 7x7 window")
    return float(structural_similarity(gt, pred, data_range=255, channel_axis=-1))


def ssim_gaussian(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM of a uint8 RGB frame (H, W, 3) against the ground truth with Wang et al.'s 11x11
    Gaussian window (sigma 1.5; see the module docstring)."""
    pred, gt = _as_frames(pred, "ssim_gaussian pred", 3), _as_frames(gt, "ssim_gaussian gt", 3)
    _same_shape(pred, gt)
    if min(pred.shape[:2]) < 11:
        raise PolySpaceError(f"ssim_gaussian: frames of {pred.shape[:2]} are smaller than the 11x11 window")
    x = torch.from_numpy(pred).double().permute(2, 0, 1)[:, None]   # (3, 1, H, W)
    y = torch.from_numpy(gt).double().permute(2, 0, 1)[:, None]
    g = _gaussian_window()

    def blur(z: torch.Tensor) -> torch.Tensor:  # separable Gaussian, valid region only
        z = F.conv2d(z, g.view(1, 1, -1, 1))
        return F.conv2d(z, g.view(1, 1, 1, -1))

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean(dim=(1, 2, 3)).mean())


def _histograms(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, 3, 256) normalised per-channel histograms."""
    t = frames.shape[0]
    flat = frames.reshape(t, -1, 3)
    hist = np.stack([[np.bincount(flat[i, :, c], minlength=256) for c in range(3)] for i in range(t)])
    return hist / flat.shape[1]


def _js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (nats) along the last axis; 0 log 0 = 0."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log(a / m), 0.0).sum(-1)

    return 0.5 * kl(p) + 0.5 * kl(q)


def cdc(frames: np.ndarray, distances: tuple[int, ...] = CDC_DISTANCES) -> float:
    """Colour distribution consistency of a video (T, H, W, 3) uint8; lower is steadier."""
    frames = _as_frames(frames, "cdc frames", 4)
    hist = _histograms(frames)
    per_d = [_js(hist[:-d], hist[d:]).mean() for d in distances if d < len(frames)]
    if not per_d:
        raise PolySpaceError(f"cdc: a video of {len(frames)} frames has no frame pairs at distances {distances}")
    return float(np.mean(per_d))


def _resample(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) sampled at p + flow(p) (flow (B, 2, H, W), pixels), bilinear, sample points
    clamped to the border: FlowNet2's Resample2d, which Lai et al.'s evaluation warps with."""
    _, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    grid = torch.stack([2.0 * (xs[None] + flow[:, 0]) / max(w - 1, 1) - 1.0,
                        2.0 * (ys[None] + flow[:, 1]) / max(h - 1, 1) - 1.0], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def non_occlusion_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Lai et al.'s non-occlusion mask (H, W) bool in frame t from the forward flow (t -> t+1) and
    the backward flow (t+1 -> t), both (H, W, 2) (dx, dy): False where the forward-backward check
    fails or on a motion boundary of the forward flow (thresholds in the module docstring)."""
    fw = torch.from_numpy(np.ascontiguousarray(forward, dtype=np.float64)).permute(2, 0, 1)[None]
    bw = torch.from_numpy(np.ascontiguousarray(backward, dtype=np.float64)).permute(2, 0, 1)[None]
    bw_at = _resample(bw, fw)[0].permute(1, 2, 0).numpy()
    fw = forward.astype(np.float64)
    mag = lambda f: f[..., 0] ** 2 + f[..., 1] ** 2  # noqa: E731 - squared magnitude, as Lai's
    inconsistent = mag(fw + bw_at) > 0.01 * (mag(bw_at) + mag(fw)) + 0.5
    du, dv = np.zeros_like(fw), np.zeros_like(fw)
    du[:, :-1] = fw[:, :-1] - fw[:, 1:]   # forward differences, zero on the last column / row
    dv[:-1] = fw[:-1] - fw[1:]
    boundary = (du[..., 0] ** 2 + dv[..., 0] ** 2) + (du[..., 1] ** 2 + dv[..., 1] ** 2) > 0.01 * mag(fw) + 0.002
    return ~(inconsistent | boundary)


def warp_error_pair(out_t: np.ndarray, out_next: np.ndarray, forward: np.ndarray, mask: np.ndarray) -> float:
    """E_warp of one pair: output frame t+1 (H, W, 3) uint8 warped into frame t along `forward`
    (t -> t+1), squared [0, 1] RGB difference meaned over channels and the pixels where `mask`."""
    x = torch.from_numpy(out_next).double().permute(2, 0, 1)[None] / 255.0
    flow = torch.from_numpy(np.ascontiguousarray(forward, dtype=np.float64)).permute(2, 0, 1)[None]
    warped = _resample(x, flow)[0].permute(1, 2, 0).numpy()
    diff = (warped - out_t.astype(np.float64) / 255.0) * mask[..., None]
    n = 3.0 * mask.sum()
    return float(np.square(diff).sum() / (n if n > 0 else diff.size))


def input_flows(grey: np.ndarray, backend) -> list[tuple[np.ndarray, np.ndarray]]:
    """(forward t -> t+1, non-occlusion mask in t) for each consecutive pair of an input video
    (T, H, W) uint8, from `backend` (a flow.FlowBackend); computed once per clip and shared by the
    methods scored on it."""
    grey = np.asarray(grey)
    if grey.dtype != np.uint8 or grey.ndim != 3:
        raise PolySpaceError(f"input_flows: expected uint8 grey frames (T, H, W), got {grey.dtype} {grey.shape}")
    out = []
    for t in range(len(grey) - 1):
        fw, bw = backend.flow(grey[t], grey[t + 1]), backend.flow(grey[t + 1], grey[t])
        out.append((fw, non_occlusion_mask(fw, bw)))
    return out


def warp_error(pred: np.ndarray, gt: np.ndarray, backend=None,
               flows: list[tuple[np.ndarray, np.ndarray]] | None = None) -> tuple[float, list[float]]:
    """Lai et al.'s E_warp of a predicted video (T, H, W, 3) uint8, with flow from the grey input
    (the lightness of the ground truth `gt` (T, H, W, 3)); `flows` from input_flows when already
    computed, else from `backend` (required then: the caller picks an estimator the methods do not
    use). Returns (mean over the T-1 pairs, per-pair list)."""
    from .lab import frames_to_gray

    pred, gt = _as_frames(pred, "warp_error pred", 4), _as_frames(gt, "warp_error gt", 4)
    _same_shape(pred, gt)
    if len(pred) < 2:
        raise PolySpaceError("warp_error: needs at least 2 frames")
    if flows is None:
        if backend is None:
            raise PolySpaceError("warp_error: pass the flow backend to measure with (one the methods do not use)")
        flows = input_flows(frames_to_gray(gt), backend)
    if len(flows) != len(pred) - 1:
        raise PolySpaceError(f"warp_error: {len(flows)} flows for {len(pred)} frames; need one per pair")
    errors = [warp_error_pair(pred[t], pred[t + 1], fw, mask) for t, (fw, mask) in enumerate(flows)]
    return float(np.mean(errors)), errors


def colorfulness(frame: np.ndarray) -> float:
    """Hasler & Suesstrunk colourfulness of a uint8 RGB frame (H, W, 3)."""
    frame = _as_frames(frame, "colorfulness frame", 3).astype(np.float64)
    r, g, b = frame[..., 0], frame[..., 1], frame[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


# ----------------------------------------------------------------------------- LPIPS and FID

FID_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's Inception-v3 (TF port)


def _hub_checkpoint(name: str) -> Path:
    """Where torch.hub (and so torchvision / torch-fidelity) keeps a downloaded weights file:
    $TORCH_HOME/hub/checkpoints/<name> (default ~/.cache/torch/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def lpips_weights() -> tuple[Path | None, str]:
    """(AlexNet ImageNet weights file torchvision would read for LPIPS, '') when it is on this
    machine, else (None, one-line reason). torchmetrics ships LPIPS' linear layers itself; its
    AlexNet comes from torchvision's AlexNet_Weights.DEFAULT, which loads the hub cache file and
    downloads only when it is absent, so the file's presence is what decides."""
    from torchvision.models import AlexNet_Weights

    path = _hub_checkpoint(os.path.basename(AlexNet_Weights.DEFAULT.url))
    if not path.is_file():
        return None, (f"LPIPS skipped: no AlexNet weights at {path} (torchvision's AlexNet_Weights.DEFAULT "
                      f"file; put it there or set TORCH_HOME); nothing is downloaded")
    return path, ""


def fid_weights(path: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """(Inception-v3 weights file for FID, '') — `path` when given (a missing file is an error), else
    torch-fidelity's file in the hub cache when present — or (None, one-line reason)."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise PolySpaceError(f"FID weights {path}: file not found; point color_fid_weights at "
                                 f"torch-fidelity's {FID_WEIGHTS_FILE} or leave it null to skip FID")
        return path, ""
    path = _hub_checkpoint(FID_WEIGHTS_FILE)
    if not path.is_file():
        return None, (f"FID skipped: no Inception-v3 weights at {path} (torch-fidelity's file; put it there "
                      f"or set color_fid_weights); nothing is downloaded")
    return path, ""


class LPIPS:
    """Per-frame LPIPS (AlexNet, torchmetrics) of uint8 RGB frames; build with perceptual_scorers."""

    def __init__(self, device: torch.device | str = "cpu"):
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self.device = torch.device(device)
        self.metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True).to(self.device)

    @torch.no_grad()
    def frames(self, pred: np.ndarray, gt: np.ndarray) -> list[float]:
        """LPIPS of each frame of pred (T, H, W, 3) uint8 against gt; lower is closer."""
        pred, gt = _as_frames(pred, "lpips pred", 4), _as_frames(gt, "lpips gt", 4)
        _same_shape(pred, gt)
        to = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).to(self.device)  # noqa: E731
        return self.metric.net(to(pred), to(gt), normalize=True).reshape(-1).double().cpu().tolist()


class FID:
    """FID (torchmetrics, Inception-v3 pool features) of several generated sets against one real
    set, each accumulated clip by clip as running sums (no frames kept); build with
    perceptual_scorers. A set-level figure: no per-clip values."""

    FAKE_STATES = ("fake_features_sum", "fake_features_cov_sum", "fake_features_num_samples")

    def __init__(self, weights: Path, device: torch.device | str = "cpu", features: int = 2048):
        """features: the Inception layer (2048 = the pool features every FID table uses; 64, 192,
        768 are torchmetrics' smaller taps, for quick checks)."""
        from torchmetrics.image.fid import FrechetInceptionDistance

        from ..checkpoints import read_torch_file

        # torch-fidelity reads the file with a full unpickler; read it weights-only first, so a file
        # that holds anything but tensors is refused here (one line naming it)
        read_torch_file(weights, "use torch-fidelity's Inception-v3 state dict")
        self.device = torch.device(device)
        self.metric = FrechetInceptionDistance(feature=features, reset_real_features=False,
                                               feature_extractor_weights_path=str(weights)).to(self.device)
        self.real = 0
        self.fake: dict[str, dict[str, torch.Tensor]] = {}  # per set: torchmetrics' fake-feature sums

    @staticmethod
    def _tensor(frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(_as_frames(frames, "fid frames", 4)).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def add_real(self, frames: np.ndarray) -> None:
        """Add real frames (T, H, W, 3) uint8."""
        self.metric.update(self._tensor(frames).to(self.device), real=True)
        self.real += len(frames)

    def _swap_in(self, name: str) -> None:
        self.metric.reset()  # zeroes the fake sums, keeps the real ones (reset_real_features=False)
        for key, value in self.fake.get(name, {}).items():
            setattr(self.metric, key, value.clone())

    @torch.no_grad()
    def add_fake(self, name: str, frames: np.ndarray) -> None:
        """Add generated frames (T, H, W, 3) uint8 to the set `name` (e.g. a method)."""
        self._swap_in(name)
        self.metric.update(self._tensor(frames).to(self.device), real=False)
        self.fake[name] = {key: getattr(self.metric, key).clone() for key in self.FAKE_STATES}

    @torch.no_grad()
    def score(self, name: str) -> float:
        """FID of the set `name` against the real frames added."""
        if name not in self.fake:
            raise PolySpaceError(f"FID: no generated frames were added for {name!r}")
        if self.real < 2 or int(self.fake[name]["fake_features_num_samples"]) < 2:
            raise PolySpaceError("FID: needs at least 2 real and 2 generated frames")
        import warnings

        self._swap_in(name)
        with warnings.catch_warnings():  # the sums were restored by hand, not by update(): nothing is missing
            warnings.filterwarnings("ignore", message=".*called before the ``update`` method.*")
            return float(self.metric.compute())


def perceptual_scorers(device: torch.device | str = "cpu", fid_weights_path: str | os.PathLike | None = None,
                       ) -> tuple[dict[str, Any], dict[str, str]]:
    """({'lpips': LPIPS, 'fid': FID} for those whose weights are on this machine, {name: one-line
    reason} for those skipped). Nothing is downloaded."""
    scorers: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    path, why = lpips_weights()
    if path is None:
        skipped["lpips"] = why
    else:
        scorers["lpips"] = LPIPS(device)
    path, why = fid_weights(fid_weights_path)
    if path is None:
        skipped["fid"] = why
    else:
        scorers["fid"] = FID(path, device)
    return scorers, skipped
