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


# Strategy 2's Swin V2 weights by hub id (system.DEFAULT_SWIN_BACKBONE; a test checks they agree)
DEFAULT_SWIN_BACKBONE = "timm/swinv2_cr_tiny_ns_224.sw_in1k"
EMBEDDINGS = ("swintexco", "random", "swin", "swinv2", "convnext")


def add_seed_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `polyspace train-color`: the seed's train/train.py (seed 004's Quick Start keeps
    its names: --memflow_path --swintexco_path --memflow_ckpt --dataset --imagenet --batch_size
    --epochs) plus ours in the same style."""
    seed = parser.add_argument_group("the seed's flags")
    seed.add_argument("--memflow_path", default=None, help="MemFlow checkout (the temporal branch's flow; "
                                                           "without it OpenCV DIS)")
    seed.add_argument("--memflow_ckpt", default=None, help="MemFlow checkpoint (.pth, MemFlow's released layout)")
    seed.add_argument("--swintexco_path", default=None,
                      help="SwinTExCo checkout: checked to exist and recorded (its networks are implemented here)")
    seed.add_argument("--swintexco_ckpt", default=None,
                      help="Strategy 1: SwinTExCo's release folder (embed_net.pth, nonlocal_net.pth, colornet.pth) "
                           "or an exemplar branch saved by save_pretrained; omitted: Strategy 2 (from scratch)")
    seed.add_argument("--dataset", required=True,
                      help="colour videos to train on: a DAVIS root (JPEGImages/480p/<seq>/), a folder of videos, "
                           "or a folder of frame folders; whole sequences are held out for validation")
    seed.add_argument("--imagenet", default=None,
                      help="ImageFolder tree (<class>/<image>.JPEG, or its train/): each photo becomes a "
                           "pseudo-video under a random camera move, its exemplar another photo of its class "
                           "(Deep Exemplar's and SwinTExCo's use of ImageNet)")
    seed.add_argument("--batch_size", type=int, default=2, help="sequences per step")
    seed.add_argument("--epochs", type=int, default=50)
    ours = parser.add_argument_group("more")
    ours.add_argument("--save_dir", default="checkpoints/colorization",
                      help="run folder: checkpoint/ (a FusionSystem folder for `polyspace colorize --checkpoint`), "
                           "history.json, settings.json, tensorboard/")
    ours.add_argument("--overwrite", action="store_true", help="replace a run in --save_dir made with other settings")
    ours.add_argument("--embed", default="swintexco", choices=EMBEDDINGS,
                      help="exemplar branch: swintexco (SwinTExCo's networks, the seed's) or ours with the "
                           "embedding family random | swin | swinv2 | convnext (--embed_backbone)")
    ours.add_argument("--embed_backbone", default=None,
                      help="--embed swin/swinv2/convnext: a local save_pretrained folder or a hub id in the "
                           "offline HF cache (nothing is downloaded)")
    ours.add_argument("--swin_backbone", default=DEFAULT_SWIN_BACKBONE,
                      help="Strategy 2's Swin V2 weights (timm swinv2_cr_tiny_ns_224): a file, a folder or a "
                           "hub id in the offline HF cache")
    ours.add_argument("--image_size", type=int, default=224,
                      help="SwinTExCo's network size for Strategy 2 (224, the release's; a multiple of 32)")
    ours.add_argument("--memflow_stage", default="sintel")
    ours.add_argument("--size", type=int, default=256, help="training frames are size x size (short side "
                                                            "resized, centre crop); the checkpoint's working size")
    ours.add_argument("--frames", type=int, default=8, help="frames per training clip")
    ours.add_argument("--clips_per_video", type=int, default=4, help="non-overlapping clips taken from each video")
    ours.add_argument("--imagenet_clips", type=int, default=None,
                      help="pseudo-video clips from --imagenet (default: as many as the video training clips)")
    ours.add_argument("--val_fraction", type=float, default=0.1, help="share of --dataset's videos held out")
    ours.add_argument("--lr_swintexco", type=float, default=None,
                      help="the exemplar branch's learning rate (default: the seed's table, 1e-5 with "
                           "--swintexco_ckpt, 1e-4 without)")
    ours.add_argument("--lr_fusion", type=float, default=None, help="the fusion net's (default: the seed's 1e-4)")
    ours.add_argument("--temporal_weight", type=float, default=TrainConfig.temporal_weight)
    ours.add_argument("--max_steps_per_epoch", type=int, default=None)
    ours.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    ours.add_argument("--grad_accum", type=int, default=1)
    ours.add_argument("--device", default="auto")
    ours.add_argument("--seed", type=int, default=0)
