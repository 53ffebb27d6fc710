"""Temporal shift (TSM, Lin et al. 2019) and the shifted first conv of a bottleneck.

2D convolutions see one frame at a time; shifting a few channels one step along time lets
each frame mix in its neighbours' features at zero FLOPs. We use the "residual" placement:
the shift happens on the residual branch, in front of a bottleneck's first 1x1 conv, so the
identity path keeps each frame's own features.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import PolySpaceError


def temporal_shift(x: torch.Tensor, num_frames: int, shift_div: int = 8) -> torch.Tensor:
    """Shift 1/shift_div of the channels one frame back in time and 1/shift_div one frame forward.

    x: (N*T, C, H, W) with the T frames of each clip consecutive (clips folded into the batch).
    Returns a tensor of the same shape. Frames at the clip ends receive zeros, so a clip never
    exchanges features with its neighbour in the batch. shift_div=0 disables the shift (TSN).
    """
    if shift_div == 0:
        return x
    nt, c, h, w = x.shape
    if num_frames < 1 or nt % num_frames != 0:
        raise PolySpaceError(
            f"temporal_shift: batch of {nt} frames is not a whole number of {num_frames}-frame clips; "
            "fold (B, C, T, H, W) clips into (B*T, C, H, W) before the backbone")
    fold = c // shift_div
    x = x.view(nt // num_frames, num_frames, c, h, w)
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]                      # frame t takes these channels from t+1
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]      # frame t takes these channels from t-1
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]                 # the rest stay in place
    return out.view(nt, c, h, w)


class ShiftedConv(nn.Module):
    """shift -> (FFN weight alteration) -> the block's original first 1x1 conv.

    `conv` is the torchvision Bottleneck's conv1, kept as `self.conv` so ImageNet weights map
    one to one. With `num_streams` > 0 each stream (trained frame count) gets its own
    depthwise 1x1 conv without bias, applied as `adaconv(x) + x`; it starts near zero
    (N(0, 1e-3)) so every stream begins as the plain shared network.

    The model sets `num_frames` (frames per clip of the current input) and `stream` (which
    trained frame count's parameters to use) before each pass.
    """

    def __init__(self, conv: nn.Conv2d, shift_div: int = 8, num_streams: int = 0):
        super().__init__()
        channels = conv.in_channels
        if shift_div and channels // shift_div == 0:
            raise PolySpaceError(
                f"ShiftedConv: {channels} input channels with shift_div={shift_div} shifts nothing; "
                "use wider stages or a smaller shift_div")
        self.conv = conv
        self.shift_div = shift_div
        self.adaconvs = None
        if num_streams:
            self.adaconvs = nn.ModuleList(
                nn.Conv2d(channels, channels, kernel_size=1, groups=channels, bias=False)
                for _ in range(num_streams))
            for adaconv in self.adaconvs:
                nn.init.normal_(adaconv.weight, mean=0.0, std=1e-3)
        self.num_frames = 1
        self.stream = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = temporal_shift(x, self.num_frames, self.shift_div)
        if self.adaconvs is not None:
            x = self.adaconvs[self.stream](x) + x
        return self.conv(x)

    def extra_repr(self) -> str:
        return f"shift_div={self.shift_div}"
