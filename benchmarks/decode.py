"""Decode throughput per backend on generated videos, and what decode-once saves.

    .venv/bin/python benchmarks/decode.py [--frames 150] [--size 192x256] [--repeats 3]

Writes benchmarks/results/decode.json. Measures, for H.264 mp4 (with and without B-frames),
VP9 webm and MPEG-4 avi with B-frames:
- frames/s of read_frames per backend for a sequential read of every frame and for a random
  16-frame TSN clip (what a training loader asks for);
- how often decord's raw get_batch returns the wrong frame (each frame carries its number),
  which is why backend="auto" sends some streams to PyAV; torchcodec is measured where its
  frames are right (not AVI with B-frames, which read_frames refuses for it) and it can load;
- decode-once: one decode_clips call serving 16/8/4-frame TSN clips plus a dense clip versus a
  separate call per clip: frames decoded and wall time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polyspace_core.io import atomic_write_json  # noqa: E402
from polyspace_core.video import (  # noqa: E402
    ClipRequest,
    SpatialTransform,
    choose_backend,
    decode_clips,
    probe,
    read_frames,
    torchcodec_problem,
    tsn_indices,
    write_video,
)
from polyspace_core.video.decode import torchcodec_reads_right  # noqa: E402
from polyspace_core.video.patterns import frame_number, numbered_frames  # noqa: E402

VIDEOS = {
    "h264_mp4": ("h264.mp4", dict(codec="h264", gop=50, bframes=0)),
    "h264_bframes_mp4": ("h264_b.mp4", dict(codec="h264", gop=50, bframes=3)),
    "vp9_webm": ("vp9.webm", dict(codec="vp9", gop=50)),
    "mpeg4_bframes_avi": ("mpeg4_b.avi", dict(codec="mpeg4", gop=50, bframes=2)),
}


def best_time(fn, repeats: int) -> float:
    """Fastest of `repeats` runs (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def decord_raw_wrong_frames(path: Path, num_frames: int, trials: int = 5) -> int:
    """Wrong frames from decord's own get_batch at random sorted indices (16 per trial)."""
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    rng = np.random.default_rng(0)
    wrong = 0
    for _ in range(trials):
        indices = np.sort(rng.choice(num_frames, 16, replace=False)).tolist()
        frames = reader.get_batch(indices).asnumpy()
        wrong += sum(frame_number(f) != i for f, i in zip(frames, indices))
    return int(wrong)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", default="192x256", help="HxW of the generated videos")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "decode.json"))
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    n = args.frames

    results = {"frames": n, "height": height, "width": width, "repeats": args.repeats,
               "threads": 1, "python": platform.python_version(), "machine": platform.machine(),
               "videos": {}}
    source = numbered_frames(n, height, width, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        for key, (name, kwargs) in VIDEOS.items():
            path = write_video(Path(tmp) / name, source, fps=25, **kwargs)
            info = probe(path)
            clip = tsn_indices(n, 16, train=True, rng=np.random.default_rng(1)).tolist()
            entry = {"codec": info.codec, "has_b_frames": info.has_b_frames,
                     "auto_backend": choose_backend(info), "file_bytes": path.stat().st_size,
                     "decord_get_batch_wrong_frames_of_80": decord_raw_wrong_frames(path, n)}
            entry["probe_ms"] = 1000 * best_time(lambda path=path: probe(path), args.repeats)
            backends = ["auto", "decord", "pyav"]
            if torchcodec_problem() is None and torchcodec_reads_right(info):
                backends.append("torchcodec")
            for backend in backends:
                every = list(range(n))
                # default arguments bind this iteration's values (best_time calls the lambda right away)
                t_all = best_time(lambda path=path, every=every, backend=backend: read_frames(path, every, backend),
                                  args.repeats)
                t_clip = best_time(lambda path=path, clip=clip, backend=backend: read_frames(path, clip, backend),
                                   args.repeats)
                entry[backend] = {"sequential_fps": n / t_all, "tsn16_fps": 16 / t_clip,
                                  "tsn16_ms": 1000 * t_clip}
            results["videos"][key] = entry
            print(f"{key:18s} auto->{entry['auto_backend']:10s} decord wrong "
                  f"{entry['decord_get_batch_wrong_frames_of_80']:2d}/80  "
                  + "  ".join(f"{b}: {entry[b]['sequential_fps']:6.0f} f/s seq, "
                              f"{entry[b]['tsn16_ms']:5.1f} ms/16f" for b in backends))

        # decode once vs once per consumer, on the B-frame H.264 file (PyAV under auto)
        path = Path(tmp) / VIDEOS["h264_bframes_mp4"][0]
        requests = [ClipRequest("f16", 16, "tsn"), ClipRequest("f8", 8, "tsn"),
                    ClipRequest("f4", 4, "tsn"), ClipRequest("dense", 16, "dense", stride=2)]
        transform = SpatialTransform(short_side=128, crop=112, train=True)

        def once():
            return decode_clips(path, requests, train=True, rng=np.random.default_rng(0),
                                transform=transform)

        def separately():
            rng = np.random.default_rng(0)
            return [decode_clips(path, [r], train=True, rng=rng, transform=transform)
                    for r in requests]

        shared = once()
        separate_frames = sum(out.frames_decoded for out in separately())
        t_once = best_time(once, args.repeats)
        t_separate = best_time(separately, args.repeats)
        results["decode_once"] = {
            "video": "h264_bframes_mp4", "requests": [r.name for r in requests],
            "frames_requested": sum(r.num_frames for r in requests),
            "frames_decoded_once": shared.frames_decoded,
            "frames_decoded_separately": separate_frames,
            "ms_once": 1000 * t_once, "ms_separately": 1000 * t_separate,
            "speedup": t_separate / t_once}
        d = results["decode_once"]
        print(f"decode once: {d['frames_decoded_once']} frames in {d['ms_once']:.1f} ms vs "
              f"{d['frames_decoded_separately']} frames in {d['ms_separately']:.1f} ms separately "
              f"({d['speedup']:.2f}x)")

    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
