"""Fusion: the residual-gated head over converted teacher features, its training in cached and
video mode, and the honest evaluation against student-only and teacher baselines.

    head.py      FusionConfig, FusionHead, StudentHead (matched capacity), LinearProbe
    pipeline.py  FusionPipeline (converters + head), fusion checkpoints (safetensors + JSON)
    data.py      batches: feature store (cached) / videos through the student (video mode)
    engine.py    the one training loop (AdamW, cosine, AMP on CUDA, Accelerate DDP, resume)
    metrics.py   top-1, top-5, mean per-class accuracy, confusion matrix
    train.py     train_fusion: one entry point for both modes
    probes.py    linear probes and the matched-capacity student head
    evaluate.py  05's side-by-side table, gate statistics, accuracy vs cost
    plots.py     figures for notebooks 04 and 05
    commands.py  `polyspace train-fusion`, `polyspace eval`

Names are imported lazily (PEP 562) so `polyspace --help` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FusionConfig": "head", "FusionHead": "head", "StudentHead": "head", "StudentHeadConfig": "head",
    "LinearProbe": "head", "matched_student_head": "head", "count_trainable": "head",
    "FusionPipeline": "pipeline", "build_pipeline": "pipeline", "load_converters": "pipeline",
    "save_fusion": "pipeline", "load_fusion": "pipeline",
    "TensorBatches": "data", "VideoBatches": "data", "StudentFeatures": "data", "cached_batches": "data",
    "open_split_store": "data", "epoch_batches": "data",
    "TrainSettings": "engine", "fit": "engine", "predict": "engine", "make_accelerator": "engine",
    "classification_metrics": "metrics", "confusion_matrix": "metrics",
    "train_fusion": "train", "FusionRun": "train",
    "train_linear_probe": "probes", "train_matched_student_head": "probes",
    "evaluate_downstream": "evaluate", "gate_statistics": "evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
