"""A small U-Net, the trunk of the exemplar colour net and of the fusion net.

Encoder: `depth` levels of (3x3 conv, ReLU) x2, halving resolution between levels with a
strided conv; decoder: bilinear upsampling, concatenation with the skip, (3x3 conv, ReLU) x2;
a 1x1 head. The head starts at zero so a fresh network outputs exactly zero: callers use it as
a residual over a sensible base prediction, which makes early training stable.
Works at any H, W (the decoder resizes to each skip's size).

`stem_stride=2` runs the whole U-Net at half resolution and upsamples the output bilinearly:
4x cheaper, and enough for chroma, which video stores at half resolution anyway (4:2:0) and
which the callers add to full-resolution inputs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class SmallUNet(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H, W); zero output at initialisation."""

    def __init__(self, in_channels: int, out_channels: int, base: int = 32, depth: int = 2,
                 stem_stride: int = 1):
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride={stem_stride}: use 1 or 2")
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.stem = _block(in_channels, widths[0])
        if stem_stride == 2:
            self.stem[0] = nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(widths[i], widths[i], 3, stride=2, padding=1) for i in range(depth))
        self.enc = nn.ModuleList(_block(widths[i], widths[i + 1]) for i in range(depth))
        self.dec = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.stem(x)
        skips = [x]
        for down, enc in zip(self.down, self.enc):
            x = enc(F.relu(down(x)))
            skips.append(x)
        skips.pop()
        for dec in self.dec:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], dim=1))
        out = self.head(x)
        if out.shape[-2:] != size:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out
