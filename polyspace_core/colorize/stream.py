"""Colorize a video of any length and resolution with bounded memory (`polyspace colorize`).

The input (colour or grey) is read in chunks of `chunk` frames with the video layer's decoder
(one `scan` of the file, then `read_unique_frames` per chunk); each chunk is turned into L at
full resolution and at a working size (short side `work_size`, aspect kept), the method predicts
ab at the working size, the ab is upsampled onto the full-resolution L, and the RGB frames go
straight into an encoder (`VideoStreamWriter`). The temporal memory carries over between
chunks, so chunking does not change the result. At most one chunk of frames is held at a time;
`colorize_video` reports the largest number held so tests can check it.
"""

from __future__ import annotations

import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PolySpaceError
from ..io import output_folder
from .lab import frames_to_lab, l_to_gray, lab_to_frames, merge_lab, normalize_ab, normalize_l, rgb_to_lab, split_lab

STREAM_METHODS = ("fusion", "exemplar", "temporal", "global")


class VideoStreamWriter:
    """Encode RGB uint8 frames as they come, into `path` atomically (temp file + rename on close).

    Uses the video layer's container/codec table (video/encode.py), so settings match
    write_video. Odd frame sizes cannot be stored as 4:2:0; they are written as 4:4:4 H.264."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, codec: str = "auto"):
        import av

        from ..video.encode import ALLOWED, CODECS, CONTAINERS

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in CONTAINERS:
            raise PolySpaceError(f"{self.path}: unsupported video suffix {suffix!r}; "
                                 f"use one of {', '.join(CONTAINERS)}")
        fmt, default_codec = CONTAINERS[suffix]
        codec = default_codec if codec == "auto" else codec
        if codec not in CODECS or codec not in ALLOWED[fmt]:
            raise PolySpaceError(f"{self.path}: codec {codec!r} cannot be written to a {suffix} file")
        odd = width % 2 or height % 2
        if odd and codec != "h264":
            raise PolySpaceError(f"{self.path}: {width}x{height} has an odd side; only h264 (4:4:4) can "
                                 f"store it — write .mp4/.mkv or resize the input")
        encoder, options = CODECS[codec]
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".tmp{suffix}",
                                         dir=output_folder(self.path))
        os.close(fd)
        rate = Fraction(fps).limit_denominator(1001)
        self._container = av.open(self._tmp, mode="w", format=fmt)
        self._stream = self._container.add_stream(encoder, rate=rate, options=dict(options))
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv444p" if odd else "yuv420p"
        self._rate, self._count, self._size = rate, 0, (height, width)

    def write(self, frames: np.ndarray) -> None:
        """Append (N, H, W, 3) uint8 RGB frames."""
        import av

        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:3] != self._size:
            raise PolySpaceError(f"{self.path}: frames must be uint8 (N, {self._size[0]}, {self._size[1]}, 3), "
                                 f"got {frames.dtype} {frames.shape}")
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = self._count, Fraction(1) / self._rate
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
            self._count += 1

    def close(self) -> Path:
        """Flush the encoder and move the finished file into place."""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        if self._count == 0:
            os.unlink(self._tmp)
            raise PolySpaceError(f"{self.path}: no frames were written")
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._container.close()
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)


def working_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(h, w) with the short side = short_side, aspect kept, both rounded to multiples of 8."""
    scale = short_side / min(height, width)
    h = max(8, int(round(height * scale / 8)) * 8)
    w = max(8, int(round(width * scale / 8)) * 8)
    return h, w


