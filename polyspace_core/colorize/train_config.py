"""The colorization training settings and their command-line flags, without importing torch
(`polyspace --help` builds every subcommand's flags)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

from ..errors import PolySpaceError


@dataclass
class TrainConfig:
    exemplar_epochs: int = 10
    fusion_epochs: int = 8
    batch_size: int = 16            # frames per step in phase A
    frames_per_clip: int = 4        # phase A samples this many random frames of each clip per epoch
    fusion_batch_size: int = 4      # sequences per step in phase B
    seq_len: int | None = None      # frames per training sequence (None = whole clip)
    lr_exemplar: float = 2e-3       # phase A; higher than the seed's 1e-4 to fit a CPU budget
    lr_exemplar_finetune: float = 2e-4
    lr_fusion: float = 2e-3
    warp_weight: float = 0.5
    temporal_weight: float = 0.05
    perceptual_weight: float = 0.0
    contextual_weight: float = 0.0
    feature_net: str = "random"     # random | vgg16 | vgg19 (perceptual/contextual terms only)
    feature_weights: str | None = None
    mixed_precision: str = "no"     # no | fp16 | bf16
    grad_accum: int = 1
    max_steps_per_epoch: int | None = None
    seed: int = 0

    def check(self) -> None:
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise PolySpaceError(f"mixed_precision={self.mixed_precision!r}: use no, fp16 or bf16")
        if self.grad_accum < 1:
            raise PolySpaceError(f"grad_accum={self.grad_accum}: must be >= 1")
        for name in ("exemplar_epochs", "fusion_epochs"):
            if getattr(self, name) < 0:
                raise PolySpaceError(f"{name}={getattr(self, name)}: must be >= 0")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `polyspace train-colorize` / `python -m polyspace_core.colorize.train`."""
    parser.add_argument("--data", required=True, help="SynthColor folder (polyspace synth-color --out)")
    parser.add_argument("--out", required=True, help="run folder: checkpoint/, exemplar_phase/, history.json")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run in --out made with other settings (without it that is an error; "
                             "the same settings resume or reuse it)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--flow", default="dis", choices=["dis", "farneback", "raft", "memflow"])
    parser.add_argument("--raft-weights", default=None)
    parser.add_argument("--memflow-path", default=None)
    parser.add_argument("--memflow-ckpt", default=None)
    parser.add_argument("--swin-checkpoint", default=None, help="local SwinModel folder for the embedding")
    parser.add_argument("--exemplar-checkpoint", default=None, help="ExemplarBranch folder (Strategy 1)")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        kind = {int: int, float: float, str: str}.get(type(value), str)
        if f.name in ("seq_len", "max_steps_per_epoch"):
            kind = int
        if f.name == "feature_weights":
            kind = str
        parser.add_argument(flag, type=kind, default=value)
