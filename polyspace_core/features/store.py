"""The feature store: per split, `manifest.json` + safetensors shards of token features.

Layout of one split (`<out>/<split>/`):

    manifest.json                 what is in the store (written last, atomically)
    shard_00000.safetensors       samples [0, shard_size), then the next range, ...
    progress/shard_00000.json     per-shard receipt (sha256, range, run fingerprint); lets an
                                  interrupted run resume without recomputing a finished shard

A shard is written a batch at a time (`FeatureStoreWriter.open_shard` -> `ShardWriter`): its
header and size are fixed by the plan, rows go to their offsets in a temp file, and the file is
renamed into place when complete, so a writer holds a few batches, never a shard.
The manifest records each shard's size and checksums (sha256, xxh3_64). A reader checks a shard
against them the first time it maps it in a process (size + xxh3_64, a few percent of the cost
of reading it: benchmarks/store_read.py), so a damaged shard stops the command with one line
instead of feeding training; `verify()` is the full sha256 check.

Each shard holds, for every model, a tensor `(n, T_m, D_m)` named after the model, plus
`index` `(n,)` int64 global sample ids. Rows of samples whose video failed to decode are NaN
(never zeros that look like features); `FeatureStore.ok` masks them. The dtype (float32,
float16 or bfloat16) is recorded in the manifest and read back from it.

Readers memory-map the shards (np.memmap + torch.frombuffer): opening a store reads only the
manifest and the shard headers, and a sample's features are read from disk when touched.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import mmap
import os
import re
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from xxhash import xxh3_64

from ..errors import PolySpaceError
from ..io import CHECKSUM, atomic_write_json, check_size, read_json, verify_file

FORMAT = "polyspace-features/1"
MANIFEST = "manifest.json"
PROGRESS_DIR = "progress"
INDEX_KEY = "index"
TOKEN_RULES = ("temporal", "full", "clip")
# "imported": features converted from an original pickle cache, token rule unknown
STORE_TOKEN_RULES = (*TOKEN_RULES, "imported")

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
# safetensors header dtype codes we read back
_ST_DTYPES: dict[str, torch.dtype] = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
}


# the entry file the original featurize wrote for a split under --out (seed 003 passes
# `--features ./features/features_hmdb51_train.json`); ours writes <out>/<split>/ instead
ORIGINAL_ENTRY = re.compile(r"^features_(?P<dataset>.+)_(?P<split>train|validation|test)(?:\.index)?\.(?:json|pkl)$")


def original_entry(path: str | os.PathLike) -> tuple[str, str] | None:
    """(dataset, split) when `path` is named like the original's entry file of a split
    (features_<dataset>_<split>.json / .index.json / .pkl), else None."""
    match = ORIGINAL_ENTRY.match(Path(path).name)
    return (match["dataset"], match["split"]) if match else None


def dtype_name(dtype: str | torch.dtype) -> str:
    """'fp16'/'float16'/torch.float16 -> 'float16' (one of DTYPES); anything else is an error."""
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    if isinstance(dtype, torch.dtype):
        for name, dt in DTYPES.items():
            if dt == dtype:
                return name
        raise PolySpaceError(f"dtype {dtype}: features are stored as float32, float16 or bfloat16")
    name = aliases.get(str(dtype), str(dtype))
    if name not in DTYPES:
        raise PolySpaceError(f"dtype {dtype!r}: features are stored as float32, float16 or bfloat16")
    return name


def shard_name(shard_id: int) -> str:
    return f"shard_{shard_id:05d}.safetensors"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# reading safetensors without copying


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, Any], int]:
    """The JSON header of a .safetensors file and the byte offset where tensor data starts."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > 100_000_000:
                raise ValueError("header length is implausible")
            header = json.loads(f.read(n))
        size = path.stat().st_size
    except FileNotFoundError:
        raise PolySpaceError(f"{path}: shard file not found; rerun featurize to rebuild it") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise PolySpaceError(f"{path}: not a readable safetensors file ({e}); rerun featurize to rebuild it") from None
    data_start = 8 + n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if data_start + entry["data_offsets"][1] > size:
            raise PolySpaceError(f"{path}: truncated (tensor {name!r} runs past the end of the file); "
                                 f"rerun featurize to rebuild it")
    return header, data_start


