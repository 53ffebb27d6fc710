"""sRGB <-> CIE Lab in torch: differentiable, batched, channel axis -3.

Ranges (D65 white, 2° observer, the same constants as skimage.color.rgb2lab):
    sRGB  in [0, 1] (float) or [0, 255] (uint8 helpers below)
    L     in [0, 100]
    a, b  roughly [-86, 98] and [-108, 94] for in-gamut sRGB; we treat them as [-110, 110]

The networks see normalised values (`normalize_l`, `normalize_ab`):
    l_norm  = L / 50 - 1     -> [-1, 1]
    ab_norm = ab / 110       -> roughly [-1, 1]
and predict ab_norm; `denormalize_*` maps back. Keeping L exact and predicting only ab is the
usual colorization setup: the output frame always has the input's lightness.
"""

from __future__ import annotations

import numpy as np
import torch

L_RANGE = (0.0, 100.0)
AB_RANGE = (-110.0, 110.0)
AB_SCALE = 110.0

# linear sRGB -> XYZ (D65), as in skimage.color.colorconv.xyz_from_rgb
_XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423],
                              [0.212671, 0.715160, 0.072169],
                              [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_EPS = 6.0 / 29.0  # the CIE break point of the cube-root curve: t > eps^3 uses the cube root


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix along channel axis -3 of x (..., 3, H, W)."""
    return torch.einsum("ij,...jhw->...ihw", matrix.to(x.dtype).to(x.device), x)


def _check(x: torch.Tensor, name: str) -> None:
    if x.ndim < 3 or x.shape[-3] != 3:
        from ..errors import PolySpaceError
        raise PolySpaceError(f"{name}: expected a tensor (..., 3, H, W), got shape {tuple(x.shape)}")


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (..., 3, H, W) float in [0, 1] -> Lab (..., 3, H, W): L in [0, 100], ab ~[-110, 110]."""
    _check(rgb, "rgb_to_lab input")
    rgb = rgb.clamp(0.0, 1.0)
    # sRGB gamma -> linear; the clamp keeps the unused branch of where() free of inf gradients
    linear = torch.where(rgb > 0.04045, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = _mix(_XYZ_FROM_RGB, linear)
    xyz = xyz / _WHITE_D65.to(xyz.dtype).to(xyz.device).view(3, 1, 1)
    f = torch.where(xyz > _EPS ** 3, xyz.clamp(min=_EPS ** 3) ** (1.0 / 3.0),
                    xyz / (3 * _EPS ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(-3)
    L = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack([L, a, b], dim=-3)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Lab (..., 3, H, W) -> sRGB (..., 3, H, W) in [0, 1] (clipped unless clip=False).

    Lab colours outside the sRGB gamut come out clipped, as skimage.color.lab2rgb does."""
    _check(lab, "lab_to_rgb input")
    L, a, b = lab.unbind(-3)
    fy = (L + 16.0) / 116.0
    fx = fy + a / 500.0
    # a negative fz (very yellow, out of gamut) is clipped to 0 first, as skimage does
    fz = (fy - b / 200.0).clamp(min=0.0)
    f = torch.stack([fx, fy, fz], dim=-3)
    xyz = torch.where(f > _EPS, f ** 3, 3 * _EPS ** 2 * (f - 4.0 / 29.0))
    xyz = xyz * _WHITE_D65.to(xyz.dtype).to(xyz.device).view(3, 1, 1)
    linear = _mix(_RGB_FROM_XYZ, xyz)
    srgb = torch.where(linear > 0.0031308,
                       1.055 * linear.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055, 12.92 * linear)
    return srgb.clamp(0.0, 1.0) if clip else srgb


# ----------------------------------------------------------------------------- normalisation

def normalize_l(L: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> [-1, 1]."""
    return L / 50.0 - 1.0


def denormalize_l(l_norm: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> L in [0, 100]."""
    return (l_norm + 1.0) * 50.0


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """ab in ~[-110, 110] -> ~[-1, 1]."""
    return ab / AB_SCALE


def denormalize_ab(ab_norm: torch.Tensor) -> torch.Tensor:
    """~[-1, 1] -> ab in ~[-110, 110]."""
    return ab_norm * AB_SCALE


def split_lab(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab (..., 3, H, W) -> (l_norm (..., 1, H, W), ab_norm (..., 2, H, W))."""
    return normalize_l(lab[..., :1, :, :]), normalize_ab(lab[..., 1:, :, :])


def merge_lab(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """(l_norm (..., 1, H, W), ab_norm (..., 2, H, W)) -> Lab (..., 3, H, W)."""
    return torch.cat([denormalize_l(l_norm), denormalize_ab(ab_norm)], dim=-3)


# ----------------------------------------------------------------------------- uint8 frames

def frames_to_lab(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB frames (..., H, W, 3) -> float32 Lab (..., 3, H, W)."""
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if x.dtype != torch.uint8 or x.ndim < 3 or x.shape[-1] != 3:
        from ..errors import PolySpaceError
        raise PolySpaceError(f"frames_to_lab: expected uint8 (..., H, W, 3) RGB, got "
                             f"{x.dtype} {tuple(x.shape)}")
    rgb = x.movedim(-1, -3).float() / 255.0
    return rgb_to_lab(rgb)


def lab_to_frames(lab: torch.Tensor) -> np.ndarray:
    """Lab (..., 3, H, W) -> uint8 RGB frames (..., H, W, 3) (rounded, gamut-clipped)."""
    rgb = lab_to_rgb(lab.detach().float()).movedim(-3, -1)
    return (rgb * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def frames_to_gray(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., H, W, 3) -> uint8 lightness image (..., H, W) = round(L * 2.55).

    This is the grey frame the flow backends see: the same L the networks get, so a grey
    input video and the grey version of a colour video produce the same flow."""
    lab = frames_to_lab(frames)
    return (lab[..., 0, :, :] * 2.55).round().clamp(0, 255).to(torch.uint8).numpy()


def l_to_gray(l_norm: torch.Tensor) -> np.ndarray:
    """l_norm (..., 1, H, W) or (..., H, W) in [-1, 1] -> uint8 (..., H, W), the flow input."""
    L = denormalize_l(l_norm.detach().float())
    if L.ndim >= 3 and L.shape[-3] == 1:
        L = L.squeeze(-3)
    return (L * 2.55).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
