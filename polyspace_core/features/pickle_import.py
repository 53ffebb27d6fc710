"""Convert the original PolySpace feature caches into a feature store.

The original `polyspace/data/featurize.py` wrote, under `--out`, one of these layouts. The seeds
document the record keys and file names (seed 000: "Supports both `.pkl` and `.index.json`
formats", records `{"path": str, "label": int, "student": np.ndarray (T, D), "<teacher>":
np.ndarray (T, D), ...}`; seed 001: shards `features_xxx_shard_00000.pkl` holding a list of
them; seed 003: `features_hmdb51_train.json`). The index fields and the `npy_dir` files are not
in the seeds; they are read as the original's featurize.py writes them:

    features_<ds>_<split>.json        the first version: a JSON list of records, arrays as nested lists
    features_<ds>_<split>.pkl         no --shard_size: one pickle, a list of records
    features_<ds>_<split>.index.json  --shard_size N: the entry point, a dict
        {"dataset", "root", "split", "student": name, "teachers": [names], "dtype": "float16"|"float32",
         "num_frames", "frames_student", "frames_teachers", ..., "storage": "npy_dir"|"pkl",
         "num_samples": n, "shards": [{"file": "features_<ds>_<split>_shard_00000", "start": 0,
                                        "count": N}, ...]}
      storage "pkl":     <file>.pkl, a list of records, as above
      storage "npy_dir" (the original's default): <file>/, a folder of .npy arrays
          student_concat.npy (sum T_i, D), student_offs.npy (n + 1,) int64 row offsets,
          labels.npy (n,) int64, paths.npy (n,) unicode,
          <teacher>_concat.npy / <teacher>_offs.npy per teacher ("/" in its name written as "_")

Indexes written before `storage` existed name their shards with the suffix (`"file":
"..._shard_00000.pkl"`) and have no `storage` key; both forms are read (a name without ".pkl" and
no `storage` is read literally as `<file>.pkl`, the only storage those versions had). A folder
holding exactly one `*.index.json` stands for that index, as the original's loader allowed.

Unpickling can run arbitrary code from the file, so the pickle layouts are read only when the
caller passes `allow_pickle=True` (`--allow-pickle`), and even then through an unpickler that
builds nothing but containers, numpy arrays and torch tensors (a torch storage inside is read with
`torch.load(weights_only=True)`). The JSON and npy_dir layouts hold no pickle (`.npy` files are
read with `np.load(allow_pickle=False)`) and need no permission. Shards are read one at a time
(npy_dir memory-mapped), so a cache larger than memory converts; the result is a safetensors store
that never needs pickle again. A damaged or unknown layout is one line naming the file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PolySpaceError
from .store import FeatureStore, FeatureStoreWriter, dtype_name

RESERVED = {"path", "label", "labels", "video_id", "index", "class_name"}
STORAGES = ("pkl", "npy_dir")


def _load_storage(data: bytes) -> Any:
    # torch pickles a tensor's storage as torch.save bytes and reads them with weights_only=False
    return torch.load(io.BytesIO(data), weights_only=True)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only callables a feature cache needs: numpy array/scalar rebuilding (under numpy 1's
    and numpy 2's module names) and torch tensor rebuilding."""
    rebuild_array = np.zeros(1).__reduce__()[0]    # numpy's _reconstruct, wherever numpy keeps it
    rebuild_scalar = np.float32(0).__reduce__()[0]  # numpy's scalar
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("collections", "OrderedDict"): OrderedDict,
                                           ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
                                           ("torch.storage", "_load_from_bytes"): _load_storage}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = rebuild_array
        allowed[(module, "scalar")] = rebuild_scalar
    # numpy >= 1.25 pickles dtypes as numpy.dtypes.<Kind>DType classes
    for name in ("Float16DType", "Float32DType", "Float64DType", "Int64DType", "StrDType"):
        if hasattr(np, "dtypes") and hasattr(np.dtypes, name):
            allowed[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return allowed


class _FeatureUnpickler(pickle.Unpickler):
    """pickle.Unpickler that refuses every global outside _allowed_globals()."""

    def __init__(self, file: Any, path: Path):
        super().__init__(file)
        self.path = path
        self.allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise PolySpaceError(f"{self.path}: refusing to build {module}.{name}; a feature cache holds only "
                                 "lists, dicts, numbers, strings, numpy arrays and torch tensors")
        return self.allowed[(module, name)]


# --------------------------------------------------------------------------------------------
# reading the layouts


def _read_records_pickle(path: Path) -> list[dict[str, Any]]:
    """A pickle file holding a list of record dicts (allow_pickle is checked by the caller)."""
    if not path.is_file():
        raise PolySpaceError(f"{path}: pickle file not found")
    try:
        with open(path, "rb") as fh:
            part = _FeatureUnpickler(fh, path).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError, IndexError) as e:
        raise PolySpaceError(f"{path}: cannot unpickle ({type(e).__name__}: {e}); the cache is damaged") from None
    return _check_record_list(part, path)