def mmap_safetensors(path: str | os.PathLike, expect: Mapping[str, Any] | None = None,
                     fix: str = "rerun featurize to rebuild it") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Memory-map every tensor of a .safetensors file: name -> tensor (read-only view of the
    file; copy-on-write, so an accidental in-place op never touches the disk), plus metadata.
    `expect`: the file's record ({bytes, xxh3_64 or sha256}), checked (size, then the checksum of
    the mapped bytes) before any tensor is made."""
    if expect is not None:
        check_size(path, expect, fix)
    header, data_start = read_safetensors_header(path)
    mm = np.memmap(path, dtype=np.uint8, mode="c")
    if expect is not None:
        # ask the kernel to read the whole file ahead, in parallel with the hash that follows
        # (page faults alone read a cold file in small pieces, one after another)
        mm._mmap.madvise(mmap.MADV_SEQUENTIAL)
        mm._mmap.madvise(mmap.MADV_WILLNEED)
        verify_file(path, expect, fix, data=mm)
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _ST_DTYPES:
            raise PolySpaceError(f"{path}: tensor {name!r} has dtype {entry['dtype']}, not a feature dtype")
        dtype = _ST_DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        count = int(np.prod(shape)) if shape else 1
        if count == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(mm, dtype=dtype, count=count, offset=data_start + begin)
        tensors[name] = flat.view(shape)
    return tensors, dict(header.get("__metadata__") or {})


# --------------------------------------------------------------------------------------------
# reader


@dataclass(frozen=True)
class ShardEntry:
    """One shard of a split: its file, the global sample range [start, end), size and checksums
    (xxh3_64 is absent from stores written before it was recorded; sha256 is checked then)."""
    file: str
    start: int
    end: int
    sha256: str
    bytes: int
    xxh3_64: str | None = None

    def record(self) -> dict[str, Any]:
        """What a reader checks the file against (the fast checksum where there is one)."""
        return {"bytes": self.bytes, **({CHECKSUM: self.xxh3_64} if self.xxh3_64 else {"sha256": self.sha256})}


class FeatureStore:
    """Read side of one split of a feature store.

    `FeatureStore.open(split_dir)` reads the manifest and memory-maps the shards.
    Attributes: `models` (names, in manifest order), `student`, `teachers`, `labels` (np.int64
    (N,)), `class_names`, `paths`, `ok` (bool (N,)), `status` (per sample 'ok' or
    'failed: <reason>'), `dtype` (torch dtype from the manifest), `manifest` (the raw dict).
    `array(name)` -> torch.Tensor (N, T, D) in the stored dtype; failed samples' rows are NaN.
    """

    def __init__(self, split_dir: Path, manifest: dict[str, Any]):
        self.split_dir = split_dir
        self.manifest = manifest
        self._models = {m["name"]: m for m in manifest["models"]}
        self.models: list[str] = [m["name"] for m in manifest["models"]]
        self.student: str | None = next((m["name"] for m in manifest["models"] if m.get("role") == "student"), None)
        self.teachers: list[str] = [m["name"] for m in manifest["models"] if m.get("role") == "teacher"]
        self.dtype: torch.dtype = DTYPES[manifest["dtype"]]
        self.tokens: str = manifest["tokens"]
        self.labels: np.ndarray = np.asarray(manifest["labels"], dtype=np.int64)
        self.class_names: list[str] = list(manifest["class_names"])
        self.paths: list[str] = list(manifest["paths"])
        self.status: list[str] = list(manifest["status"])
        self.ok: np.ndarray = np.array([s == "ok" for s in self.status], dtype=bool)
        self.shards: list[ShardEntry] = [ShardEntry(**s) for s in manifest["shards"]]
        self._starts = [s.start for s in self.shards]
        self._mapped: dict[int, dict[str, torch.Tensor]] = {}
        self._finite: set[str] = set()  # models whose ok samples were checked finite
        self._check_on_read = True
        self._checker: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future] = {}

    # ---- opening

    @classmethod
    def open(cls, split_dir: str | os.PathLike, verify: bool = False, check_on_read: bool = True) -> FeatureStore:
        """Open `<out>/<split>`; `verify=True` also checks every shard's sha256 now (reads all data).
        Every shard is checked against the manifest when first read in any case;
        `check_on_read=False` turns that off (only for benchmarks/store_read.py's baseline)."""
        split_dir = Path(split_dir)
        manifest_path = split_dir / MANIFEST
        if not manifest_path.is_file():
            if (split_dir / PROGRESS_DIR).is_dir():
                raise PolySpaceError(f"{split_dir}: feature extraction did not finish (no {MANIFEST}); "
                                     f"rerun the same featurize command to resume it")
            raise PolySpaceError(f"{manifest_path}: no feature store here; run `polyspace featurize "
                                 f"--out {split_dir.parent} --split {split_dir.name} ...` first")
        manifest = read_json(manifest_path)
        if manifest.get("format") != FORMAT:
            raise PolySpaceError(f"{manifest_path}: format {manifest.get('format')!r} is not {FORMAT!r}; "
                                 f"re-extract the features with this version of polyspace")
        for key in ("models", "dtype", "tokens", "labels", "class_names", "paths", "status", "shards"):
            if key not in manifest:
                raise PolySpaceError(f"{manifest_path}: manifest has no {key!r}; the store is damaged, re-extract it")
        n = len(manifest["labels"])
        if not (len(manifest["paths"]) == len(manifest["status"]) == n):
            raise PolySpaceError(f"{manifest_path}: labels, paths and status differ in length; re-extract the store")
        if manifest["dtype"] not in DTYPES:
            raise PolySpaceError(f"{manifest_path}: unknown dtype {manifest['dtype']!r}")
        expected = 0
        for s in manifest["shards"]:
            if s["start"] != expected:
                raise PolySpaceError(f"{manifest_path}: shard {s['file']} starts at sample {s['start']}, "
                                     f"expected {expected}; re-extract the store")
            expected = s["end"]
        if expected != n:
            raise PolySpaceError(f"{manifest_path}: shards cover {expected} samples but the manifest lists {n}")
        store = cls(split_dir, manifest)
        store._check_on_read = check_on_read
        if verify:
            store.verify()
        return store

    def verify(self) -> None:
        """Check every shard's sha256 against the manifest; a mismatch is a PolySpaceError."""
        for s in self.shards:
            path = self.split_dir / s.file
            if not path.is_file():
                raise PolySpaceError(f"{path}: shard missing; rerun featurize to rebuild it")
            if sha256_file(path) != s.sha256:
                raise PolySpaceError(f"{path}: checksum does not match the manifest; the shard is damaged, "
                                     f"delete it and rerun featurize to rebuild it")

    # ---- metadata

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        dims = ", ".join(f"{m}{tuple(self.shape(m))}" for m in self.models)
        return (f"FeatureStore({self.split_dir}, n={len(self)}, ok={int(self.ok.sum())}, "
                f"dtype={self.manifest['dtype']}, tokens={self.tokens}, models=[{dims}])")

    def model_info(self, name: str) -> dict[str, Any]:
        """The manifest entry of a model: name, role, source, arch, clip spec, tokens, T, dim."""
        if name not in self._models:
            raise PolySpaceError(f"model {name!r} is not in the feature store {self.split_dir} "
                                 f"(it has {', '.join(self.models)}); featurize it first or pick one of those")
        return self._models[name]

    def shape(self, name: str) -> tuple[int, int]:
        """(T, D) of one sample's features for a model."""
        info = self.model_info(name)
        return int(info["T"]), int(info["dim"])

    def grid(self, name: str) -> tuple[int, int, int]:
        """(T, H, W) token grid of a model's features (T * H * W = the stored T): the manifest's
        "grid"; a store written before grids were recorded has a 1-d layout over time, (T, 1, 1),
        except for full tokens, whose patch grid only featurize knew (an error: re-extract)."""
        info = self.model_info(name)
        t, grid = int(info["T"]), info.get("grid")
        if grid is None:
            if info.get("tokens", self.tokens) == "full":
                raise PolySpaceError(f"{self.split_dir / MANIFEST}: the manifest records no token grid for the full "
                                     f"tokens of {name!r} (written by an older featurize); re-extract the store")
            return (t, 1, 1)
        if (not isinstance(grid, list) or len(grid) != 3 or not all(isinstance(g, int) and g >= 1 for g in grid)
                or grid[0] * grid[1] * grid[2] != t):
            raise PolySpaceError(f"{self.split_dir / MANIFEST}: model {name!r} has token grid {grid!r}, not three "
                                 f"positive integers whose product is its T={t}; the manifest is damaged, re-extract")
        return (grid[0], grid[1], grid[2])

    @property
    def failures(self) -> list[tuple[int, str, str]]:
        """(index, path, reason) of every sample whose extraction failed."""
        return [(i, self.paths[i], s[len("failed: "):]) for i, s in enumerate(self.status) if s != "ok"]

    def disk_bytes(self) -> int:
        """Total bytes of the shards on disk."""
        return sum(s.bytes for s in self.shards)

    # ---- tensors

    def _checked_map(self, k: int) -> Future:
        """Map and check shard k on the store's checker thread (started once). A shard is checked
        before it is used, and the next one is checked while it is: a cold read then overlaps the
        disk with the caller's work instead of reading every shard before the first is used."""
        if k not in self._pending:
            if self._checker is None:
                self._checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-check")
            entry = self.shards[k]
            self._pending[k] = self._checker.submit(mmap_safetensors, self.split_dir / entry.file, entry.record(),
                                                    "the shard is damaged: delete it and rerun the same featurize "
                                                    "command to rebuild it")
        return self._pending[k]

    def __getstate__(self) -> dict[str, Any]:
        # for DataLoader workers started by spawn: the maps and the checker thread stay behind
        return {**self.__dict__, "_mapped": {}, "_pending": {}, "_checker": None}

    def _shard(self, k: int) -> dict[str, torch.Tensor]:
        if k not in self._mapped:
            entry = self.shards[k]
            path = self.split_dir / entry.file
            if self._check_on_read:
                current = self._checked_map(k)
                if k + 1 < len(self.shards):
                    self._checked_map(k + 1)
                tensors, _ = current.result()  # the check's PolySpaceError, if any, is raised here
                del self._pending[k]
            else:
                tensors, _ = mmap_safetensors(path)
            n = entry.end - entry.start
            index = tensors.get(INDEX_KEY)
            if index is None or index.shape != (n,) or int(index[0]) != entry.start or int(index[-1]) != entry.end - 1:
                raise PolySpaceError(f"{path}: its sample index does not match the manifest range "
                                     f"[{entry.start}, {entry.end}); re-extract the store")
            for m in self.models:
                want = (n, *self.shape(m))
                if m not in tensors or tuple(tensors[m].shape) != want or tensors[m].dtype != self.dtype:
                    got = (tuple(tensors[m].shape), tensors[m].dtype) if m in tensors else "missing"
                    raise PolySpaceError(f"{path}: tensor {m!r} is {got}, manifest says {want} {self.dtype}; "
                                         f"re-extract the store")
            self._mapped[k] = tensors
        return self._mapped[k]

    def rows(self, name: str, indices: np.ndarray | torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Features (len(indices), T, D) of model `name` for sample ids `indices` (any order,
        repeats allowed), in the stored dtype: gathered from the memory-mapped shards, one gather
        per shard touched, so only these rows are read and held (never a split)."""
        self.model_info(name)
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64)).reshape(-1)
        out = torch.empty((len(idx), *self.shape(name)), dtype=self.dtype)
        if len(idx) == 0:
            return out
        if int(idx.min()) < 0 or int(idx.max()) >= len(self):
            raise IndexError(f"sample ids out of range for a store of {len(self)}")
        shard_of = torch.as_tensor(np.searchsorted(self._starts, idx.numpy(), side="right") - 1)
        for k in torch.unique(shard_of).tolist():  # ascending: shards are read in order
            where = torch.nonzero(shard_of == k).flatten()
            local = idx[where] - self.shards[k].start
            out[where] = self._shard(k)[name][local]
        return out

    def view(self, name: str, indices: np.ndarray | Sequence[int] | None = None,
             as_dtype: torch.dtype | None = None) -> FeatureView:
        """A lazy (n, T, D) array of model `name` over sample ids `indices` (default all, e.g.
        `store.indices()` for the ok ones): indexing it gathers those rows from the shards
        (`rows`), cast to `as_dtype` (None keeps the stored dtype). Training and evaluation read
        a split through views, a batch at a time, instead of `array`."""
        return FeatureView(self, name, indices, as_dtype)

    def batches(self, name: str, batch: int = 64, ok_only: bool = True,
                as_dtype: torch.dtype | None = torch.float32) -> Iterator[torch.Tensor]:
        """Model `name`'s features a batch of samples at a time, in order ((b, T, D), cast to
        `as_dtype`): what a statistic over a whole split reads instead of `array`."""
        view = self.view(name, self.indices(ok_only=ok_only), as_dtype)
        for start in range(0, len(view), batch):
            yield view[start:start + batch]

    def array(self, name: str) -> torch.Tensor:
        """All samples' features of one model, (N, T, D), in the stored dtype. With one shard this
        is a zero-copy memory map; with several, the shards are concatenated in memory: for small
        stores and tests only. What reads a split (converter and fusion training, evaluation)
        goes through `view`/`rows` a batch at a time, or `FeatureDataset` per sample."""
        self.model_info(name)
        if len(self.shards) == 1:
            return self._shard(0)[name]
        out = torch.empty((len(self), *self.shape(name)), dtype=self.dtype)
        for k, entry in enumerate(self.shards):  # shard by shard: the next one is checked meanwhile
            out[entry.start:entry.end] = self._shard(k)[name]
        return out

    def sample(self, index: int, name: str) -> torch.Tensor:
        """One sample's features (T, D) for a model, read from its shard's memory map."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for a store of {len(self)}")
        k = bisect.bisect_right(self._starts, index) - 1
        return self._shard(k)[name][index - self.shards[k].start]

    def check_finite(self, name: str) -> None:
        """Stop with one line if a sample marked ok holds NaN or inf features of model `name`
        (failed samples are NaN by design): such a store was damaged after extraction, or its
        features overflowed the stored dtype. Shard by shard (bounded memory), once per model."""
        if name in self._finite:
            return
        for k, shard in enumerate(self.shards):
            ok = torch.from_numpy(self.ok[shard.start:shard.end])
            bad = ~torch.isfinite(self._shard(k)[name][ok]).flatten(1).all(dim=1)
            if bool(bad.any()):
                first = int(torch.from_numpy(np.flatnonzero(self.ok[shard.start:shard.end]))[bad][0]) + shard.start
                raise PolySpaceError(f"{self.split_dir / shard.file}: features of {name!r} hold NaN/inf for "
                                     f"{int(bad.sum())} sample(s) marked ok (first: #{first}, {self.paths[first]}); "
                                     f"the store is damaged, delete the split and featurize it again")
        self._finite.add(name)

    def indices(self, ok_only: bool = True) -> np.ndarray:
        """Sample ids (np.int64), by default only those whose extraction succeeded."""
        return np.flatnonzero(self.ok) if ok_only else np.arange(len(self))


