"""Feature store (safetensors shards + JSON manifest) and feature extraction.

`store.py`: `FeatureStore.open(split_dir)`, `FeatureDataset`, `FeatureStoreWriter`.
`featurize.py`: decode each video once, run the student and teachers, write the store.
`pickle_import.py`: convert the original code's pickle caches (only with allow_pickle=True).

Names are imported lazily (PEP 562) so that `polyspace --help`, which imports commands.py,
does not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"FeatureDataset": "store", "FeatureStore": "store", "FeatureStoreWriter": "store", "open_store": "store"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
