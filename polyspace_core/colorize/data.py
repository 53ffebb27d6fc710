"""Colour clips in memory for training and evaluation (SynthColor or any clip + reference).

Clips are small (SynthColor: 16 frames of 64x64), so a split is decoded once and kept as uint8
frames plus their Lab tensors; the torch datasets below index into that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import PolySpaceError
from .lab import frames_to_gray, frames_to_lab


@dataclass
class ColorClip:
    """One clip: frames (T, H, W, 3) uint8 RGB (the ground truth), reference (H, W, 3) uint8 at
    the frames' size, their Lab tensors (T, 3, H, W) / (3, H, W) and the grey frames (T, H, W)."""

    id: str
    frames: np.ndarray
    reference: np.ndarray
    reference_kind: str
    lab: torch.Tensor
    ref_lab: torch.Tensor
    grey: np.ndarray


def make_clip(clip_id: str, frames: np.ndarray, reference: np.ndarray, reference_kind: str = "") -> ColorClip:
    """A ColorClip from uint8 RGB frames and a reference of any size (resized to the frames')."""
    h, w = frames.shape[1:3]
    if reference.shape[:2] != (h, w):
        rgb = torch.from_numpy(reference).permute(2, 0, 1)[None].float() / 255.0
        rgb = F.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        reference = (rgb[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return ColorClip(clip_id, frames, reference, reference_kind, frames_to_lab(frames),
                     frames_to_lab(reference), frames_to_gray(frames))


def load_color_clips(root: str | os.PathLike, split: str, limit: int | None = None,
                     progress: bool = True) -> list[ColorClip]:
    """Decode the clips of a SynthColor split (first `limit` clips when given)."""
    from tqdm.auto import tqdm

    from ..datasets.synthcolor import load_synthcolor_index, read_clip

    index = load_synthcolor_index(root)
    if split not in index["splits"]:
        raise PolySpaceError(f"{root}: SynthColor has no split {split!r}; splits are {', '.join(index['splits'])}")
    entries = index["splits"][split][:limit]
    clips = []
    for entry in tqdm(entries, desc=f"load {split}", disable=not progress):
        frames, reference = read_clip(root, entry)
        clips.append(make_clip(entry["id"], frames, reference, entry["reference_kind"]))
    return clips


class FrameDataset(Dataset):
    """Every (clip, frame) pair: {'lab' (3, H, W), 'ref_lab' (3, H, W)} — exemplar-branch training."""

    def __init__(self, clips: list[ColorClip]):
        if not clips:
            raise PolySpaceError("FrameDataset: no clips")
        self.clips = clips
        self.items = [(i, t) for i, c in enumerate(clips) for t in range(len(c.frames))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict:
        i, t = self.items[k]
        return {"lab": self.clips[i].lab[t], "ref_lab": self.clips[i].ref_lab}


class SequenceDataset(Dataset):
    """Every clip from its first frame, `seq_len` frames long (the whole clip when None):
    {'lab' (T, 3, H, W), 'grey' (T, H, W) uint8, 'ref_lab' (3, H, W)} — fusion training. Sequences
    start at frame 0, like at test time, because the temporal memory starts from the reference."""

    def __init__(self, clips: list[ColorClip], seq_len: int | None = None):
        if not clips:
            raise PolySpaceError("SequenceDataset: no clips")
        lengths = {len(c.frames) for c in clips}
        self.seq_len = seq_len or min(lengths)
        if self.seq_len > min(lengths):
            raise PolySpaceError(f"seq_len={seq_len}: longer than the shortest clip ({min(lengths)} frames)")
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        c, n = self.clips[i], self.seq_len
        return {"lab": c.lab[:n], "grey": torch.from_numpy(c.grey[:n]), "ref_lab": c.ref_lab}