class FeatureView:
    """A lazy (n, T, D) array over some samples of one model of a store (`FeatureStore.view`).

    `view[i]` (an int) is one sample (T, D); `view[key]` with a slice, a list, a numpy array or a
    LongTensor of positions is (len, T, D), gathered from the memory-mapped shards and cast to
    `as_dtype` (the stored dtype if None). Positions count within the view (0..n-1); `ids` are
    the store's sample ids behind them. Nothing is read until indexed."""

    ndim = 3

    def __init__(self, store: FeatureStore, name: str, indices: np.ndarray | Sequence[int] | None = None,
                 as_dtype: torch.dtype | None = None):
        store.model_info(name)
        self.store, self.name = store, name
        self.ids = np.arange(len(store), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        self.as_dtype = as_dtype
        self.dtype = store.dtype if as_dtype is None else as_dtype
        self.shape = torch.Size((len(self.ids), *store.shape(name)))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, (int, np.integer)):
            return self[[int(key)]][0]
        if isinstance(key, slice):
            positions = np.arange(len(self.ids))[key]
        else:
            positions = np.asarray(key.cpu() if isinstance(key, torch.Tensor) else key, dtype=np.int64).reshape(-1)
        x = self.store.rows(self.name, self.ids[positions])
        return x if self.as_dtype is None else x.to(self.as_dtype)

    def __repr__(self) -> str:
        return f"FeatureView({self.store.split_dir}, {self.name!r}, shape={tuple(self.shape)}, dtype={self.dtype})"