def _read_records_json(path: Path, data: Any) -> list[dict[str, Any]]:
    """The first featurize.py's JSON: a list of records with features as nested lists."""
    return _check_record_list(data, path)


def _check_record_list(part: Any, path: Path) -> list[dict[str, Any]]:
    if not isinstance(part, list) or not all(isinstance(r, dict) for r in part):
        raise PolySpaceError(f"{path}: expected a list of feature records (dicts with path, label, student, ...), "
                             f"got {type(part).__name__}; not a cache of the original featurize")
    return part


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolySpaceError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise PolySpaceError(f"{path}: not valid JSON ({type(e).__name__}{where}); the cache is damaged") from None


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """One .npy of an npy_dir shard, never unpickled (object arrays are refused)."""
    if not path.is_file():
        raise PolySpaceError(f"{path}: not found; the npy_dir shard is incomplete")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise PolySpaceError(f"{path}: not a readable .npy array ({str(e).splitlines()[0][:120]}); "
                             f"the npy_dir shard is damaged") from None


@dataclass
class _Shard:
    """One unit of an original cache: `count` samples from global index `start`. `load()` gives
    (paths, labels, {model: row getter i -> (T, D) or (D,) array}); `where` names its file."""

    start: int
    count: int
    where: Path
    load: Callable[[], tuple[list[str], list[int], dict[str, Callable[[int], Any]]]]


def _records_unit(records: list[dict[str, Any]], where: Path,
                  ) -> tuple[list[str], list[int], dict[str, Callable[[int], Any]]]:
    """paths, labels and per-model getters of a list of records (models: the non-reserved keys
    of the first record; every record must have the same)."""
    if not records:
        return [], [], {}
    models = [k for k in records[0] if k not in RESERVED]
    for i, r in enumerate(records):
        missing = [k for k in ("path", "label", *models) if k not in r]
        extra = [k for k in r if k not in RESERVED and k not in models]
        if missing or extra:
            what = f"has no {missing[0]!r}" if missing else f"has a model {extra[0]!r} record 0 has not"
            raise PolySpaceError(f"{where}: record {i} {what}; every record needs path, label and the same "
                                 f"models ({', '.join(models)})")
    getters = {m: (lambda i, m=m: records[i][m]) for m in models}
    try:
        labels = [int(r["label"]) for r in records]
    except (TypeError, ValueError):
        raise PolySpaceError(f"{where}: a record's label is not an integer class id") from None
    return [str(r["path"]) for r in records], labels, getters


