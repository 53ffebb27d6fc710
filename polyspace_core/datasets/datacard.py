"""Data cards and frame-strip figures for any split, with SynthMotion class descriptions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import PolySpaceError
from .base import SPLITS, DatasetSplit
from .registry import HAS_VALIDATION, load_split
from .synthmotion import synthmotion_class
from .synthmotion_layouts import read_synthmotion_marker


def _describe(name: str) -> dict:
    try:
        c = synthmotion_class(name)
    except PolySpaceError:
        return {"description": None, "coarse_group": None, "reverse": None}
    return {"description": c.description, "coarse_group": c.family, "reverse": c.reverse}


def data_card(split_or_root: DatasetSplit | str | os.PathLike, *, val_fraction: float = 0.1,
              seed: int = 0) -> dict:
    """What a dataset holds, as a dict for notebooks and reports.

    split_or_root: a DatasetSplit (card of that split) or the root of a generated SynthMotion
    set (card of its train / validation / test splits, read back through the layout's parser;
    val_fraction and seed set the hold-out for layouts without a validation split).
    Returns dataset, root, generator parameters (SynthMotion) or None, splits (name -> videos),
    classes (label, name, description, coarse_group, reverse, counts per split) and notes.
    """
    if isinstance(split_or_root, DatasetSplit):
        splits = {split_or_root.split: split_or_root}
        parameters = None
        marker_path = Path(split_or_root.root) / "synthmotion.json"
        if marker_path.is_file():
            parameters = read_synthmotion_marker(split_or_root.root)
    else:
        root = Path(split_or_root)
        parameters = read_synthmotion_marker(root)
        layout = parameters["layout"]
        splits = {s: load_split(layout, root, s, val_fraction=val_fraction, seed=seed) for s in SPLITS}
    first = next(iter(splits.values()))
    counts = {s: split.class_counts() for s, split in splits.items()}
    classes = [{"label": i, "name": name, **_describe(name),
                "counts": {s: counts[s].get(name, 0) for s in splits}}
               for i, name in enumerate(first.class_names)]
    notes = []
    for s, split in splits.items():
        notes += [f"{s}: {note}" for note in split.notes]
    if parameters is not None:
        notes.append("SynthMotion: shapes, colours, backgrounds and distractors are drawn "
                     "independently of the class; only motion and its timing tell classes apart")
        notes.append("do not train with horizontal flips: a flip turns move_left into move_right "
                     "and rotate_cw into rotate_ccw")
        if parameters["layout"] not in HAS_VALIDATION:
            notes.append(f"the {parameters['layout']} layout has no validation split; it is a "
                         f"seeded stratified hold-out of {val_fraction:.0%} of train")
    return {"dataset": "synthmotion" if parameters else first.dataset,
            "layout": first.dataset,
            "root": os.fspath(first.root),
            "parameters": parameters,
            "num_classes": first.num_classes,
            "splits": {s: len(split) for s, split in splits.items()},
            "classes": classes,
            "notes": notes}


def plot_class_strips(split: DatasetSplit, frames_per_class: int = 8, *, seed: int = 0,
                      backend: str = "auto", max_classes: int | None = None):
    """A figure with one row per class: `frames_per_class` evenly spaced frames of one video of
    that class (picked at random with `seed`), decoded from the files. Returns the Figure."""
    from ..video import probe, read_frames, uniform_indices
    from ..viz import new_figure  # pyplot (and so matplotlib) imported only when a card is drawn

    rng = np.random.default_rng(seed)
    rows = []
    for label, name in enumerate(split.class_names):
        members = [item for item in split.items if item.label == label]
        if not members:
            continue
        item = members[int(rng.integers(len(members)))]
        info = probe(item.path)
        frames = read_frames(item.path, uniform_indices(info.num_frames, frames_per_class), backend)
        rows.append((name, item, frames))
        if max_classes is not None and len(rows) >= max_classes:
            break
    if not rows:
        raise PolySpaceError(f"{split.summary()}: no labelled videos to draw")

    height = rows[0][2].shape[1] / rows[0][2].shape[2]
    fig = new_figure((1.1 * frames_per_class + 1.8, 1.1 * height * len(rows) + 0.4))
    axes = fig.subplots(len(rows), frames_per_class, squeeze=False)
    for r, (name, _item, frames) in enumerate(rows):
        described = _describe(name)["description"]
        for c in range(frames_per_class):
            ax = axes[r, c]
            ax.imshow(frames[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
        if described:
            axes[r, -1].yaxis.set_label_position("right")
            axes[r, -1].set_ylabel(described, fontsize=6, rotation=0, ha="left", va="center")
    fig.suptitle(f"{split.dataset} / {split.split}: {frames_per_class} frames of one video per class",
                 fontsize=9)
    return fig