class FeatureDataset(torch.utils.data.Dataset):
    """A torch Dataset over a store: item -> {model: (T, D) tensor, "label": int64, "index": int}.

    Only successfully extracted samples are served (`indices` narrows further). Features are
    cast to `as_dtype` (float32 by default, so stored fp16/bf16 never meets fp32 weights);
    pass `as_dtype=None` to keep the stored dtype.
    """

    def __init__(self, store: FeatureStore, models: Sequence[str] | None = None,
                 indices: Iterable[int] | None = None, as_dtype: torch.dtype | None = torch.float32):
        self.store = store
        self.models = list(models) if models is not None else list(store.models)
        for m in self.models:
            store.model_info(m)  # unknown model -> clear error now, not in a worker later
        ok = set(store.indices(ok_only=True).tolist())
        if indices is None:
            self.indices = sorted(ok)
        else:
            self.indices = [int(i) for i in indices]
            bad = [i for i in self.indices if i not in ok]
            if bad:
                raise PolySpaceError(f"{store.split_dir}: samples {bad[:5]} failed extraction or do not exist; "
                                     f"select from store.indices()")
        self.as_dtype = as_dtype

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.indices[i]
        item: dict[str, Any] = {}
        for m in self.models:
            x = self.store.sample(index, m)
            item[m] = x.to(self.as_dtype) if self.as_dtype is not None else x.clone()
        item["label"] = torch.tensor(int(self.store.labels[index]), dtype=torch.int64)
        item["index"] = index
        return item


