"""`polyspace colorize` on long videos: decode time linear in the length, peak RSS flat.

    .venv/bin/python benchmarks/colorize_stream.py [--lengths 300,600,900] [--size 640x360]
                                                   [--method fusion] [--chunk 16]

Writes benchmarks/results/colorize_stream.json. Generates 640x360 AVI files (MPEG-4 Part 2 with
B-frames, the Xvid-style layout of HMDB51/UCF101, which has no usable timestamps) of each length
and a 640x360 H.264 mp4 of the first length, written frame by frame (a pan across a real photo,
back and forth) so the generator itself holds no video. Then, per file:
- decode alone: seconds for `iter_frames` (one decoder, chunks of --chunk) over the file, and,
  for the AVI files up to 300 frames, the previous way (`read_unique_frames` per chunk, which
  decodes an AVI from frame 0 for every chunk) for comparison;
- the whole command: `polyspace colorize --method METHOD` (the demo FusionSystem's architecture,
  random weights, default working size 256) in a fresh process; its peak RSS from the kernel
  (os.wait4's ru_maxrss: everything the process touched, tensors included, unlike tracemalloc),
  wall seconds, and its own stats (frames decoded, seconds per stage).
Linear decoding shows as constant decode seconds per frame; bounded memory as the same peak RSS
at every length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polyspace_core.colorize.stream import VideoStreamWriter  # noqa: E402
from polyspace_core.io import atomic_write_json  # noqa: E402
from polyspace_core.video.decode import iter_frames, read_unique_frames, scan  # noqa: E402

OLD_WAY_MAX_FRAMES = 300  # the per-chunk re-decode is quadratic: keep it to the short files


def write_pan(path: Path, frames: int, width: int, height: int, codec: str = "auto") -> Path:
    """A pan across scikit-image's coffee photo, back and forth, encoded frame by frame."""
    big = cv2.resize(data.coffee(), (width * 2, height), interpolation=cv2.INTER_AREA)
    span = big.shape[1] - width
    writer = VideoStreamWriter(path, width, height, fps=25, codec=codec)
    try:
        for t in range(frames):
            x = abs((4 * t) % (2 * span) - span)  # triangle wave over [0, span]
            writer.write(big[None, :, x:x + width])
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def decode_seconds(path: Path, chunk: int) -> tuple[float, int]:
    start, count = time.perf_counter(), 0
    for _, frames in iter_frames(path, chunk):
        count += len(frames)
    return time.perf_counter() - start, count


def decode_seconds_per_chunk_reads(path: Path, chunk: int) -> float:
    """The previous streaming read: read_unique_frames (a fresh decoder) for each chunk."""
    info, table = scan(path)
    start = time.perf_counter()
    for first in range(0, info.num_frames, chunk):
        read_unique_frames(path, range(first, min(first + chunk, info.num_frames)), info, table, backend="pyav")
    return time.perf_counter() - start


def run_colorize(video: Path, ref: Path, out: Path, checkpoint: Path, method: str, chunk: int) -> dict:
    """`polyspace colorize` in a fresh process: its stats, wall seconds and peak RSS (MiB)."""
    cmd = [sys.executable, "-m", "polyspace_core.cli", "colorize", "--input", str(video), "--reference", str(ref),
           "--out", str(out), "--method", method, "--chunk", str(chunk), "--device", "cpu"]
    if method in ("fusion", "exemplar"):
        cmd += ["--checkpoint", str(checkpoint)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"colorize failed on {video} (exit {proc.returncode}): {' '.join(cmd)}")
    stats = json.loads(stdout)
    return {"wall_seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "stats": stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="300,600,900")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    parser.add_argument("--method", default="fusion", choices=["fusion", "exemplar", "temporal", "global"])
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "colorize_stream.json"))
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    width, height = (int(v) for v in args.size.split("x"))
    results = {"size": args.size, "method": args.method, "chunk": args.chunk, "cpu_count": os.cpu_count(),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
               "python": platform.python_version(), "machine": platform.machine(), "files": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = folder / "demo_system"
        if args.method in ("fusion", "exemplar"):
            import torch

            from polyspace_core.colorize.exemplar import build_exemplar_branch
            from polyspace_core.colorize.system import FusionSystem

            torch.manual_seed(0)
            FusionSystem(build_exemplar_branch()).save_pretrained(checkpoint)
        ref = folder / "ref.png"
        big = cv2.resize(data.coffee(), (width * 2, height), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(ref), cv2.cvtColor(big[:, :width], cv2.COLOR_RGB2BGR))
        videos = [(n, "avi", folder / f"pan{n}.avi") for n in lengths]
        videos.append((lengths[0], "h264 mp4", folder / f"pan{lengths[0]}.mp4"))
        for n, kind, path in videos:
            write_pan(path, n, width, height)
            seconds, count = decode_seconds(path, args.chunk)
            row = {"frames": n, "container": kind, "decode_seconds": seconds,
                   "decode_ms_per_frame": 1000 * seconds / count, "frames_decoded": count}
            if kind == "avi" and n <= OLD_WAY_MAX_FRAMES:
                row["per_chunk_reads_seconds"] = decode_seconds_per_chunk_reads(path, args.chunk)
            run = run_colorize(path, ref, folder / "out.mp4", checkpoint, args.method, args.chunk)
            stats = run["stats"]
            row.update({"colorize_wall_seconds": run["wall_seconds"], "peak_rss_mb": run["peak_rss_mb"],
                        "colorize_frames_per_second": stats["frames_per_second"],
                        "colorize_decode_seconds": stats["seconds_by_stage"]["decode"],
                        "colorize_frames_decoded": stats["frames_decoded"],
                        "working_size": stats["working_size"], "peak_frames_held": stats["peak_frames_held"]})
            results["files"].append(row)
            old = (f", per-chunk reads {row['per_chunk_reads_seconds']:.2f} s"
                   if "per_chunk_reads_seconds" in row else "")
            print(f"{kind:>8} {n:4d} frames: decode {seconds:6.2f} s ({row['decode_ms_per_frame']:.2f} ms/frame{old}); "
                  f"colorize --method {args.method} at {stats['working_size'][0]}x{stats['working_size'][1]}: "
                  f"{row['colorize_wall_seconds']:.1f} s, decode inside {row['colorize_decode_seconds']:.2f} s, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MiB", flush=True)
            atomic_write_json(args.out, results)
            path.unlink()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
