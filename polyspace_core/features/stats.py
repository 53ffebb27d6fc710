"""Summaries of a feature store: per-model dims, token norms, dtype, disk size (plots.py draws them)."""

from __future__ import annotations

from typing import Any

import torch

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
    ok = torch.from_numpy(store.ok)
    disk = model_disk_bytes(store)
    rows = []
    for m in store.models:
        info = store.model_info(m)
        x = store.array(m)[ok].float()  # (n_ok, T, D)
        norms = x.norm(dim=-1)
        rows.append({
            "model": m, "role": info.get("role"), "source": info.get("source"), "T": int(info["T"]),
            "dim": int(info["dim"]), "dtype": store.manifest["dtype"],
            "frames": (info.get("clip") or {}).get("frames"),
            "mean_token_norm": float(norms.mean()) if norms.numel() else float("nan"),
            "std_token_norm": float(norms.std()) if norms.numel() > 1 else float("nan"),
            "mean_abs": float(x.abs().mean()) if x.numel() else float("nan"),
            "disk_mb": disk[m] / 2**20,
        })
    return {"store": str(store.split_dir), "num_samples": len(store), "num_ok": int(store.ok.sum()),
            "dtype": store.manifest["dtype"], "tokens": store.tokens, "disk_mb": store.disk_bytes() / 2**20,
            "decodes": store.manifest.get("decodes"), "failures": store.failures, "models": rows}


def summary_frame(summary: dict[str, Any]):
    """store_summary(...)["models"] as a pandas DataFrame (for display in a notebook)."""
    import pandas as pd

    return pd.DataFrame(summary["models"]).set_index("model")
