"""Storage of the feature store per model and dtype, and cached-vs-video training throughput.

A store keeps, per clip and model, a (T, D) tensor in float32, float16 or bfloat16 plus one int64
sample index per clip (features/store.py). Its size per clip is therefore T·D·bytes per model,
plus 8 bytes of index and a safetensors header per shard. `storage_table` computes that for any
backbone, token rule and dtype; `written_store_bytes` writes a real store with FeatureStoreWriter
and reads the size back from disk (the check that the formula is the format); `store_sizes`
reports the stores a run has actually written, per model, from their shard headers.

Training throughput of the two fusion modes comes from `benchmarks/results/fusion_modes.json`,
written by the fusion benchmark (`make bench`); when it is absent the table says so.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..backbones.catalog import BackboneSpec
from ..errors import PolySpaceError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
TOKEN_RULES = ("temporal", "clip", "full")
INDEX_BYTES = 8  # one int64 sample id per clip


def feature_bytes(spec: BackboneSpec, tokens: str = "temporal", dtype: str = "float32") -> int:
    """Bytes of one clip's features of one model in the store (T·D·itemsize)."""
    if dtype not in DTYPE_BYTES:
        raise PolySpaceError(f"dtype {dtype!r}: the store holds {', '.join(DTYPE_BYTES)}")
    return spec.tokens(tokens) * spec.width * DTYPE_BYTES[dtype]


def storage_table(specs: Sequence[BackboneSpec], tokens: Sequence[str] = TOKEN_RULES,
                  dtypes: Sequence[str] = tuple(DTYPE_BYTES), clips: int = 1000) -> list[dict[str, Any]]:
    """One row per model and token rule: (T, D) and MB per `clips` clips in each dtype."""
    rows = []
    for spec in specs:
        for rule in tokens:
            row: dict[str, Any] = {"model": spec.name, "tokens": rule, "T": spec.tokens(rule), "D": spec.width}
            for dtype in dtypes:
                row[f"mb_per_{clips}_{dtype}"] = clips * feature_bytes(spec, rule, dtype) / 2**20
            rows.append(row)
    return rows


def written_store_bytes(spec: BackboneSpec, tokens: str = "temporal", dtype: str = "float32", clips: int = 8,
                        directory: str | Path | None = None) -> dict[str, Any]:
    """Write a one-model, one-shard store of `clips` random clips with FeatureStoreWriter and read
    its size from disk: total shard bytes, per clip, and the part that is feature data."""
    from ..features.store import FeatureStoreWriter, read_safetensors_header

    T, D = spec.tokens(tokens), spec.width
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        writer = FeatureStoreWriter(Path(tmp) / "split", models=[{"name": spec.name, "T": T, "dim": D}], dtype=dtype,
                                    tokens=tokens, shard_size=clips, paths=[f"clip_{i}.mp4" for i in range(clips)],
                                    labels=[0] * clips, class_names=["class"])
        features = {spec.name: torch.randn(clips, T, D)}
        writer.write_shard(0, features, ["ok"] * clips, videos_decoded=clips, frames_decoded=clips * spec.frames)
        store = writer.finalize()
        shard = store.split_dir / store.shards[0].file
        on_disk = shard.stat().st_size
        header, data_start = read_safetensors_header(shard)
        begin, end = header[spec.name]["data_offsets"]
    return {"model": spec.name, "tokens": tokens, "dtype": dtype, "clips": clips, "shard_bytes": on_disk,
            "feature_bytes": end - begin, "header_bytes": data_start,
            "bytes_per_clip": on_disk / clips, "feature_bytes_per_clip": (end - begin) / clips}


def store_sizes(root: str | Path, clips: int = 1000) -> list[dict[str, Any]]:
    """Every feature store split under `root` (folders with a manifest.json): per model, its
    dtype, token rule, (T, D), samples and MB on disk per `clips` clips, from the shard headers."""
    from ..features.store import FeatureStore, read_safetensors_header

    rows = []
    for manifest in sorted(Path(root).rglob("manifest.json")):
        try:
            store = FeatureStore.open(manifest.parent)
        except PolySpaceError:
            continue  # a manifest.json of something else (e.g. a dataset); not a feature store
        per_model = dict.fromkeys(store.models, 0)
        total = 0
        for entry in store.shards:
            shard = store.split_dir / entry.file
            header, _ = read_safetensors_header(shard)
            for m in store.models:
                begin, end = header[m]["data_offsets"]
                per_model[m] += end - begin
            total += entry.bytes
        n = max(1, len(store))
        for m in store.models:
            T, D = store.shape(m)
            rows.append({"store": str(store.split_dir), "model": m, "dtype": store.manifest["dtype"],
                         "tokens": store.tokens, "T": T, "D": D, "samples": len(store),
                         f"mb_per_{clips}": per_model[m] / n * clips / 2**20,
                         f"store_mb_per_{clips}": total / n * clips / 2**20})
    return rows


def fusion_mode_throughput(path: str | Path) -> dict[str, Any]:
    """Cached vs video training throughput from the fusion benchmark's JSON (its "cached" and
    "video" entries, each with train_samples_per_s).

    Returns {"measured": False, "note": ..., "source": path} when the file is absent, else
    {"measured": True, "rows": [{"mode", "train_samples_per_s", ...}], "speedup", "setup",
    "machine", "source"}."""
    path = Path(path)
    if not path.is_file():
        return {"measured": False, "note": "not measured — run make bench", "source": str(path)}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PolySpaceError(f"{path}: not valid JSON ({e.msg}); rerun make bench") from None
    modes = {m: data[m] for m in ("cached", "video") if isinstance(data, dict) and isinstance(data.get(m), dict)}
    if not modes or not all(isinstance(v.get("train_samples_per_s"), (int, float)) for v in modes.values()):
        raise PolySpaceError(f"{path}: expected 'cached' and 'video' entries with train_samples_per_s; "
                             f"rerun make bench")
    rows = [{"mode": m, **{k: v for k, v in values.items() if isinstance(v, (int, float, str))}}
            for m, values in modes.items()]
    speedup = data.get("speedup")
    if speedup is None and len(modes) == 2:
        speedup = modes["cached"]["train_samples_per_s"] / modes["video"]["train_samples_per_s"]
    return {"measured": True, "rows": rows, "speedup": speedup, "setup": data.get("setup", {}),
            "machine": data.get("machine", {}), "source": str(path)}
