"""Colorize a video of any length and resolution with bounded memory (`polyspace colorize`).

Pipeline, chunk by chunk (`chunk` frames at a time, nothing else of the video held):

    decode   one PyAV decoder for the whole file (`video.decode.iter_frames`): every frame is
             decoded once whatever the container, so time is linear in the length
    L        the input's lightness at full resolution (colour input is turned to L first)
    work     the frames resized (antialiased) to the working size: short side
             `min(working_size, the input's short side)`, aspect kept, sides multiples of 8
             (default 256, what real methods use; the demo network was trained at 64 px but is
             fully convolutional)
    predict  the method predicts ab at the working size (fusion / exemplar / temporal / global)
    upsample ab is brought to full resolution by joint bilateral upsampling guided by the
             full-resolution L (`joint_bilateral_upsample`), so chroma edges follow lightness
             edges instead of bilinear blur; nothing to do when the working size is the input's
    encode   L + ab -> RGB -> the encoder (`VideoStreamWriter`), written to a temp file that is
             renamed onto the output path only when every frame is in

The temporal memory and the reference's encoding carry over between chunks, so chunking does
not change the result. Inference runs under `torch.inference_mode` with the networks in
channels_last layout (2-3x faster CPU convolutions here). `colorize_video` reports the most
frames held at once, frames decoded, seconds per stage and the process's peak RSS.
"""

from __future__ import annotations

import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PolySpaceError
from ..io import output_folder
from .lab import _XYZ_FROM_RGB, l_to_gray, lab_to_frames, merge_lab, normalize_ab, normalize_l, rgb_to_lab, split_lab

STREAM_METHODS = ("fusion", "exemplar", "temporal", "global")
DEFAULT_WORKING_SIZE = 256
# joint bilateral upsampling: spatial sigma in working-size pixels, range sigma in L/100. Chosen on
# five scikit-image photos (astronaut, coffee, chelsea, rocket, immunohistochemistry): their true
# ab at 1/2 and 1/4 size upsampled back, mean |ab error| 8-10% below bilinear's (3x3 neighbours
# were no better and 2.4x slower); tests/test_colorize_stream.py checks it on two of them.
JBU_SIGMA_SPACE = 0.5
JBU_SIGMA_RANGE = 0.05


class VideoStreamWriter:
    """Encode RGB uint8 frames as they come, into `path` atomically (temp file + rename on close).

    Uses the video layer's container/codec table (video/encode.py), so settings match
    write_video. Odd frame sizes cannot be stored as 4:2:0; they are written as 4:4:4 H.264."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, codec: str = "auto"):
        import av

        from ..video.encode import ALLOWED, CODECS, CONTAINERS

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if self.path.is_dir():
            raise PolySpaceError(f"{self.path}: is a folder; give the output video's file name")
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
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".tmp{suffix}",
                                             dir=output_folder(self.path))
        except OSError as e:
            raise PolySpaceError(f"{self.path}: cannot write there ({e.strerror or type(e).__name__}); "
                                 f"choose an output path in a folder you can write") from None
        os.close(fd)
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
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
        try:
            for frame in frames:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                vf.pts, vf.time_base = self._count, Fraction(1) / self._rate
                for packet in self._stream.encode(vf):
                    self._container.mux(packet)
                self._count += 1
        except (av.FFmpegError, OSError) as e:  # e.g. the disk filled up
            raise PolySpaceError(f"{self.path}: cannot write the video ({str(e).splitlines()[0]})") from None

    def close(self) -> Path:
        """Flush the encoder and move the finished file into place."""
        import av

        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            if self._count == 0:
                raise PolySpaceError(f"{self.path}: no frames were written")
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
        except (av.FFmpegError, OSError) as e:
            self.abort()
            raise PolySpaceError(f"{self.path}: cannot finish the video ({str(e).splitlines()[0]})") from None
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop the unfinished video: the output path is left as it was."""
        try:
            self._container.close()
        except Exception:  # the file is deleted next, whatever state the muxer is in
            pass
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)


def working_resolution(height: int, width: int, short_side: int = DEFAULT_WORKING_SIZE) -> tuple[int, int]:
    """(h, w) the network works at for a (height, width) video: short side
    min(short_side, the video's short side) (never upscaled), aspect kept, both rounded to
    multiples of 8 (at least 8)."""
    if short_side < 8:
        raise PolySpaceError(f"colorize --working_size={short_side}: must be at least 8")
    scale = min(short_side, min(height, width)) / min(height, width)
    h = max(8, int(round(height * scale / 8)) * 8)
    w = max(8, int(round(width * scale / 8)) * 8)
    return h, w


