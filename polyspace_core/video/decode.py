"""Probe a video and read frames at given indices, with torchcodec, decord or PyAV.

Frame index i means the i-th frame of a full sequential decode, in presentation order; every
backend returns RGB uint8 frames that are bit-identical for the same index where `auto` uses it.

torchcodec (the decoder PyTorch ships) is the fastest here: about twice PyAV's frames/s on a
sequential read and 10-25% faster than PyAV and decord on a random 16-frame clip
(benchmarks/decode.py), 1.2-1.4x PyAV in the FFN loader (benchmarks/ffn_loader.py). `auto`
uses it wherever its frames equal PyAV's: every stream with usable timestamps or without
B-frames, in 8-bit 4:2:0/4:2:2/4:4:4. It is wrong, like decord, on AVI with B-frames (Xvid
HMDB51/UCF101 files: AVI has no real presentation timestamps, so its index runs in decode
order), and its 10-bit to RGB conversion differs from PyAV's; those go to the rules below. It
needs the system's FFmpeg shared libraries (4 to 9; `apt install ffmpeg` or `conda install
ffmpeg`); without them `auto` works as if it were not installed and `backend="torchcodec"` is a
one-line error saying so.

Without torchcodec, decord is the default reader (fast random access through `get_batch`), but
it is wrong or unsafe in known cases, so `backend="auto"` routes those to PyAV:
- streams with B-frames (frame reordering): `get_batch` at random indices returns wrong frames
  for MPEG-4 Part 2 with B-frames (Xvid-style HMDB51/UCF101 files, in AVI or MP4) and for H.264
  in AVI: we reproduce it on generated files (benchmarks/decode.py counts the wrong frames, and
  tests/test_video_decode.py fails on them if they go to get_batch). H.264 in MP4 with B-frames
  reads right here but is reported wrong on real files (dmlc/decord#365, #54).
- VP8/VP9/AV1 (webm): seeking lands in the wrong place on real webm files (dmlc/decord#91).
  Our generated webm files happen to read right, so this one is a precaution.
- long videos (> LONG_VIDEO_FRAMES): decord's native memory grows while it decodes through a long
  file (dmlc/decord#208, #157).
- files whose frame count decord disagrees with (it trusts header metadata; asking for frames
  past the real end can hang it, dmlc/decord#373).
When decord is asked for explicitly on such a stream it reads sequentially from the first frame
with next() (its skip_frames() seeks and is as wrong as get_batch), which is slow but right.

PyAV builds a frame table from the demuxed packets (presentation timestamp -> index, keyframe
positions) without decoding, seeks to the last keyframe before each wanted frame and identifies
decoded frames by their timestamp. AVI has no real presentation timestamps (PyAV reports dts+1
for H.264 in AVI), so there, and wherever timestamps are missing or repeat, it counts frames
from the start instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PolySpaceError

BACKENDS = ("auto", "decord", "pyav", "torchcodec")
# pixel formats where torchcodec's RGB frames were checked equal to PyAV's (10-bit ones differ)
TORCHCODEC_PIXEL_FORMATS = {"yuv420p", "yuv422p", "yuv444p"}
# codecs whose random access decord gets wrong (see module docstring)
DECORD_BAD_CODECS = {"vp8", "vp9", "av1"}
# decord is reliable on 8-bit 4:2:0; other pixel layouts and the H.264 high-bit-depth / 4:4:4
# profiles are read with PyAV under "auto" (seen here: lossless H.264, profile "High 4:4:4
# Predictive", fails inside decord with "DECORDArrayCopyFromTo: The size must exactly match")
DECORD_PIXEL_FORMATS = {"yuv420p", "yuvj420p"}
DECORD_H264_PROFILES = {"Baseline", "Constrained Baseline", "Main", "Extended", "High"}
# above this many frames "auto" avoids decord's memory growth on long files
LONG_VIDEO_FRAMES = 3000


class VideoDecodeError(PolySpaceError):
    """A video that is missing, empty, corrupt or truncated, or a frame that cannot be read.
    The message names the file and the reason; datasets turn it into their error/skip policy."""


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a file's first video stream.

    num_frames counts the frames actually stored (demuxed packets), not a header estimate.
    fps is the stream's average frame rate. has_b_frames is True when the decoder reorders
    frames (B-frames), which decides the backend under "auto". timestamps is True when every
    packet has its own presentation timestamp (not in AVI), so frames can be found by them.
    """

    num_frames: int
    fps: float
    height: int
    width: int
    codec: str
    container: str = ""
    has_b_frames: bool = False
    pixel_format: str = ""
    profile: str = ""
    timestamps: bool = True


