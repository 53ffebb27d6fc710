"""Where training batches come from: the feature store (cached mode) or the videos (video mode).

Both modes cut an epoch into the SAME batches: `epoch_batches` shuffles the sample positions with
a generator seeded by (seed, epoch), so a batch is a function of the seed and the epoch only —
the same in cached and video mode, after a resume, and under any number of processes (each rank
takes its share of every global batch, see `rank_share`).

    cached mode   TensorBatches over the store's lazy views (FeatureStore.view): a batch is one
                  gather of rows per model from the memory-mapped shards, cast to float32 (the
                  stored dtype, fp16/bf16/fp32, comes from the manifest), then
                  {model: (B, T, D), "label": (B,), "index": (B,)}.
    video mode    VideoBatches: a DataLoader over featurize's own ClipSource (one decode per
                  video, the student's clip through its processor), then {"pixels": (B, T, 3, h, w),
                  "label", "index"}; `StudentFeatures` runs the student backbone on the pixels with
                  the token rule and precision featurize used (autocast in the store's dtype, the
                  features rounded to it), giving the same {student: (B, T, D)} batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PolySpaceError


def epoch_batches(num_samples: int, batch: int, epoch: int, seed: int, shuffle: bool,
                  min_size: int = 1) -> list[np.ndarray]:
    """Positions 0..num_samples-1 cut into batches of `batch` for one epoch.

    shuffle=True permutes with numpy's generator seeded by (seed, epoch); False keeps the order.
    A last batch smaller than `min_size` (the number of processes) is merged into the previous
    one, so every process gets at least one sample of every batch.
    """
    if num_samples < 1:
        raise PolySpaceError("no samples to batch; the split is empty or every sample failed extraction")
    if not isinstance(batch, int) or batch < 1:
        raise PolySpaceError(f"batch={batch!r}: must be a positive integer")
    order = np.random.default_rng([seed, epoch]).permutation(num_samples) if shuffle else np.arange(num_samples)
    starts = list(range(0, num_samples, batch))
    if len(starts) > 1 and num_samples - starts[-1] < min_size:
        starts.pop()
    ends = starts[1:] + [num_samples]
    return [order[s:e] for s, e in zip(starts, ends)]


def rank_share(positions: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This process's part of a global batch: every world-th sample starting at rank."""
    return positions[rank::world]