# --------------------------------------------------------------------------------------------
# writer


def run_fingerprint(spec: Mapping[str, Any]) -> str:
    """A short hash of everything that determines a store's contents (models, clip specs,
    token rule, dtype, shard size, samples). Resuming requires the same fingerprint."""
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class FeatureStoreWriter:
    """Write side of one split: atomic shards, resumable by shard.

    Construct it with the full plan (models with their T/dim, samples, dtype, shard size, and an
    `inputs_id` that changes when the input files change).
    `pending()` lists shards still to do (a shard counts as done only if its receipt exists,
    matches this run's fingerprint and the file's sha256 matches the receipt, so a damaged or
    foreign shard is recomputed, never trusted). `write_shard()` writes the shard, then its
    receipt, each atomically. `finalize()` writes the manifest once every shard is done.
    Several processes may write different shards of the same plan concurrently.
    """

    def __init__(self, split_dir: str | os.PathLike, *, models: Sequence[Mapping[str, Any]], dtype: str,
                 tokens: str, shard_size: int, paths: Sequence[str], labels: Sequence[int],
                 class_names: Sequence[str], dataset: Mapping[str, Any] | None = None, inputs_id: str = "",
                 policy: Mapping[str, Any] | None = None):
        if tokens not in STORE_TOKEN_RULES:
            raise PolySpaceError(f"tokens {tokens!r}: use one of {', '.join(TOKEN_RULES)}")
        if not isinstance(shard_size, int) or shard_size < 1:
            raise PolySpaceError(f"shard_size {shard_size!r}: must be a positive integer")
        if len(paths) != len(labels):
            raise PolySpaceError("featurize: paths and labels differ in length")
        names = [m["name"] for m in models]
        if len(set(names)) != len(names) or INDEX_KEY in names:
            raise PolySpaceError(f"models {names}: names must be unique and not {INDEX_KEY!r}; "
                                 f"name them explicitly as NAME=SOURCE")
        self.split_dir = Path(split_dir)
        self.models = [dict(m) for m in models]
        self.dtype_name = dtype_name(dtype)
        self.dtype = DTYPES[self.dtype_name]
        self.tokens = tokens
        self.shard_size = shard_size
        self.paths = [str(p) for p in paths]
        self.labels = [int(x) for x in labels]
        self.class_names = list(class_names)
        self.dataset = dict(dataset or {})
        self.inputs_id = inputs_id  # e.g. a hash of the videos' sizes and mtimes: new videos, new store
        n = len(self.paths)
        self.ranges = [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]
        # policy: settings that decide which samples are kept (e.g. featurize's min_frames); only
        # non-default ones are given, so stores written before such a setting existed still resume
        self.policy = dict(policy or {})
        self.fingerprint = run_fingerprint({
            "format": FORMAT, "models": self.models, "dtype": self.dtype_name, "tokens": tokens,
            "shard_size": shard_size, "paths": self.paths, "labels": self.labels,
            "class_names": self.class_names, "inputs_id": inputs_id, **({"policy": self.policy} if self.policy else {}),
        })

    @property
    def num_shards(self) -> int:
        return len(self.ranges)

    def _receipt_path(self, k: int) -> Path:
        return self.split_dir / PROGRESS_DIR / f"{Path(shard_name(k)).stem}.json"

    def check_compatible(self) -> None:
        """Raise if the folder holds shards or a manifest from a run with different settings."""
        manifest = self.split_dir / MANIFEST
        found = []
        if manifest.is_file():
            found.append((manifest, read_json(manifest).get("fingerprint")))
        progress = self.split_dir / PROGRESS_DIR
        if progress.is_dir():
            for p in sorted(progress.glob("shard_*.json")):
                try:
                    found.append((p, json.loads(p.read_text()).get("fingerprint")))
                except (json.JSONDecodeError, OSError):
                    continue  # an unreadable receipt only means that shard is redone
        for path, fp in found:
            if fp != self.fingerprint:
                raise PolySpaceError(f"{path}: this folder holds features made with other settings "
                                     f"(models, weights, dtype, tokens, shard size, samples or the videos differ); "
                                     f"use another --out or pass --overwrite to replace them")

    def clear(self) -> None:
        """Delete this split's manifest, shards and receipts (for --overwrite)."""
        (self.split_dir / MANIFEST).unlink(missing_ok=True)
        for p in self.split_dir.glob("shard_*.safetensors"):
            p.unlink()
        progress = self.split_dir / PROGRESS_DIR
        if progress.is_dir():
            for p in progress.glob("*"):
                p.unlink()
            progress.rmdir()

    def receipt(self, k: int) -> dict[str, Any] | None:
        """The receipt of shard k if that shard is complete and intact, else None."""
        path = self._receipt_path(k)
        if not path.is_file():
            return None
        try:
            rec = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            return None
        start, end = self.ranges[k]
        if rec.get("fingerprint") != self.fingerprint or rec.get("start") != start or rec.get("end") != end:
            return None
        shard = self.split_dir / rec.get("file", "")
        if not shard.is_file() or sha256_file(shard) != rec.get("sha256"):
            return None
        return rec

    def pending(self, shard_ids: Iterable[int] | None = None) -> list[int]:
        """Shards (of `shard_ids`, default all) that are not complete and intact."""
        ids = range(self.num_shards) if shard_ids is None else shard_ids
        return [k for k in ids if self.receipt(k) is None]

    def open_shard(self, k: int) -> ShardWriter:
        """Start writing shard k: a ShardWriter that takes the shard's rows a batch at a time
        (`write_rows`) and is made final by `finish` (shard renamed into place, then its receipt).
        A partial file left by an interrupted writer of this shard is removed first."""
        for stale in self.split_dir.glob(f".{shard_name(k)}.*.tmp"):
            stale.unlink(missing_ok=True)
        return ShardWriter(self, k)

    def write_shard(self, k: int, features: Mapping[str, torch.Tensor], status: Sequence[str],
                    videos_decoded: int, frames_decoded: int,
                    clips: Sequence[Mapping[str, Any] | None] | None = None) -> dict[str, Any]:
        """Write shard k atomically, then its receipt. `features[model]` is (n, T, D) for the
        shard's n samples (failed samples' rows NaN); `status[i]` is 'ok' or 'failed: <reason>';
        `clips[i]` how sample i's clips were made ({"frames_available": frames in its window,
        "fill": "loop" when a clip needed more frames than that, else None}; None when unknown)."""
        start, end = self.ranges[k]
        n = end - start
        if len(status) != n:
            raise ValueError(f"shard {k}: {len(status)} statuses for {n} samples")
        for m in self.models:
            x = features[m["name"]]
            want = (n, int(m["T"]), int(m["dim"]))
            if tuple(x.shape) != want:
                raise ValueError(f"shard {k}: features of {m['name']} are {tuple(x.shape)}, expected {want}")
        shard = self.open_shard(k)
        try:
            rows = torch.arange(n)
            for m in self.models:
                shard.write_rows(m["name"], rows, features[m["name"]])
            return shard.finish(status, videos_decoded, frames_decoded, clips)
        finally:
            shard.close()

    def _write_receipt(self, k: int, data_record: Mapping[str, Any], status: Sequence[str], videos_decoded: int,
                       frames_decoded: int, clips: Sequence[Mapping[str, Any] | None] | None) -> dict[str, Any]:
        start, end = self.ranges[k]
        rec = {"file": shard_name(k), "start": start, "end": end, **data_record, "fingerprint": self.fingerprint,
               "status": list(status),
               "videos_decoded": int(videos_decoded), "frames_decoded": int(frames_decoded),
               "clips": list(clips) if clips is not None else [None] * (end - start)}
        # the receipt goes last: a shard without a receipt is redone on resume
        atomic_write_json(self._receipt_path(k), rec)
        return rec

    def finalize(self, provenance: Mapping[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None) -> FeatureStore:
        """Check every shard, write the manifest and return the opened store."""
        receipts = []
        for k in range(self.num_shards):
            rec = self.receipt(k)
            if rec is None:
                raise PolySpaceError(f"{self.split_dir / shard_name(k)}: shard missing or damaged; "
                                     f"rerun the same featurize command to complete it")
            receipts.append(rec)
        status = [s for rec in receipts for s in rec["status"]]
        manifest = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "dataset": self.dataset,
            "inputs_id": self.inputs_id,
            "num_samples": len(self.paths),
            "num_ok": sum(s == "ok" for s in status),
            "dtype": self.dtype_name,
            "tokens": self.tokens,
            "shard_size": self.shard_size,
            "models": self.models,
            "decodes": {"videos_decoded": sum(r["videos_decoded"] for r in receipts),
                        "frames_decoded": sum(r["frames_decoded"] for r in receipts)},
            **dict(extra or {}),
            "shards": [{key: r[key] for key in ("file", "start", "end", "sha256", CHECKSUM, "bytes") if key in r}
                       for r in receipts],
            "class_names": self.class_names,
            "labels": self.labels,
            "paths": self.paths,
            "status": status,
            # per sample: frames in its window and how short clips were filled (receipts written
            # before this was recorded hold no such entry: None)
            "clips": [c for rec in receipts for c in rec.get("clips", [None] * (rec["end"] - rec["start"]))],
            **({"policy": self.policy} if self.policy else {}),
            "provenance": dict(provenance or {}),
        }
        atomic_write_json(self.split_dir / MANIFEST, manifest, indent=1)
        return FeatureStore.open(self.split_dir)


