"""Video colorization metrics on uint8 RGB frames, computed in float64.

- psnr: 10 log10(255^2 / MSE) over all pixels and channels (the same as
  skimage.metrics.peak_signal_noise_ratio with data_range=255). Frames are cast to float before
  subtracting: uint8 differences wrap around (3 - 5 = 254), a bug in some public eval scripts.
- ssim: Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  population covariances, averaged over the valid region and the three channels (= skimage's
  structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=255, channel_axis=-1)).
- cdc: colour distribution consistency (Liu et al., TCVC 2021): Jensen-Shannon divergence
  (natural log) between the 256-bin histograms of each RGB channel of frames t and t+d, averaged
  over t, channels and d in (1, 2, 4). Lower = temporally more consistent colours.
- warp_error: Lai et al. (2018): flow between consecutive ground-truth frames (DIS), the
  previous output frame warped onto the current one, squared RGB distance (sum over channels,
  values in [0, 1]) averaged over pixels that pass the forward-backward occlusion test and stay
  inside the frame. Using ground-truth flow makes every method face the same motion.
- colorfulness: Hasler & Suesstrunk (2003), sigma_rgyb + 0.3 mu_rgyb on 0..255 RGB.
"""

from __future__ import annotations

import math

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
    """SSIM of a uint8 RGB frame (H, W, 3) against the ground truth (see the module docstring)."""
    pred, gt = _as_frames(pred, "ssim pred", 3), _as_frames(gt, "ssim gt", 3)
    _same_shape(pred, gt)
    if min(pred.shape[:2]) < 11:
        raise PolySpaceError(f"ssim: frames of {pred.shape[:2]} are smaller than the 11x11 window")
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


def warp_error(pred: np.ndarray, gt: np.ndarray, backend=None) -> tuple[float, list[float]]:
    """Occlusion-masked warping error of a predicted video (T, H, W, 3) uint8, with flow from the
    ground truth (T, H, W, 3). Returns (mean over frame pairs, per-pair list)."""
    from .flow import DISFlow, flow_to_tensor, forward_backward_confidence, warp
    from .lab import frames_to_gray

    pred, gt = _as_frames(pred, "warp_error pred", 4), _as_frames(gt, "warp_error gt", 4)
    _same_shape(pred, gt)
    if len(pred) < 2:
        raise PolySpaceError("warp_error: needs at least 2 frames")
    backend = backend or DISFlow()
    grey = frames_to_gray(gt)
    x = torch.from_numpy(pred).double().permute(0, 3, 1, 2) / 255.0
    errors = []
    for t in range(1, len(pred)):
        to_prev = flow_to_tensor([backend.flow(grey[t], grey[t - 1])]).double()
        to_cur = flow_to_tensor([backend.flow(grey[t - 1], grey[t])]).double()
        # the hard Sundaram test: confidence >= e^-1 <=> |cycle error|^2 <= 0.01(...) + 0.5
        mask = (forward_backward_confidence(to_prev, to_cur) >= math.exp(-1.0)).double()
        prev_warped, _ = warp(x[t - 1:t], to_prev)
        sq = (x[t:t + 1] - prev_warped).pow(2).sum(1, keepdim=True)
        errors.append(float((sq * mask).sum() / mask.sum().clamp(min=1.0)))
    return float(np.mean(errors)), errors


def colorfulness(frame: np.ndarray) -> float:
    """Hasler & Suesstrunk colourfulness of a uint8 RGB frame (H, W, 3)."""
    frame = _as_frames(frame, "colorfulness frame", 3).astype(np.float64)
    r, g, b = frame[..., 0], frame[..., 1], frame[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