def _npy_dir_unit(folder: Path, models: Sequence[str]) -> tuple[list[str], list[int], dict[str, Callable[[int], Any]]]:
    """paths, labels and per-model getters of one npy_dir shard folder (concat arrays mapped)."""
    if not folder.is_dir():
        raise PolySpaceError(f"{folder}: npy_dir shard folder not found; the cache is incomplete")
    labels = _load_npy(folder / "labels.npy")
    paths = _load_npy(folder / "paths.npy")
    n = len(labels)
    if labels.ndim != 1 or paths.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise PolySpaceError(f"{folder}: labels.npy {labels.shape} {labels.dtype} and paths.npy {paths.shape} must "
                             f"be ({n},) integers and ({n},) strings; the npy_dir shard is damaged")
    getters = {}
    for model in models:
        key = model.replace("/", "_")  # as the original names the files of a hub id
        concat = _load_npy(folder / f"{key}_concat.npy", mmap=True)
        offs = _load_npy(folder / f"{key}_offs.npy")
        if (concat.ndim != 2 or offs.shape != (n + 1,) or offs[0] != 0 or offs[-1] != concat.shape[0]
                or (np.diff(offs) < 0).any()):
            raise PolySpaceError(f"{folder / (key + '_offs.npy')}: offsets {offs.shape} do not index "
                                 f"{key}_concat.npy {concat.shape} for {n} samples; the npy_dir shard is damaged")
        getters[model] = (lambda i, c=concat, o=offs: c[int(o[i]):int(o[i + 1])])
    return [str(p) for p in paths], [int(x) for x in labels], getters


@dataclass
class OriginalCache:
    """An original feature cache: its layout, models (student first), the shards it is read
    from and what its index says (dataset, split, dtype, frames; {} without an index)."""

    entry: Path
    layout: str
    models: list[str]
    shards: list[_Shard]
    needs_pickle: bool
    index: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(s.count for s in self.shards)

    def samples(self) -> Iterator[tuple[str, int, dict[str, Any]]]:
        """(path, label, {model: features}) of every sample in order, one shard in memory at a time."""
        for shard in self.shards:
            paths, labels, getters = shard.load()
            if len(paths) != shard.count:
                raise PolySpaceError(f"{shard.where}: holds {len(paths)} samples, the index says {shard.count}; "
                                     f"the cache is damaged")
            missing = [m for m in self.models if m not in getters]
            if missing or len(getters) != len(self.models):
                found = ", ".join(getters) or "none"
                raise PolySpaceError(f"{shard.where}: holds the models {found}, the cache's are "
                                     f"{', '.join(self.models)}; every shard needs the same models")
            for i in range(shard.count):
                yield paths[i], labels[i], {m: getters[m](i) for m in self.models}


def _student_first(models: list[str]) -> list[str]:
    if "student" in models:  # the student first, as in a store made by featurize
        models = ["student", *[m for m in models if m != "student"]]
    return models


def _from_records(entry: Path, layout: str, records: list[dict[str, Any]], needs_pickle: bool) -> OriginalCache:
    _, _, getters = _records_unit(records, entry)
    shard = _Shard(0, len(records), entry, lambda: _records_unit(records, entry))
    return OriginalCache(entry, layout, _student_first(list(getters)), [shard], needs_pickle)


def _from_index(path: Path, index: Any) -> OriginalCache:
    """The shards an .index.json lists, checked to tile [0, num_samples) in order."""
    if not isinstance(index, dict) or not isinstance(index.get("shards"), list) or not index["shards"]:
        raise PolySpaceError(f"{path}: an index must be a dict with a non-empty 'shards' list of "
                             f"{{file, start, count}} records; not an index of the original featurize")
    storage = index.get("storage", "pkl")  # indexes older than the storage option wrote pkl shards
    if storage not in STORAGES:
        raise PolySpaceError(f"{path}: storage {storage!r} is not one the original wrote ({', '.join(STORAGES)})")
    teachers = index.get("teachers")
    if isinstance(teachers, list):  # the original skipped an empty teacher name
        teachers = [str(t) for t in teachers if t is not None and str(t).strip()]
    elif storage == "npy_dir":
        raise PolySpaceError(f"{path}: an npy_dir index must list its 'teachers' (its shard files are named "
                             f"after them)")
    shards, expected_start = [], 0
    records = sorted(index["shards"], key=lambda r: r.get("start", -1) if isinstance(r, dict) else -1)
    for rec in records:
        if (not isinstance(rec, dict) or not isinstance(rec.get("file"), str) or not rec["file"]
                or not isinstance(rec.get("start"), int) or not isinstance(rec.get("count"), int)):
            raise PolySpaceError(f"{path}: shard record {rec!r} is not {{'file': name, 'start': int, 'count': int}}")
        if rec["start"] != expected_start or rec["count"] < 1:
            raise PolySpaceError(f"{path}: shard {rec['file']!r} starts at {rec['start']} with {rec['count']} "
                                 f"samples; the shards must cover the samples in order from {expected_start}")
        expected_start += rec["count"]
        name = rec["file"]
        if storage == "npy_dir":
            folder = path.parent / name
            shards.append(_Shard(rec["start"], rec["count"], folder,
                                 lambda f=folder: _npy_dir_unit(f, ["student", *teachers])))
        else:
            # the index names a shard without its suffix ("..._shard_00000" -> "..._shard_00000.pkl");
            # older indexes with it
            file = path.parent / (name if name.endswith(".pkl") else f"{name}.pkl")
            shards.append(_Shard(rec["start"], rec["count"], file,
                                 lambda f=file: _records_unit(_read_records_pickle(f), f)))
    if index.get("num_samples") not in (None, expected_start):
        raise PolySpaceError(f"{path}: num_samples is {index['num_samples']} but the shards hold {expected_start}; "
                             f"the index is damaged")
    # records and npy_dir files hold the student under "student" and each teacher under its name
    models = ["student", *teachers] if isinstance(teachers, list) else _student_first(list(shards[0].load()[2]))
    return OriginalCache(path, f"index+{storage}", models, shards, needs_pickle=storage == "pkl", index=index)


