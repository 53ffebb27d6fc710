"""Exemplar branch (SwinTExCo's role in the seed): colour a grey frame from a reference image.

    grey frame L ──embed (frozen)──┐
                                   ├─ non-local correspondence (trainable) ─> warped ref ab + similarity
    reference L ──embed (frozen)───┘                                             │
                                                        L, warped ab, similarity ─ colour net ─> ab

Embedding network, frozen in every strategy (embedding.py): a backbone family chosen by name —
"swin" (Swin v1), "swinv2" (Swin V2, SwinTExCo's family), "convnext" — through transformers from a
local save_pretrained folder or a cached hub id (never downloaded), each with its own image
processor's mean/std; or "random", a frozen random conv net with a fixed seed, which is the
built-in demo's and nothing else's (`describe_weights()` says "random" so reports can say so).
Its weights are saved with the branch, so a checkpoint reproduces exactly. SwinTExCo's released
network itself (its own non-local net and colour net) is released.py's SwinTExCoBranch.

Correspondence: a shared projection (1x1 conv, ReLU, 3x3 conv, ReLU, 1x1 conv) of both feature
maps, cosine similarity between every frame position and every reference position, a softmax
with a learnt temperature (init 0.01, as in Deep Exemplar-based Video Colorization) over the
reference, and the reference ab (average-pooled to the matching grid) carried along the
attention. The similarity map is the best match's cosine similarity, mapped to [0, 1].
The matching grid is the feature grid (stride 4) average-pooled by the smallest integer factor
that leaves at most `match_positions` positions (default 1024, e.g. 32x32): its cost grows with
the square of the positions (a 256x256 frame has 64x64 = 4096 at stride 4, 16.7M similarities
per frame, most of the branch's time), and the warped colours are refined at full working
resolution by the colour net anyway. At the 64 px training size (16x16) nothing is pooled.
The reference's keys are computed once per `ReferenceEncoding` (once per sequence), not per frame.

Colour net: a small U-Net on (L, warped ab, similarity) predicting a residual over the warped ab.

Strategies (the seed's table): a branch loaded with `from_pretrained` (Strategy 1) fine-tunes
only the correspondence and keeps the colour net frozen; a branch built fresh (Strategy 2)
trains the correspondence and — unlike the seed, whose colour net stayed random and unused —
also the colour net, because the "exemplar branch only" method needs one that works.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoints import config_from, load_state_dict_strict, read_module, save_module
from ..errors import PolySpaceError
from .embedding import FAMILIES, IMAGENET_MEAN, IMAGENET_STD, backbone_from_config, build_embedding, load_backbone
from .unet import SmallUNet


@dataclass
class ExemplarConfig:
    embed: str = "random"                     # random | swin | swinv2 | convnext (embedding.FAMILIES)
    embed_channels: list[int] = field(default_factory=lambda: [8, 24, 48])
    embed_seed: int = 0
    backbone_config: dict | None = None       # the backbone's config.to_dict() (pretrained families)
    backbone_source: str | None = None        # where its weights came from: folder or hub id (record)
    pixel_mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    pixel_std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    match_dim: int = 32
    temperature: float = 0.01
    match_positions: int = 1024               # most positions of the matching grid (0: no pooling)
    color_base: int = 16
    color_depth: int = 2
    color_stem_stride: int = 2


# ----------------------------------------------------------------------------- matching

class NonLocalCorrespondence(nn.Module):
    """Trainable matching of frame features to reference features; see the module docstring.

    max_positions: the most positions of the matching grid (0 = match on the feature grid as it
    is); an inference-time setting too (`branch.nonlocal_net.max_positions = n`)."""

    def __init__(self, in_channels: int, dim: int = 32, temperature: float = 0.01, max_positions: int = 1024):
        super().__init__()
        if max_positions < 0:
            raise PolySpaceError(f"match_positions={max_positions}: must be >= 0 (0 = no pooling)")
        self.project = nn.Sequential(nn.Conv2d(in_channels, 2 * dim, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(2 * dim, dim, 3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv2d(dim, dim, 1))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.max_positions = max_positions

    def grid_size(self, h: int, w: int) -> tuple[int, int]:
        """The matching grid for an (h, w) feature grid: pooled by the smallest integer factor
        that leaves at most max_positions positions (unchanged when it already does)."""
        factor = 1
        while self.max_positions and math.ceil(h / factor) * math.ceil(w / factor) > self.max_positions:
            factor += 1
        return math.ceil(h / factor), math.ceil(w / factor)

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features (or ab) average-pooled to the matching grid."""
        size = self.grid_size(*x.shape[-2:])
        return x if tuple(x.shape[-2:]) == size else F.adaptive_avg_pool2d(x, size)

    def embed(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features -> unit-length keys (B, dim, n) on the matching grid."""
        return F.normalize(self.project(self.to_grid(feat)).flatten(2), dim=1)

    def forward(self, feat: torch.Tensor, ref_key: torch.Tensor, ref_ab_grid: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """feat (B, C, h, w) frame features; ref_key (B, dim, n) from `embed` of the reference;
        ref_ab_grid (B, 2, n) reference ab on the reference's matching grid.
        Returns (warped ab (B, 2, h', w'), similarity (B, 1, h', w') in [0, 1]) on the frame's
        matching grid (h', w') = grid_size(h, w)."""
        b = feat.shape[0]
        h, w = self.grid_size(*feat.shape[-2:])
        query = self.embed(feat)                                   # (B, dim, h'w')
        corr = torch.einsum("bdq,bdk->bqk", query, ref_key)        # cosine similarities
        attn = torch.softmax(corr / self.log_temperature.exp(), dim=-1)
        warped = torch.einsum("bqk,bck->bcq", attn, ref_ab_grid)
        similarity = (corr.max(dim=-1).values + 1.0) / 2.0
        return warped.view(b, 2, h, w), similarity.view(b, 1, h, w)


@dataclass
class ReferenceEncoding:
    """A reference prepared once per sequence: its embedding (B, C, h, w) at stride 4, its ab on
    the matching grid (B, 2, n) and, when made by `ExemplarBranch.encode_reference`, the
    correspondence's keys (B, dim, n) (None: computed from `features` at each use). The keys
    depend on the trainable projection: make a new encoding after an optimizer step."""
    features: torch.Tensor
    ab_grid: torch.Tensor
    key: torch.Tensor | None = None

    def expand(self, n: int) -> ReferenceEncoding:
        """The same single reference (B = 1) for a batch of n frames, without copying."""
        def grow(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.expand(n, *x.shape[1:])
        return ReferenceEncoding(grow(self.features), grow(self.ab_grid), grow(self.key))


class ExemplarBranch(nn.Module):
    """Frozen embedding + trainable correspondence + colour net; see the module docstring.

    forward(l, ref_l, ref_ab) with l (B, 1, H, W), ref_l (B, 1, H, W), ref_ab (B, 2, H, W), all
    normalised (lab.py) and at one working size; returns {'ab', 'warped_ab', 'similarity'},
    each (B, C, H, W) with C = 2, 2, 1."""

    def __init__(self, config: ExemplarConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = config
        if config.embed not in FAMILIES:
            raise PolySpaceError(f"exemplar config embed={config.embed!r}: use one of {', '.join(FAMILIES)}")
        if config.embed != "random" and backbone is None:
            if config.backbone_config is None:
                raise PolySpaceError(f"exemplar config: embed={config.embed!r} but no backbone_config; build "
                                     f"the branch with build_exemplar_branch(backbone=..., embed=...)")
            backbone = backbone_from_config(config.embed, config.backbone_config)
        self.embed = build_embedding(config.embed, channels=config.embed_channels, seed=config.embed_seed,
                                     model=backbone, mean=config.pixel_mean, std=config.pixel_std)
        self.embed.requires_grad_(False).eval()
        self.nonlocal_net = NonLocalCorrespondence(self.embed.out_channels, config.match_dim, config.temperature,
                                                   config.match_positions)
        self.colornet = SmallUNet(4, 2, base=config.color_base, depth=config.color_depth,
                                  stem_stride=config.color_stem_stride)
        self.pretrained = False  # True after from_pretrained: Strategy 1

    def train(self, mode: bool = True) -> ExemplarBranch:
        super().train(mode)
        self.embed.eval()  # frozen: no dropout/stat updates, ever
        return self

    def encode_reference(self, ref_l: torch.Tensor, ref_ab: torch.Tensor) -> ReferenceEncoding:
        """Embedding, matching-grid ab and keys of the reference (ref_l (B, 1, H, W), ref_ab
        (B, 2, H, W), normalised): what every frame of its sequence reuses. The keys carry
        gradients to the projection when grad is enabled (training)."""
        with torch.no_grad():
            feats = self.embed(ref_l)
        grid = F.adaptive_avg_pool2d(ref_ab, self.nonlocal_net.grid_size(*feats.shape[-2:])).flatten(2)
        return ReferenceEncoding(feats, grid, self.nonlocal_net.embed(feats))

    def forward(self, l: torch.Tensor, ref_l: torch.Tensor | None = None, ref_ab: torch.Tensor | None = None,
                reference: ReferenceEncoding | None = None) -> dict[str, torch.Tensor]:
        if reference is None:
            if ref_l is None or ref_ab is None:
                raise PolySpaceError("exemplar branch: give ref_l and ref_ab, or a ReferenceEncoding")
            reference = self.encode_reference(ref_l, ref_ab)
        with torch.no_grad():
            feats = self.embed(l)
        ref_key = reference.key if reference.key is not None else self.nonlocal_net.embed(reference.features)
        warped, sim = self.nonlocal_net(feats, ref_key, reference.ab_grid)
        size = l.shape[-2:]
        warped = F.interpolate(warped, size=size, mode="bilinear", align_corners=False)
        sim = F.interpolate(sim, size=size, mode="bilinear", align_corners=False)
        ab = warped + self.colornet(torch.cat([l, warped, sim], dim=1))
        return {"ab": ab, "warped_ab": warped, "similarity": sim}

    # ------------------------------------------------------------------ strategies
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Strategy 1 (pretrained): the correspondence only. Strategy 2: correspondence + colour net."""
        params = list(self.nonlocal_net.parameters())
        if not self.pretrained:
            params += list(self.colornet.parameters())
        return params

    def apply_strategy(self) -> None:
        """Set requires_grad to match the strategy (embedding always frozen)."""
        self.embed.requires_grad_(False)
        self.nonlocal_net.requires_grad_(True)
        self.colornet.requires_grad_(not self.pretrained)

    def describe_weights(self) -> dict[str, str]:
        """Where each part's weights come from, for reports: {"embedding": "random" or
        "pretrained: <family> <source>", "correspondence"/"colornet": "loaded" or "trained here"}."""
        cfg = self.config
        embed = "random" if cfg.embed == "random" else f"pretrained: {cfg.embed} {cfg.backbone_source}"
        rest = "loaded" if self.pretrained else "trained here"
        return {"embedding": embed, "correspondence": rest, "colornet": rest}

    # ------------------------------------------------------------------ files
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """config.json + model.safetensors (every weight, the frozen embedding included)."""
        return save_module(folder, "exemplar_branch", asdict(self.config), self)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> ExemplarBranch:
        """Load a branch saved by save_pretrained (Strategy 1: the colour net stays frozen)."""
        raw, weights = read_module(folder, "exemplar_branch", map_location, what="exemplar checkpoint")
        # checkpoints written before the families existed: Swin v1 under swin_config/swin_source
        for old, new in (("swin_config", "backbone_config"), ("swin_source", "backbone_source")):
            if old in raw:
                raw[new] = raw.pop(old)
        if any(k.startswith("embed.swin.") for k in weights):
            weights = {("embed.backbone." + k[len("embed.swin."):] if k.startswith("embed.swin.") else k): v
                       for k, v in weights.items()}
        branch = cls(config_from(ExemplarConfig, raw, folder))
        load_state_dict_strict(branch, weights, Path(folder) / "model.safetensors")
        branch.pretrained = True
        branch.apply_strategy()
        return branch


def build_exemplar_branch(backbone: str | os.PathLike | None = None, *, embed: str | None = None,
                          swin_checkpoint: str | os.PathLike | None = None, **overrides) -> ExemplarBranch:
    """A fresh branch (Strategy 2) whose frozen embedding is the `embed` family (embedding.FAMILIES)
    loaded from `backbone` (a local folder or cached hub id), or the random demo embedding when
    no backbone is given. `swin_checkpoint` is the older name for backbone= with embed="swin".
    `overrides` set other ExemplarConfig fields (match_dim, color_base, ...)."""
    if swin_checkpoint is not None:
        if backbone is not None:
            raise PolySpaceError("build_exemplar_branch: give backbone= or swin_checkpoint=, not both")
        backbone, embed = swin_checkpoint, embed or "swin"
    if backbone is not None and embed in (None, "random"):
        raise PolySpaceError(f"exemplar backbone {backbone}: name its family with embed= "
                             f"({', '.join(f for f in FAMILIES if f != 'random')})")
    if backbone is None and embed not in (None, "random"):
        raise PolySpaceError(f"exemplar embed={embed!r}: needs backbone= (a local folder or cached hub id)")
    try:
        config = ExemplarConfig(**overrides)
    except TypeError as e:
        raise PolySpaceError(f"exemplar config: {e}") from None
    model = None
    if backbone is not None:
        model, mean, std = load_backbone(embed, backbone)
        config.embed, config.backbone_config, config.backbone_source = embed, model.config.to_dict(), str(backbone)
        config.pixel_mean, config.pixel_std = mean, std
    branch = ExemplarBranch(config, backbone=model)
    branch.apply_strategy()
    return branch
