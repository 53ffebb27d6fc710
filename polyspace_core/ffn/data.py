"""Multi-frame-count clips for FFN: 4, 8 and 16 frames TSN-sampled from one decode of a video,
all with ONE shared crop (and no flip by default: SSv2-style classes depend on direction).

    split = load_ssv2_split(video_dir, labels_dir, "train")        # or datasets.load_split(...)
    train = MultiFrameClips(split, (4, 8, 16), train=True, size=112, short_side=128)
    v_4, v_8, v_16, label = train[0]        # (3, 4, 112, 112), (3, 8, ...), (3, 16, ...) float, int

Two sources of frames, same sampling and augmentation:
- streaming (default): each item decodes its video through datasets.VideoClipDataset, which
  decodes the union of the three index sets once and applies one crop draw to all clips;
- cache=True: every video is decoded once at construction (all frames, resized to short_side)
  and kept as uint8 in memory; each epoch still draws new TSN offsets and crops from it. For
  the small built-in runs on CPU, where decoding every epoch would dominate.

Random draws come from (seed, epoch, index) (`set_epoch`, called by the trainers), so a run
repeats exactly, resumed or not, with or without DataLoader workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..datasets.base import DatasetSplit
from ..errors import PolySpaceError
from ..video import ClipRequest, SpatialTransform, VideoDecodeError, probe, read_frames, sample_indices

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_LIMIT_BYTES = 4 * 2**30


def load_ssv2_split(video_dir: str | Path, labels_dir: str | Path, split: str) -> DatasetSplit:
    """An SSv2 split from the seed's two folders: `--video_dir .../20bn-something-something-v2`
    (the <id>.webm files) and `--labels_dir .../labels` (labels.json, train.json, ...)."""
    from ..datasets import load_split

    video_dir, labels_dir = Path(video_dir).expanduser(), Path(labels_dir).expanduser()
    if not video_dir.is_dir():
        raise PolySpaceError(f"--video_dir {video_dir}: folder not found; point it at 20bn-something-something-v2")
    if not labels_dir.is_dir() or labels_dir.name != "labels":
        raise PolySpaceError(f"--labels_dir {labels_dir}: must be the SSv2 'labels' folder "
                             "(labels.json, train.json, validation.json)")
    parsed = load_split("ssv2", labels_dir.parent, split)
    items = [dataclasses.replace(item, path=video_dir / item.path.name) for item in parsed.items]
    return dataclasses.replace(parsed, items=items)


class MultiFrameClips(Dataset):
    """Item i -> (clip_1, ..., clip_k, label): one float clip (C, T, H, W) per frame count in
    `frame_counts` (ascending), TSN-sampled from the same video with one shared crop, scaled to
    [0, 1] and normalised with mean/std; label is the class index.

    train: random TSN offsets and random crop (else segment centres and centre crop).
    size: crop side; short_side: resize target of the short side first (None: keep).
    flip: random horizontal flips in training (off: direction-sensitive classes).
    on_error: "error" stops at an unreadable video; "skip" (cache only) leaves it out and lists
    it in `.skipped`. backend: video decoder ("auto", "decord", "pyav").
    """

    def __init__(self, split: DatasetSplit, frame_counts: Sequence[int] = (4, 8, 16), *, train: bool,
                 size: int, short_side: int | None = None, flip: bool = False, cache: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 on_error: str = "error", backend: str = "auto", seed: int = 0, progress: bool = True):
        counts = sorted(int(t) for t in frame_counts)
        if not counts or counts[0] < 1 or len(set(counts)) != len(counts):
            raise PolySpaceError(f"frame_counts must be distinct positive integers, got {list(frame_counts)}")
        if any(item.label < 0 for item in split.items):
            raise PolySpaceError(f"{split.dataset}/{split.split}: has unlabeled items (label -1); "
                                 "train and evaluate on labeled splits (train, validation)")
        if on_error not in ("error", "skip"):
            raise PolySpaceError(f"on_error={on_error!r}: use 'error' or 'skip'")
        self.split = split
        self.frame_counts = tuple(counts)
        self.train = bool(train)
        self.seed = int(seed)
        self.epoch = 0
        self.class_names = list(split.class_names)
        self.requests = [ClipRequest(f"f{t}", t, "tsn") for t in counts]
        self.transform = SpatialTransform(short_side=short_side, crop=size, train=train, flip=flip)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
        self.skipped: list[tuple[str, str]] = []
        self.items = list(split.items)
        self.frames: list[np.ndarray] | None = None
        if cache:
            self._fill_cache(short_side, on_error, backend, progress)
        else:
            if on_error == "skip":
                raise PolySpaceError("on_error='skip' needs cache=True (streaming batches must stay full); "
                                     "fix or remove unreadable videos, or cache the split")
            from ..datasets.clip_dataset import VideoClipDataset
            self.source = VideoClipDataset(split, self.requests, train=train, transform=self.transform,
                                           backend=backend, seed=seed, output="uint8")

    def _fill_cache(self, short_side: int | None, on_error: str, backend: str, progress: bool) -> None:
        resize = SpatialTransform(short_side=short_side)  # no crop: crops are drawn per epoch
        frames, items, total = [], [], 0
        for item in tqdm(self.items, desc=f"decode {self.split.dataset}/{self.split.split}", disable=not progress):
            try:
                video = read_frames(item.path, np.arange(probe(item.path).num_frames), backend)
            except VideoDecodeError as e:
                if on_error == "error":
                    raise VideoDecodeError(f"{e} (on_error='skip' leaves unreadable videos out)") from None
                self.skipped.append((str(item.path), str(e)))
                continue
            video = resize(video)
            total += video.nbytes
            if total > CACHE_LIMIT_BYTES:
                raise PolySpaceError(f"{self.split.dataset}/{self.split.split}: decoded frames pass "
                                     f"{CACHE_LIMIT_BYTES / 2**30:.0f} GiB; use cache=False (stream from disk)")
            frames.append(video)
            items.append(item)
        if not items:
            raise PolySpaceError(f"{self.split.dataset}/{self.split.split}: no readable videos")
        self.frames, self.items = frames, items

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """New TSN offsets and crops for a new epoch (trainers call this before each epoch)."""
        self.epoch = int(epoch)
        if self.frames is None:
            self.source.set_epoch(epoch)

    def _uint8_clips(self, index: int) -> list[np.ndarray]:
        if self.frames is None:
            decoded = self.source[index]["clips"]
            return [decoded[r.name] for r in self.requests]
        video = self.frames[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        picks = [sample_indices("tsn", len(video), t, train=self.train, rng=rng) for t in self.frame_counts]
        params = self.transform.draw(rng, video.shape[1], video.shape[2])  # one crop for every clip
        return [self.transform.apply(video[idx], params) for idx in picks]

    def __getitem__(self, index: int) -> tuple:
        clips = []
        for clip in self._uint8_clips(index):
            x = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).float().div_(255.0)
            clips.append((x - self.mean) / self.std)      # (C, T, H, W)
        return (*clips, int(self.items[index].label))
