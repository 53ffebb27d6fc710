"""Clips/s of the FFN training loader (4 + 8 + 16 frames of one video, one shared 224 crop) from
webm (VP9, as Something-Something V2 ships) decoded every epoch vs read from the on-disk frame
cache, at 1 and 2 DataLoader workers; on a CUDA machine also training steps/s of TSM-R50 FFN at
batch 8, so the two can be compared (whichever is slower bounds training).

    .venv/bin/python benchmarks/ffn_loader.py [--videos 24] [--frames 48] [--size 240x428]
                                              [--workers 1 2] [--backends auto decord] [--gpu_steps 20]

The cache rows run for uint8 and for JPEG entries (--jpeg_quality), with the bytes each holds per
video and the PSNR of the JPEG frames against the uint8 ones.

Writes benchmarks/results/ffn_loader.json. The videos are generated here with the project's own
encoder (video/encode.py: libvpx-vp9) at SSv2's frame size (240 px high, ~12 fps, 2-6 s) with
moving textured content. One pass over them is one "epoch"; each setting's figure is the best of
`--repeats` passes. For the cache: the first pass (cold: decodes and writes every video) and a
later pass (warm: reads them back, checked) are timed separately. Decoders: torchcodec (needs
the system's FFmpeg shared libraries; where it cannot load, its rows say why), PyAV and decord;
"auto" picks torchcodec for VP9 where it loads, else PyAV (the JSON records which).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polyspace_core.datasets import DatasetSplit, VideoItem  # noqa: E402
from polyspace_core.io import atomic_write_json  # noqa: E402
from polyspace_core.video import write_video  # noqa: E402


def make_videos(folder: Path, count: int, frames: int, height: int, width: int, seed: int = 0) -> list[VideoItem]:
    """`count` VP9 webm videos of moving blurred-noise texture (compresses like camera footage
    more than flat colour does)."""
    import cv2

    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        base = rng.integers(0, 256, (height // 4, (width + 2 * frames) // 4, 3), dtype=np.uint8)
        base = cv2.resize(cv2.GaussianBlur(base, (5, 5), 0), ((width + 2 * frames), height),
                          interpolation=cv2.INTER_LINEAR)
        video = np.stack([base[:, 2 * t:2 * t + width] for t in range(frames)])
        items.append(VideoItem(write_video(folder / f"{i}.webm", video, fps=12), i % 4, f"c{i % 4}", str(i)))
    return items


def one_pass(dataset, workers: int, batch: int, epoch: int) -> float:
    """Seconds for one pass of a DataLoader over `dataset` (clips are built and collated)."""
    import torch

    dataset.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def gpu_steps_per_second(steps: int, batch: int = 8, size: int = 224) -> dict | None:
    """Training steps/s of TSM-R50 FFN (4/8/16 frames, CE + KL, SGD, bf16 autocast) on CUDA, or None."""
    import torch

    if not torch.cuda.is_available():
        return None
    from polyspace_core.ffn.loss import TemporalDistillationLoss
    from polyspace_core.ffn.tsm_resnet import build_model

    device = torch.device("cuda")
    model = build_model("resnet50", 174, frame_counts=(4, 8, 16), ffn=True).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = TemporalDistillationLoss(1.0)
    clips = [torch.randn(batch, 3, t, size, size, device=device) for t in (4, 8, 16)]
    labels = torch.randint(0, 174, (batch,), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            parts = loss_fn(model(*clips), labels)
        optimizer.zero_grad(set_to_none=True)
        parts.loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"device": torch.cuda.get_device_name(0), "batch": batch, "steps": steps,
            "steps_per_s": steps / seconds, "clips_per_s": steps * batch / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=48, help="frames per video (SSv2: 2-6 s at 12 fps)")
    parser.add_argument("--size", default="240x428", help="HxW of the generated videos")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["torchcodec", "pyav", "decord"],
                        help="decoders for the decode-every-epoch rows")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jpeg_quality", type=int, default=90, help="quality of the JPEG frame cache rows")
    parser.add_argument("--gpu_steps", type=int, default=20, help="timed TSM-R50 FFN steps when CUDA is present")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ffn_loader.json")
    args = parser.parse_args()

    from polyspace_core.ffn.data import MultiFrameClips
    from polyspace_core.video import choose_backend, probe, torchcodec_problem

    height, width = (int(x) for x in args.size.split("x"))
    results = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
               "load_average_at_start": list(os.getloadavg()),
               "videos": args.videos, "frames_per_video": args.frames, "video_size": [height, width],
               "codec": "vp9 (libvpx-vp9, video/encode.py)", "clip": "4 + 8 + 16 frames, one 224 multi-scale crop",
               "short_side": 256, "batch": args.batch, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        items = make_videos(Path(tmp), args.videos, args.frames, height, width)
        results["auto_backend"] = choose_backend(probe(items[0].path))
        results["torchcodec_problem"] = torchcodec_problem()
        split = DatasetSplit("ssv2-like", "train", items, ["c0", "c1", "c2", "c3"], Path(tmp))
        kw = dict(size=224, short_side=256, crop="multiscale", progress=False)

        def record(source: str, workers: int, seconds: float, **extra) -> None:
            row = {"source": source, "workers": workers, "seconds": seconds, "clips_per_s": args.videos / seconds,
                   **extra}
            results["rows"].append(row)
            print(f"{source:28s} workers {workers}: {row['clips_per_s']:7.1f} clips/s  ({seconds:.2f} s / "
                  f"{args.videos} videos)", flush=True)

        for workers in args.workers:
            for backend in args.backends:
                if backend == "torchcodec" and torchcodec_problem():
                    results["rows"].append({"source": "decode (torchcodec)", "workers": workers,
                                            "skipped": torchcodec_problem()})
                    print(f"decode (torchcodec) not measured: {torchcodec_problem()}")
                    continue
                data = MultiFrameClips(split, (4, 8, 16), train=True, backend=backend, **kw)
                seconds = min(one_pass(data, workers, args.batch, epoch) for epoch in range(args.repeats))
                record(f"decode ({backend})", workers, seconds)
            caches = {}
            for fmt in ("uint8", "jpeg"):
                cache_dir = Path(tmp) / f"cache_{fmt}_{workers}"
                data = MultiFrameClips(split, (4, 8, 16), train=True, frame_cache=cache_dir, frame_cache_format=fmt,
                                       frame_cache_quality=args.jpeg_quality, **kw)
                name = "frame cache uint8" if fmt == "uint8" else f"frame cache jpeg q{args.jpeg_quality}"
                record(f"{name}, cold (fills)", workers, one_pass(data, workers, args.batch, 0))
                seconds = min(one_pass(data, workers, args.batch, epoch) for epoch in range(1, 1 + args.repeats))
                size = sum(p.stat().st_size for p in cache_dir.rglob("*.frames"))
                record(f"{name}, warm", workers, seconds, cache_bytes=size, bytes_per_video=size / args.videos)
                print(f"{'':28s} {size / args.videos / 2**20:.2f} MiB per video on disk", flush=True)
                caches[fmt] = data.frame_cache
            if "jpeg_psnr_db" not in results:   # JPEG frames against the exact ones, over every pixel
                err = sum(float(np.sum((caches["jpeg"].frames(it.path).astype(np.float64)
                                        - caches["uint8"].frames(it.path)) ** 2)) for it in items)
                pixels = sum(caches["uint8"].frames(it.path).size for it in items)
                results["jpeg_psnr_db"] = 10 * np.log10(255.0**2 * pixels / err)
                print(f"jpeg q{args.jpeg_quality} frames vs uint8: {results['jpeg_psnr_db']:.1f} dB PSNR", flush=True)
            for fmt in caches:
                shutil.rmtree(caches[fmt].root)
    results["gpu_training"] = gpu_steps_per_second(args.gpu_steps)
    if results["gpu_training"]:
        g = results["gpu_training"]
        print(f"TSM-R50 FFN training on {g['device']}: {g['steps_per_s']:.2f} steps/s at batch {g['batch']} "
              f"= {g['clips_per_s']:.1f} clips/s")
    else:
        print("no CUDA device: GPU training steps/s not measured")
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