@dataclass(frozen=True)
class _FrameTable:
    """Presentation timestamps in display order and the display indices of keyframes."""

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]

    def index_of(self) -> dict[int, int]:
        return {p: i for i, p in enumerate(self.pts)}

    def keyframe_at_or_before(self, index: int) -> int:
        best = 0
        for k in self.keyframes:
            if k > index:
                break
            best = k
        return best


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoDecodeError(f"{path}: video file not found; check the dataset root and split")
    if not path.is_file():
        raise VideoDecodeError(f"{path}: not a file; expected a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes); re-download or re-extract it")


def _open(path: Path):
    """av.open with our errors; the caller closes the container."""
    import av

    _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: cannot open as video ({_reason(e)}); the file is "
                               f"corrupt, truncated or not a video") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream in the file")
    return container


def _reason(e: Exception) -> str:
    return str(getattr(e, "strerror", None) or e).replace("\n", " ").strip()


def scan(path: Path) -> tuple[VideoInfo, _FrameTable | None]:
    """Demux every packet of the video stream (no decoding) to count frames, detect
    truncation and build the timestamp table. Returns (info, table or None for count mode)."""
    import av
    import av.logging

    # FFmpeg demuxers report damage (a cut-off cluster, an element overrunning its parent)
    # only as log messages and then carry on with fewer frames, so listen to their errors
    old_level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as logs:
            container = _open(path)
            try:
                info, table, last_end = _demux_table(path, container)
                demuxer = container.format.name
                video_only = len(container.streams) == 1
                duration_us = container.duration
                time_base, start = container.streams.video[0].time_base, \
                    container.streams.video[0].start_time or 0
            finally:
                container.close()
    finally:
        av.logging.set_level(old_level)
    damage = [msg.strip() for level, name, msg in logs
              if level <= av.logging.ERROR and name == demuxer]
    if damage:
        raise VideoDecodeError(f"{path}: damaged container ({damage[0]}); the file is corrupt "
                               f"or truncated, re-download it")
    # Matroska/WebM store no frame count, but the duration is written into the header
    if video_only and duration_us and last_end is not None and time_base and info.fps > 0:
        declared_s = duration_us / 1_000_000
        held_s = float((last_end - start) * time_base)
        if held_s < declared_s - 1.5 / info.fps:
            raise VideoDecodeError(f"{path}: truncated: the header declares {declared_s:.2f} s "
                                   f"but the file holds {held_s:.2f} s of video; re-download it")
    return info, table


