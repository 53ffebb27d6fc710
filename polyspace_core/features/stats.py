"""Summaries of a feature store: per-model dims, token norms, dtype, disk size (plots.py draws them)."""

from __future__ import annotations

from typing import Any

from .store import FeatureStore, read_safetensors_header


def model_disk_bytes(store: FeatureStore) -> dict[str, int]:
    """Bytes each model's tensors take in the shards (from the shard headers, no data read)."""
    out = dict.fromkeys(store.models, 0)
    for s in store.shards:
        header, _ = read_safetensors_header(store.split_dir / s.file)
        for m in store.models:
            begin, end = header[m]["data_offsets"]
            out[m] += end - begin
    return out


def store_summary(store: FeatureStore) -> dict[str, Any]:
    """Per-model statistics over the successfully extracted samples:
    T, dim, dtype, mean/std of per-token L2 norms, mean |feature|, disk MB, role and source."""
    disk = model_disk_bytes(store)
    rows = []
    for m in store.models:
        info = store.model_info(m)
        # a batch of samples at a time: sums in float64 (a split never sits in memory)
        n = 0
        norm_sum = norm_sq = abs_sum = 0.0
        values = 0
        for x in store.batches(m):  # (b, T, D) float32
            norms = x.double().norm(dim=-1)
            norm_sum += float(norms.sum())
            norm_sq += float(norms.pow(2).sum())
            abs_sum += float(x.double().abs().sum())
            n += norms.numel()
            values += x.numel()
        mean = norm_sum / n if n else float("nan")
        rows.append({
            "model": m, "role": info.get("role"), "source": info.get("source"), "T": int(info["T"]),
            "dim": int(info["dim"]), "dtype": store.manifest["dtype"],
            "frames": (info.get("clip") or {}).get("frames"),
            "mean_token_norm": mean,
            "std_token_norm": max(norm_sq - n * mean ** 2, 0.0) ** 0.5 / (n - 1) ** 0.5 if n > 1 else float("nan"),
            "mean_abs": abs_sum / values if values else float("nan"),
            "disk_mb": disk[m] / 2**20,
        })
    return {"store": str(store.split_dir), "num_samples": len(store), "num_ok": int(store.ok.sum()),
            "dtype": store.manifest["dtype"], "tokens": store.tokens, "disk_mb": store.disk_bytes() / 2**20,
            "decodes": store.manifest.get("decodes"), "failures": store.failures, "models": rows}


def summary_frame(summary: dict[str, Any]):
    """store_summary(...)["models"] as a pandas DataFrame (for display in a notebook)."""
    import pandas as pd

    return pd.DataFrame(summary["models"]).set_index("model")