def _resize_rgb(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float RGB (N, 3, h, w) in [0, 1], area-like (antialiased) resize."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    return x


@torch.no_grad()
def colorize_video(input_path: str | os.PathLike, reference_path: str | os.PathLike, out_path: str | os.PathLike,
                   method: str = "fusion", system=None, flow=None, work_size: int = 64, chunk: int = 16,
                   device: torch.device | str = "cpu", codec: str = "auto", progress: bool = True) -> dict:
    """Colorize `input_path` from the exemplar image `reference_path` into `out_path`.

    method: fusion / exemplar (need `system`, a FusionSystem), temporal (needs `flow` or a
    system's), global (nothing). Returns stats: frames, fps of the input, seconds, frames_per_second,
    working size, peak_frames_held (the most input frames in memory at once)."""
    from tqdm.auto import tqdm

    from ..datasets.synthcolor import read_reference
    from ..video.decode import read_unique_frames, scan
    from .baselines import luminance_transfer
    from .flow import DISFlow
    from .propagation import TemporalPropagator

    if method not in STREAM_METHODS:
        raise PolySpaceError(f"colorize --method {method!r}: use one of {', '.join(STREAM_METHODS)}")
    if method in ("fusion", "exemplar") and system is None:
        raise PolySpaceError(f"colorize --method {method}: needs --checkpoint DIR (a trained FusionSystem "
                             f"folder, e.g. runs/default/08_colorization/checkpoint from notebook 08 or "
                             f"`polyspace train-colorize`); --method temporal or global need no weights")
    if chunk < 1:
        raise PolySpaceError(f"colorize --chunk={chunk}: must be >= 1")
    input_path = Path(input_path)
    info, table = scan(input_path)
    size = working_size(info.height, info.width, work_size)
    ref_rgb = _resize_rgb(read_reference(reference_path)[None], size).to(device)
    ref_lab = rgb_to_lab(ref_rgb)                      # (1, 3, h, w)
    ref_l, ref_ab = split_lab(ref_lab)

    propagator = None
    if system is not None:
        system.to(device).eval()
        system.reset_memory()
    if method == "temporal":
        propagator = TemporalPropagator(flow or (system.propagator.backend if system else DISFlow()))
        propagator.set_reference(l_to_gray(ref_l), ref_ab)
    if method == "exemplar":
        reference = system.exemplar.encode_reference(ref_l, ref_ab)

    writer = VideoStreamWriter(out_path, info.width, info.height, info.fps, codec)
    peak, start = 0, time.perf_counter()
    try:
        bar = tqdm(total=info.num_frames, desc="colorize", disable=not progress)
        for first in range(0, info.num_frames, chunk):
            wanted = list(range(first, min(first + chunk, info.num_frames)))
            by_index = read_unique_frames(input_path, wanted, info, table, backend="pyav")
            frames = np.stack([by_index.pop(i) for i in wanted])
            peak = max(peak, len(frames))
            full_l = frames_to_lab(frames)[:, :1]                              # (N, 1, H, W)
            work_lab = rgb_to_lab(_resize_rgb(frames, size)).to(device)        # (N, 3, h, w)
            work_l, _ = split_lab(work_lab)
            if method == "fusion":
                ab = system(work_lab[None], None, ref_lab)[0]
            elif method == "exemplar":
                ab = system.exemplar(work_l, reference=_expand(reference, len(frames)))["ab"]
            elif method == "temporal":
                grey = l_to_gray(work_l)
                out = []
                for t in range(len(frames)):
                    ab_t, conf_t = propagator.propagate(grey[t:t + 1])
                    propagator.push(grey[t:t + 1], ab_t, conf_t)
                    out.append(ab_t)
                ab = torch.cat(out)
            else:
                ab = torch.stack([normalize_ab(luminance_transfer(work_lab[t, :1].cpu(), ref_lab[0].cpu()))
                                  for t in range(len(frames))])
            ab_full = F.interpolate(ab.float().cpu(), size=(info.height, info.width), mode="bilinear",
                                    align_corners=False)
            writer.write(lab_to_frames(merge_lab(normalize_l(full_l), ab_full)))
            del frames, full_l, work_lab, ab, ab_full
            bar.update(len(wanted))
        bar.close()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - start
    return {"frames": info.num_frames, "input_fps": info.fps, "size": [info.height, info.width],
            "working_size": list(size), "method": method, "seconds": seconds,
            "frames_per_second": info.num_frames / max(seconds, 1e-9), "peak_frames_held": peak,
            "chunk": chunk, "output": str(out_path)}


def _expand(reference, n: int):
    from .exemplar import ReferenceEncoding
    return ReferenceEncoding(reference.features.expand(n, -1, -1, -1), reference.ab_grid.expand(n, -1, -1))
