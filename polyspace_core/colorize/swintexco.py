"""SwinTExCo's exemplar network, implemented here so that its released weights load and run.

SwinTExCo (Tran et al., "SwinTExCo: Exemplar-based Video Colorization using Swin Transformer",
Expert Systems with Applications 2024; github.com/Chronopt-Research/SwinTExCo) colours a grey
frame from a reference in three networks, the parts the seed's FusionSystem calls the exemplar
branch:

    embed_net      frozen Swin V2 (timm `swinv2_cr_tiny_ns_224`, features_only): the four stage
                   maps (96/192/384/768 channels at strides 4/8/16/32), each upsampled x2 (nearest)
    nonlocal_net   "WarpNet": a stage adapter per map bringing it to 128 channels at stride 4,
                   three residual blocks on their concatenation (512 channels), 1x1 projections
                   to 256 channels for the frame (theta) and the reference (phi), centred over
                   positions and unit-normalised; cosine similarity of every frame position with
                   every reference position -> softmax(sim / temperature) over the reference
                   carries the reference's Lab (average-pooled x4); the best match's similarity is
                   the similarity map; both upsampled x4 (nearest)
    colornet       "ColorVidNet(7)": a VGG-style encoder-decoder with dilated middle layers on
                   (L, warped ab, similarity, previous frame's predicted Lab) -> ab = 128 tanh(.)

Their conventions, kept: L centred (L - 50) and ab raw (CIE units) inside the network; frames and
reference resized to 224x224 and the predicted ab upsampled (bilinear) to the frame; the frame is
embedded from grey (L/100 replicated to RGB), the reference in colour (its Lab converted to RGB),
and neither is ImageNet-normalised (the release builds a Normalize that its forward never applies);
stage features are unit-normalised over channels before WarpNet; the previous frame's prediction
is zeros at the start of a sequence (`reset_memory`). The demo app's 1.5x colour boost of the
reference (src/inference.py) is `reference_color_boost`; its inference temperature is 1e-10 (an
argmax), its training default 0.01 (`temperature`).

Differences, said plainly: L is resized to 224 from our working-size L rather than the RGB frame
being resized before conversion (a small difference near edges); the parts are named for what
they are here, and released.py maps the release's key names onto them.

`SwinTExCoBranch` has the exemplar-branch interface FusionSystem uses (encode_reference, forward,
trainable_parameters, apply_strategy, describe_weights, save/from_pretrained) plus reset_memory.
Strategies (the seed's table): loaded from the release (Strategy 1), the embedding and colour net
are frozen and the non-local net is fine-tuned; built fresh (Strategy 2), the embedding is a
pretrained Swin V2 backbone, the non-local net trains from scratch and the colour net stays at
its random initialisation, frozen, as in the seed (`train_colornet=True` trains it instead).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoints import config_from, load_state_dict_strict, read_module, save_module
from ..errors import PolySpaceError
from .lab import denormalize_ab, denormalize_l, lab_to_rgb, normalize_ab, rgb_to_lab

# SwinTExCo's backbone names (src/models/vit/embed.py) -> timm architectures. Its third option,
# swinv2-t-256, returns channel-last maps at 256 px and is not supported here.
BACKBONES = {"swinv2-cr-t-224": "swinv2_cr_tiny_ns_224", "swinv2-cr-s-224": "swinv2_cr_small_ns_224"}
STAGE_CHANNELS = (96, 192, 384, 768)
_EPS = sys.float_info.epsilon  # the release's epsilon in its norms


@dataclass
class SwinTExCoConfig:
    backbone: str = "swinv2-cr-t-224"          # SwinTExCo's name for the timm model (BACKBONES)
    backbone_source: str | None = None         # where the backbone weights came from (record only)
    released_from: str | None = None           # the released folder the weights were converted from
    image_size: int = 224                      # the network's working size (the release's Resize)
    feature_channel: int = 128
    temperature: float = 0.01                  # softmax temperature (the release's inference: 1e-10)
    reference_color_boost: float = 1.0         # PIL ImageEnhance.Color factor on the reference (app: 1.5)
    train_colornet: bool = False               # Strategy 2: the seed keeps the random colour net frozen


# ----------------------------------------------------------------------------- embedding

def build_backbone(backbone: str, weights_file: str | os.PathLike | None = None, image_size: int = 224) -> nn.Module:
    """timm's feature extractor for SwinTExCo's `backbone` name: four NCHW stage maps.

    weights_file: a local file of the timm model's weights (.safetensors / .pth / .bin), loaded
    by timm with its own key filter; None builds it untrained (weights loaded afterwards).
    image_size: the input size timm builds the model for (224, the release's; Swin V2's
    continuous position bias makes the same weights load at any multiple of 32)."""
    if backbone not in BACKBONES:
        raise PolySpaceError(f"SwinTExCo backbone {backbone!r}: use one of {', '.join(BACKBONES)}")
    if image_size < 64 or image_size % 32:
        raise PolySpaceError(f"SwinTExCo image_size={image_size}: use a multiple of 32, at least 64 (release: 224)")
    import timm

    kwargs = {"features_only": True, "out_indices": (0, 1, 2, 3)}
    if image_size != 224:
        kwargs["img_size"] = image_size
    if weights_file is None:
        return timm.create_model(BACKBONES[backbone], pretrained=False, **kwargs)
    try:
        return timm.create_model(BACKBONES[backbone], pretrained=True,
                                 pretrained_cfg_overlay={"file": str(weights_file)}, **kwargs)
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        raise PolySpaceError(f"{weights_file}: not {BACKBONES[backbone]} weights "
                             f"({str(e).splitlines()[0][:200]})") from None


def resolve_backbone_weights(source: str | os.PathLike, backbone: str = "swinv2-cr-t-224") -> Path:
    """The local weights file of a timm backbone: a file, a folder holding model.safetensors or
    pytorch_model.bin (the hub's layout), or a hub id (e.g. timm/swinv2_cr_tiny_ns_224.sw_in1k)
    already in the offline HF cache. Nothing is downloaded."""
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return path / name
        raise PolySpaceError(f"SwinTExCo backbone {path}: no model.safetensors or pytorch_model.bin in it")
    if str(source).count("/") != 1 or str(source).startswith((".", "/", "~")):
        raise PolySpaceError(f"SwinTExCo backbone {source}: no such file or folder, and not a hub id")
    from huggingface_hub import hf_hub_download

    for name in ("model.safetensors", "pytorch_model.bin"):
        try:
            return Path(hf_hub_download(str(source), name, local_files_only=True))
        except Exception:  # noqa: BLE001 - any miss means "not cached"; reported below in one line
            continue
    raise PolySpaceError(f"SwinTExCo backbone {source}: not in the local HF cache (nothing is downloaded); "
                         f"fetch timm/{BACKBONES.get(backbone, backbone)} into the cache or pass a local file")


class SwinV2Embedding(nn.Module):
    """embed_net: frozen timm Swin V2 stage maps of RGB (B, 3, S, S) in [0, 1], each upsampled x2."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        return [F.interpolate(f, scale_factor=2, mode="nearest") for f in self.backbone(rgb)]


# ----------------------------------------------------------------------------- non-local net

class StageAdapter(nn.Module):
    """Reflect-pad 3x3 conv (stride s) -> InstanceNorm -> PReLU, twice, with optional x2 nearest
    upsampling after the first and after the second; Dropout(0.2) at the end (training only)."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int = 1, up_mid: bool = False, up_out: bool = False):
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(cin, mid, 3), nn.PReLU()
        self.conv2, self.act2 = nn.Conv2d(mid, cout, 3, stride=stride), nn.PReLU()
        self.up_mid, self.up_out = up_mid, up_out
        self.drop = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(F.instance_norm(self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect"))))
        if self.up_mid:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.act2(F.instance_norm(self.conv2(F.pad(x, (1, 1, 1, 1), mode="reflect"))))
        if self.up_out:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.drop(x)


class ResidualBlock(nn.Module):
    """x -> PReLU(IN(conv2(PReLU(IN(conv1(x))))) + x), one PReLU shared by both places."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(channels, channels, 3), nn.Conv2d(channels, channels, 3)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(F.instance_norm(self.conv1(F.pad(x, (1, 1, 1, 1), mode="reflect"))))
        out = F.instance_norm(self.conv2(F.pad(out, (1, 1, 1, 1), mode="reflect")))
        return self.act(out + x)


class WarpNet(nn.Module):
    """nonlocal_net: see the module docstring. forward(ref_lab, frame_feats, ref_feats) with
    ref_lab (B, 3, S, S) in the release's units and the embedding's four maps (unit-normalised)
    of frame and reference -> (warped Lab (B, 3, S, S), similarity (B, 1, S, S) in [-1, 1])."""

    def __init__(self, feature_channel: int = 128, inter_channels: int = 256):
        super().__init__()
        c1, c2, c3, c4 = STAGE_CHANNELS
        fc = feature_channel
        self.adapters = nn.ModuleList([
            StageAdapter(c1, 128, fc, stride=2),                     # stride 2 -> 4
            StageAdapter(c2, 128, fc),                               # stride 4
            StageAdapter(c3, 256, fc, up_out=True),                  # stride 8 -> 4
            StageAdapter(c4, 256, fc, up_mid=True, up_out=True),     # stride 16 -> 4
        ])
        self.blocks = nn.Sequential(*[ResidualBlock(4 * fc) for _ in range(3)])
        self.query_proj = nn.Conv2d(4 * fc, inter_channels, 1)   # the frame's (release: theta)
        self.key_proj = nn.Conv2d(4 * fc, inter_channels, 1)     # the reference's (release: phi)

    def features(self, feats: list[torch.Tensor]) -> torch.Tensor:
        maps = [adapter(f) for adapter, f in zip(self.adapters, feats)]
        if maps[3].shape[-2:] != maps[0].shape[-2:]:
            # the release pads the deepest map by one row top and bottom when sizes disagree
            maps[3] = F.pad(maps[3], (0, 0, 1, 1), mode="replicate")
        return self.blocks(torch.cat(maps, dim=1))

    @staticmethod
    def _centred_unit(x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2)
        x = x - x.mean(dim=-1, keepdim=True)
        return x / (x.norm(dim=1, keepdim=True) + _EPS)

    def forward(self, ref_lab: torch.Tensor, frame_feats: list[torch.Tensor], ref_feats: list[torch.Tensor],
                temperature: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = ref_lab.shape
        fh, fw = h // 4, w // 4
        query = self._centred_unit(self.query_proj(self.features(frame_feats)))   # (B, D, hw)
        key = self._centred_unit(self.key_proj(self.features(ref_feats)))         # (B, D, n)
        sim = torch.matmul(query.transpose(1, 2), key)                           # (B, hw, n)
        similarity = sim.max(dim=-1).values.view(b, 1, fh, fw)
        attn = torch.softmax(sim / temperature, dim=-1)
        colours = F.avg_pool2d(ref_lab, 4).flatten(2).transpose(1, 2)            # (B, n, 3)
        warped = torch.matmul(attn, colours).transpose(1, 2).reshape(b, c, fh, fw)
        return (F.interpolate(warped, scale_factor=4, mode="nearest"),
                F.interpolate(similarity, scale_factor=4, mode="nearest"))


# ----------------------------------------------------------------------------- colour net

# (name, in, out, dilation) of ColorVidNet's plain 3x3 convs, each followed by its PReLU
# "relu<name>"; names are the release's so that its colornet.pth loads under them unchanged
_COLOR_CONVS = [("conv1_2", 64, 64, 1), ("conv2_1", 64, 128, 1), ("conv2_2", 128, 128, 1),
                ("conv3_1", 128, 256, 1), ("conv3_2", 256, 256, 1), ("conv3_3", 256, 256, 1),
                ("conv4_1", 256, 512, 1), ("conv4_2", 512, 512, 1), ("conv4_3", 512, 512, 1),
                ("conv5_1", 512, 512, 2), ("conv5_2", 512, 512, 2), ("conv5_3", 512, 512, 2),
                ("conv6_1", 512, 512, 2), ("conv6_2", 512, 512, 2), ("conv6_3", 512, 512, 2),
                ("conv7_1", 512, 512, 1), ("conv7_2", 512, 512, 1), ("conv7_3", 512, 512, 1),
                ("conv8_2", 256, 256, 1), ("conv8_3", 256, 256, 1), ("conv9_2", 128, 128, 1),
                ("conv10_2", 128, 128, 1)]


class ColorVidNet(nn.Module):
    """colornet: (B, 7, S, S) = (L - 50, warped ab, similarity, previous Lab) -> ab (B, 2, S, S),
    128 tanh(.). Encoder 64-128-256-512 (stride-2 depthwise 1x1 "_ss" downsamplers), dilated
    middle, decoder with nearest x2 upsampling + conv and shortcut convs from the encoder;
    InstanceNorm (no affine) after each stage."""

    def __init__(self, in_channels: int = 7):
        super().__init__()
        self.conv1_1 = nn.Sequential(nn.Conv2d(in_channels, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 1, 1))
        for name, cin, cout, dil in _COLOR_CONVS:
            setattr(self, name, nn.Conv2d(cin, cout, 3, 1, dil, dil))
        for name, ch in (("conv1_2norm_ss", 64), ("conv2_2norm_ss", 128), ("conv3_3norm_ss", 256)):
            setattr(self, name, nn.Conv2d(ch, ch, 1, 2, bias=False, groups=ch))
        for name, cin, cout in (("conv8_1", 512, 256), ("conv9_1", 256, 128), ("conv10_1", 128, 128)):
            up = nn.Upsample(scale_factor=2, mode="nearest")
            setattr(self, name, nn.Sequential(up, nn.Conv2d(cin, cout, 3, 1, 1)))
        self.conv3_3_short = nn.Conv2d(256, 256, 3, 1, 1)
        self.conv2_2_short = nn.Conv2d(128, 128, 3, 1, 1)
        self.conv1_2_short = nn.Conv2d(64, 128, 3, 1, 1)
        self.conv10_ab = nn.Conv2d(128, 2, 1, 1)
        for name in ["1_1", "8_1_comb", "9_1_comb", "10_1_comb"] + [n[4:] for n, *_ in _COLOR_CONVS if n != "conv10_2"]:
            setattr(self, f"relu{name}", nn.PReLU())

    def _run(self, x: torch.Tensor, *names: str) -> torch.Tensor:
        for name in names:
            x = getattr(self, f"relu{name[4:]}")(getattr(self, name)(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = F.instance_norm
        c1 = n(self._run(self.relu1_1(self.conv1_1(x)), "conv1_2"))
        c2 = n(self._run(self.conv1_2norm_ss(c1), "conv2_1", "conv2_2"))
        c3 = n(self._run(self.conv2_2norm_ss(c2), "conv3_1", "conv3_2", "conv3_3"))
        c4 = n(self._run(self.conv3_3norm_ss(c3), "conv4_1", "conv4_2", "conv4_3"))
        c5 = n(self._run(c4, "conv5_1", "conv5_2", "conv5_3"))
        c6 = n(self._run(c5, "conv6_1", "conv6_2", "conv6_3"))
        c7 = n(self._run(c6, "conv7_1", "conv7_2", "conv7_3"))
        c8 = self.relu8_1_comb(self.conv8_1(c7) + self.conv3_3_short(c3))
        c8 = n(self._run(c8, "conv8_2", "conv8_3"))
        c9 = self.relu9_1_comb(self.conv9_1(c8) + self.conv2_2_short(c2))
        c9 = n(self._run(c9, "conv9_2"))
        c10 = self.relu10_1_comb(self.conv10_1(c9) + self.conv1_2_short(c1))
        c10 = F.leaky_relu(self.conv10_2(c10), 0.2)
        return torch.tanh(self.conv10_ab(c10)) * 128.0


# ----------------------------------------------------------------------------- the branch

@dataclass
class SwinTExCoReference:
    """A reference prepared once per sequence: its Lab at the network size (release units) and
    its embedding's four maps, unit-normalised."""
    lab: torch.Tensor
    features: list[torch.Tensor]


def _unit(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    return [f / (f.norm(dim=1, keepdim=True) + _EPS) for f in feats]


def _boost_colour(rgb: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ImageEnhance.Color: blend with the ITU-R 601 grey of the image by `factor`."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    grey = (rgb * weights).sum(1, keepdim=True)
    return (grey + factor * (rgb - grey)).clamp(0.0, 1.0)


class SwinTExCoBranch(nn.Module):
    """SwinTExCo as FusionSystem's exemplar branch; see the module docstring.

    forward(l, reference=...) with l (B, 1, H, W) normalised (lab.py) at any working size returns
    {'ab', 'warped_ab', 'similarity'} at (H, W): ab and warped ab normalised, similarity mapped
    from [-1, 1] to [0, 1]. The previous frame's prediction is kept between calls."""

    def __init__(self, config: SwinTExCoConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.embed = SwinV2Embedding(backbone if backbone is not None
                                     else build_backbone(config.backbone, image_size=config.image_size))
        self.embed.requires_grad_(False).eval()
        self.nonlocal_net = WarpNet(config.feature_channel)
        self.colornet = ColorVidNet(7)
        self.pretrained = False   # True once loaded from a release or a saved branch: Strategy 1
        self._last_lab: torch.Tensor | None = None

    def train(self, mode: bool = True) -> SwinTExCoBranch:
        super().train(mode)
        self.embed.eval()  # frozen, always
        return self

    def reset_memory(self) -> None:
        """Forget the previous frame's prediction (start of a new sequence)."""
        self._last_lab = None

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.image_size
        if tuple(x.shape[-2:]) == (s, s):
            return x
        return F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)

    def encode_reference(self, ref_l: torch.Tensor, ref_ab: torch.Tensor) -> SwinTExCoReference:
        """ref_l (B, 1, H, W), ref_ab (B, 2, H, W) normalised -> the reference at 224, embedded."""
        lab = self._resize(torch.cat([denormalize_l(ref_l), denormalize_ab(ref_ab)], dim=1))
        if self.config.reference_color_boost != 1.0:
            lab = rgb_to_lab(_boost_colour(lab_to_rgb(lab), self.config.reference_color_boost))
        with torch.no_grad():
            feats = _unit(self.embed(lab_to_rgb(lab)))
        return SwinTExCoReference(torch.cat([lab[:, :1] - 50.0, lab[:, 1:]], dim=1), feats)

    def forward(self, l: torch.Tensor, ref_l: torch.Tensor | None = None, ref_ab: torch.Tensor | None = None,
                reference: SwinTExCoReference | None = None) -> dict[str, torch.Tensor]:
        if reference is None:
            if ref_l is None or ref_ab is None:
                raise PolySpaceError("SwinTExCo branch: give ref_l and ref_ab, or an encoded reference")
            reference = self.encode_reference(ref_l, ref_ab)
        size = l.shape[-2:]
        big_l = self._resize(denormalize_l(l))                       # L in [0, 100] at 224
        with torch.no_grad():
            feats = _unit(self.embed((big_l / 100.0).expand(-1, 3, -1, -1)))
        warped, sim = self.nonlocal_net(reference.lab, feats, reference.features, self.config.temperature)
        centred = big_l - 50.0
        last = self._last_lab
        if last is None:
            last = torch.zeros_like(reference.lab)
        elif last.shape[0] != l.shape[0]:
            raise PolySpaceError(f"SwinTExCo branch: the previous frame is of {last.shape[0]} sequences, this "
                                 f"one of {l.shape[0]}; call reset_memory() between sequences")
        ab = self.colornet(torch.cat([centred, warped[:, 1:], sim, last], dim=1))
        self._last_lab = torch.cat([centred, ab], dim=1).detach()

        def back(x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

        return {"ab": normalize_ab(back(ab)), "warped_ab": normalize_ab(back(warped[:, 1:])),
                "similarity": back((sim + 1.0) / 2.0)}

    # ------------------------------------------------------------------ strategies
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Strategy 1 (released weights): the non-local net. Strategy 2: the non-local net, plus
        the colour net when config.train_colornet."""
        params = list(self.nonlocal_net.parameters())
        if not self.pretrained and self.config.train_colornet:
            params += list(self.colornet.parameters())
        return params

    def apply_strategy(self) -> None:
        """requires_grad to match the strategy (the embedding always frozen)."""
        self.embed.requires_grad_(False)
        self.nonlocal_net.requires_grad_(True)
        self.colornet.requires_grad_(not self.pretrained and self.config.train_colornet)

    def describe_weights(self) -> dict[str, str]:
        """Where each part's weights come from (see ExemplarBranch.describe_weights)."""
        cfg = self.config
        if cfg.released_from:
            source = f"pretrained: SwinTExCo release {cfg.released_from}"
            return {"embedding": source, "correspondence": source, "colornet": source}
        embed = f"pretrained: {BACKBONES[cfg.backbone]} {cfg.backbone_source}" if cfg.backbone_source else "random"
        colour = "trained here" if cfg.train_colornet else "random (frozen, as the seed's Strategy 2)"
        rest = "loaded" if self.pretrained else "trained here"
        return {"embedding": embed, "correspondence": rest, "colornet": "loaded" if self.pretrained else colour}

    # ------------------------------------------------------------------ files
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """config.json + model.safetensors in our format (every weight, the embedding included)."""
        return save_module(folder, "swintexco_branch", asdict(self.config), self)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> SwinTExCoBranch:
        """A branch saved by save_pretrained (Strategy 1). The release's own layout: released.py."""
        raw, weights = read_module(folder, "swintexco_branch", map_location, what="SwinTExCo checkpoint")
        branch = cls(config_from(SwinTExCoConfig, raw, folder))
        load_state_dict_strict(branch, weights, Path(folder) / "model.safetensors")
        branch.pretrained = True
        branch.apply_strategy()
        return branch


def build_swintexco_branch(backbone_weights: str | os.PathLike | None = None, *,
                           backbone: str = "swinv2-cr-t-224", **overrides) -> SwinTExCoBranch:
    """A fresh SwinTExCo branch (Strategy 2): the frozen Swin V2 backbone from `backbone_weights`
    (a local file or folder, or a cached hub id: resolve_backbone_weights), the non-local net and
    colour net initialised at random. Without backbone_weights the backbone is random too (tests
    and the demo only; describe_weights() says so). `overrides` set SwinTExCoConfig fields."""
    try:
        config = SwinTExCoConfig(backbone=backbone, **overrides)
    except TypeError as e:
        raise PolySpaceError(f"SwinTExCo config: {e}") from None
    model = None
    if backbone_weights is not None:
        model = build_backbone(backbone, resolve_backbone_weights(backbone_weights, backbone), config.image_size)
        config.backbone_source = str(backbone_weights)
    branch = SwinTExCoBranch(config, backbone=model)
    branch.apply_strategy()
    return branch