def _demux_table(path: Path, container) -> tuple[VideoInfo, _FrameTable | None, int | None]:
    import av

    stream = container.streams.video[0]
    ctx = stream.codec_context
    pts_list, key_pts, count, last_end = [], [], 0, None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            count += 1
            pts_list.append(packet.pts)
            if packet.is_keyframe:
                key_pts.append(packet.pts)
            if packet.pts is not None and packet.duration:
                end = packet.pts + packet.duration
                last_end = end if last_end is None else max(last_end, end)
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: corrupt video data after {count} frames "
                               f"({_reason(e)})") from None
    if count == 0:
        raise VideoDecodeError(f"{path}: the video stream holds no frames")
    # header says more frames than the file holds: cut off (AVI/MP4 store a frame count)
    if stream.frames and stream.frames > count:
        raise VideoDecodeError(f"{path}: truncated: the header declares {stream.frames} "
                               f"frames but the file holds {count}; re-download it")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    timestamps_usable = (not container.format.name.startswith("avi")
                         and None not in pts_list and len(set(pts_list)) == count)
    info = VideoInfo(num_frames=count, fps=float(rate) if rate else 0.0, height=ctx.height,
                     width=ctx.width, codec=ctx.name, container=container.format.name,
                     has_b_frames=bool(ctx.has_b_frames), pixel_format=ctx.format.name if ctx.format else "",
                     profile=ctx.profile or "", timestamps=timestamps_usable)
    table = None
    if timestamps_usable:
        pts_sorted = tuple(sorted(pts_list))
        position = {p: i for i, p in enumerate(pts_sorted)}
        table = _FrameTable(pts_sorted, tuple(sorted(position[p] for p in key_pts)) or (0,))
    return info, table, last_end


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps, size and codec of the first video stream of `path`.

    Reads every packet (cheap: no decoding) so that num_frames is the true count and a
    truncated file is caught here. Raises VideoDecodeError for a missing, empty, corrupt or
    truncated file.
    """
    return scan(Path(path))[0]


@functools.cache
def torchcodec_problem() -> str | None:
    """None when torchcodec can decode video here, else why not (one line). Cached per process."""
    try:
        from torchcodec._core import ops
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception as e:  # ImportError, or a library that fails to load
        return f"torchcodec is not importable ({_reason(e)[:200]}); pip install torchcodec"
    if not getattr(ops, "_FFMPEG_AVAILABLE", True):
        return ("torchcodec cannot find the FFmpeg shared libraries (versions 4 to 9) it needs; "
                "install them (apt install ffmpeg, or conda install ffmpeg)")
    return None


def choose_backend(info: VideoInfo) -> str:
    """The backend "auto" uses for a stream: torchcodec where it is installed and its frames are
    right (not AVI-style streams that reorder frames without timestamps, 8-bit pixel formats
    only); otherwise decord unless it is known to be wrong or unsafe there (VP8/VP9/AV1,
    B-frames, pixel formats other than 8-bit 4:2:0, H.264 4:4:4 or high-bit-depth profiles,
    long videos), then PyAV."""
    if torchcodec_problem() is None and torchcodec_reads_right(info):
        return "torchcodec"
    return choose_backend_without_torchcodec(info)


def torchcodec_reads_right(info: VideoInfo) -> bool:
    """torchcodec indexes frames by timestamp, so a stream that reorders frames (B-frames) must
    have usable ones; its 10-bit conversion to RGB differs from PyAV's."""
    return (info.timestamps or not info.has_b_frames) and info.pixel_format in TORCHCODEC_PIXEL_FORMATS


def choose_backend_without_torchcodec(info: VideoInfo) -> str:
    """decord where it is reliable (see the module docstring), else PyAV."""
    if (info.codec in DECORD_BAD_CODECS or info.has_b_frames or info.num_frames > LONG_VIDEO_FRAMES
            or info.pixel_format not in DECORD_PIXEL_FORMATS
            or (info.codec == "h264" and info.profile not in DECORD_H264_PROFILES)):
        return "pyav"
    return "decord"


def read_frames(path: str | os.PathLike, indices: Sequence[int] | np.ndarray,
                backend: str = "auto", *, threads: int = 1) -> np.ndarray:
    """Decode the frames at `indices` (any order, duplicates allowed) from `path`.

    Returns (len(indices), H, W, 3) uint8 RGB in the order of `indices`. Each distinct frame is
    decoded and converted once. backend: "auto" (torchcodec or decord where it is right, else
    PyAV; see choose_backend), "torchcodec", "decord" or "pyav". threads: decoder threads (1
    suits DataLoader workers).
    Raises VideoDecodeError for a bad file or an index outside [0, num_frames).
    """
    path = Path(path)
    indices = [int(i) for i in np.asarray(indices).reshape(-1)]
    info, table = scan(path)
    frames_by_index = read_unique_frames(path, indices, info, table, backend, threads)
    return np.stack([frames_by_index[i] for i in indices])


