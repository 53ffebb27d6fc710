"""Convert the original PolySpace pickle feature caches into a feature store.

The original `featurize.py` wrote either one pickle (`features_<ds>_<split>.pkl`) or pickle
shards listed by an index (`features_<ds>_<split>.index.json` -> `..._shard_00000.pkl`, ...).
Each pickle is a list of records `{"path": str, "label": int, "student": array (T, D) or (D,),
"<teacher>": array, ...}`. Unpickling can run arbitrary code from the file, so it happens only
when the caller passes `allow_pickle=True` (`--allow-pickle`), and even then through an
unpickler that builds nothing but containers, numpy arrays and torch tensors (a torch storage
inside is read with `torch.load(weights_only=True)`); the result is a safetensors store that never
needs pickle again.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import PolySpaceError
from .store import FeatureStore, FeatureStoreWriter, dtype_name

RESERVED = {"path", "label", "labels", "video_id", "index", "class_name"}


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


def _shard_files(path: Path) -> list[Path]:
    """The pickle files behind a cache path (.pkl itself, or the shards an .index.json lists)."""
    if not path.is_file():
        raise PolySpaceError(f"{path}: pickle cache not found")
    if path.suffix != ".json":
        return [path]
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PolySpaceError(f"{path}: index is not valid JSON ({e.msg} at line {e.lineno})") from None
    names = index.get("shards", index.get("files")) if isinstance(index, dict) else index
    if not isinstance(names, list) or not names:
        raise PolySpaceError(f"{path}: index must be a list of shard files or a dict with 'shards'")
    files = [Path(n) if Path(n).is_absolute() else path.parent / n for n in names]
    for f in files:
        if not f.is_file():
            raise PolySpaceError(f"{f}: shard listed in {path.name} not found")
    return files


def _class_names_from_index(path: Path) -> list[str] | None:
    if path.suffix != ".json":
        return None
    index = json.loads(path.read_text())
    names = index.get("class_names") if isinstance(index, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else None


def _as_tokens(value: Any, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy()
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]  # a clip vector -> one token
    if arr.ndim != 2:
        raise PolySpaceError(f"{where}: features must be (T, D) or (D,), got shape {arr.shape}")
    return arr


def import_pickle(cache: str | os.PathLike, out_split_dir: str | os.PathLike, *, allow_pickle: bool = False,
                  dtype: str | None = None, shard_size: int = 1000, class_names: Sequence[str] | None = None,
                  overwrite: bool = False) -> FeatureStore:
    """Read an original pickle cache (.pkl or .index.json) and write it as a feature store.

    allow_pickle must be True (pickle runs code from the file; only import caches you made or
    trust). dtype: storage dtype (default: the dtype found in the cache). class_names: the
    dataset's class list if the cache does not name its classes (labels are kept as they are).
    """
    cache = Path(cache)
    if not allow_pickle:
        raise PolySpaceError(f"{cache}: refusing to unpickle (a pickle can run arbitrary code); "
                             f"pass --allow-pickle only if you made or trust this file")
    records: list[dict[str, Any]] = []
    for f in _shard_files(cache):
        try:
            with open(f, "rb") as fh:
                part = _FeatureUnpickler(fh, f).load()  # allow_pickle checked above; globals restricted
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
            raise PolySpaceError(f"{f}: cannot unpickle ({type(e).__name__}: {e}); the cache is damaged") from None
        if not isinstance(part, list) or not all(isinstance(r, dict) for r in part):
            raise PolySpaceError(f"{f}: expected a list of dict records, got {type(part).__name__}")
        records.extend(part)
    if not records:
        raise PolySpaceError(f"{cache}: the cache holds no records")

    model_names = [k for k in records[0] if k not in RESERVED]
    if "student" in model_names:  # the student first, as in a store made by featurize
        model_names.remove("student")
        model_names.insert(0, "student")
    feats: dict[str, list[np.ndarray]] = {m: [] for m in model_names}
    found_dtype = None
    for i, r in enumerate(records):
        missing = [k for k in ("path", "label", *model_names) if k not in r]
        if missing:
            raise PolySpaceError(f"{cache}: record {i} has no {missing[0]!r}; every record needs path, label "
                                 f"and the same models ({', '.join(model_names)})")
        for m in model_names:
            arr = _as_tokens(r[m], f"{cache} record {i} model {m!r}")
            if feats[m] and arr.shape != feats[m][0].shape:
                raise PolySpaceError(f"{cache}: record {i} model {m!r} has shape {arr.shape}, record 0 has "
                                     f"{feats[m][0].shape}; a store needs one (T, D) per model")
            feats[m].append(arr)
            found_dtype = found_dtype or str(getattr(r[m], "dtype", "float32")).replace("torch.", "")
    labels = [int(r["label"]) for r in records]
    if class_names is None:
        class_names = _class_names_from_index(cache)
    if class_names is None:
        class_names = [str(i) for i in range(max(labels) + 1)]
        note = "class names were not in the pickle cache; they are the label ids"
    else:
        note = "class names from the index / caller"
    if max(labels) >= len(class_names):
        raise PolySpaceError(f"{cache}: label {max(labels)} but only {len(class_names)} class names")
    store_dtype = dtype_name(dtype or ("float16" if "16" in (found_dtype or "") else "float32"))
    models = [{"name": m, "role": "student" if m == "student" else "teacher", "source": f"pickle:{cache.name}",
               "arch": None, "clip": None, "tokens": "imported", "T": int(feats[m][0].shape[0]),
               "dim": int(feats[m][0].shape[1]), "weights": "unknown (imported)"} for m in model_names]
    writer = FeatureStoreWriter(out_split_dir, models=models, dtype=store_dtype, tokens="imported",
                                shard_size=shard_size, paths=[str(r["path"]) for r in records], labels=labels,
                                class_names=list(class_names),
                                dataset={"name": "imported", "split": Path(out_split_dir).name,
                                         "root": str(cache.parent), "notes": [note]})
    if overwrite:
        writer.clear()
    writer.check_compatible()
    for k in writer.pending():
        start, end = writer.ranges[k]
        chunk = {m: torch.from_numpy(np.stack(feats[m][start:end])) for m in model_names}
        writer.write_shard(k, chunk, ["ok"] * (end - start), videos_decoded=0, frames_decoded=0)
    return writer.finalize({"imported_from": str(cache)}, extra={"imported": True})
