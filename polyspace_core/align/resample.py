"""Length adaptation: bring one model's tokens to another model's token layout.

A clip's tokens form a grid (T, H, W), stored flattened time-major and row-major in space:
token index = (t * H + h) * W + w. Under `--tokens temporal` the grid is (T', 1, 1) (one token per
temporal index), under `full` it is (T', H', W') (every patch), under `clip` (1, 1, 1). Models
differ in every side (V-JEPA 2 at 256 px has 16x16 patches, VideoMAE 14x14; TimeSformer 8
temporal tokens, ViViT 16), so adaptation resamples each side on its own:

    resample_grid(x, grid_in, grid_out)   (B, T*H*W, D) -> (B, T'*H'*W', D), separable over
                                          (T, H, W): linear with align_corners on each side that
                                          changes, so a token keeps its place in space and time

On one side of n -> m samples the rule is `resample_tokens`' (the 1-d rule that time used
before grids were known): linear interpolation with the end points kept (align_corners), one
sample repeated (1 -> m), the mean for one output (n -> 1: temporal features are the spatial
mean of full ones). Linear interpolation over each side is trilinear interpolation over the
grid, so a linear function of position is reproduced exactly on the new grid. With both grids
(T, 1, 1) it is `resample_tokens` itself, bit for bit.

`grid_matrix(grid_in, grid_out)` is the (N_out, N_in) matrix of the same map (the Kronecker
product of each side's `interpolation_matrix`), which the learned time-mixing converter starts
from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import PolySpaceError

Grid = tuple[int, int, int]


def resample_tokens(x: torch.Tensor, t_out: int) -> torch.Tensor:
    """(B, T, D) -> (B, t_out, D) by linear interpolation over the token axis.

    End points are kept (align_corners), so the first and last output tokens see the first and
    last input tokens. One token is repeated; one output is the mean. T == t_out returns `x`.
    """
    t_in = x.shape[1]
    if t_in == t_out:
        return x
    if t_in == 1:
        return x.expand(-1, t_out, -1)
    if t_out == 1:  # align_corners is undefined for one output sample; the mean is the natural read-out
        return x.mean(dim=1, keepdim=True)
    y = F.interpolate(x.transpose(1, 2), size=t_out, mode="linear", align_corners=True)
    return y.transpose(1, 2)


def interpolation_matrix(t_in: int, t_out: int) -> torch.Tensor:
    """The (t_out, t_in) matrix M with resample_tokens(x, t_out) == M @ x for every x."""
    eye = torch.eye(t_in).unsqueeze(0)  # (1, t_in tokens, t_in "features")
    return resample_tokens(eye, t_out)[0].contiguous()


def as_grid(grid: Sequence[int] | None, tokens: int, what: str = "tokens") -> Grid:
    """A (T, H, W) grid for `tokens` tokens: `grid` checked, or (tokens, 1, 1) when None (a 1-d
    layout over time: the temporal rule, and what configs saved before grids were recorded mean)."""
    if grid is None:
        return (int(tokens), 1, 1)
    sides = tuple(grid)
    if (len(sides) != 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sides)
            or sides[0] * sides[1] * sides[2] != tokens):
        raise PolySpaceError(f"{what}: token grid {list(grid)} must be three positive integers (T, H, W) whose "
                             f"product is the token count {tokens}")
    return sides  # type: ignore[return-value]


def _resample_side(y: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Apply the 1-d rule along `dim` of y (B, T, H, W, D)."""
    moved = y.movedim(dim, -2)  # (..., n, D)
    lead = moved.shape[:-2]
    out = resample_tokens(moved.reshape(-1, moved.shape[-2], moved.shape[-1]), size)
    return out.reshape(*lead, size, moved.shape[-1]).movedim(-2, dim)


def resample_grid(x: torch.Tensor, grid_in: Sequence[int], grid_out: Sequence[int]) -> torch.Tensor:
    """(B, T*H*W, D) tokens on grid_in -> (B, T'*H'*W', D) on grid_out, each side resampled by
    the 1-d rule (see the module docstring). Equal grids return `x` itself."""
    grid_in, grid_out = tuple(grid_in), tuple(grid_out)
    b, n, d = x.shape
    if n != grid_in[0] * grid_in[1] * grid_in[2]:
        raise PolySpaceError(f"tokens: {n} tokens do not fill the grid {list(grid_in)}; the features come from "
                             f"another model or token rule")
    if grid_in == grid_out:
        return x
    if grid_in[1:] == grid_out[1:] == (1, 1):
        return resample_tokens(x, grid_out[0])  # the temporal case: today's rule, unchanged
    y = x.reshape(b, *grid_in, d)
    for side in range(3):
        if y.shape[1 + side] != grid_out[side]:
            y = _resample_side(y, 1 + side, grid_out[side])
    return y.reshape(b, -1, d)


def grid_matrix(grid_in: Sequence[int], grid_out: Sequence[int]) -> torch.Tensor:
    """The (N_out, N_in) matrix M with resample_grid(x, grid_in, grid_out) == M @ x."""
    m = torch.ones(1, 1)
    for a, b in zip(grid_in, grid_out):
        m = torch.kron(m, interpolation_matrix(a, b))
    return m.contiguous()


__all__ = ["Grid", "as_grid", "resample_tokens", "interpolation_matrix", "resample_grid", "grid_matrix"]
