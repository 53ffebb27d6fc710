"""TSM ResNet built from torchvision's Bottleneck blocks, with optional FFN streams.

One class covers both models of the study:

- vanilla TSM: `frame_counts=(16,)`, one set of BatchNorms; at test time every frame count
  goes through those BatchNorms (the source of the Temporal Frequency Deviation);
- FFN: `frame_counts=(4, 8, 16)`, `adaconv=True`: convolutions and classifier are shared,
  every BatchNorm (stem, blocks, downsample) is private to a stream, and each bottleneck has a
  per-stream depthwise weight alteration after its shift.

A "stream" is one trained frame count. Each pass shifts with the frame count of its own input,
so clips folded into the batch never exchange features. At inference a clip of T frames uses the
stream whose trained frame count is nearest to T (ties go to the higher count), so any T works.

Input clips are (B, C, T, H, W) float; the T frames are folded into the batch for the 2D convs
and the per-frame logits are averaged (TSN consensus). Parameter names follow torchvision's
ResNet, so ImageNet ResNet-50 weights map one to one (`pretrained.py`); the official FFN and TSM
release files map onto it too (`released.py`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, conv1x1

from ..errors import PolySpaceError
from .archs import ARCHS
from .shift import ShiftedConv

# widths are the bottleneck "planes" per stage (the stage outputs 4x that); depths the blocks per stage.


@dataclass
class TSMConfig:
    """Everything needed to rebuild a model; stored in every checkpoint."""

    num_classes: int
    widths: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    stem_width: int = 64
    stem_kernel: int = 7                    # ResNet stem: conv kernel and stride, then 3x3/2 max pool
    stem_stride: int = 2
    stem_pool: bool = True
    frame_counts: tuple[int, ...] = (16,)   # trained frame counts; one stream each
    adaconv: bool = False                   # FFN weight alteration per block and stream
    shift_div: int = 8                      # 1/shift_div channels each way; 0 = no shift (TSN)
    dropout: float = 0.5
    in_channels: int = 3
    zero_init_residual: bool = False        # last BN of each block starts at 0 (block = identity)
    arch: str = "custom"                    # preset name, for the record
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        self.depths = tuple(int(d) for d in self.depths)
        self.frame_counts = tuple(sorted(int(t) for t in self.frame_counts))
        if self.num_classes < 1:
            raise PolySpaceError(f"TSMConfig: num_classes must be >= 1, got {self.num_classes}")
        if not self.widths or len(self.widths) != len(self.depths) or min(self.depths) < 1:
            raise PolySpaceError(
                f"TSMConfig: widths {self.widths} and depths {self.depths} must be non-empty, "
                "of equal length, with at least one block per stage")
        if not self.frame_counts or min(self.frame_counts) < 1 or len(set(self.frame_counts)) != len(self.frame_counts):
            raise PolySpaceError(f"TSMConfig: frame_counts must be distinct positive integers, got {self.frame_counts}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise PolySpaceError(
                f"TSMConfig: {len(self.class_names)} class_names for num_classes={self.num_classes}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TSMConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise PolySpaceError(f"TSMConfig: unknown keys {sorted(unknown)}; "
                                 f"the checkpoint comes from another version")
        return cls(**d)


class StreamBatchNorm2d(nn.Module):
    """One BatchNorm2d per stream; the model sets `stream` before each pass."""

    def __init__(self, num_features: int, num_streams: int = 1):
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm2d(num_features) for _ in range(num_streams))
        self.stream = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bns[self.stream](x)


class TSMResNet(nn.Module):
    """Temporal Shift ResNet with one stream per trained frame count (see module docstring).

    forward(clip) -> logits (B, num_classes)
    forward(clip_a, clip_b, ...) -> tuple of logits, one per clip, each through its own stream
    (FFN training: forward(v_4, v_8, v_16) -> (out_4, out_8, out_16)).
    """

    def __init__(self, config: TSMConfig):
        super().__init__()
        self.config = config
        num_streams = len(config.frame_counts)
        norm = partial(StreamBatchNorm2d, num_streams=num_streams)

        self.conv1 = nn.Conv2d(config.in_channels, config.stem_width, kernel_size=config.stem_kernel,
                               stride=config.stem_stride, padding=config.stem_kernel // 2, bias=False)
        self.bn1 = norm(config.stem_width)
        self.relu = nn.ReLU(inplace=True)
        # small frames (the built-in 32-pixel runs) keep more resolution without the pool
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if config.stem_pool else nn.Identity()
        inplanes = config.stem_width
        for stage, (planes, depth) in enumerate(zip(config.widths, config.depths)):
            blocks = []
            for index in range(depth):
                stride = 2 if stage > 0 and index == 0 else 1
                downsample = None
                if stride != 1 or inplanes != planes * Bottleneck.expansion:
                    downsample = nn.Sequential(conv1x1(inplanes, planes * Bottleneck.expansion, stride),
                                               norm(planes * Bottleneck.expansion))
                block = Bottleneck(inplanes, planes, stride, downsample, norm_layer=norm)
                # residual shift: only the branch's input is shifted, the identity path is not
                block.conv1 = ShiftedConv(block.conv1, config.shift_div, num_streams if config.adaconv else 0)
                blocks.append(block)
                inplanes = planes * Bottleneck.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.num_stages = len(config.widths)
        self.feature_dim = inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(inplanes, config.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            # the adaconvs (groups > 1) keep their own near-zero init
            if isinstance(m, nn.Conv2d) and m.groups == 1:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.config.zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    for bn in m.bn3.bns:
                        nn.init.zeros_(bn.weight)
        # a new classifier starts small, as in TSM
        nn.init.normal_(self.fc.weight, std=1e-3)
        nn.init.zeros_(self.fc.bias)

    @property
    def frame_counts(self) -> tuple[int, ...]:
        return self.config.frame_counts

    def stream_for(self, num_frames: int) -> int:
        """Index of the trained frame count nearest to `num_frames`; ties go to the higher count."""
        counts = self.config.frame_counts
        return min(range(len(counts)), key=lambda i: (abs(counts[i] - num_frames), -counts[i]))

    def _select(self, stream: int, num_frames: int) -> None:
        for m in self.modules():
            if isinstance(m, ShiftedConv):
                m.stream, m.num_frames = stream, num_frames
            elif isinstance(m, StreamBatchNorm2d):
                m.stream = stream

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B*T, C, H, W) folded frames -> (B*T, feature_dim) pooled features; stream already selected."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) float -> logits (B, num_classes), through the stream chosen for T."""
        if clip.ndim != 5 or clip.shape[1] != self.config.in_channels:
            raise PolySpaceError(
                f"TSMResNet: expected clips shaped (B, {self.config.in_channels}, T, H, W), got {tuple(clip.shape)}")
        b, c, t, h, w = clip.shape
        if self.training and t not in self.config.frame_counts:
            raise PolySpaceError(
                f"TSMResNet: a {t}-frame clip in training, but this model trains {list(self.config.frame_counts)} "
                "frames; train on those counts (any count works in eval mode)")
        self._select(self.stream_for(t), t)
        frames = clip.transpose(1, 2).reshape(b * t, c, h, w)
        logits = self.fc(self.dropout(self.frame_features(frames)))
        return logits.view(b, t, -1).mean(dim=1)

    def forward(self, *clips: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if not clips:
            raise PolySpaceError("TSMResNet: forward needs at least one clip")
        if len(clips) == 1:
            return self.forward_clip(clips[0])
        return tuple(self.forward_clip(clip) for clip in clips)


def build_model(arch: str, num_classes: int, frame_counts: tuple[int, ...] | list[int] = (16,),
                ffn: bool = False, **overrides: Any) -> TSMResNet:
    """A TSM (ffn=False, usually one frame count) or FFN (ffn=True: per-stream BN + adaconv) model.

    `arch` is a key of ARCHS (resnet50, resnet101, small, tiny); `overrides` replace any
    TSMConfig field (widths, depths, dropout, shift_div, class_names, ...).
    """
    if arch not in ARCHS:
        raise PolySpaceError(f"--arch {arch!r} is not known; choose one of {', '.join(ARCHS)}")
    settings = {**ARCHS[arch], **overrides}
    return TSMResNet(TSMConfig(num_classes=num_classes, frame_counts=tuple(frame_counts), adaconv=ffn,
                               arch=arch, **settings))
