"""An on-disk cache of decoded videos: every frame, resized to a short side, as uint8.

Training reads each video once per epoch; for VP9 webm (Something-Something V2) decoding is the
loader's main cost. `FrameCache.frames(path)` returns all frames of a video at the cache's short
side, decoding and storing them the first time and reading them back afterwards, in this run
and the next (benchmarks/ffn_loader.py measures both).

    <root>/<k[:2]>/<k>.frames     k = hash of (resolved path, file size, mtime, short side, version)

One file per video: a JSON header line (format, shape, the source's identity, the payload's size
and xxh3_64) followed by the raw (N, H, W, 3) uint8 frames. It is written atomically (temp file
+ rename), so a crash leaves no partial entry, and checked on every read (size, then checksum):
a damaged entry is a one-line error naming it and saying to delete it. A changed source video
gets a new key, so stale frames are never served.

Size: `max_bytes` caps what the cache holds (None: no cap) and `min_free_bytes` keeps that much
of the disk free. When either stops a write, the video is still served (decoded, not stored) and
the cache says so once per process (`full` holds why); nothing is evicted. uint8 frames are big
(an SSv2 video at short side 256: ~45 frames x 256 x 455 x 3 = 16 MB); set the cap to the disk
you give it. The folder's size is counted when the cache opens and recounted every
RECOUNT_WRITES writes, so several DataLoader workers sharing it stay within the cap to within
those writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from ..errors import PolySpaceError
from ..io import atomic_write_bytes, digest_bytes
from .decode import probe, read_frames
from .transforms import SpatialTransform

FORMAT = "polyspace-frame-cache/1"
SUFFIX = ".frames"
RECOUNT_WRITES = 256
DEFAULT_MIN_FREE = 2 * 2**30


class FrameCache:
    """Decoded frames of videos under `root`, resized so the short side is `short_side` (None:
    as decoded). backend: the decoder for misses ("auto", "torchcodec", "decord", "pyav")."""

    def __init__(self, root: str | os.PathLike, short_side: int | None, *, max_bytes: int | None = None,
                 min_free_bytes: int = DEFAULT_MIN_FREE, backend: str = "auto"):
        if max_bytes is not None and max_bytes <= 0:
            raise PolySpaceError(f"frame cache max_bytes={max_bytes}: must be > 0, or None for no cap")
        self.root = Path(root).expanduser()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PolySpaceError(f"frame cache {self.root}: cannot create the folder ({e.strerror})") from None
        self.resize = SpatialTransform(short_side=short_side)
        self.short_side = self.resize.short_side
        self.max_bytes, self.min_free_bytes, self.backend = max_bytes, int(min_free_bytes), backend
        self.full: str | None = None     # why writes stopped, once they have
        self.hits = self.misses = 0
        self._size = self._count()
        self._writes = 0

    def __getstate__(self) -> dict:
        return self.__dict__.copy()   # picklable for DataLoader workers (no open handles)

    def _count(self) -> int:
        total = 0
        for sub in os.scandir(self.root):
            if sub.is_dir():
                total += sum(e.stat().st_size for e in os.scandir(sub.path) if e.name.endswith(SUFFIX))
        return total

    def size_bytes(self) -> int:
        """Bytes the cache folder holds now (recounted)."""
        return self._count()

    def key(self, path: Path) -> str:
        st = path.stat()
        ident = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, self.short_side, FORMAT])
        return hashlib.sha256(ident.encode()).hexdigest()[:32]

    def entry(self, path: str | os.PathLike) -> Path:
        """Where the frames of `path` are (or would be) stored."""
        path = Path(path)
        if not path.is_file():
            raise PolySpaceError(f"{path}: video not found")
        k = self.key(path)
        return self.root / k[:2] / f"{k}{SUFFIX}"

    def frames(self, path: str | os.PathLike) -> np.ndarray:
        """(N, H, W, 3) uint8: every frame of the video at the cache's short side."""
        path = Path(path)
        entry = self.entry(path)
        if entry.is_file():
            self.hits += 1
            return read_entry(entry)
        self.misses += 1
        video = read_frames(path, np.arange(probe(path).num_frames), self.backend)
        video = self.resize(video)
        self._store(entry, path, video)
        return video

    def _store(self, entry: Path, source: Path, video: np.ndarray) -> None:
        if self.full is not None:
            return
        data = encode_entry(video, source)
        if self.max_bytes is not None:
            if self._writes and self._writes % RECOUNT_WRITES == 0:
                self._size = self._count()   # other workers write here too
            if self._size + len(data) > self.max_bytes:
                return self._stop(f"it holds {self._size / 2**30:.2f} GiB of its {self.max_bytes / 2**30:.2f} GiB cap")
        free = shutil.disk_usage(self.root).free
        if free - len(data) < self.min_free_bytes:
            return self._stop(f"the disk has {free / 2**30:.2f} GiB free, keeping {self.min_free_bytes / 2**30:.2f}")
        atomic_write_bytes(entry, data)
        self._size += len(data)
        self._writes += 1

    def _stop(self, why: str) -> None:
        self.full = why
        warnings.warn(f"frame cache {self.root}: not storing more videos ({why}); the rest are decoded every "
                      "epoch. Raise the cap or free disk space to cache them", stacklevel=3)


def encode_entry(video: np.ndarray, source: Path) -> bytes:
    """One cache file: a JSON header line, then the raw uint8 frames."""
    video = np.ascontiguousarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise PolySpaceError(f"{source}: frame cache holds uint8 (N, H, W, 3) frames, got {video.dtype} {video.shape}")
    payload = video.tobytes()
    header = {"format": FORMAT, "shape": list(video.shape), "source": str(source),
              "payload": digest_bytes(payload)}
    return json.dumps(header).encode() + b"\n" + payload


def read_entry(entry: str | os.PathLike) -> np.ndarray:
    """The frames of one cache file, checked against its header (size and xxh3_64)."""
    entry = Path(entry)
    fix = f"delete {entry} (the cache refills it)"
    raw = entry.read_bytes()
    end = raw.find(b"\n")
    try:
        header = json.loads(raw[:end]) if end > 0 else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise PolySpaceError(f"{entry}: not a frame cache file of format {FORMAT}; {fix}")
    payload = memoryview(raw)[end + 1:]
    shape = tuple(header["shape"])
    record = header["payload"]
    if len(payload) != record.get("bytes") or len(payload) != int(np.prod(shape)):
        raise PolySpaceError(f"{entry}: holds {len(payload)} bytes of frames, its header says {record.get('bytes')} "
                             f"(truncated or damaged); {fix}")
    if digest_bytes(payload) != record:
        raise PolySpaceError(f"{entry}: checksum of its frames does not match its header (damaged); {fix}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)