def _resize_rgb(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float RGB (N, 3, h, w) in [0, 1]. Shrinking averages areas
    (OpenCV INTER_AREA, frame by frame: no float copy of the full-resolution chunk); enlarging
    (a small reference, a side rounded up to a multiple of 8) is bilinear."""
    h, w = size
    if frames.shape[1:3] != (h, w):
        mode = cv2.INTER_AREA if h <= frames.shape[1] and w <= frames.shape[2] else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(f, (w, h), interpolation=mode) for f in frames])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


# sRGB uint8 -> linear light, exactly as lab.rgb_to_lab computes it, once for the 256 values
_LINEAR_LUT = None


def lightness(frames: np.ndarray) -> torch.Tensor:
    """CIE L in [0, 100] (N, 1, H, W) float32 of uint8 RGB frames (N, H, W, 3): lab.frames_to_lab's
    L (to float rounding) at a fraction of the cost (a table for the gamma, one weighted sum, one
    cube root; a and b, which the output replaces, are not computed)."""
    global _LINEAR_LUT
    if _LINEAR_LUT is None:
        v = np.arange(256, dtype=np.float64) / 255.0
        _LINEAR_LUT = np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92).astype(np.float32)
    weights = _XYZ_FROM_RGB[1].numpy().astype(np.float32)        # Y row; the D65 white has Y = 1
    y = _LINEAR_LUT[frames] @ weights                              # (N, H, W)
    eps = (6.0 / 29.0) ** 3
    f = np.where(y > eps, np.cbrt(np.maximum(y, eps)), y / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    return torch.from_numpy((116.0 * f - 16.0).astype(np.float32))[:, None]


def _neighbours(out: int, inp: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of `out` output pixels: the first of the two input pixels around it (the pair
    bilinear interpolation with align_corners=False uses) and the offset from it, in input pixels."""
    pos = ((torch.arange(out, dtype=torch.float32) + 0.5) * (inp / out) - 0.5).clamp(0, inp - 1)
    first = pos.floor().clamp(max=max(inp - 2, 0))
    return first.long(), pos - first


def joint_bilateral_upsample(ab: torch.Tensor, l_low: torch.Tensor, l_full: torch.Tensor,
                             sigma_space: float = JBU_SIGMA_SPACE, sigma_range: float = JBU_SIGMA_RANGE
                             ) -> torch.Tensor:
    """ab (B, 2, h, w) at the working size -> (B, 2, H, W), guided by lightness.

    Joint bilateral upsampling (Kopf et al. 2007) on bilinear's support: each full-resolution
    pixel averages the ab of the 2x2 working-size pixels around it, weighted by distance
    (Gaussian, `sigma_space` working pixels) times lightness similarity (Gaussian on
    |L_full(p) - L_low(q)| / 100, `sigma_range`), so colour does not bleed across a lightness
    edge. l_low (B, 1, h, w) and l_full (B, 1, H, W) are normalised L (lab.py). Returns ab
    unchanged when (h, w) == (H, W)."""
    b, _, h, w = ab.shape
    big_h, big_w = l_full.shape[-2:]
    if (h, w) == (big_h, big_w):
        return ab
    device = ab.device
    guide = (l_full + 1.0) / 2.0
    low = torch.cat([ab, (l_low + 1.0) / 2.0], dim=1)
    rows, dy = _neighbours(big_h, h)
    cols, dx = _neighbours(big_w, w)
    num = torch.zeros(b, 2, big_h, big_w, dtype=ab.dtype, device=device)
    den = torch.zeros(b, 1, big_h, big_w, dtype=ab.dtype, device=device)
    for oy in (0, 1):
        band = low.index_select(2, (rows + oy).clamp(max=h - 1).to(device))     # (B, 3, H, w)
        wy = torch.exp(-((dy - oy) ** 2) / (2 * sigma_space ** 2)).to(device)
        for ox in (0, 1):
            nb = band.index_select(3, (cols + ox).clamp(max=w - 1).to(device))  # (B, 3, H, W)
            wx = torch.exp(-((dx - ox) ** 2) / (2 * sigma_space ** 2)).to(device)
            weight = (wy[:, None] * wx[None, :]) * torch.exp(-((guide - nb[:, 2:]) ** 2) / (2 * sigma_range ** 2))
            num += weight * nb[:, :2]
            den += weight
    out = num / den.clamp(min=1e-30)
    lost = den <= 1e-30  # a pixel unlike all 4 neighbours (a one-pixel bright line): every weight underflowed
    if bool(lost.any()):
        bilinear = F.interpolate(ab, size=(big_h, big_w), mode="bilinear", align_corners=False)
        out = torch.where(lost, bilinear, out)
    return out


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (sees tensors, unlike tracemalloc)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 ** 2 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _prepare_system(system, device) -> None:
    """Eval mode, on `device`, convolutions in channels_last (in place), memory emptied."""
    system.to(device).eval()
    system.to(memory_format=torch.channels_last)
    system.reset_memory()


def colorize_video(input_path: str | os.PathLike, reference_path: str | os.PathLike, out_path: str | os.PathLike,
                   method: str = "fusion", system=None, flow=None, working_size: int = DEFAULT_WORKING_SIZE,
                   chunk: int = 16, device: torch.device | str = "cpu", codec: str = "auto",
                   progress: bool = True) -> dict:
    """Colorize `input_path` from the exemplar image `reference_path` into `out_path`.

    method: fusion / exemplar (need `system`, a FusionSystem; it is put in eval mode and
    channels_last in place), temporal (needs `flow` or a system's), global (nothing).
    working_size: short side the method works at (see `working_resolution`).
    Returns stats: frames, input fps, size, working size, seconds, frames_per_second,
    peak_frames_held (the most input frames in memory at once), frames_decoded, seconds per stage
    (decode; convert: L and the working-size Lab; predict; upsample: ab to full size and Lab to
    RGB; encode) and peak_rss_mb (the process's, so far).
    Bad input (a reference that does not open, a video that does not decode, an output that
    cannot be written) is a PolySpaceError and leaves nothing at `out_path`."""
    from tqdm.auto import tqdm

    from ..datasets.synthcolor import read_reference
    from ..video.decode import iter_frames, scan
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
    size = working_resolution(info.height, info.width, working_size)
    full = (info.height, info.width)
    ref_lab = rgb_to_lab(_resize_rgb(read_reference(reference_path)[None], size)).to(device)  # (1, 3, h, w)
    ref_l, ref_ab = split_lab(ref_lab)

    propagator = reference = None
    if system is not None:
        _prepare_system(system, device)
    if method == "temporal":
        propagator = TemporalPropagator(flow or (system.propagator.backend if system else DISFlow()))
        propagator.set_reference(l_to_gray(ref_l), ref_ab)

    writer = VideoStreamWriter(out_path, info.width, info.height, info.fps, codec)
    seconds = dict.fromkeys(("decode", "convert", "predict", "upsample", "encode"), 0.0)
    peak = decoded = 0
    start = time.perf_counter()
    try:
        # the bar closes before an error propagates, so the error is the last line printed
        with torch.inference_mode(), tqdm(total=info.num_frames, desc="colorize", disable=not progress) as bar:
            if method == "exemplar":
                reference = system.exemplar.encode_reference(ref_l, ref_ab)
            frames_iter = iter_frames(input_path, chunk, info=info, table=table)
            while True:
                tick = time.perf_counter()
                item = next(frames_iter, None)
                seconds["decode"] += time.perf_counter() - tick
                if item is None:
                    break
                _, frames = item
                n = len(frames)
                peak, decoded = max(peak, n), decoded + n

                tick = time.perf_counter()
                full_l = normalize_l(lightness(frames))                                 # (N, 1, H, W)
                work_lab = rgb_to_lab(_resize_rgb(frames, size)).to(device)             # (N, 3, h, w)
                work_l = split_lab(work_lab)[0]
                del frames
                seconds["convert"] += time.perf_counter() - tick

                tick = time.perf_counter()
                ab = _predict(method, system, propagator, reference, work_lab, work_l, ref_lab).float().cpu()
                work_l = work_l.float().cpu()
                seconds["predict"] += time.perf_counter() - tick

                # frame by frame from here: full-resolution float temporaries stay one frame's worth
                for i in range(n):
                    tick = time.perf_counter()
                    ab_full = joint_bilateral_upsample(ab[i:i + 1], work_l[i:i + 1], full_l[i:i + 1])
                    rgb = lab_to_frames(merge_lab(full_l[i:i + 1], ab_full))
                    seconds["upsample"] += time.perf_counter() - tick
                    tick = time.perf_counter()
                    writer.write(rgb)
                    seconds["encode"] += time.perf_counter() - tick
                del full_l, work_lab, work_l, ab
                bar.update(n)
        tick = time.perf_counter()
        writer.close()
        seconds["encode"] += time.perf_counter() - tick
    except BaseException:
        writer.abort()
        raise
    total = time.perf_counter() - start
    return {"frames": info.num_frames, "input_fps": info.fps, "size": list(full), "working_size": list(size),
            "method": method, "seconds": total, "frames_per_second": info.num_frames / max(total, 1e-9),
            "seconds_by_stage": seconds, "peak_frames_held": peak, "frames_decoded": decoded,
            "chunk": chunk, "peak_rss_mb": peak_rss_mb(), "torch_threads": torch.get_num_threads(),
            "output": str(out_path)}


def _predict(method: str, system, propagator, reference, work_lab: torch.Tensor, work_l: torch.Tensor,
             ref_lab: torch.Tensor) -> torch.Tensor:
    """Normalised ab (N, 2, h, w) of one chunk at the working size."""
    from .baselines import luminance_transfer

    if method == "fusion":
        return system(work_lab[None], None, ref_lab)[0]
    if method == "exemplar":
        branch = system.exemplar
        if hasattr(branch, "reset_memory"):  # it carries the previous frame (SwinTExCo): frame by frame
            return torch.cat([branch(work_l[t:t + 1], reference=reference)["ab"] for t in range(len(work_l))])
        return branch(work_l, reference=reference.expand(len(work_l)))["ab"]
    if method == "temporal":
        grey = l_to_gray(work_l)
        out = []
        for t in range(len(grey)):
            ab_t, conf_t = propagator.propagate(grey[t:t + 1])
            propagator.push(grey[t:t + 1], ab_t, conf_t)
            out.append(ab_t)
        return torch.cat(out)
    return torch.stack([normalize_ab(luminance_transfer(work_lab[t, :1].cpu(), ref_lab[0].cpu()))
                        for t in range(len(work_lab))])
