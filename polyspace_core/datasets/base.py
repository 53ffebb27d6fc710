"""What every dataset parser returns, and the two ways we ever cut a split smaller.

A parser reads an official annotation format and returns a `DatasetSplit`: the videos of one
split as `VideoItem`s whose labels index the dataset's *global* class list (the same ids in
every split). Two helpers cut splits, both stratified by class and seeded:

- `stratified_holdout` carves a validation split out of train for formats that define none;
- `stratified_subsample` keeps a random fraction (or count) of every class.

Neither ever takes "the first N% of a sorted list": that keeps only the first classes.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PolySpaceError

SPLITS = ("train", "validation", "test")
UNLABELED = -1  # label of an item whose class the format does not publish (SSv2 test)


@dataclass(frozen=True)
class VideoItem:
    """One video of a split.

    path: the video file. label: index into `DatasetSplit.class_names` (UNLABELED = -1 when the
    format publishes no label for this split). class_name: the class as the format names it
    (None when unlabeled). video_id: the format's id for the video. start_frame/end_frame: the
    annotated frame range where the format has one (Diving48), else None.
    """

    path: Path
    label: int
    class_name: str | None
    video_id: str
    start_frame: int | None = None
    end_frame: int | None = None


@dataclass
class DatasetSplit:
    """The videos of one split of one dataset, with the dataset's global class list.

    dataset: parser name ("hmdb51", "ucf101", ...). split: "train", "validation" or "test".
    class_names: every class of the dataset, index = label. root: the dataset folder.
    notes: how the split was made (hold-outs, subsampling, unlabeled items), for the data card.
    """

    dataset: str
    split: str
    items: list[VideoItem]
    class_names: list[str]
    root: Path
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> VideoItem:
        return self.items[i]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> list[int]:
        return [item.label for item in self.items]

    def class_counts(self) -> dict[str, int]:
        """Class name -> number of items in this split, for every class (zeros included)."""
        counts = Counter(item.label for item in self.items)
        out = {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}
        if counts.get(UNLABELED):
            out["<unlabeled>"] = counts[UNLABELED]
        return out

    def summary(self) -> str:
        return (f"{self.dataset}/{self.split}: {len(self.items)} videos, {self.num_classes} classes"
                f" ({self.root})")

    def __repr__(self) -> str:
        return f"DatasetSplit({self.summary()})"


# ----------------------------------------------------------------------------- reading annotation files

def read_lines(path: Path, what: str) -> list[str]:
    """Non-empty, stripped lines of a text annotation file (CRLF-safe, BOM-safe)."""
    if not path.is_file():
        raise PolySpaceError(f"{path}: {what} not found; check --root points at the dataset folder")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise PolySpaceError(f"{path}: {what} is not UTF-8 text; re-download the annotation file") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_json_file(path: Path, what: str, expect: type) -> object:
    """A JSON annotation file whose top level must be `expect` (list or dict)."""
    if not path.is_file():
        raise PolySpaceError(f"{path}: {what} not found; check --root points at the dataset folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        detail = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise PolySpaceError(f"{path}: {what} is not valid JSON ({detail}); re-download it") from None
    if not isinstance(data, expect):
        raise PolySpaceError(f"{path}: {what} must be a JSON {expect.__name__}, "
                             f"got {type(data).__name__}")
    return data


def check_split(split: str, allowed: Sequence[str] = SPLITS) -> str:
    """Normalise a split name ("val" is accepted for "validation")."""
    name = "validation" if split == "val" else split
    if name not in allowed:
        raise PolySpaceError(f"split={split!r}: unknown; use one of {', '.join(allowed)}")
    return name


def check_split_id(dataset: str, split_id: int, available: Sequence[int]) -> int:
    if split_id not in available:
        listed = ", ".join(str(s) for s in available)
        raise PolySpaceError(f"split_id={split_id}: {dataset} defines split ids {listed}; use one of them")
    return split_id


# ----------------------------------------------------------------------------- cutting splits

def stratified_holdout(items: Sequence[VideoItem], fraction: float, seed: int,
                       group_of: Callable[[VideoItem], str] | None = None
                       ) -> tuple[list[VideoItem], list[VideoItem]]:
    """Split `items` into (kept, held_out): about `fraction` of every class is held out.

    Classes are handled separately (stratified); inside a class the units are shuffled with a
    generator seeded by (seed, label), so the result does not depend on other classes. With
    `group_of`, whole groups are held out together (UCF101 clips of one group come from one
    long video; splitting a group would leak near-duplicates into validation). A class with at
    least two units gives at least one to each side. Both lists keep the input order.
    """
    if not 0.0 <= fraction < 1.0:
        raise PolySpaceError(f"val_fraction={fraction}: must be in [0, 1); e.g. 0.1 holds out 10% of train")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_class[item.label].append(i)
    held: set[int] = set()
    for label in sorted(by_class):
        members = by_class[label]
        groups: dict[str, list[int]] = defaultdict(list)
        for i in members:
            groups[group_of(items[i]) if group_of else str(i)].append(i)
        units = sorted(groups)
        rng = np.random.default_rng([seed, label + 1])  # +1: the unlabeled stratum (-1) stays valid
        order = rng.permutation(len(units))
        n_units = len(units)
        n_out = int(round(fraction * n_units))
        if fraction > 0 and n_units >= 2:
            n_out = min(max(n_out, 1), n_units - 1)
        for j in order[:n_out]:
            held.update(groups[units[j]])
    kept = [item for i, item in enumerate(items) if i not in held]
    out = [item for i, item in enumerate(items) if i in held]
    return kept, out


def stratified_subsample(items: Sequence[VideoItem], subsample: float | int, seed: int
                         ) -> list[VideoItem]:
    """A random, class-stratified subset of `items` (input order kept).

    subsample: a float in (0, 1] keeps that fraction of every class (at least one item per
    class); an int >= 1 keeps about that many items in total, shared across classes in
    proportion to their size (largest remainder), at least one per class while the count allows.
    """
    if isinstance(subsample, bool) or not isinstance(subsample, (int, float, np.integer, np.floating)):
        raise PolySpaceError(f"subsample={subsample!r}: use a fraction in (0, 1] or a count >= 1")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_class[item.label].append(i)
    labels = sorted(by_class)
    sizes = np.array([len(by_class[c]) for c in labels])

    if isinstance(subsample, (float, np.floating)):
        if not 0.0 < subsample <= 1.0:
            raise PolySpaceError(f"subsample={subsample}: a fraction must be in (0, 1]; "
                                 "use an integer for a count")
        quota = np.maximum(1, np.round(sizes * float(subsample))).astype(int)
    else:
        count = int(subsample)
        if count < 1:
            raise PolySpaceError(f"subsample={count}: a count must be >= 1")
        if count >= len(items):
            return list(items)
        share = sizes * count / sizes.sum()
        quota = np.floor(share).astype(int)
        if count >= len(labels):  # every class keeps at least one item
            quota = np.maximum(quota, 1)
        remainder = count - quota.sum()
        if remainder > 0:  # largest remainders first; ties broken by class order
            order = np.argsort(-(share - np.floor(share)), kind="stable")
            for j in order:
                if remainder == 0:
                    break
                if quota[j] < sizes[j]:
                    quota[j] += 1
                    remainder -= 1
        elif remainder < 0:  # the at-least-one rule overshot: trim the largest quotas
            for _ in range(-remainder):
                quota[int(np.argmax(quota))] -= 1
        quota = np.minimum(quota, sizes)

    keep: set[int] = set()
    for c, q in zip(labels, quota):
        rng = np.random.default_rng([seed, c + 1, 7])
        members = by_class[c]
        keep.update(members[j] for j in rng.choice(len(members), size=int(q), replace=False))
    return [item for i, item in enumerate(items) if i in keep]


def finish_split(dataset: str, split: str, items: list[VideoItem], class_names: list[str],
                 root: Path, notes: list[str], subsample: float | int | None, seed: int
                 ) -> DatasetSplit:
    """Apply the optional subsample and wrap up a parser's result."""
    if subsample is not None:
        before = len(items)
        items = stratified_subsample(items, subsample, seed)
        notes = notes + [f"stratified random subsample {subsample!r} (seed {seed}): "
                         f"{len(items)} of {before} videos"]
    return DatasetSplit(dataset, split, items, class_names, Path(root), notes)