def open_original_cache(cache: str | os.PathLike, *, allow_pickle: bool = False) -> OriginalCache:
    """Recognise an original cache (.json, .pkl, .index.json, or a folder holding one .index.json)
    and check its structure. A pickle layout without allow_pickle is refused before any byte of it
    is unpickled."""
    path = Path(cache)
    if path.is_dir():
        found = sorted(path.glob("*.index.json"))
        if len(found) != 1:
            listed = ", ".join(p.name for p in found) or "none"
            raise PolySpaceError(f"{path}: a folder stands for its one *.index.json (found: {listed}); "
                                 f"pass the .index.json, .pkl or .json file of the cache")
        path = found[0]
    if not path.is_file():
        raise PolySpaceError(f"{path}: feature cache not found")

    def refuse() -> None:
        if not allow_pickle:
            raise PolySpaceError(f"{path}: refusing to unpickle (a pickle can run arbitrary code); "
                                 f"pass --allow-pickle only if you made or trust this file")

    if path.suffix == ".pkl":
        refuse()
        return _from_records(path, "pickle", _read_records_pickle(path), needs_pickle=True)
    if path.suffix == ".json":
        data = _read_json(path)
        if path.name.endswith(".index.json") or isinstance(data, dict):
            cache_ = _from_index(path, data)
            if cache_.needs_pickle:
                refuse()
            return cache_
        return _from_records(path, "json", _read_records_json(path, data), needs_pickle=False)
    raise PolySpaceError(f"{path}: not a layout of the original featurize (features_<ds>_<split>.json, .pkl or "
                         f".index.json)")


# --------------------------------------------------------------------------------------------
# writing the store


