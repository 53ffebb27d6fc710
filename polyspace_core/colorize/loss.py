"""FusionLoss: what the fusion system is trained on.

    total = l1_weight         * |ab - ab_gt|                                   (normalised ab)
          + temporal_weight   * conf * |ab_t - warp(ab_{t-1})|  / mean(conf)   (temporal consistency)
          + perceptual_weight * sum_layers |phi(rgb) - phi(rgb_gt)|            (needs a feature net)
          + contextual_weight * CX(phi(rgb), phi(reference rgb))               (needs a feature net)

The temporal term uses the temporal branch's output (`memflow_outputs`: the previous fused output
warped along the flow into frame t) and its confidence, so it only asks for consistency where the
flow is trusted. The contextual loss is Mechrez et al. (2018), as used by exemplar colorization
(Deep Exemplar-based Video Colorization): each output feature should have a close, relatively
unique match among the reference's features, which rewards using the reference's colours without
asking for pixel alignment.

A feature net is any module mapping RGB (N, 3, H, W) in [0, 1] to a list of feature maps;
`build_feature_net` gives a torchvision VGG from a local weights file or a frozen random conv net.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import PolySpaceError
from .lab import lab_to_rgb, merge_lab, split_lab


class RandomRGBFeatures(nn.Module):
    """Frozen random conv features of RGB at strides 1, 2, 4 (a weight-free perceptual space)."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64), seed: int = 0):
        super().__init__()
        layers, cin = [], 3
        for i, c in enumerate(channels):
            layers.append(nn.Sequential(nn.Conv2d(cin, c, 3, stride=1 if i == 0 else 2, padding=1), nn.ReLU()))
            cin = c
        self.layers = nn.ModuleList(layers)
        gen = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                    m.bias.zero_()
        self.requires_grad_(False).eval()

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        feats, x = [], rgb
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class VGGFeatures(nn.Module):
    """torchvision VGG16/19 feature layers (relu1_2, relu2_2, relu3_x, relu4_x) from a local
    state-dict file, ImageNet-normalised input; frozen."""

    CUTS = {"vgg16": (4, 9, 16, 23), "vgg19": (4, 9, 18, 27)}

    def __init__(self, variant: str, weights: str | os.PathLike):
        super().__init__()
        from pathlib import Path

        import torchvision

        from .flow import load_state_dict_file

        if variant not in self.CUTS:
            raise PolySpaceError(f"feature net {variant!r}: use vgg16, vgg19 or random")
        path = Path(weights) if weights else None
        if path is None or not path.is_file():
            raise PolySpaceError(f"{variant} weights {weights}: file not found; pass a local torchvision "
                                 f"{variant} state dict (nothing is downloaded) or use the random feature net")
        vgg = getattr(torchvision.models, variant)(weights=None)
        vgg.load_state_dict(load_state_dict_file(path))
        self.features = vgg.features[: self.CUTS[variant][-1] + 1]
        self.cuts = self.CUTS[variant]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x, feats = (rgb - self.mean) / self.std, []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.cuts:
                feats.append(x)
        return feats


def build_feature_net(kind: str = "random", weights: str | os.PathLike | None = None) -> nn.Module:
    """A frozen feature net for the perceptual/contextual terms: 'random', 'vgg16' or 'vgg19'."""
    if kind == "random":
        return RandomRGBFeatures()
    return VGGFeatures(kind, weights)


def contextual_loss(x: torch.Tensor, y: torch.Tensor, band_width: float = 0.1) -> torch.Tensor:
    """Contextual loss (Mechrez et al. 2018) between feature maps x (N, C, h, w) and y (N, C, h', w').

    Cosine distances of every x feature to every y feature (both centred on y's mean), made
    relative to each x feature's nearest y, turned into affinities exp((1 - d_rel) / band_width)
    and normalised over y; CX = mean over y of the best affinity from x; loss = -log CX (0 when
    each y feature has its own exact match in x)."""
    mu = y.mean(dim=(0, 2, 3), keepdim=True)
    xc = F.normalize((x - mu).flatten(2), dim=1)          # (N, C, P)
    yc = F.normalize((y - mu).flatten(2), dim=1)          # (N, C, Q)
    dist = 1.0 - torch.einsum("ncp,ncq->npq", xc, yc)     # (N, P, Q)
    rel = dist / (dist.min(dim=2, keepdim=True).values + 1e-5)
    affinity = torch.softmax((1.0 - rel) / band_width, dim=2)
    cx = affinity.max(dim=1).values.mean(dim=1)           # (N,)
    return -torch.log(cx + 1e-5).mean()


