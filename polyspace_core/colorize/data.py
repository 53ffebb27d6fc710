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
    the frames' size, their Lab tensors (T, 3, H, W) / (3, H, W) and the grey frames (T, H, W).
    score_from: the first frame the metrics score (1 under the first-frame-reference protocol:
    frame 0 IS the reference, given to the methods, so it is not scored)."""

    id: str
    frames: np.ndarray
    reference: np.ndarray
    reference_kind: str
    lab: torch.Tensor
    ref_lab: torch.Tensor
    grey: np.ndarray
    score_from: int = 0


def make_clip(clip_id: str, frames: np.ndarray, reference: np.ndarray, reference_kind: str = "",
              score_from: int = 0) -> ColorClip:
    """A ColorClip from uint8 RGB frames and a reference of any size (resized to the frames')."""
    h, w = frames.shape[1:3]
    if reference.shape[:2] != (h, w):
        rgb = torch.from_numpy(reference).permute(2, 0, 1)[None].float() / 255.0
        rgb = F.interpolate(rgb, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        reference = (rgb[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return ColorClip(clip_id, frames, reference, reference_kind, frames_to_lab(frames),
                     frames_to_lab(reference), frames_to_gray(frames), score_from)


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


def resize_short_side(frames: np.ndarray, short_side: int, multiple: int = 8) -> np.ndarray:
    """(T, H, W, 3) uint8 resized (area interpolation) so the short side is `short_side` and both
    sides are multiples of `multiple` (the aspect ratio kept to within that rounding)."""
    import cv2

    if short_side < 16:
        raise PolySpaceError(f"working size {short_side}: use a short side of at least 16 px")
    h, w = frames.shape[1:3]
    scale = short_side / min(h, w)
    nh = max(multiple, int(round(h * scale / multiple)) * multiple)
    nw = max(multiple, int(round(w * scale / multiple)) * multiple)
    if (nh, nw) == (h, w):
        return frames
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (nw, nh), interpolation=interp) for f in frames])


def load_sequence_clips(dataset: str, root: str | os.PathLike, size: int, max_frames: int | None = None,
                        sequences: list[str] | None = None, key: str = "root", progress: bool = True,
                        **options) -> list[ColorClip]:
    """Real colour sequences as ColorClips under the first-frame-reference protocol (the
    protocol of the DAVIS / Videvo tables): each sequence's first ground-truth frame is its
    reference, the methods see every frame's lightness (frame 0 included: the temporal memory
    starts there), and frames 1.. are scored (frame 0 is the reference itself; score_from = 1).

    dataset: davis | videos (datasets.registry.list_color_sequences; `options` go to it, e.g.
    resolution, split). size: the working short side in px (frames resized, both sides multiples
    of 8); metrics are computed at that size. max_frames: the first frames of each sequence (all
    when None). key: the parameter naming the root, for the error line when it is missing."""
    from tqdm.auto import tqdm

    from ..datasets.registry import list_color_sequences

    found = list_color_sequences(dataset, root, sequences=sequences, key=key, **options)
    clips = []
    for seq in tqdm(found, desc=f"load {dataset}", disable=not progress):
        frames = resize_short_side(seq.read(max_frames), size)
        if len(frames) < 3:
            raise PolySpaceError(f"{dataset} sequence {seq.name}: {len(frames)} frame(s); the first-frame protocol "
                                 f"needs at least 3 (the reference + 2 scored)")
        clips.append(make_clip(seq.name, frames, frames[0].copy(), "first_frame", score_from=1))
    return clips


# ----------------------------------------------------------------------------- training data
# `polyspace train-color --dataset --imagenet` (the seed's train/train.py flags): clips of real
# colour video and pseudo-videos of ImageNet photos, all size x size so they batch together.


def center_square(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3): short side resized to `size`, centre crop."""
    frames = resize_short_side(frames, size, multiple=1)
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(frames[:, top:top + size, left:left + size])


def video_training_clips(root: str | os.PathLike, size: int, frames: int, clips_per_video: int,
                         key: str = "--dataset", progress: bool = True) -> list[list[ColorClip]]:
    """The training clips of every colour sequence under `root` (DAVIS, a folder of videos or a
    folder of frame folders; datasets.davis.detect_color_layout), one list per sequence: its
    first `clips_per_video` non-overlapping windows of `frames` frames, each size x size (short
    side resized, centre crop), the window's first frame its reference (the first-frame protocol
    of the evaluation). A sequence shorter than one window is a one-line error."""
    from tqdm.auto import tqdm

    from ..datasets.davis import detect_color_layout
    from ..datasets.registry import list_color_sequences

    if frames < 2 or clips_per_video < 1:
        raise PolySpaceError(f"training clips: frames={frames} (>= 2), clips_per_video={clips_per_video} (>= 1)")
    layout = detect_color_layout(root, key)
    out = []
    for seq in tqdm(list_color_sequences(layout, root, key=key), desc="load videos", disable=not progress):
        video = seq.read(frames * clips_per_video)
        if len(video) < frames:
            raise PolySpaceError(f"{key} {root}: sequence {seq.name} has {len(video)} frame(s), fewer than "
                                 f"--frames {frames}")
        video = center_square(video, size)
        out.append([make_clip(f"{seq.name}@{start}", video[start:start + frames], video[start].copy(), "first_frame")
                    for start in range(0, len(video) - frames + 1, frames)])
    return out


def pseudo_video(image: np.ndarray, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A photo (H, W, 3) uint8 as a (frames, size, size, 3) clip under a smooth random camera
    move (pan, zoom and a little rotation growing linearly with time), the way Deep Exemplar
    trains on ImageNet photos: the scene is static, only the view changes."""
    import cv2

    big = center_square(image[None], int(round(size * 1.25)))[0]
    c = big.shape[0] / 2.0
    shift = rng.uniform(-0.03, 0.03, size=2) * size          # px per frame
    zoom, angle = rng.uniform(-0.02, 0.02), rng.uniform(-1.0, 1.0)  # per frame
    out = []
    for t in range(frames):
        m = cv2.getRotationMatrix2D((c, c), angle * t, 1.0 + zoom * t)
        m[:, 2] += shift * t - (c - size / 2.0)               # keep the view centred on the crop
        out.append(cv2.warpAffine(big, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def imagenet_training_clips(root: str | os.PathLike, count: int, size: int, frames: int, seed: int = 0,
                            key: str = "--imagenet", progress: bool = True) -> tuple[list[ColorClip], dict]:
    """`count` pseudo-video clips from an ImageFolder tree (datasets/imagefolder.py), drawn
    round-robin over the classes in a seeded order: each photo as a pseudo_video, its exemplar
    the next photo of the same class (a semantic exemplar, as Deep Exemplar's ImageNet pairs;
    a class of one photo is its own exemplar, counted in the returned summary)."""
    import cv2
    from tqdm.auto import tqdm

    from ..datasets.imagefolder import list_image_folder

    tree = list_image_folder(root, key)
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(imgs)) for imgs in tree.images]
    picks = [(c, int(orders[c][k % len(orders[c])])) for k in range(count) for c in [k % len(tree.classes)]]

    def read(path) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise PolySpaceError(f"{path}: image does not decode (missing, truncated or not an image)")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    clips, self_exemplar = [], 0
    for c, i in tqdm(picks, desc="load imagenet", disable=not progress):
        images = tree.images[c]
        j = (i + 1) % len(images)
        self_exemplar += j == i
        video = pseudo_video(read(images[i]), frames, size, rng)
        clips.append(make_clip(f"{tree.classes[c]}/{images[i].name}", video,
                               center_square(read(images[j])[None], size)[0], "same_class"))
    summary = {"root": str(tree.root), "classes": len(tree.classes), "empty_classes": tree.empty_classes,
               "clips": len(clips), "own_exemplar": self_exemplar}
    return clips, summary
