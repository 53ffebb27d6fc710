"""Write RGB uint8 frames to a real video file with PyAV (FFmpeg encoders).

Used by the synthetic dataset generators and by tests that need videos with known content.
The container comes from the suffix (.mp4, .avi, .webm, .mkv); the codec from `codec`, or
from the suffix when `codec="auto"` (mp4 -> H.264, avi -> MPEG-4 Part 2 like the Xvid/DivX
files of HMDB51/UCF101, webm -> VP9 like Something-Something V2). Writes are atomic: the
video is encoded into a temp file beside the target and renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import PolySpaceError

# suffix -> (FFmpeg muxer name, default codec)
CONTAINERS = {
    ".mp4": ("mp4", "h264"),
    ".avi": ("avi", "mpeg4"),
    ".webm": ("webm", "vp9"),
    ".mkv": ("matroska", "h264"),
}

# our codec name -> (FFmpeg encoder, default encoder options)
# crf/quality settings keep synthetic patterns crisp; libvpx-vp9 with crf needs b:v=0.
# libx264 runs without its macroblock tree: with it, encoding the same small frames twice gave
# different pictures (up to 7 distinct streams in 60 encodes of one clip, with one thread as
# well), and a generated dataset must be the same on every run of a seed. VP9 and MPEG-4
# pictures are repeatable as they are (only WebM's container metadata differs).
CODECS = {
    "h264": ("libx264", {"crf": "18", "preset": "medium", "x264-params": "mbtree=0"}),
    "vp9": ("libvpx-vp9", {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8",
                           "row-mt": "1"}),
    "vp8": ("libvpx", {"crf": "10", "b": "1M", "deadline": "realtime", "cpu-used": "8"}),
    "mpeg4": ("mpeg4", {"qmin": "2", "qmax": "5"}),  # the 200 kb/s default is too coarse
}

# which codecs each container accepts (webm is VP8/VP9 only)
ALLOWED = {
    "mp4": {"h264", "mpeg4", "vp9"},
    "avi": {"h264", "mpeg4"},
    "webm": {"vp8", "vp9"},
    "matroska": {"h264", "mpeg4", "vp8", "vp9"},
}


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 25,
                codec: str = "auto", *, gop: int | None = None, bframes: int | None = None,
                options: Mapping[str, str] | None = None) -> Path:
    """Encode `frames` (N, H, W, 3) uint8 RGB into a video file at `path`, atomically.

    fps: frames per second (CFR). codec: "h264", "vp9", "vp8", "mpeg4" or "auto" (from the
    suffix). gop: keyframe interval in frames (None = encoder default). bframes: max
    consecutive B-frames for H.264/MPEG-4 (None = encoder default; libx264 "medium" uses 3,
    0 gives a stream without frame reordering). options: extra FFmpeg encoder options that
    override ours. H and W must be even (the 4:2:0 chroma format all these codecs use).
    Returns the path written.
    """
    import av

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise PolySpaceError(f"{path}: unsupported video suffix {suffix!r}; use one of "
                             f"{', '.join(CONTAINERS)}")
    fmt, default_codec = CONTAINERS[suffix]
    codec = default_codec if codec == "auto" else codec
    if codec not in CODECS:
        raise PolySpaceError(f"write_video codec={codec!r}: unknown; use one of "
                             f"auto, {', '.join(CODECS)}")
    if codec not in ALLOWED[fmt]:
        raise PolySpaceError(f"{path}: a {suffix} file cannot hold {codec}; use one of "
                             f"{', '.join(sorted(ALLOWED[fmt]))}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise PolySpaceError(f"{path}: frames must be uint8 (N, H, W, 3) RGB, got "
                             f"{frames.dtype} {frames.shape}")
    n, h, w, _ = frames.shape
    if n == 0:
        raise PolySpaceError(f"{path}: no frames to write (frames has length 0)")
    if h % 2 or w % 2:
        raise PolySpaceError(f"{path}: frame size {h}x{w} must be even in both dimensions "
                             f"for 4:2:0 video; crop or resize the frames")
    if not fps > 0:
        raise PolySpaceError(f"{path}: fps must be positive, got {fps}")

    encoder, encoder_options = CODECS[codec]
    encoder_options = dict(encoder_options)
    if bframes is not None:
        encoder_options["bf"] = str(int(bframes))
    if options:
        encoder_options.update({k: str(v) for k, v in options.items()})
    rate = Fraction(fps).limit_denominator(1001)

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format=fmt) as container:
            stream = container.add_stream(encoder, rate=rate, options=encoder_options)
            stream.width, stream.height = w, h
            stream.pix_fmt = "yuv420p"
            if gop is not None:
                stream.codec_context.gop_size = int(gop)
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1) / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):  # flush delayed (B-/alt-ref) frames
                container.mux(packet)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; a dataset should be readable
        os.replace(tmp, path)
    except av.FFmpegError as e:
        raise PolySpaceError(f"{path}: encoding {codec} failed ({e}); check fps, size and "
                             f"options") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
