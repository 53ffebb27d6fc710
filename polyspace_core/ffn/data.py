"""Multi-frame-count clips for FFN: 4, 8 and 16 frames TSN-sampled from one decode of a video,
all with ONE shared crop (and no flip by default: SSv2-style classes depend on direction).

    split = load_ssv2_split(video_dir, labels_dir, "train")        # or datasets.load_split(...)
    train = MultiFrameClips(split, (4, 8, 16), train=True, size=112, short_side=128)
    v_4, v_8, v_16, label = train[0]        # (3, 4, 112, 112), (3, 8, ...), (3, 16, ...) float, int

Three sources of frames, same sampling and augmentation (the clips are equal whichever is used):
- streaming (default): each item decodes its video through datasets.VideoClipDataset, which
  decodes the union of the three index sets once and applies one crop draw to all clips;
- cache=True: every video is decoded once at construction (all frames, resized to short_side)
  and kept as uint8 in memory, up to cache_limit_bytes; each epoch still draws new TSN offsets
  and crops from it. For the small built-in runs on CPU, where decoding every epoch would dominate;
- frame_cache=DIR: video/frame_cache.py's on-disk cache (every frame at short_side, uint8 or JPEG),
  filled on first read by whichever process reads the video and reused by later epochs and runs;
  for SSv2 webm, whose VP9 decoding is the loader's main cost (benchmarks/ffn_loader.py).

Training crops: "random" (a crop of `size` at a random position after the short-side resize) or
"multiscale" (TSN's multi-scale crop with fixed offsets, video/multiscale.py: the official TSM/FFN
augmentation). Evaluation always resizes the short side and takes the centre crop.

Random draws come from (seed, epoch, index) (`set_epoch`, called by the trainers), so a run
repeats exactly, resumed or not, with or without DataLoader workers.

A video that does not decode (SSv2 has a few): on_error="error" stops with one line naming it;
on_error="skip" leaves it out and counts it. With cache=True it is left out at construction
(`.skipped`); when streaming or through the frame cache the item comes back with label SKIPPED
and zero clips, so DataLoader batches keep their shape (and DDP its step count), and the
trainers and accuracy_by_frames drop those rows and report how many they dropped (a warning
names each video once per worker process).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..datasets.base import DatasetSplit
from ..errors import PolySpaceError
from ..video import ClipRequest, SpatialTransform, VideoDecodeError, probe, read_frames, sample_indices
from ..video.frame_cache import FrameCache, check_encoding
from ..video.multiscale import TSN_SCALES, MultiScaleCrop

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_LIMIT_BYTES = 4 * 2**30   # default cap of the in-memory cache (cache=True); cache_limit_bytes sets it
CROPS = ("random", "multiscale")
SKIPPED = -1   # label of an item whose video did not decode under on_error="skip" (its clips are zeros)


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

    train: random TSN offsets and a training crop (else segment centres and centre crop).
    size: crop side; short_side: resize target of the short side first (None: keep).
    crop: training crop, "random" or "multiscale" (scales, max_distort, more_fix_crop: TSN's
    GroupMultiScaleCrop settings, the official ones by default).
    flip: random horizontal flips in training (off: direction-sensitive classes).
    cache: decode every video into memory at construction (at most cache_limit_bytes);
    frame_cache: a folder for the on-disk frame cache instead (frame_cache_max_bytes: its cap,
    None for none; it also keeps 2 GiB of the disk free; frame_cache_format "uint8", exact, or
    "jpeg", lossy at frame_cache_quality, see video/frame_cache.py).
    on_error: "error" stops at an unreadable video; "skip" leaves it out: at construction with
    cache=True (listed in `.skipped`), else as an item labelled SKIPPED with zero clips that the
    trainers and accuracy_by_frames drop and count. backend: video decoder ("auto",
    "torchcodec", "decord", "pyav").
    """

    def __init__(self, split: DatasetSplit, frame_counts: Sequence[int] = (4, 8, 16), *, train: bool,
                 size: int, short_side: int | None = None, flip: bool = False, cache: bool = False,
                 crop: str = "random", scales: Sequence[float] = TSN_SCALES, max_distort: int = 1,
                 more_fix_crop: bool = True, cache_limit_bytes: int = CACHE_LIMIT_BYTES,
                 frame_cache: str | Path | None = None, frame_cache_max_bytes: int | None = None,
                 frame_cache_format: str = "uint8", frame_cache_quality: int = 90,
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
        if crop not in CROPS:
            raise PolySpaceError(f"crop={crop!r}: use one of {', '.join(CROPS)}")
        check_encoding(frame_cache_format, frame_cache_quality)
        if cache and frame_cache is not None:
            raise PolySpaceError("cache=True and frame_cache: choose the in-memory or the on-disk cache")
        self.split = split
        self.frame_counts = tuple(counts)
        self.train = bool(train)
        self.size = int(size)
        self.on_error = on_error
        self.seed = int(seed)
        self.epoch = 0
        self.class_names = list(split.class_names)
        self.requests = [ClipRequest(f"f{t}", t, "tsn") for t in counts]
        self.crop = crop if train else "centre"
        # what the clips depend on, recorded with a training run so a resume with other data
        # settings is caught; where the frames come from is left out where it gives the same
        # pixels (streaming, either decoder, the in-memory or a uint8 cache), a JPEG cache is not
        self.settings = {"frame_counts": list(self.frame_counts), "size": self.size, "short_side": short_side,
                         "crop": self.crop, "flip": bool(flip), "mean": list(mean), "std": list(std),
                         "frames": "decoded" if frame_cache is None or frame_cache_format == "uint8"
                         else f"jpeg q{frame_cache_quality}"}
        if self.crop == "multiscale":
            self.settings.update(scales=list(scales), max_distort=max_distort, more_fix_crop=bool(more_fix_crop))
        if train and crop == "multiscale":
            self.transform = MultiScaleCrop(size, scales, max_distort, more_fix_crop, short_side=short_side, flip=flip)
        else:
            self.transform = SpatialTransform(short_side=short_side, crop=size, train=train, flip=flip)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
        # (value / 255 - mean) / std for every uint8 value and channel, by the same float32 ops as
        # on a whole clip (so the same numbers): a table lookup per pixel instead of three passes
        # of float arithmetic, which cost more than decoding (benchmarks/ffn_loader.py)
        values = torch.arange(256, dtype=torch.float32).div_(255.0).view(256, 1)
        self.lut = ((values - self.mean.view(1, 3)) / self.std.view(1, 3)).numpy()   # (256, 3)
        self.skipped: list[tuple[str, str]] = []
        self.items = list(split.items)
        self.frames: list[np.ndarray] | None = None
        self.frame_cache: FrameCache | None = None
        if cache:
            self._fill_cache(short_side, on_error, backend, progress, cache_limit_bytes)
        elif frame_cache is not None:
            self.frame_cache = FrameCache(frame_cache, short_side, max_bytes=frame_cache_max_bytes, backend=backend,
                                          encoding=frame_cache_format, jpeg_quality=frame_cache_quality)
        else:
            from ..datasets.clip_dataset import VideoClipDataset
            self.source = VideoClipDataset(split, self.requests, train=train, transform=self.transform,
                                           backend=backend, seed=seed, output="uint8")

    def _fill_cache(self, short_side: int | None, on_error: str, backend: str, progress: bool,
                    limit: int) -> None:
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
            if total > limit:
                raise PolySpaceError(f"{self.split.dataset}/{self.split.split}: decoded frames pass the in-memory "
                                     f"cache's {limit / 2**30:.2f} GiB (cache_limit_bytes); raise it, or use the "
                                     "on-disk frame_cache, or stream (no cache)")
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
        if self.frames is None and self.frame_cache is None:
            self.source.set_epoch(epoch)

    def _uint8_clips(self, index: int) -> list[np.ndarray]:
        if self.frames is None and self.frame_cache is None:
            decoded = self.source[index]["clips"]
            return [decoded[r.name] for r in self.requests]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        picks: list[np.ndarray] = []
        used: list[np.ndarray] = []

        def pick(num_frames: int) -> np.ndarray:
            """Every frame count's TSN indices; the frames any of them uses, ascending."""
            picks.extend(sample_indices("tsn", num_frames, t, train=self.train, rng=rng) for t in self.frame_counts)
            used.append(np.unique(np.concatenate(picks)))
            return used[0]

        if self.frame_cache is not None:
            try:
                # only the frames the clips use (a JPEG entry decodes no others), in index order
                video = self.frame_cache.frames(self.items[index].path, pick)
            except VideoDecodeError as e:
                raise VideoDecodeError(f"{e} (item {index} of {self.split.dataset}/{self.split.split}; "
                                       "on_error='skip' leaves unreadable videos out)") from None
            picks = [np.searchsorted(used[0], idx) for idx in picks]   # rows of `video`
        else:
            video = self.frames[index]
            pick(len(video))
        params = self.transform.draw(rng, video.shape[1], video.shape[2])  # one crop for every clip
        return [self.transform.apply(video[idx], params) for idx in picks]

    def __getitem__(self, index: int) -> tuple:
        try:
            uint8_clips = self._uint8_clips(index)
        except VideoDecodeError as e:
            if self.on_error == "error":
                raise   # its message names the video, the item and on_error='skip'
            # once per video and worker process (warnings shows each distinct message once)
            warnings.warn(f"skipped a video that does not decode: {e}", stacklevel=2)
            return (*[torch.zeros(3, t, self.size, self.size) for t in self.frame_counts], SKIPPED)
        clips = []
        for clip in uint8_clips:
            x = np.empty(clip.shape, dtype=np.float32)
            for c in range(3):
                np.take(self.lut[:, c], clip[..., c], out=x[..., c])
            clips.append(torch.from_numpy(x).permute(3, 0, 1, 2))      # (C, T, H, W)
        return (*clips, int(self.items[index].label))
