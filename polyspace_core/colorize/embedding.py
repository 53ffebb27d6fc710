"""Embedding networks of the exemplar branch: frozen feature extractors of a grey frame.

Families, chosen by name (`ExemplarConfig.embed`):

    random    a randomly initialised conv net, fixed seed, frozen: the built-in demo only. Nothing
              pretrained is in it; `describe()` says "random" and the report says so.
    swin      transformers `SwinModel`      (Swin v1,  e.g. microsoft/swin-tiny-patch4-window7-224)
    swinv2    transformers `Swinv2Model`    (Swin V2,  e.g. microsoft/swinv2-tiny-patch4-window8-256)
    convnext  transformers `ConvNextModel`  (e.g. facebook/convnext-tiny-224)

A pretrained family is loaded from a local `save_pretrained` folder or a hub id already in the
offline Hugging Face cache (`local_files_only=True`: nothing is ever downloaded). Each uses its
own preprocessing: the mean/std of its image processor (preprocessor_config.json of the folder
or cached hub id; a model without one is an error, not a silent ImageNet default). The grey
frame is replicated to RGB in [0, 1] and normalised with them.

Features: every family returns (B, C, H/4, W/4): its first stride-4 map concatenated with its
first stride-8 map upsampled (bilinear), so a feature carries local texture and some context.
SwinTExCo's own embedding (timm's swinv2_cr, fed unnormalised) is in released.py.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

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


FAMILIES = ("random", "swin", "swinv2", "convnext")
# family -> (transformers model class, config model_type)
_HF_FAMILIES = {"swin": ("SwinModel", "swin"), "swinv2": ("Swinv2Model", "swinv2"),
                "convnext": ("ConvNextModel", "convnext")}


def _feature_channels(family: str, config: Any) -> tuple[int, int]:
    """Channels of the stride-4 and stride-8 maps a family's model returns."""
    if family in ("swin", "swinv2"):
        return config.embed_dim, config.embed_dim * 2 if len(config.depths) > 1 else config.embed_dim
    return config.hidden_sizes[0], config.hidden_sizes[1] if len(config.hidden_sizes) > 1 else config.hidden_sizes[0]


class BackboneEmbedding(nn.Module):
    """Frozen transformers backbone features of l_norm (B, 1, H, W) -> (B, C, H/4, W/4).

    family: swin | swinv2 | convnext; model: its transformers model; mean/std: its image
    processor's normalisation (RGB)."""

    def __init__(self, family: str, model: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        if family not in _HF_FAMILIES:
            raise PolySpaceError(f"embedding family {family!r}: use one of {', '.join(FAMILIES)}")
        self.family = family
        self.backbone = model
        c4, c8 = _feature_channels(family, model.config)
        self.out_channels = c4 + c8
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        grey = (denormalize_l(l_norm) / 100.0).expand(-1, 3, -1, -1)
        pixels = (grey - self.mean) / self.std
        if self.family == "convnext":
            states = self.backbone(pixel_values=pixels, output_hidden_states=True).hidden_states
            # hidden_states[0] is the stem (stride 4); [1] stage 1 (stride 4); [2] stage 2 (stride 8)
            first, second = states[1], states[2] if len(states) > 2 else states[1]
        else:
            # Swin pads the frame to a multiple of its window itself; reshaped_hidden_states are
            # (B, C, h, w): [0] the patch embedding (stride 4), [1] after stage 1 (stride 8)
            states = self.backbone(pixel_values=pixels, output_hidden_states=True).reshaped_hidden_states
            first, second = states[0], states[1]
        second = F.interpolate(second, size=first.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([first, second], dim=1)


def backbone_from_config(family: str, config: dict) -> nn.Module:
    """An untrained transformers model of `family` from a saved config dict (weights loaded after)."""
    import transformers

    cls_name, model_type = _HF_FAMILIES[family]
    cfg = transformers.AutoConfig.for_model(model_type, **{k: v for k, v in config.items() if k != "model_type"})
    return getattr(transformers, cls_name)(cfg)


def load_backbone(family: str, source: str | os.PathLike) -> tuple[nn.Module, list[float], list[float]]:
    """(model, mean, std) of a `family` backbone from a local folder or a cached hub id.

    Nothing is downloaded: a hub id must already be in the Hugging Face cache. A missing folder,
    an uncached id, a config of another family or a model without an image processor config is
    a one-line PolySpaceError."""
    import transformers

    if family not in _HF_FAMILIES:
        raise PolySpaceError(f"embedding family {family!r}: use one of {', '.join(_HF_FAMILIES)}")
    cls_name, model_type = _HF_FAMILIES[family]
    where = f"{family} backbone {source}"
    path = Path(source)
    if path.exists() and not (path / "config.json").is_file():
        raise PolySpaceError(f"{where}: no config.json there; pass a folder written by "
                             f"{cls_name}.save_pretrained or a cached hub id (nothing is downloaded)")
    if not path.exists() and (str(source).startswith((".", "/", "~")) or str(source).count("/") != 1):
        raise PolySpaceError(f"{where}: no such folder, and not a hub id (owner/name)")
    try:
        config = transformers.AutoConfig.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as e:
        raise PolySpaceError(f"{where}: not found locally ({str(e).splitlines()[0][:200]}); "
                             f"save it with save_pretrained or fetch it into the HF cache first") from None
    if config.model_type != model_type:
        raise PolySpaceError(f"{where}: config is a {config.model_type!r} model, not {model_type!r}; "
                             f"pick the family that matches (one of {', '.join(_HF_FAMILIES)})")
    try:
        model = getattr(transformers, cls_name).from_pretrained(str(source), local_files_only=True)
        proc = transformers.AutoImageProcessor.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as e:
        raise PolySpaceError(f"{where}: cannot load ({str(e).splitlines()[0][:200]}); the folder needs "
                             f"the weights and preprocessor_config.json (its image processor)") from None
    mean, std = getattr(proc, "image_mean", None), getattr(proc, "image_std", None)
    if mean is None or std is None:
        raise PolySpaceError(f"{where}: its image processor has no image_mean/image_std")
    return model, [float(m) for m in mean], [float(s) for s in std]


def build_embedding(family: str, *, channels: list[int] | None = None, seed: int = 0,
                    model: nn.Module | None = None, mean: list[float] | None = None,
                    std: list[float] | None = None) -> nn.Module:
    """The frozen embedding of `family`: RandomConvEmbedding(channels, seed) for "random", else
    BackboneEmbedding around `model` (from load_backbone or backbone_from_config)."""
    if family == "random":
        return RandomConvEmbedding(channels or [8, 24, 48], seed)
    if family not in _HF_FAMILIES:
        raise PolySpaceError(f"exemplar config embed={family!r}: use one of {', '.join(FAMILIES)}")
    if model is None or mean is None or std is None:
        raise PolySpaceError(f"embedding {family}: needs its model and processor mean/std")
    return BackboneEmbedding(family, model, mean, std)
