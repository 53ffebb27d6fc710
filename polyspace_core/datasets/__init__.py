"""Datasets: official-format parsers, the torch clip dataset, and the SynthMotion generator.

    from polyspace_core.datasets import load_split, generate_synthmotion, VideoClipDataset
    info = generate_synthmotion("data/synthmotion", layout="hmdb51-csv", classes=12)
    train = load_split("hmdb51-csv", info["root"], "train")     # DatasetSplit of VideoItems

Parsers: hmdb51 (official split files), hmdb51-csv (split folders), ucf101, diving48, ssv2.
Heavy imports (torch, cv2, PyAV) happen inside the functions that need them.
"""

from .base import UNLABELED, DatasetSplit, VideoItem, stratified_holdout, stratified_subsample
from .registry import DATASETS, HAS_VALIDATION, PARSERS, load_split
from .synthmotion import (
    COARSE_GROUPS,
    SYNTHMOTION_CLASSES,
    MotionClass,
    class_coarse_group,
    coarse_label_map,
    make_clip,
    synthmotion_class,
)
from .synthmotion_layouts import LAYOUTS, generate_synthmotion, read_synthmotion_marker

__all__ = [
    "COARSE_GROUPS", "ClipLoader", "DATASETS", "DatasetSplit", "HAS_VALIDATION", "LAYOUTS", "MotionClass",
    "PARSERS", "SYNTHMOTION_CLASSES", "UNLABELED", "VideoClipDataset", "VideoItem",
    "class_coarse_group", "coarse_label_map", "collate_clips", "data_card", "generate_synthmotion", "load_split",
    "make_clip", "plot_class_strips", "read_synthmotion_marker", "stratified_holdout",
    "stratified_subsample", "synthmotion_class",
]


def __getattr__(name: str):
    # torch / matplotlib only when these are used
    if name in ("VideoClipDataset", "collate_clips", "ClipLoader"):
        from . import clip_dataset
        return getattr(clip_dataset, name)
    if name in ("data_card", "plot_class_strips"):
        from . import datacard
        return getattr(datacard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
