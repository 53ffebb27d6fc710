"""Alignment: converters from the student's feature space into each teacher's, the losses that
train them, and the similarity metrics (CKA, mutual kNN, R², retrieval) that judge them.

    converters.py  ConverterConfig, build_converter, the six converter kinds, length adaptation
    losses.py      L2, cosine, InfoNCE, VICReg, Barlow Twins, L1 and their weighted sum
    metrics.py     linear / RBF / debiased / minibatch CKA, mutual kNN, cosine, R², retrieval top-1
    train.py       train_converter, save_converter / load_converter (+ converter sets), fidelity
    study.py       the experiments of notebooks 02 and 03 (converter grid, selection, alignment table)
    layerwise.py   layer-wise CKA along backbones' hidden states
    plots.py       figures for the notebooks (learning curves, CKA heatmaps, bar charts, widgets)
    commands.py    `polyspace train-converter`

Names are imported lazily (PEP 562) so that `polyspace --help`, which imports commands.py,
does not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CONVERTER_KINDS": "converters", "ConverterConfig": "converters",
    "build_converter": "converters", "resample_tokens": "converters",
    "LOSS_NAMES": "losses", "AlignmentLoss": "losses", "parse_loss_weights": "losses",
    "MinibatchCKA": "metrics", "debiased_cka": "metrics", "linear_cka": "metrics",
    "rbf_cka": "metrics", "minibatch_cka": "metrics", "mutual_knn": "metrics",
    "mean_cosine": "metrics", "r2_score": "metrics", "retrieval_top1": "metrics",
    "similarity_matrix": "metrics",
    "train_converter": "train", "save_converter": "train", "load_converter": "train",
    "save_converter_set": "train", "load_converter_set": "train", "evaluate_converter": "train",
    "pairs_from_store": "train", "predict": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
