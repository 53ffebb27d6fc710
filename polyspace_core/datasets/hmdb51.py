"""HMDB51, in its official layout and in the split-folder (CSV) layout the original PolySpace used.

Official (Kuehne et al. 2011)::

    <root>/<class>/<video>.avi
    <root>/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt   lines "<video>.avi <id>"

with id 1 = train, 2 = test, 0 = not used in that split. Classes are the sorted class names of
the split files (51 in the release). There is no validation split: it is a seeded, stratified
hold-out from train.

Split folders::

    <root>/{train,validation,test}/metadata.csv   columns video_id,file_name,label,...
    <root>/{train,validation,test}/<file_name>

where `label` is the class *name*. Class ids come from the sorted union of the names over every
split folder present, so a class that only occurs in one split still has one global id.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import PolySpaceError
from .base import (
    SPLITS,
    DatasetSplit,
    VideoItem,
    check_split,
    check_split_id,
    finish_split,
    read_lines,
    stratified_holdout,
)

SPLIT_DIR = "testTrainMulti_7030_splits"
SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<sid>[123])\.txt$")
OFFICIAL_IDS = {"train": "1", "test": "2"}


def hmdb51_classes(root: Path, split_id: int = 1) -> list[str]:
    """Sorted class names from the official split files of `split_id`."""
    split_dir = Path(root) / SPLIT_DIR
    if not split_dir.is_dir():
        raise PolySpaceError(f"{split_dir}: HMDB51 split folder not found; unpack "
                             "test_train_splits.rar into the dataset root")
    names = sorted(m["cls"] for p in split_dir.iterdir()
                   if (m := SPLIT_FILE.match(p.name)) and int(m["sid"]) == split_id)
    if not names:
        raise PolySpaceError(f"{split_dir}: no <class>_test_split{split_id}.txt files; "
                             "check the HMDB51 split folder")
    return names


def load_hmdb51(root: str | Path, split: str, *, split_id: int = 1, val_fraction: float = 0.1,
                seed: int = 0, subsample: float | int | None = None) -> DatasetSplit:
    """One split of official-layout HMDB51. `validation` is a stratified hold-out of
    `val_fraction` of the official train list; `train` is the rest of it."""
    root = Path(root)
    split = check_split(split)
    check_split_id("hmdb51", split_id, (1, 2, 3))
    if split == "validation" and val_fraction <= 0:
        raise PolySpaceError("val_fraction=0: HMDB51 has no official validation split; "
                             "set val_fraction > 0 to hold one out of train")
    class_names = hmdb51_classes(root, split_id)

    wanted = OFFICIAL_IDS["test" if split == "test" else "train"]
    items: list[VideoItem] = []
    for label, name in enumerate(class_names):
        path = root / SPLIT_DIR / f"{name}_test_split{split_id}.txt"
        for n, line in enumerate(read_lines(path, "HMDB51 split file"), start=1):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise PolySpaceError(f"{path}: line {n} {line!r} is not '<video>.avi <0|1|2>'; "
                                     "re-download the HMDB51 split files")
            video, split_code = parts
            if split_code == wanted:
                items.append(VideoItem(root / name / video, label, name, Path(video).stem))

    notes = [f"official split {split_id} ({SPLIT_DIR}); classes from its {len(class_names)} split files"]
    if split in ("train", "validation"):
        kept, held = stratified_holdout(items, val_fraction, seed)
        items = held if split == "validation" else kept
        if val_fraction > 0:
            notes.append(f"validation = stratified random {val_fraction:.0%} of official train "
                         f"(seed {seed}); train = the rest")
    return finish_split("hmdb51", split, items, class_names, root, notes, subsample, seed)


# ----------------------------------------------------------------------------- split-folder (CSV) layout

def _read_metadata(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise PolySpaceError(f"{path}: HMDB51 metadata.csv not found; expected "
                             "<root>/{train,validation,test}/metadata.csv")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("video_id", "file_name", "label") if c not in header]
        if missing:
            raise PolySpaceError(f"{path}: missing column(s) {', '.join(missing)}; header must "
                                 "start with video_id,file_name,label")
        rows = []
        for n, row in enumerate(reader, start=2):
            if None in row or any(row[c] is None for c in ("video_id", "file_name", "label")):
                raise PolySpaceError(f"{path}: line {n} has a different number of fields than the header")
            if not row["file_name"].strip() or not row["label"].strip():
                raise PolySpaceError(f"{path}: line {n} has an empty file_name or label")
            rows.append({k: (v or "").strip() for k, v in row.items()})
    return rows


def hmdb51_csv_classes(root: Path) -> list[str]:
    """Sorted union of the class names over every split folder present (train is required)."""
    root = Path(root)
    names: set[str] = set()
    if not (root / "train" / "metadata.csv").is_file():
        raise PolySpaceError(f"{root / 'train' / 'metadata.csv'}: not found; a split-folder HMDB51 "
                             "root needs at least train/metadata.csv")
    for split in SPLITS:
        path = root / split / "metadata.csv"
        if path.is_file():
            names.update(row["label"] for row in _read_metadata(path))
    return sorted(names)


def load_hmdb51_csv(root: str | Path, split: str, *, split_id: int = 1, seed: int = 0,
                    subsample: float | int | None = None, **_unused) -> DatasetSplit:
    """One split of split-folder HMDB51 (`<root>/<split>/metadata.csv`, labels are class names)."""
    root = Path(root)
    split = check_split(split)
    check_split_id("hmdb51-csv", split_id, (1,))
    class_names = hmdb51_csv_classes(root)
    index = {name: i for i, name in enumerate(class_names)}
    folder = root / split
    items = [VideoItem(folder / row["file_name"], index[row["label"]], row["label"],
                       row["video_id"] or Path(row["file_name"]).stem)
             for row in _read_metadata(folder / "metadata.csv")]
    notes = [f"split folders; {len(class_names)} classes = sorted union of labels over "
             f"{', '.join(s for s in SPLITS if (root / s / 'metadata.csv').is_file())}"]
    return finish_split("hmdb51-csv", split, items, class_names, root, notes, subsample, seed)