class FusionLoss(nn.Module):
    """See the module docstring. Call as loss(outputs, frames_lab, memflow_outputs, memflow_confs,
    references) with outputs (B, T, 2, H, W) normalised ab, frames_lab (B, T, 3, H, W) Lab ground
    truth (or the seed's list of T (B, 3, H, W)),
    memflow_* (B, T, 2|1, H, W) or None, references Lab (B, 3, H, W) or None. Returns the
    total; `last_terms` holds each term's value (floats) for logging."""

    def __init__(self, l1_weight: float = 1.0, temporal_weight: float = 0.1, perceptual_weight: float = 0.0,
                 contextual_weight: float = 0.0, feature_net: nn.Module | None = None):
        super().__init__()
        if (perceptual_weight or contextual_weight) and feature_net is None:
            raise PolySpaceError("FusionLoss: perceptual/contextual weights need a feature_net "
                                 "(build_feature_net('random') or a local VGG)")
        self.l1_weight, self.temporal_weight = l1_weight, temporal_weight
        self.perceptual_weight, self.contextual_weight = perceptual_weight, contextual_weight
        self.feature_net = feature_net
        self.last_terms: dict[str, float] = {}

    def forward(self, outputs: torch.Tensor, frames_lab: torch.Tensor, memflow_outputs: torch.Tensor | None = None,
                memflow_confs: torch.Tensor | None = None, references: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(frames_lab, (list, tuple)):  # the seed's batch['frames_lab']: a list over time
            frames_lab = torch.stack(list(frames_lab), dim=1)
        l_gt, ab_gt = split_lab(frames_lab.to(outputs.device))
        outputs = outputs.float()
        terms = {"l1": (outputs - ab_gt).abs().mean()}
        total = self.l1_weight * terms["l1"]
        if self.temporal_weight and memflow_outputs is not None:
            conf = memflow_confs if memflow_confs is not None else torch.ones_like(outputs[:, :, :1])
            diff = (outputs - memflow_outputs.detach().float()).abs().mean(2, keepdim=True)
            terms["temporal"] = (conf * diff).sum() / conf.sum().clamp(min=1e-6)
            total = total + self.temporal_weight * terms["temporal"]
        if self.feature_net is not None and (self.perceptual_weight or self.contextual_weight):
            b, t = outputs.shape[:2]
            rgb = lab_to_rgb(merge_lab(l_gt, outputs)).flatten(0, 1)
            feats = self.feature_net(rgb)
            if self.perceptual_weight:
                with torch.no_grad():
                    gt_feats = self.feature_net(lab_to_rgb(frames_lab.to(outputs.device).float()).flatten(0, 1))
                terms["perceptual"] = sum((f - g).abs().mean() for f, g in zip(feats, gt_feats))
                total = total + self.perceptual_weight * terms["perceptual"]
            if self.contextual_weight:
                if references is None:
                    raise PolySpaceError("FusionLoss: contextual_weight needs references (Lab (B, 3, H, W))")
                with torch.no_grad():
                    ref_feats = self.feature_net(lab_to_rgb(references.to(outputs.device).float()))
                # every frame of a sequence against its sequence's reference, on the deepest layer
                x = feats[-1]
                y = ref_feats[-1].repeat_interleave(t, dim=0)
                terms["contextual"] = contextual_loss(x, y)
                total = total + self.contextual_weight * terms["contextual"]
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return total
