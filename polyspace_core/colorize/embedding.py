"""Embedding networks of the exemplar branch: frozen feature extractors of a grey frame.

Moved out of exemplar.py unchanged; see exemplar.py's docstring for how the branch uses them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PolySpaceError
from .lab import denormalize_l

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_STRIDE = 4


class RandomConvEmbedding(nn.Module):
    """Frozen random conv features of l_norm (B, 1, H, W) -> (B, C, H/4, W/4).

    Four levels (strides 1, 2, 4, 8) of 3x3 conv + ReLU, Kaiming-initialised from `seed`;
    every level is resampled to stride 4 and concatenated, so a feature sees fine texture and
    ~30 px of context."""

    def __init__(self, channels: list[int], seed: int = 0):
        super().__init__()
        c1, c2, c3 = channels
        self.levels = nn.ModuleList([
            nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(c3, c3, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(c3, c3, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(c3, c3, 3, padding=1), nn.ReLU()),
        ])
        self.out_channels = c1 + c2 + 2 * c3
        gen = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                    m.bias.zero_()

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        h, w = math.ceil(l_norm.shape[-2] / FEATURE_STRIDE), math.ceil(l_norm.shape[-1] / FEATURE_STRIDE)
        x, feats = l_norm, []
        for level in self.levels:
            x = level(x)
            feats.append(F.adaptive_avg_pool2d(x, (h, w)) if x.shape[-2] > h
                         else F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False))
        return torch.cat(feats, dim=1)


class SwinEmbedding(nn.Module):
    """Frozen transformers SwinModel features of l_norm (B, 1, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, swin: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.swin = swin
        cfg = swin.config
        self.out_channels = cfg.embed_dim + (cfg.embed_dim * 2 if len(cfg.depths) > 1 else cfg.embed_dim)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        grey = (denormalize_l(l_norm) / 100.0).expand(-1, 3, -1, -1)
        out = self.swin(pixel_values=(grey - self.mean) / self.std, output_hidden_states=True)
        states = out.reshaped_hidden_states
        first = states[0]
        second = F.interpolate(states[1], size=first.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([first, second], dim=1)


def load_swin(checkpoint: str | os.PathLike) -> tuple[nn.Module, list[float], list[float]]:
    """SwinModel + pixel mean/std from a local folder; clear errors instead of a download."""
    from transformers import SwinConfig, SwinModel

    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise PolySpaceError(f"Swin checkpoint {path}: no config.json there; pass a folder written by "
                             f"SwinModel.save_pretrained (nothing is downloaded), or leave it out to use "
                             f"the frozen random embedding")
    config = SwinConfig.from_pretrained(path)
    if config.model_type != "swin":
        raise PolySpaceError(f"Swin checkpoint {path}: config is a {config.model_type!r} model, not swin")
    try:
        swin = SwinModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise PolySpaceError(f"Swin checkpoint {path}: cannot load weights ({str(e).splitlines()[0]})") from None
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        proc = json.loads(pre.read_text())
        mean, std = list(proc.get("image_mean", mean)), list(proc.get("image_std", std))
    return swin, mean, std
