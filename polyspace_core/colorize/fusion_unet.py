"""Fusion UNet: combine the temporal and the exemplar branch into one ab prediction.

Input per frame (all normalised, (B, C, H, W)): L (1), temporal ab (2), temporal confidence (1),
exemplar ab (2), exemplar similarity (1) = 7 channels. The U-Net predicts a per-pixel gate g and
a residual r:

    ab = g * ab_temporal + (1 - g) * ab_exemplar + r

g starts as the confidence-based choice of the better branch (a fixed logit from the two
confidences, so an untrained net already prefers the branch that is surer at each pixel) and the
net learns a correction to it; r starts at zero (zero-initialised head). The seed's
SimpleFusionNet is a plain U-Net; this gated residual form is its "residual over the
better-confidence branch" variant.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoints import load_state_dict_strict, read_module, save_module
from .unet import SmallUNet

IN_CHANNELS = 7


@dataclass
class FusionUNetConfig:
    base: int = 16
    depth: int = 2
    stem_stride: int = 2       # run at half resolution (see unet.py)
    prior_scale: float = 6.0   # gate prior logit = prior_scale * (conf_temporal - similarity_exemplar)


class FusionUNet(nn.Module):
    """(l, ab_t, conf_t, ab_e, sim_e) -> {'ab', 'gate'}; see the module docstring."""

    def __init__(self, config: FusionUNetConfig | None = None):
        super().__init__()
        self.config = config or FusionUNetConfig()
        self.net = SmallUNet(IN_CHANNELS, 3, base=self.config.base, depth=self.config.depth,
                             stem_stride=self.config.stem_stride)

    def forward(self, l: torch.Tensor, ab_t: torch.Tensor, conf_t: torch.Tensor,
                ab_e: torch.Tensor, sim_e: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(torch.cat([l, ab_t, conf_t, ab_e, sim_e], dim=1))
        prior = self.config.prior_scale * (conf_t - sim_e)
        gate = torch.sigmoid(prior + out[:, :1])
        ab = gate * ab_t + (1.0 - gate) * ab_e + out[:, 1:]
        return {"ab": ab, "gate": gate}

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """config.json + model.safetensors."""
        return save_module(folder, "fusion_unet", asdict(self.config), self)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> FusionUNet:
        config, weights = read_module(folder, "fusion_unet", map_location, what="fusion-UNet checkpoint")
        net = cls(FusionUNetConfig(**config))
        load_state_dict_strict(net, weights, Path(folder) / "model.safetensors")
        return net