def read_unique_frames(path: Path, indices: Iterable[int], info: VideoInfo,
                       table: _FrameTable | None, backend: str = "auto",
                       threads: int = 1) -> dict[int, np.ndarray]:
    """Decode each distinct index once, given `scan`'s result; returns {index: frame}."""
    if backend not in BACKENDS:
        raise PolySpaceError(f"backend={backend!r}: unknown video backend; use one of "
                             f"{', '.join(BACKENDS)}")
    wanted = sorted({int(i) for i in indices})
    if not wanted:
        raise PolySpaceError(f"{path}: no frame indices requested")
    if wanted[0] < 0 or wanted[-1] >= info.num_frames:
        bad = wanted[0] if wanted[0] < 0 else wanted[-1]
        raise VideoDecodeError(f"{path}: frame index {bad} is outside the video's "
                               f"{info.num_frames} frames")
    chosen = choose_backend(info) if backend == "auto" else backend
    if chosen == "torchcodec":
        problem = torchcodec_problem()
        if problem is not None:
            raise PolySpaceError(f"backend='torchcodec': {problem}; or use backend='auto'")
        if not torchcodec_reads_right(info):
            # a setting, not a bad file: PolySpaceError, so datasets do not skip it as one
            raise PolySpaceError(f"{path}: backend='torchcodec' reads this stream ({info.container} "
                                 f"{info.codec} {info.pixel_format}{', B-frames' if info.has_b_frames else ''}) "
                                 "differently from a sequential decode; use backend='auto' or 'pyav'")
        frames = _read_torchcodec(path, wanted, info, threads)
        if frames is not None:
            return frames
        if backend == "torchcodec":
            raise VideoDecodeError(f"{path}: torchcodec's frame count differs from the "
                                   f"{info.num_frames} frames in the file; use backend='auto' or 'pyav'")
        chosen = choose_backend_without_torchcodec(info)
    if chosen == "decord":
        random_access = choose_backend_without_torchcodec(info) == "decord"
        frames = _read_decord(path, wanted, info, random_access, threads)
        if frames is not None:
            return frames
        # decord miscounts this file's frames, so its indices cannot be trusted
        if backend == "decord":
            raise VideoDecodeError(f"{path}: decord's frame count differs from the "
                                   f"{info.num_frames} frames in the file; use backend='auto' "
                                   f"or 'pyav'")
    return _read_pyav(path, wanted, table, threads)


# ----------------------------------------------------------------------------- torchcodec

def _read_torchcodec(path: Path, wanted: list[int], info: VideoInfo,
                     threads: int) -> dict[int, np.ndarray] | None:
    """torchcodec in exact seek mode (it scans the file's packets, as `scan` does, so index i is
    the i-th frame in presentation order). Returns None when its frame count differs from the
    demuxed count (then its indices cannot be trusted)."""
    from torchcodec.decoders import VideoDecoder

    try:
        decoder = VideoDecoder(str(path), seek_mode="exact", dimension_order="NHWC",
                               num_ffmpeg_threads=threads, device="cpu")
    except (RuntimeError, ValueError) as e:
        raise VideoDecodeError(f"{path}: torchcodec cannot open it ({_reason(e)[:200]})") from None
    if decoder.metadata.num_frames != info.num_frames:
        return None
    try:
        batch = decoder.get_frames_at(indices=wanted).data.numpy()
    except (RuntimeError, IndexError, ValueError) as e:
        raise VideoDecodeError(f"{path}: torchcodec failed to decode frames ({_reason(e)[:200]})") \
            from None
    return {i: batch[k] for k, i in enumerate(wanted)}


# ----------------------------------------------------------------------------- decord

def _read_decord(path: Path, wanted: list[int], info: VideoInfo, random_access: bool,
                 threads: int) -> dict[int, np.ndarray] | None:
    """decord: get_batch where random access is reliable, else decode forward from frame 0.
    Returns None when decord's frame count differs from the demuxed count."""
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=threads)
    except decord.DECORDError as e:
        raise VideoDecodeError(f"{path}: decord cannot open it ({_reason(e).splitlines()[0]})") \
            from None
    try:
        if len(reader) != info.num_frames:
            return None
        if random_access:
            batch = reader.get_batch(wanted).asnumpy()
            return {i: batch[k] for k, i in enumerate(wanted)}
        # next() through every frame: decord's skip_frames() seeks and lands on wrong frames
        # in B-frame streams just like get_batch, so only plain next() calls are safe here
        frames, position = {}, 0  # position: index of the frame next() returns
        for i in wanted:
            while position < i:
                reader.next()
                position += 1
            frames[i] = reader.next().asnumpy()
            position = i + 1
        return frames
    except (decord.DECORDError, StopIteration) as e:
        raise VideoDecodeError(f"{path}: decord failed to decode frames "
                               f"({_reason(e).splitlines()[0] if str(e) else 'stream ended'})") \
            from None
    finally:
        del reader  # free the native decoder now, not at the next GC


# ----------------------------------------------------------------------------- PyAV

class _CountInstead(Exception):
    """Timestamps did not identify the frames; decode from the start and count instead."""


def _read_pyav(path: Path, wanted: list[int], table: _FrameTable | None,
               threads: int) -> dict[int, np.ndarray]:
    if table is not None:
        try:
            return _read_pyav_seek(path, wanted, table, threads)
        except _CountInstead:
            pass
    return _read_pyav_count(path, wanted, threads)


