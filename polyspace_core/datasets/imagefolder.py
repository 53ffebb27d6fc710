"""An ImageFolder-style tree of photos by class (ImageNet's train layout), as colour exemplars.

    <root>/<class>/<image>.JPEG | .jpg | .jpeg | .png          (or <root>/train/<class>/...)

The colorization training (`polyspace train-color --imagenet`) reads it the way Deep Exemplar
and SwinTExCo train on ImageNet: each photo becomes a short pseudo-video (colorize/data.py) whose
exemplar is another photo of the same class. Classes are the sorted folder names; images are in
name order. A class folder without images is skipped and counted, never an error, because
ImageNet subsets often keep empty folders; a tree with no images at all is an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import PolySpaceError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


@dataclass(frozen=True)
class ImageFolderTree:
    root: Path
    classes: tuple[str, ...]
    images: tuple[tuple[Path, ...], ...]   # per class, in name order
    empty_classes: int


def list_image_folder(root: str | os.PathLike, key: str = "root") -> ImageFolderTree:
    """The classes and images of an ImageFolder tree at `root` (or `root`/train when `root` holds
    a train/ folder, ImageNet's own layout). key: the flag naming root, for the error lines."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PolySpaceError(f"{key} {root}: not a folder; pass an ImageFolder tree (<class>/<image>.JPEG)")
    if (root / "train").is_dir():
        root = root / "train"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    images = [tuple(sorted(p for p in f.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS))
              for f in folders]
    kept = [(f.name, imgs) for f, imgs in zip(folders, images) if imgs]
    if not kept:
        raise PolySpaceError(f"{key} {root}: no images in class folders (<class>/<image>.JPEG, "
                             f"{', '.join(IMAGE_EXTENSIONS)})")
    return ImageFolderTree(root, tuple(n for n, _ in kept), tuple(i for _, i in kept), len(folders) - len(kept))
