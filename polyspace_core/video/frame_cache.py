"""An on-disk cache of decoded videos: every frame, resized to a short side, as uint8 or JPEG.

Training reads each video once per epoch; for VP9 webm (Something-Something V2) decoding is the
loader's main cost. `FrameCache.frames(path)` returns all frames of a video at the cache's short
side, decoding and storing them the first time and reading them back afterwards, in this run
and the next (benchmarks/ffn_loader.py measures both).

    <root>/<k[:2]>/<k>.frames     k = hash of (resolved path, file size, mtime, short side,
                                               encoding's format [, JPEG quality])

One file per video: a JSON header line (format, shape, the source's identity, the payload's size
and xxh3_64; for JPEG also the quality and each frame's offset and length) followed by the
payload: the raw (N, H, W, 3) uint8 frames, or each frame's JPEG image one after another
(OpenCV's libjpeg-turbo, 4:2:0 chroma). It is written atomically (temp file + rename), so a crash
leaves no partial entry, and checked on every read (size, checksum, and for JPEG that each frame
read decodes to the header's shape): a damaged entry is a one-line error naming it and saying to
delete it. A changed source video gets a new key, so stale frames are never served, and so do
another encoding and another JPEG quality, so they never mix. A miss serves the frames a later
read of its entry gives (for JPEG: encoded and decoded again), stored or not.

uint8 gives exactly the decoded pixels. JPEG is lossy and smaller: on benchmarks/ffn_loader.py's
textured VP9 videos at short side 256, quality 90 keeps 42 dB PSNR in 1/18 of uint8's bytes; but
each read decodes JPEG again, so it reads slower than uint8 (`pick` limits that to the frames a
clip uses).

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
import numbers
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import PolySpaceError
from ..io import atomic_write_bytes, digest_bytes
from .decode import probe, read_frames
from .transforms import SpatialTransform

FORMAT = "polyspace-frame-cache/1"
FORMATS = {"uint8": FORMAT, "jpeg": "polyspace-frame-cache-jpeg/1"}   # encoding -> header format
SUFFIX = ".frames"
RECOUNT_WRITES = 256
DEFAULT_MIN_FREE = 2 * 2**30
Pick = Callable[[int], Sequence[int]]   # a video's frame count -> the indices of the frames wanted


class FrameCache:
    """Decoded frames of videos under `root`, resized so the short side is `short_side` (None:
    as decoded). backend: the decoder for misses ("auto", "torchcodec", "decord", "pyav").
    encoding: "uint8" (exact frames) or "jpeg" (lossy, at `jpeg_quality` 1-100)."""

    def __init__(self, root: str | os.PathLike, short_side: int | None, *, max_bytes: int | None = None,
                 min_free_bytes: int = DEFAULT_MIN_FREE, backend: str = "auto", encoding: str = "uint8",
                 jpeg_quality: int = 90):
        if max_bytes is not None and max_bytes <= 0:
            raise PolySpaceError(f"frame cache max_bytes={max_bytes}: must be > 0, or None for no cap")
        check_encoding(encoding, jpeg_quality)
        self.encoding, self.jpeg_quality = encoding, int(jpeg_quality)
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
        ident = [str(path.resolve()), st.st_size, st.st_mtime_ns, self.short_side, FORMATS[self.encoding]]
        if self.encoding == "jpeg":
            ident.append(self.jpeg_quality)   # (uint8 keys stay as they were before JPEG existed)
        ident = json.dumps(ident)
        return hashlib.sha256(ident.encode()).hexdigest()[:32]

    def entry(self, path: str | os.PathLike) -> Path:
        """Where the frames of `path` are (or would be) stored."""
        path = Path(path)
        if not path.is_file():
            raise PolySpaceError(f"{path}: video not found")
        k = self.key(path)
        return self.root / k[:2] / f"{k}{SUFFIX}"

    def frames(self, path: str | os.PathLike, pick: Pick | None = None) -> np.ndarray:
        """(N, H, W, 3) uint8: every frame of the video at the cache's short side; with `pick`,
        the frames at pick(N) only (a JPEG entry decodes no others)."""
        path = Path(path)
        entry = self.entry(path)
        if entry.is_file():
            self.hits += 1
            return read_entry(entry, pick)
        self.misses += 1
        video = read_frames(path, np.arange(probe(path).num_frames), self.backend)
        data = encode_entry(self.resize(video), path, self.encoding, self.jpeg_quality)
        self._store(entry, data)
        # a miss serves what every later read of the entry gives (for JPEG: not the decoded pixels),
        # stored or not, so a clip does not depend on which epoch or worker filled the cache
        return decode_entry(data, entry, pick)

    def _store(self, entry: Path, data: bytes) -> None:
        if self.full is not None:
            return
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


def check_encoding(encoding: str, jpeg_quality: int = 90) -> None:
    """One line for an encoding or JPEG quality the cache does not have."""
    if encoding not in FORMATS:
        raise PolySpaceError(f"frame cache encoding {encoding!r}: use one of {', '.join(FORMATS)}")
    if encoding == "jpeg" and not (isinstance(jpeg_quality, numbers.Integral) and 1 <= jpeg_quality <= 100):
        raise PolySpaceError(f"frame cache JPEG quality {jpeg_quality!r}: use an integer from 1 to 100")


def encode_entry(video: np.ndarray, source: Path, encoding: str = "uint8", jpeg_quality: int = 90) -> bytes:
    """One cache file: a JSON header line, then the frames (raw uint8, or one JPEG image each)."""
    check_encoding(encoding, jpeg_quality)
    video = np.ascontiguousarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise PolySpaceError(f"{source}: frame cache holds uint8 (N, H, W, 3) frames, got {video.dtype} {video.shape}")
    header = {"format": FORMATS[encoding], "shape": list(video.shape), "source": str(source)}
    if encoding == "uint8":
        payload = video.tobytes()
    else:
        import cv2

        images, spans, offset = [], [], 0
        for frame in video:   # OpenCV encodes BGR
            ok, image = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            if not ok:
                raise PolySpaceError(f"{source}: OpenCV could not JPEG-encode a {frame.shape} frame")
            images.append(image.tobytes())
            spans.append([offset, len(images[-1])])
            offset += len(images[-1])
        payload = b"".join(images)
        header.update(quality=int(jpeg_quality), frames=spans)
    header["payload"] = digest_bytes(payload)
    return json.dumps(header).encode() + b"\n" + payload


def read_entry(entry: str | os.PathLike, pick: Pick | None = None) -> np.ndarray:
    """The frames of one cache file (pick: as in FrameCache.frames), checked against its header
    (size and xxh3_64; JPEG frames must each decode to the header's shape)."""
    return decode_entry(Path(entry).read_bytes(), Path(entry), pick)


def decode_entry(raw: bytes, entry: Path, pick: Pick | None = None) -> np.ndarray:
    """The frames of the cache file `entry` whose bytes are `raw`, checked (read_entry)."""
    fix = f"delete {entry} (the cache refills it)"
    end = raw.find(b"\n")
    try:
        header = json.loads(raw[:end]) if end > 0 else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") not in FORMATS.values():
        raise PolySpaceError(f"{entry}: not a frame cache file of format {' or '.join(FORMATS.values())}; {fix}")
    payload = memoryview(raw)[end + 1:]
    shape = tuple(header["shape"])
    record = header["payload"]
    jpeg = header["format"] == FORMATS["jpeg"]
    if len(payload) != record.get("bytes") or (not jpeg and len(payload) != int(np.prod(shape))):
        raise PolySpaceError(f"{entry}: holds {len(payload)} bytes of frames, its header says {record.get('bytes')} "
                             f"(truncated or damaged); {fix}")
    if digest_bytes(payload) != record:
        raise PolySpaceError(f"{entry}: checksum of its frames does not match its header (damaged); {fix}")
    picked = range(shape[0]) if pick is None else pick(shape[0])
    if not jpeg:
        video = np.frombuffer(payload, dtype=np.uint8).reshape(shape)
        return video if pick is None else video[np.asarray(picked, dtype=np.int64)]
    import cv2

    video = np.empty((len(picked), *shape[1:]), dtype=np.uint8)
    spans = header.get("frames", [])
    if len(spans) != shape[0]:
        raise PolySpaceError(f"{entry}: its header lists {len(spans)} JPEG frames for {shape[0]} (damaged); {fix}")
    for k, i in enumerate(picked):
        offset, length = spans[i]
        image = cv2.imdecode(np.frombuffer(payload[offset:offset + length], dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.shape != shape[1:]:
            got = "nothing" if image is None else f"{image.shape}"
            raise PolySpaceError(f"{entry}: JPEG frame {i} decodes to {got}, its header says {shape[1:]} "
                                 f"(damaged); {fix}")
        video[k] = image[..., ::-1]   # BGR -> RGB
    return video