def _decoded(container, stream, path: Path):
    """container.decode(stream) with our error."""
    import av

    try:
        yield from container.decode(stream)
    except av.FFmpegError as e:
        raise VideoDecodeError(f"{path}: corrupt video data ({_reason(e)})") from None


def _open_stream(path: Path, threads: int):
    container = _open(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO" if threads != 1 else "SLICE"
    stream.codec_context.thread_count = threads
    return container, stream


def _rgb(frame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def _read_pyav_count(path: Path, wanted: list[int], threads: int) -> dict[int, np.ndarray]:
    """Decode from the first frame; the k-th decoded frame is index k."""
    wanted_set, last = set(wanted), wanted[-1]
    frames = {}
    container, stream = _open_stream(path, threads)
    with container:
        for i, frame in enumerate(_decoded(container, stream, path)):
            if i in wanted_set:
                frames[i] = _rgb(frame)
            if i >= last:
                break
    _check_complete(path, wanted, frames)
    return frames


def _read_pyav_seek(path: Path, wanted: list[int], table: _FrameTable,
                    threads: int) -> dict[int, np.ndarray]:
    """Seek to the last keyframe before each wanted frame when that skips decoding, and
    identify decoded frames by presentation timestamp."""
    index_of = table.index_of()
    wanted_set = set(wanted)
    frames: dict[int, np.ndarray] = {}
    container, stream = _open_stream(path, threads)
    with container:
        decoder, position, floor = None, 0, 0  # position: next index the decoder yields
        for target in wanted:
            if target in frames:
                continue
            keyframe = table.keyframe_at_or_before(target)
            if decoder is None or keyframe > position:
                if keyframe > 0:
                    container.seek(table.pts[keyframe], stream=stream, backward=True)
                decoder, floor = _decoded(container, stream, path), keyframe
            for frame in decoder:
                index = index_of.get(frame.pts)
                if index is None:
                    raise _CountInstead
                if index < floor:  # leading frames of an open GOP: not decodable after a seek
                    continue
                if index > target and target not in frames:
                    raise _CountInstead  # the seek landed past the target
                position = index + 1
                if index in wanted_set:
                    frames[index] = _rgb(frame)
                if index >= target:
                    break
    _check_complete(path, wanted, frames)
    return frames


def iter_frames(path: str | os.PathLike, chunk: int = 16, *, info: VideoInfo | None = None,
                table: _FrameTable | None = None, threads: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Every frame of `path` in presentation order, decoded once by one PyAV decoder, in chunks.

    Yields (index of the chunk's first frame, (n, H, W, 3) uint8 RGB) with n = `chunk` except for
    the last chunk. `info`/`table`: `scan`'s result, when the caller has it (else it is scanned
    here, which also catches truncated files). Where the file has usable timestamps each decoded
    frame's must be the expected one. Raises VideoDecodeError when the stream is corrupt, yields
    frames out of order, or ends before the `info.num_frames` frames `scan` counted."""
    path = Path(path)
    if chunk < 1:
        raise PolySpaceError(f"iter_frames chunk={chunk}: must be >= 1")
    if info is None:
        info, table = scan(path)
    container, stream = _open_stream(path, threads)
    with container:
        batch: list[np.ndarray] = []
        count = 0
        for frame in _decoded(container, stream, path):
            if count >= info.num_frames:
                raise VideoDecodeError(f"{path}: the decoder yields more frames than the "
                                       f"{info.num_frames} the file's packets hold; the file is corrupt")
            if table is not None and frame.pts is not None and frame.pts != table.pts[count]:
                raise VideoDecodeError(f"{path}: frame {count} decoded with timestamp {frame.pts}, "
                                       f"expected {table.pts[count]}; the file is corrupt")
            batch.append(_rgb(frame))
            count += 1
            if len(batch) == chunk:
                yield count - chunk, np.stack(batch)
                batch = []
        if batch:
            yield count - len(batch), np.stack(batch)
    if count != info.num_frames:
        raise VideoDecodeError(f"{path}: the stream ended after {count} of {info.num_frames} frames "
                               f"(corrupt or truncated); re-download the file")


def _check_complete(path: Path, wanted: list[int], frames: dict[int, np.ndarray]) -> None:
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise VideoDecodeError(f"{path}: frame {missing[0]} could not be decoded (the stream "
                               f"ended early or is corrupt); re-download the file")
