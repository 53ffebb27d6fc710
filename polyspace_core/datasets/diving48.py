"""Diving48 (Li, Li & Vasconcelos 2018), V2 annotations::

    <root>/rgb/<vid_name>.mp4
    <root>/Diving48_V2_{train,test}.json   [{"vid_name", "label", "start_frame", "end_frame"}, ...]
    <root>/Diving48_vocab.json             [["Back", "15som", "05Twis", "FREE"], ...]  (index = label)

A class name is its vocabulary entry joined with "_" (takeoff_somersault_twist_flight).
start_frame/end_frame are kept on each item; the rgb/ clips are already cut to that range.
There is no validation split: it is a seeded, stratified hold-out from train.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PolySpaceError
from .base import DatasetSplit, VideoItem, check_split, check_split_id, finish_split, read_json_file, stratified_holdout

VOCAB = "Diving48_vocab.json"
ANNOTATION = "Diving48_V2_{}.json"


def diving48_classes(root: Path) -> list[str]:
    path = Path(root) / VOCAB
    vocab = read_json_file(path, "Diving48 vocabulary", list)
    names = []
    for i, entry in enumerate(vocab):
        if isinstance(entry, str) and entry:
            names.append(entry)
        elif isinstance(entry, list) and entry and all(isinstance(p, str) for p in entry):
            names.append("_".join(entry))
        else:
            raise PolySpaceError(f"{path}: entry {i} must be a list of sub-label strings, got {entry!r}")
    return names


def load_diving48(root: str | Path, split: str, *, split_id: int = 1, val_fraction: float = 0.1,
                  seed: int = 0, subsample: float | int | None = None) -> DatasetSplit:
    """One split of Diving48 V2; `validation` holds out `val_fraction` of train."""
    root = Path(root)
    split = check_split(split)
    check_split_id("diving48", split_id, (1,))
    if split == "validation" and val_fraction <= 0:
        raise PolySpaceError("val_fraction=0: Diving48 has no official validation split; "
                             "set val_fraction > 0 to hold one out of train")
    class_names = diving48_classes(root)

    kind = "test" if split == "test" else "train"
    path = root / ANNOTATION.format(kind)
    records = read_json_file(path, f"Diving48 {kind} annotation", list)
    items: list[VideoItem] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not all(k in rec for k in ("vid_name", "label")):
            raise PolySpaceError(f"{path}: record {i} needs vid_name and label, got {rec!r:.120}")
        label = rec["label"]
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(class_names):
            raise PolySpaceError(f"{path}: record {i} ({rec['vid_name']}): label {label!r} does not "
                                 f"exist in {VOCAB} (0..{len(class_names) - 1})")
        start, end = rec.get("start_frame"), rec.get("end_frame")
        for key, value in (("start_frame", start), ("end_frame", end)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise PolySpaceError(f"{path}: record {i} ({rec['vid_name']}): {key} {value!r} "
                                     "must be a non-negative integer")
        vid = str(rec["vid_name"])
        items.append(VideoItem(root / "rgb" / f"{vid}.mp4", label, class_names[label], vid, start, end))

    notes = [f"{ANNOTATION.format(kind)}; {len(class_names)} classes from {VOCAB}"]
    if kind == "train":
        kept, held = stratified_holdout(items, val_fraction, seed)
        items = held if split == "validation" else kept
        if val_fraction > 0:
            notes.append(f"validation = stratified random {val_fraction:.0%} of official train "
                         f"(seed {seed}); train = the rest")
    return finish_split("diving48", split, items, class_names, root, notes, subsample, seed)