_ST_CODES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


class ShardWriter:
    """One shard being written a batch at a time, so featurizing holds a few batches in memory,
    never a whole shard (`--tokens full` on real models is ~28 MB per clip in fp32).

    The sizes of every tensor are known from the plan (n samples, each model's T and dim), so the
    safetensors header is written first and the file is sized to its final length; each batch's
    rows are cast to the store dtype and written at their offsets. `finish` fills rows never
    written (failed clips) with NaN, fsyncs, hashes the file by reading it back in chunks (sha256
    and xxh3_64, as the receipt and the manifest record them), renames it into place and writes
    the receipt: the same atomic finish and the same bytes for the same rows whatever the batch
    size. Until then the data lives in a temp file that a resumed run deletes and redoes.
    Layout: `index` (int64) first, then the models in plan order, all 8-byte aligned.
    """

    CHUNK = 1 << 22  # bytes read at a time when hashing

    def __init__(self, writer: FeatureStoreWriter, k: int):
        import tempfile

        self.writer, self.k = writer, k
        self.start, self.end = writer.ranges[k]
        n = self.end - self.start
        self.n = n
        itemsize = torch.empty((), dtype=writer.dtype).element_size()
        header: dict[str, Any] = {INDEX_KEY: {"dtype": "I64", "shape": [n], "data_offsets": [0, 8 * n]}}
        offset = 8 * n
        self.row_bytes: dict[str, int] = {}
        self.offsets: dict[str, int] = {}  # data offset of each model's tensor
        self.shapes: dict[str, tuple[int, int]] = {}
        for m in writer.models:
            t, d = int(m["T"]), int(m["dim"])
            size = n * t * d * itemsize
            header[m["name"]] = {"dtype": _ST_CODES[writer.dtype], "shape": [n, t, d],
                                 "data_offsets": [offset, offset + size]}
            self.offsets[m["name"]], self.shapes[m["name"]] = offset, (t, d)
            self.row_bytes[m["name"]] = t * d * itemsize
            offset += size
        # one metadata key: identical runs write identical bytes (a resumed store checksums like
        # an uninterrupted one)
        meta = json.dumps({"format": FORMAT, "fingerprint": writer.fingerprint, "start": self.start,
                           "end": self.end}, sort_keys=True)
        header = {"__metadata__": {"polyspace": meta}, **header}
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # the data then starts 8-byte aligned
        self.data_start = 8 + len(raw)
        self.size = self.data_start + offset
        self.written = {m["name"]: np.zeros(n, dtype=bool) for m in writer.models}
        self.path = writer.split_dir / shard_name(k)
        writer.split_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=writer.split_dir)
        self.tmp, self.fd = Path(tmp), fd
        os.pwrite(fd, struct.pack("<Q", len(raw)) + raw, 0)
        os.pwrite(fd, np.arange(self.start, self.end, dtype="<i8").tobytes(), self.data_start)
        os.ftruncate(fd, self.size)  # sized up front: a short write can never pass as a shard

    def write_rows(self, name: str, rows: torch.Tensor | Sequence[int], values: torch.Tensor) -> None:
        """Write model `name`'s features of shard rows `rows` (positions 0..n-1 within the shard),
        values (len(rows), T, D) of any float dtype; cast to the store dtype here, per batch."""
        if name not in self.shapes:
            raise ValueError(f"shard {self.k}: no model {name!r} in this store")
        rows = torch.as_tensor(rows, dtype=torch.int64).reshape(-1)
        want = (len(rows), *self.shapes[name])
        if tuple(values.shape) != want:
            raise ValueError(f"shard {self.k}: features of {name} are {tuple(values.shape)}, expected {want}")
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= self.n):
            raise ValueError(f"shard {self.k}: rows outside [0, {self.n})")
        rows, order = torch.sort(rows)  # ascending: consecutive rows become one write
        data = values.detach()[order].to("cpu", self.writer.dtype).contiguous()
        flat = data.view(len(rows), -1).view(torch.uint8).numpy()  # the bytes of each row
        size, base = self.row_bytes[name], self.data_start + self.offsets[name]
        r = rows.numpy()
        cuts = [0, *(np.flatnonzero(np.diff(r) != 1) + 1).tolist(), len(r)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            if b > a:
                os.pwrite(self.fd, flat[a:b], base + int(r[a]) * size)
        self.written[name][rows.numpy()] = True

    def finish(self, status: Sequence[str], videos_decoded: int, frames_decoded: int,
               clips: Sequence[Mapping[str, Any] | None] | None = None) -> dict[str, Any]:
        """NaN into rows never written, fsync, hash, rename into place, then the receipt."""
        if len(status) != self.n:
            raise ValueError(f"shard {self.k}: {len(status)} statuses for {self.n} samples")
        for name, done in self.written.items():
            missing = np.flatnonzero(~done)
            ok_missing = [int(i) for i in missing if status[i] == "ok"]
            if ok_missing:
                raise ValueError(f"shard {self.k}: no features of {name} for ok rows {ok_missing[:5]}")
            nan = torch.full((1, *self.shapes[name]), float("nan"))
            for a in range(0, len(missing), 16):  # a few rows at a time: bounded memory
                part = torch.from_numpy(missing[a:a + 16])
                self.write_rows(name, part, nan.expand(len(part), -1, -1))
        os.fsync(self.fd)
        sha, fast = hashlib.sha256(), xxh3_64()
        buf = bytearray(self.CHUNK)
        pos = 0
        while pos < self.size:
            got = os.preadv(self.fd, [memoryview(buf)[:min(self.CHUNK, self.size - pos)]], pos)
            if got <= 0:
                raise OSError(f"{self.tmp}: short read while hashing")
            view = memoryview(buf)[:got]
            sha.update(view)
            fast.update(view)
            pos += got
        os.close(self.fd)
        self.fd = -1
        os.replace(self.tmp, self.path)
        record = {"sha256": sha.hexdigest(), CHECKSUM: fast.hexdigest(), "bytes": self.size}
        return self.writer._write_receipt(self.k, record, status, videos_decoded, frames_decoded, clips)

    def close(self) -> None:
        """Drop an unfinished shard (its temp file); nothing once finished."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.tmp.unlink(missing_ok=True)
