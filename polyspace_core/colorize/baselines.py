"""Global colour transfer from the reference: the no-learning, no-motion baseline.

- `reinhard_transfer` (Reinhard et al. 2001): match each Lab channel's mean and standard
  deviation of a *colour* target to the reference's. Shown for completeness; a grey frame has
  a = b = 0 everywhere, so its ab statistics carry nothing to match.
- `luminance_transfer` (the grey-target form, after Welsh et al. 2002): remap the reference's L
  to the frame's L mean/std, average the reference's ab in each lightness bin, and give every
  frame pixel the ab of its lightness (linear interpolation between bin centres; bins without
  reference pixels interpolate from their neighbours). A single global L -> ab curve: colours
  land on the right tones, never on the right objects — the point of comparison.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import PolySpaceError


def reinhard_transfer(target_lab: torch.Tensor, ref_lab: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Colour target Lab (..., 3, H, W) -> Lab with the reference's per-channel mean and std."""
    dims = (-2, -1)
    mt, st = target_lab.mean(dims, keepdim=True), target_lab.std(dims, keepdim=True)
    mr, sr = ref_lab.mean(dims, keepdim=True), ref_lab.std(dims, keepdim=True)
    return (target_lab - mt) / (st + eps) * sr + mr


def luminance_transfer(target_l: torch.Tensor, ref_lab: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """ab (2, H, W) for a grey frame L (H, W) or (1, H, W) in [0, 100] from a reference Lab
    (3, Hr, Wr) (see the module docstring). Real Lab units in, real ab units out."""
    l_t = target_l.reshape(-1).double().cpu().numpy()
    ref = ref_lab.double().cpu().numpy().reshape(3, -1)
    if ref.shape[1] == 0 or l_t.size == 0:
        raise PolySpaceError("luminance_transfer: empty frame or reference")
    l_r = ref[0]
    # luminance remapping (Hertzmann et al. 2001, used by Welsh): reference L onto the frame's stats
    l_r = (l_r - l_r.mean()) / (l_r.std() + 1e-6) * l_t.std() + l_t.mean()
    edges = np.linspace(min(l_r.min(), l_t.min()), max(l_r.max(), l_t.max()) + 1e-6, bins + 1)
    which = np.clip(np.digitize(l_r, edges) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    filled = counts > 0
    out = []
    for ch in (1, 2):
        sums = np.bincount(which, weights=ref[ch], minlength=bins)
        means = sums[filled] / counts[filled]
        out.append(np.interp(l_t, centres[filled], means))
    shape = target_l.shape[-2:]
    return torch.from_numpy(np.stack(out).reshape(2, *shape)).float()


def colorize_global(frames_l: torch.Tensor, ref_lab: torch.Tensor) -> torch.Tensor:
    """The baseline on a clip: frames_l (T, 1, H, W) real L, ref_lab (3, H, W) -> ab (T, 2, H, W)."""
    return torch.stack([luminance_transfer(frames_l[t], ref_lab) for t in range(frames_l.shape[0])])
