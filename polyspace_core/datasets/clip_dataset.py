"""The torch dataset over a DatasetSplit: one decode per video, any number of clips from it.

    ds = VideoClipDataset(split, [ClipRequest("f16", 16, "tsn"), ClipRequest("f4", 4, "tsn")],
                          train=True, transform=SpatialTransform(short_side=64, crop=56, train=True))
    loader = ClipLoader(ds, batch_size=8, shuffle=True, num_workers=2)
    for batch in loader:  # batch["clips"]["f16"]: (B, 16, 56, 56, 3) uint8
        ...

A video that cannot be decoded is an error by default (one line naming the file). With
on_error="skip" it is left out of its batch and listed in `ds.skipped` as (path, reason), and
ClipLoader reports the list at the end of each pass; it never becomes a black clip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import PolySpaceError
from ..video import ClipRequest, SpatialTransform, VideoDecodeError, decode_clips
from .base import DatasetSplit

log = logging.getLogger("polyspace.datasets")
OUTPUTS = ("uint8", "float")


class VideoClipDataset(Dataset):
    """Clips of the videos of `split`, decoded once per item for all `requests`.

    requests: ClipRequests (name, frame count, sampling, stride); every item has one clip per
    request. train: random TSN/dense offsets and crops (seeded by (seed, epoch, index), so a run
    repeats exactly and each epoch sees new draws) versus centred ones. transform: the shared
    SpatialTransform (one crop for all requests of an item). on_error: "error" raises a one-line
    error for an unreadable video; "skip" records it in `.skipped` and drops it from the batch.
    backend: "auto", "torchcodec", "decord" or "pyav". output: "uint8" gives (T, H, W, 3) uint8 tensors as
    decoded; "float" gives (T, 3, H, W) float32, scaled to [0, 1] and then normalised with
    `mean`/`std` (per channel, in [0, 1] units) when given. use_annotated_window: decode only
    [start_frame, end_frame) of items that carry one (off by default: Diving48's rgb/ clips are
    already cut to their annotated range).

    An item is a dict: clips (name -> tensor), label (int, -1 = unlabeled), path (str), index.
    """

    def __init__(self, split: DatasetSplit, requests: Sequence[ClipRequest], *, train: bool = False,
                 transform: SpatialTransform | None = None, on_error: str = "error",
                 backend: str = "auto", seed: int = 0, output: str = "uint8",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 use_annotated_window: bool = False):
        if on_error not in ("error", "skip"):
            raise PolySpaceError(f"on_error={on_error!r}: use 'error' (stop at an unreadable video) "
                                 "or 'skip' (leave it out and report it)")
        if output not in OUTPUTS:
            raise PolySpaceError(f"output={output!r}: use one of {', '.join(OUTPUTS)}")
        if not requests:
            raise PolySpaceError("requests: VideoClipDataset needs at least one ClipRequest")
        if (mean is None) != (std is None) or (mean is not None and output != "float"):
            raise PolySpaceError("mean/std: give both, and only with output='float'")
        self.split = split
        self.requests = list(requests)
        self.train = bool(train)
        self.transform = transform
        self.on_error = on_error
        self.backend = backend
        self.seed = int(seed)
        self.output = output
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.use_annotated_window = bool(use_annotated_window)
        self.epoch = 0
        self._skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.split.items)

    def set_epoch(self, epoch: int) -> None:
        """New random draws for a new epoch (call before iterating, like DistributedSampler)."""
        self.epoch = int(epoch)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every video skipped so far (on_error="skip")."""
        return sorted(self._skipped.items())

    def record_skipped(self, entries: Sequence[tuple[str, str]]) -> None:
        """Add skips seen in DataLoader worker processes (ClipLoader does this per batch)."""
        self._skipped.update(dict(entries))

    def _tensor(self, clip: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(clip))
        if self.output == "uint8":
            return x
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x

    def __getitem__(self, index: int) -> dict:
        item = self.split.items[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        window = None
        if self.use_annotated_window and (item.start_frame is not None or item.end_frame is not None):
            window = (item.start_frame, item.end_frame)
        try:
            decoded = decode_clips(item.path, self.requests, train=self.train, rng=rng, window=window,
                                   transform=self.transform, backend=self.backend)
        except VideoDecodeError as e:
            if self.on_error == "error":
                raise VideoDecodeError(f"{e} (item {index} of {self.split.dataset}/{self.split.split}; "
                                       "on_error='skip' leaves unreadable videos out)") from None
            self._skipped[str(item.path)] = str(e)
            return {"skipped": True, "path": str(item.path), "reason": str(e), "index": index}
        return {"clips": {name: self._tensor(clip) for name, clip in decoded.clips.items()},
                "label": int(item.label), "path": str(item.path), "index": int(index)}


def collate_clips(batch: list[dict]) -> dict:
    """Stack items into a batch and drop skipped ones.

    Returns clips (name -> (B, ...) tensor), label (B,) int64, index (B,) int64, path (list),
    and skipped: [(path, reason)] of the items left out. B can be 0 when every item failed.
    """
    kept = [b for b in batch if not b.get("skipped")]
    skipped = [(b["path"], b["reason"]) for b in batch if b.get("skipped")]
    clips = {}
    if kept:
        clips = {name: torch.stack([b["clips"][name] for b in kept]) for name in kept[0]["clips"]}
    return {"clips": clips,
            "label": torch.tensor([b["label"] for b in kept], dtype=torch.long),
            "index": torch.tensor([b["index"] for b in kept], dtype=torch.long),
            "path": [b["path"] for b in kept],
            "skipped": skipped}


class ClipLoader:
    """A DataLoader over a VideoClipDataset that collects skipped videos from every worker and
    reports them at the end of each pass. Iterating sets the dataset's epoch (0, 1, 2, ...)
    and, with shuffle, a generator seeded by (seed, epoch), so runs repeat exactly."""

    def __init__(self, dataset: VideoClipDataset, batch_size: int, *, shuffle: bool = False,
                 num_workers: int = 0, drop_last: bool = False, pin_memory: bool = False):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.num_workers = int(num_workers)
        self.drop_last = drop_last
        self.pin_memory = pin_memory
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        self.dataset.set_epoch(self.epoch)
        generator = torch.Generator().manual_seed(self.dataset.seed * 100_003 + self.epoch)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle,
                            num_workers=self.num_workers, collate_fn=collate_clips,
                            drop_last=self.drop_last, pin_memory=self.pin_memory,
                            generator=generator, persistent_workers=False)
        before = len(self.dataset.skipped)
        for batch in loader:
            if batch["skipped"]:
                self.dataset.record_skipped(batch["skipped"])
            yield batch
        self.epoch += 1
        skipped = self.dataset.skipped
        if len(skipped) > before:
            listed = "; ".join(f"{path}: {reason}" for path, reason in skipped[:5])
            more = f" (+{len(skipped) - 5} more)" if len(skipped) > 5 else ""
            log.warning("skipped %d of %d videos of %s/%s (on_error='skip'): %s%s", len(skipped),
                        len(self.dataset), self.dataset.split.dataset, self.dataset.split.split,
                        listed, more)