def _as_tokens(value: Any, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise PolySpaceError(f"{where}: features are not a numeric array") from None
    if arr.ndim == 1:
        arr = arr[None]  # a clip vector -> one token
    if arr.ndim != 2:
        raise PolySpaceError(f"{where}: features must be (T, D) or (D,), got shape {arr.shape}")
    return arr


def _dtype_of(value: Any) -> str | None:
    dtype = getattr(value, "dtype", None)
    return None if dtype is None else str(dtype).replace("torch.", "")


def import_pickle(cache: str | os.PathLike, out_split_dir: str | os.PathLike, *, allow_pickle: bool = False,
                  dtype: str | None = None, shard_size: int = 1000, class_names: Sequence[str] | None = None,
                  overwrite: bool = False) -> FeatureStore:
    """Read an original feature cache (any layout of the module docstring) and write it as a
    feature store in `out_split_dir`.

    allow_pickle must be True for the pickle layouts (pickle runs code from the file; only import
    caches you made or trust). dtype: storage dtype (default: the index's dtype, else the arrays').
    class_names: the dataset's class list (the original caches hold label ids only; without it
    the names are the ids). Returns the opened store.
    """
    original = open_original_cache(cache, allow_pickle=allow_pickle)
    entry = original.entry
    if original.num_samples == 0:
        raise PolySpaceError(f"{entry}: the cache holds no records")

    # pass 1: paths, labels and each model's (T, D) and dtype, from the first sample of each shard
    # layout (for the index layouts this reads every shard once; pass 2 reads them again, one
    # at a time, so memory holds one original shard and one store shard, not the whole cache)
    paths: list[str] = []
    labels: list[int] = []
    shapes: dict[str, tuple[int, ...]] = {}
    found_dtype: str | None = None
    for i, (path, label, feats) in enumerate(original.samples()):
        paths.append(path)
        labels.append(label)
        for m, value in feats.items():
            if m not in shapes:
                shapes[m] = _as_tokens(value, f"{entry} record {i} model {m!r}").shape
                found_dtype = found_dtype or _dtype_of(value)
    if class_names is None:
        n_classes = max(labels) + 1 if max(labels) >= 0 else 0
        class_names = [str(i) for i in range(n_classes)]
        note = "class names were not in the original cache; they are the label ids"
    else:
        note = "class names from the caller"
    if max(labels) >= len(class_names) or min(labels) < -1:
        raise PolySpaceError(f"{entry}: labels run from {min(labels)} to {max(labels)} but there are "
                             f"{len(class_names)} class names; pass the dataset's class list")
    index = original.index
    store_dtype = dtype_name(dtype or index.get("dtype") or ("float16" if "16" in (found_dtype or "") else "float32"))

    frames = index.get("frames_teachers") or {}
    models = []
    for m in original.models:
        entry_info: dict[str, Any] = {"name": m, "role": "student" if m == "student" else "teacher",
                                      "source": f"pickle:{entry.name}", "arch": None, "clip": None,
                                      "tokens": "imported", "T": int(shapes[m][0]), "dim": int(shapes[m][1]),
                                      "weights": "unknown (imported)"}
        # what the original's index says of the backbone behind it (its names are the original's
        # registry, not ours: recorded, never resolved)
        backbone = index.get("student") if m == "student" else (m if m in (index.get("teachers") or []) else None)
        n_frames = (index.get("frames_student") if m == "student" else frames.get(m)) or index.get("num_frames")
        if backbone:
            entry_info["original"] = {"backbone": backbone, "frames": n_frames}
        models.append(entry_info)
    split = Path(out_split_dir).name
    writer = FeatureStoreWriter(out_split_dir, models=models, dtype=store_dtype, tokens="imported",
                                shard_size=shard_size, paths=paths, labels=labels, class_names=list(class_names),
                                dataset={"name": index.get("dataset", "imported"), "split": split,
                                         "root": str(index.get("root", entry.parent)), "notes": [note]})
    if overwrite:
        writer.clear()
    writer.check_compatible()

    # pass 2: stream the samples into the store's shards, each checked against the shapes
    pending = set(writer.pending())
    chunk: dict[str, list[np.ndarray]] = {m: [] for m in original.models}
    k = 0
    for i, (_, _, feats) in enumerate(original.samples()):
        start, end = writer.ranges[k]
        if k in pending:
            for m, value in feats.items():
                arr = _as_tokens(value, f"{entry} record {i} model {m!r}")
                if arr.shape != shapes[m]:
                    raise PolySpaceError(f"{entry}: record {i} model {m!r} has shape {arr.shape}, record 0 has "
                                         f"{shapes[m]}; a store needs one (T, D) per model")
                chunk[m].append(arr)
        if i + 1 == end:
            if k in pending:
                tensors = {m: torch.from_numpy(np.stack(rows)) for m, rows in chunk.items()}
                writer.write_shard(k, tensors, ["ok"] * (end - start), videos_decoded=0, frames_decoded=0)
            chunk = {m: [] for m in original.models}
            k += 1
    return writer.finalize({"imported_from": str(entry), "layout": original.layout}, extra={"imported": True})
