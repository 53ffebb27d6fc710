"""One entry point over every parser: `load_split(dataset, root, split, ...)`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import PolySpaceError
from .base import DatasetSplit
from .diving48 import load_diving48
from .hmdb51 import load_hmdb51, load_hmdb51_csv
from .ssv2 import load_ssv2
from .ucf101 import load_ucf101

PARSERS: dict[str, Callable[..., DatasetSplit]] = {
    "hmdb51": load_hmdb51,
    "hmdb51-csv": load_hmdb51_csv,
    "ucf101": load_ucf101,
    "diving48": load_diving48,
    "ssv2": load_ssv2,
}
# formats that define a validation split themselves (the others hold one out of train)
HAS_VALIDATION = {"hmdb51-csv", "ssv2"}
DATASETS = (*PARSERS, "synthmotion")


def load_split(dataset: str, root: str | Path, split: str, *, split_id: int = 1,
               val_fraction: float = 0.1, seed: int = 0,
               subsample: float | int | None = None) -> DatasetSplit:
    """Parse one split of a dataset in its official layout.

    dataset: hmdb51 | hmdb51-csv | ucf101 | diving48 | ssv2, or synthmotion (a generated set in
    any of those layouts; the layout is read from its synthmotion.json). split: train |
    validation | test. split_id: the official split (1-3 for HMDB51 and UCF101). val_fraction:
    share of train held out as validation where the format has none (stratified, seeded).
    subsample: keep a stratified random fraction (float) or count (int) of the split.
    Returns a DatasetSplit whose labels index the dataset's global class list.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PolySpaceError(f"seed={seed!r}: must be a non-negative integer")
    root = Path(root).expanduser()
    if dataset == "synthmotion":
        from .synthmotion_layouts import read_synthmotion_marker

        dataset = read_synthmotion_marker(root)["layout"]
    if dataset not in PARSERS:
        raise PolySpaceError(f"dataset={dataset!r}: unknown; use one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise PolySpaceError(f"{root}: dataset root not found; point --root at the {dataset} folder")
    return PARSERS[dataset](root, split, split_id=split_id, val_fraction=val_fraction, seed=seed,
                            subsample=subsample)


# ----------------------------------------------------------------------------- colour sequences

def _color_parsers() -> dict[str, Callable[..., list]]:
    from .davis import list_davis, list_frame_folders, list_video_folder

    return {"davis": list_davis, "videos": list_video_folder, "frames": list_frame_folders}


COLOR_DATASETS = ("davis", "videos", "frames")


def list_color_sequences(dataset: str, root: str | Path, *, sequences: list[str] | None = None,
                         key: str = "root", **options) -> list:
    """The ground-truth colour sequences (davis.ColorSequence) of a colorization test set.

    dataset: davis (JPEGImages/480p/<seq>/*.jpg; options resolution=, split=), videos (a folder
    of video files, Videvo style) or frames (a folder of frame folders). sequences: keep only
    these names. key: the parameter naming the root, for the one-line error when it is missing."""
    if dataset not in COLOR_DATASETS:
        raise PolySpaceError(f"colour dataset {dataset!r}: unknown; use one of {', '.join(COLOR_DATASETS)}")
    return _color_parsers()[dataset](root, sequences=sequences, key=key, **options)