class TensorBatches:
    """Batches over feature tensors: cached mode (memory-mapped store arrays) and in-memory probes.

    features: model name -> (N, T, D) tensor of any float dtype or a store's FeatureView (read
    a batch at a time); labels: (N,) int64; indices: which rows to serve (default all), e.g. the store's
    ok samples. A batch is {model: float32 (B, T, D), "label": int64 (B,), "index": int64 (B,)}
    where index is the row in `features`. rank/world give this process's share of each batch.
    """

    def __init__(self, features: Mapping[str, torch.Tensor], labels: torch.Tensor | np.ndarray,
                 indices: Sequence[int] | np.ndarray | None = None, *, batch: int = 64, shuffle: bool = False,
                 seed: int = 0, rank: int = 0, world: int = 1, dtype: torch.dtype = torch.float32):
        self.features = dict(features)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        n = int(self.labels.shape[0])
        for name, x in self.features.items():
            if x.ndim != 3 or x.shape[0] != n:
                raise PolySpaceError(f"features {name!r}: expected (N={n}, T, D), got {tuple(x.shape)}")
        self.indices = torch.as_tensor(np.arange(n) if indices is None else np.asarray(indices), dtype=torch.int64)
        self.batch, self.shuffle, self.seed = batch, shuffle, seed
        self.rank, self.world = rank, world
        self.dtype = dtype

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(epoch_batches(len(self.indices), self.batch, 0, self.seed, False, self.world))

    @property
    def num_samples(self) -> int:
        return int(self.indices.shape[0])


    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of one epoch (this process's share)."""
        for positions in epoch_batches(self.num_samples, self.batch, epoch, self.seed, self.shuffle, self.world):
            share = torch.as_tensor(rank_share(positions, self.rank, self.world))
            yield self._gather(self.indices[share], self.features)

    def full_pass(self, models: Sequence[str] | None = None, batch: int = 1024) -> Iterator[dict[str, torch.Tensor]]:
        """Every sample once, in order, whatever this process's share and the shuffling: what
        statistics of the whole split need. models: a subset of the features to serve."""
        features = self.features if models is None else {m: self.features[m] for m in models}
        for start in range(0, self.num_samples, batch):
            yield self._gather(self.indices[start:start + batch], features)

    def _gather(self, rows: torch.Tensor, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # gather in ascending row order: memory-mapped shards are read sequentially
        sorted_rows, inverse = torch.sort(rows)
        out = {name: x[sorted_rows][torch.argsort(inverse)].to(self.dtype) for name, x in features.items()}
        out["label"] = self.labels[rows]
        out["index"] = rows
        return out

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self.epoch(0)


def open_split_store(features_root: str | Path, split: str, features_fp16: bool | None = None):
    """Open `<features_root>/<split>` and check the legacy `--features_fp16` flag against its
    manifest. The dtype is always taken from the manifest; the flag is only accepted for
    compatibility with the original scripts, and a contradiction is an error, not a dtype crash."""
    from ..features.store import FeatureStore

    store = FeatureStore.open(Path(features_root) / split)
    stored = store.manifest["dtype"]
    if features_fp16 and stored != "float16":
        raise PolySpaceError(f"{store.split_dir / 'manifest.json'}: --features_fp16 was given but these features "
                             f"are stored as {stored}; drop the flag (the dtype is read from the manifest)")
    return store


def cached_batches(store, models: Sequence[str], *, batch: int, shuffle: bool, seed: int = 0,
                   rank: int = 0, world: int = 1, preload: bool = False) -> TensorBatches:
    """TensorBatches over a feature store's ok samples for `models`: each batch gathers its rows
    from the memory-mapped shards (`FeatureStore.view`) and casts them, so a split is never held
    in memory. `preload` reads every sample into RAM as float32 first (small stores only)."""
    for name in models:
        store.model_info(name)  # an unknown model is a clear error naming the store
        store.check_finite(name)  # NaN features would train or score silently wrong
    features = {name: store.view(name) for name in models}
    if preload:
        features = {name: x[:].float() for name, x in features.items()}
    return TensorBatches(features, store.labels, store.indices(ok_only=True), batch=batch, shuffle=shuffle,
                         seed=seed, rank=rank, world=world)


# ---------------------------------------------------------------------------------------------
# video mode


def _collate_clips(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items  # stacking happens in VideoBatches, after failed videos are taken out


class VideoBatches:
    """Video-mode batches: decode each video once and run the student's processor on its clip,
    in DataLoader workers, through featurize's ClipSource (same sampling, crop and normalisation
    as the stored features). A batch is {"pixels": (B, T, 3, h, w) float32, "label", "index"}.

    items: the split's VideoItems (index = position in this list, as in a store made from the
    split); labels: (N,) int64; indices: positions to serve. on_error="skip" drops a video that
    cannot be decoded from its batch and records (path, reason) in `.skipped`; "error" raises.
    """

    def __init__(self, items: Sequence[Any], labels: Sequence[int] | np.ndarray, student, *,
                 indices: Sequence[int] | None = None, batch: int = 8, shuffle: bool = False, seed: int = 0,
                 rank: int = 0, world: int = 1, workers: int = 0, on_error: str = "error", backend: str = "auto"):
        from ..features.featurize import ClipSource

        if on_error not in ("error", "skip"):
            raise PolySpaceError(f"on_error={on_error!r}: use error or skip")
        self.items = list(items)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if len(self.labels) != len(self.items):
            raise PolySpaceError(f"video batches: {len(self.items)} videos but {len(self.labels)} labels")
        self.indices = np.arange(len(self.items)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.source = ClipSource(self.items, [(student.name, student.frames, student.processor)], backend=backend)
        self.student_name = student.name
        self.batch, self.shuffle, self.seed = batch, shuffle, seed
        self.rank, self.world, self.workers = rank, world, workers
        self.on_error = on_error
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(epoch_batches(len(self.indices), self.batch, 0, self.seed, False, self.world))

    @property
    def num_samples(self) -> int:
        return int(len(self.indices))

    def epoch(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """The batches of one epoch (this process's share)."""
        return self._serve([self.indices[rank_share(p, self.rank, self.world)].tolist()
                            for p in epoch_batches(len(self.indices), self.batch, epoch, self.seed, self.shuffle,
                                                   self.world)])

    def full_pass(self) -> Iterator[dict[str, torch.Tensor]]:
        """Every video once, in order, whatever this process's share and the shuffling."""
        return self._serve([self.indices[s:s + self.batch].tolist() for s in range(0, self.num_samples, self.batch)])

    def _serve(self, batches: list[list[int]]) -> Iterator[dict[str, torch.Tensor]]:
        # a private generator: a DataLoader otherwise draws its worker seed from the global RNG,
        # which would shift the dropout masks relative to cached mode
        loader = torch.utils.data.DataLoader(self.source, batch_sampler=batches, num_workers=self.workers,
                                             collate_fn=_collate_clips, generator=torch.Generator().manual_seed(0))
        for items in loader:
            good = []
            for it in items:
                if "error" in it:
                    if self.on_error == "error":
                        raise PolySpaceError(f"{it['error']} (video mode, on_error=error; use on_error=skip to "
                                             f"leave such videos out)")
                    self.skipped[str(self.items[it["index"]].path)] = it["error"]
                    continue
                good.append(it)
            if not good:
                continue
            rows = torch.tensor([it["index"] for it in good], dtype=torch.int64)
            yield {"pixels": torch.stack([it["pixels"][self.student_name] for it in good]),
                   "label": self.labels[rows], "index": rows}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return self.epoch(0)


def store_precision(features_root: str | Path, split: str = "train") -> str:
    """The dtype ("float32", "float16", "bfloat16") of the store at `features_root`, from the
    manifest of `split` (the precision video mode runs the student in)."""
    from ..features.store import FeatureStore

    return FeatureStore.open(Path(features_root) / split).manifest["dtype"]


class StudentFeatures(torch.nn.Module):
    """Video mode's first stage: pixels -> the student's token features, exactly as featurize
    computes them and cached mode reads them: `VideoBackbone.features` with the same token rule,
    under the same autocast (`autocast_dtype_for(dtype, device)`), rounded to the store's `dtype`
    and read back as float32. Frozen, no gradients. Cached mode has no such stage: its batches
    already hold the features."""

    def __init__(self, backbone, tokens: str = "temporal", dtype: str = "float32"):
        super().__init__()
        from ..backbones import autocast_dtype_for

        autocast_dtype_for(dtype, "cpu")  # an unknown dtype name is an error here, not at the first batch
        self.backbone = backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.tokens = tokens
        self.dtype = dtype
        self.name = backbone.name

    def train(self, mode: bool = True) -> StudentFeatures:
        return super().train(False)  # the backbone always runs in inference mode

    @torch.no_grad()
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {k: v for k, v in batch.items() if k != "pixels"}
        from ..backbones import autocast_dtype_for

        pixels = batch["pixels"]
        autocast = autocast_dtype_for(self.dtype, pixels.device)
        feats = self.backbone.features(pixels, self.tokens, autocast_dtype=autocast)
        # the store holds the features in its dtype; cached mode reads them back as float32
        out[self.name] = feats.to(getattr(torch, self.dtype)).float()
        return out
