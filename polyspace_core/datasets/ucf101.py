"""UCF101 (Soomro et al. 2012) in its official layout::

    <root>/<Class>/v_<Class>_gXX_cXX.avi
    <root>/ucfTrainTestlist/classInd.txt       "1 ApplyEyeMakeup"  (1-based)
    <root>/ucfTrainTestlist/trainlist0N.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    <root>/ucfTrainTestlist/testlist0N.txt     "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

The test lists carry no label: it comes from the class folder of the path, looked up in
classInd.txt. A train-list label that disagrees with its folder is an error, not a guess.
Validation is a seeded hold-out from train, stratified by class and made of whole groups
(the clips of one gXX come from one long video, so splitting a group leaks near-duplicates).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import PolySpaceError
from .base import DatasetSplit, VideoItem, check_split, check_split_id, finish_split, read_lines, stratified_holdout

LIST_DIR = "ucfTrainTestlist"
GROUP = re.compile(r"_g(\d+)_c\d+$")


def ucf101_classes(root: Path) -> list[str]:
    """Class names in label order from classInd.txt (its 1-based ids become 0-based labels)."""
    path = Path(root) / LIST_DIR / "classInd.txt"
    by_id: dict[int, str] = {}
    for n, line in enumerate(read_lines(path, "UCF101 classInd.txt"), start=1):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise PolySpaceError(f"{path}: line {n} {line!r} is not '<id> <ClassName>'")
        by_id[int(parts[0])] = parts[1]
    if sorted(by_id) != list(range(1, len(by_id) + 1)):
        raise PolySpaceError(f"{path}: class ids must be 1..{len(by_id)} without gaps; "
                             "re-download ucfTrainTestlist")
    return [by_id[i] for i in range(1, len(by_id) + 1)]


def _group_of(item: VideoItem) -> str:
    m = GROUP.search(item.video_id)
    # a name without _gXX_cXX is its own group
    return f"{item.label}:{m.group(1) if m else item.video_id}"


def load_ucf101(root: str | Path, split: str, *, split_id: int = 1, val_fraction: float = 0.1,
                seed: int = 0, subsample: float | int | None = None) -> DatasetSplit:
    """One split of UCF101. `validation` holds out `val_fraction` of the train list's groups."""
    root = Path(root)
    split = check_split(split)
    check_split_id("ucf101", split_id, (1, 2, 3))
    if split == "validation" and val_fraction <= 0:
        raise PolySpaceError("val_fraction=0: UCF101 has no official validation split; "
                             "set val_fraction > 0 to hold one out of train")
    class_names = ucf101_classes(root)
    index = {name: i for i, name in enumerate(class_names)}

    kind = "test" if split == "test" else "train"
    path = root / LIST_DIR / f"{kind}list{split_id:02d}.txt"
    items: list[VideoItem] = []
    for n, line in enumerate(read_lines(path, f"UCF101 {kind} list"), start=1):
        parts = line.split()
        rel = parts[0].replace("\\", "/")
        folder = rel.split("/")[0] if "/" in rel else None
        if folder is None or folder not in index:
            raise PolySpaceError(f"{path}: line {n}: class folder of {rel!r} is not in classInd.txt; "
                                 "paths must read <Class>/v_<Class>_gXX_cXX.avi")
        label = index[folder]
        if kind == "train":
            if len(parts) != 2 or not parts[1].isdigit():
                raise PolySpaceError(f"{path}: line {n} {line!r} is not '<Class>/<video>.avi <label>'")
            listed = int(parts[1]) - 1
            if not 0 <= listed < len(class_names):
                raise PolySpaceError(f"{path}: line {n}: label {parts[1]} does not exist "
                                     f"(classInd.txt has 1..{len(class_names)})")
            if listed != label:
                raise PolySpaceError(f"{path}: line {n}: label {parts[1]} ({class_names[listed]}) "
                                     f"disagrees with the folder {folder}; fix the list")
        elif len(parts) != 1:
            raise PolySpaceError(f"{path}: line {n} {line!r}: test lists hold only '<Class>/<video>.avi'")
        items.append(VideoItem(root / rel, label, folder, Path(rel).stem))

    notes = [f"official split {split_id} ({LIST_DIR}/{kind}list{split_id:02d}.txt); "
             f"{len(class_names)} classes from classInd.txt"]
    if kind == "test":
        notes.append("test labels come from each path's class folder")
    else:
        kept, held = stratified_holdout(items, val_fraction, seed, group_of=_group_of)
        items = held if split == "validation" else kept
        if val_fraction > 0:
            notes.append(f"validation = stratified random {val_fraction:.0%} of the train list's "
                         f"groups (whole gXX groups, seed {seed}); train = the rest")
    return finish_split("ucf101", split, items, class_names, root, notes, subsample, seed)
