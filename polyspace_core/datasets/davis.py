"""Real colour videos for colorization evaluation: the DAVIS layout and a folder of videos.

DAVIS (2016/2017, the set video colorization papers report on) keeps each sequence as JPEG
frames:

    <root>/JPEGImages/480p/<sequence>/00000.jpg, 00001.jpg, ...
    <root>/ImageSets/2017/val.txt            (optional: one sequence name a line)

A folder of videos (the Videvo test set as colorization papers use it: one clip a file) is
read with the project's video decoders (video/decode.py: decord or PyAV, frames counted from
the stream, a damaged file is one line):

    <root>/<name>.mp4 | .avi | .mov | .mkv | .webm | .m4v

A folder of frame folders (DAVIS without its JPEGImages/480p wrapper, or any frames dumped one
folder a clip) is the third layout:

    <root>/<name>/<frame>.jpg | .jpeg | .png        (frames in name order)

Either way a sequence is its ground-truth colour frames; the evaluation protocol (first frame
as the reference) lives in colorize/data.py. `list_color_sequences(dataset, root, ...)` in
registry.py is the one entry point. Errors are one line each: a missing root, a sequence with
no frames, a frame or video that does not decode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PolySpaceError

RESOLUTIONS = ("480p", "Full-Resolution")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ColorSequence:
    """One ground-truth colour sequence: JPEG frame files (DAVIS) or one video file (a folder of
    videos). `read(max_frames)` decodes it."""

    name: str
    frames: tuple[Path, ...] = ()
    video: Path | None = None

    def read(self, max_frames: int | None = None) -> np.ndarray:
        """The first `max_frames` frames (all when None) as (T, H, W, 3) uint8 RGB."""
        if max_frames is not None and max_frames < 1:
            raise PolySpaceError(f"{self.name}: max_frames={max_frames}; use at least 1 (or none for all)")
        if self.video is not None:
            return read_video_sequence(self.video, max_frames)
        return read_jpeg_frames(self.frames[:max_frames])


def _root(root: str | os.PathLike, key: str, what: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PolySpaceError(f"{root}: {what} not found; set {key} to it")
    return root


def list_davis(root: str | os.PathLike, *, resolution: str = "480p", split: str | None = None,
               sequences: list[str] | None = None, key: str = "root") -> list[ColorSequence]:
    """The sequences of a DAVIS folder, sorted by name, each with its JPEG frames in order.

    resolution: 480p (the papers' choice) or Full-Resolution. split: a list in
    ImageSets/<year>/<split>.txt, e.g. "2017/val" (None: every sequence folder). sequences: keep
    only these names (an unknown name is an error). key: the parameter that names the root, for
    the error line when it is missing."""
    root = _root(root, key, "DAVIS root (the folder holding JPEGImages/480p)")
    if resolution not in RESOLUTIONS:
        raise PolySpaceError(f"DAVIS resolution {resolution!r}: use one of {', '.join(RESOLUTIONS)}")
    images = root / "JPEGImages" / resolution
    if not images.is_dir():
        raise PolySpaceError(f"{root}: no JPEGImages/{resolution} folder; is this the DAVIS root?")
    names = sorted(p.name for p in images.iterdir() if p.is_dir())
    if split is not None:
        listing = root / "ImageSets" / f"{split}.txt"
        if not listing.is_file():
            raise PolySpaceError(f"{listing}: DAVIS split list not found; use a split under ImageSets (e.g. 2017/val)")
        listed = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        missing = [n for n in listed if n not in names]
        if missing:
            raise PolySpaceError(f"{listing}: lists {len(missing)} sequence(s) with no frame folder, e.g. {missing[0]}")
        names = listed
    if sequences:
        unknown = [n for n in sequences if n not in names]
        if unknown:
            raise PolySpaceError(f"DAVIS sequence {unknown[0]!r}: not in {images}")
        names = [n for n in names if n in sequences]
    if not names:
        raise PolySpaceError(f"{images}: no sequence folders")
    out = []
    for name in names:
        frames = tuple(sorted(p for p in (images / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg")))
        if not frames:
            raise PolySpaceError(f"{images / name}: empty sequence (no .jpg frames)")
        out.append(ColorSequence(name, frames=frames))
    return out


def list_video_folder(root: str | os.PathLike, *, sequences: list[str] | None = None,
                      key: str = "root") -> list[ColorSequence]:
    """Every video file directly under `root` (extensions in VIDEO_EXTENSIONS), sorted, named by
    file stem; `sequences` keeps only those stems."""
    root = _root(root, key, "folder of videos")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if sequences:
        stems = {p.stem for p in files}
        unknown = [n for n in sequences if n not in stems]
        if unknown:
            raise PolySpaceError(f"video {unknown[0]!r}: no such file under {root}")
        files = [p for p in files if p.stem in sequences]
    if not files:
        raise PolySpaceError(f"{root}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return [ColorSequence(p.stem, video=p) for p in files]


def list_frame_folders(root: str | os.PathLike, *, sequences: list[str] | None = None,
                       key: str = "root") -> list[ColorSequence]:
    """Every sub-folder of `root` holding image frames (FRAME_EXTENSIONS), sorted by name, each
    a sequence of its frames in name order; `sequences` keeps only those names. A sub-folder
    without frames is an error (it would silently drop a clip)."""
    root = _root(root, key, "folder of frame folders")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if sequences:
        unknown = [n for n in sequences if n not in {p.name for p in folders}]
        if unknown:
            raise PolySpaceError(f"frame folder {unknown[0]!r}: not under {root}")
        folders = [p for p in folders if p.name in sequences]
    if not folders:
        raise PolySpaceError(f"{root}: no frame folders (<name>/<frame>.jpg)")
    out = []
    for folder in folders:
        frames = tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS))
        if not frames:
            raise PolySpaceError(f"{folder}: no frames ({', '.join(FRAME_EXTENSIONS)})")
        out.append(ColorSequence(folder.name, frames=frames))
    return out


def detect_color_layout(root: str | os.PathLike, key: str = "root") -> str:
    """Which layout `root` is in: "davis" (JPEGImages/), "videos" (video files directly under
    it) or "frames" (sub-folders of frames); anything else is a one-line error naming `key`."""
    root = _root(root, key, "colour video folder")
    if (root / "JPEGImages").is_dir():
        return "davis"
    if any(p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS for p in root.iterdir()):
        return "videos"
    if any(p.is_dir() for p in root.iterdir()):
        return "frames"
    raise PolySpaceError(f"{key} {root}: neither DAVIS (JPEGImages/480p/<seq>/), a folder of videos "
                         f"({', '.join(VIDEO_EXTENSIONS)}) nor a folder of frame folders")


def read_jpeg_frames(paths: tuple[Path, ...] | list[Path]) -> np.ndarray:
    """JPEG (or PNG) frames as (T, H, W, 3) uint8 RGB; a frame that does not decode, or one of another
    size than the first, is a one-line error naming it."""
    import cv2

    if not paths:
        raise PolySpaceError("no frames to read")
    frames = []
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise PolySpaceError(f"{path}: frame does not decode (missing, truncated or not an image)")
        if frames and img.shape != frames[0].shape:
            raise PolySpaceError(f"{path}: frame of {img.shape[1]}x{img.shape[0]} in a sequence of "
                                 f"{frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(img)
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])


def read_video_sequence(path: Path, max_frames: int | None = None) -> np.ndarray:
    """The first `max_frames` frames (all when None) of a video file, (T, H, W, 3) uint8 RGB, through
    video.decode (a missing, empty or damaged file is its one-line VideoDecodeError)."""
    from ..video.decode import probe, read_frames

    info = probe(path)
    if info.num_frames < 1:
        raise PolySpaceError(f"{path}: no video frames")
    n = info.num_frames if max_frames is None else min(max_frames, info.num_frames)
    return read_frames(path, np.arange(n))
