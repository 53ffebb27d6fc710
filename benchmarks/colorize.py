"""Colorization speed: frames/s of `colorize_video` (what `polyspace colorize` runs) per method.

    .venv/bin/python benchmarks/colorize.py [--frames 32] [--sizes 256x256,854x480] [--threads 1,2]
                                            [--methods global,temporal,exemplar,fusion]
                                            [--embeddings demo,swinv2-t] [--device cpu]

Writes benchmarks/results/colorize.json. For each input size (256x256 and 480p = 854x480 by
default; the working size is the CLI's default 256 short side, so 480p works at 256x456 and
upsamples ab guided by L), each method, each exemplar embedding and each torch thread count it
times the whole stream: decode (H.264 mp4, a pan over a real photo), colour conversions, the
method, L-guided upsampling, encode. Embeddings:
- demo: the demo FusionSystem's architecture (notebook 08's: random-conv embedding, match_dim 32,
  colour net and fusion UNet base 16), random weights: speed does not depend on the values;
- swinv2-t: the same with a Swin-T-sized Swin V2 exemplar embedding (SwinTExCo's family: a
  transformers Swinv2Model from its default config, embed_dim 96, depths 2/2/6/2, window 7),
  random weights, read through the branch's "swinv2" family from a save_pretrained folder.
global and temporal use no exemplar embedding and are run once per size.

Reported per run: frames_per_second (wall clock) and frames_per_cpu_second (frames / the
process's CPU seconds). On a shared machine the wall clock measures the other processes too;
with one torch thread the CPU-time rate is what one idle core reaches (the flow, OpenCV, is
single-threaded here as well), so it is the figure to compare across runs. The load average
before and after each run is recorded. Each configuration is warmed up on 4 frames first.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polyspace_core.colorize.exemplar import build_exemplar_branch  # noqa: E402
from polyspace_core.colorize.stream import DEFAULT_WORKING_SIZE, colorize_video  # noqa: E402
from polyspace_core.colorize.system import FusionSystem  # noqa: E402
from polyspace_core.io import atomic_write_json  # noqa: E402
from polyspace_core.seeding import best_device  # noqa: E402
from polyspace_core.video.encode import write_video  # noqa: E402

EXEMPLAR_METHODS = ("exemplar", "fusion")


def make_clip(folder: Path, frames: int, height: int, width: int, name: str) -> tuple[Path, Path]:
    """A pan over scikit-image's coffee photo (H.264 mp4) and its first view as the reference."""
    big = cv2.resize(data.coffee(), (width + 2 * frames, height), interpolation=cv2.INTER_AREA)
    video = write_video(folder / f"{name}.mp4", np.stack([big[:, 2 * t:2 * t + width] for t in range(frames)]),
                        fps=25)
    ref = folder / f"{name}.png"
    cv2.imwrite(str(ref), cv2.cvtColor(big[:, :width], cv2.COLOR_RGB2BGR))
    return video, ref


def swinv2_t_folder(folder: Path) -> Path:
    """A Swin-T-sized transformers Swinv2Model (default Swinv2Config) with random weights, saved."""
    from transformers import Swinv2Config, Swinv2Model, ViTImageProcessor

    from polyspace_core.colorize.embedding import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(0)
    Swinv2Model(Swinv2Config()).save_pretrained(folder / "swinv2-t")
    # the image processor microsoft/swinv2-tiny-* ships (ImageNet mean/std), which the family reads
    ViTImageProcessor(image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)).save_pretrained(folder / "swinv2-t")
    return folder / "swinv2-t"


def build_system(embedding: str, backbone: Path | None) -> FusionSystem:
    torch.manual_seed(0)
    if embedding == "demo":
        return FusionSystem(build_exemplar_branch())
    return FusionSystem(build_exemplar_branch(backbone, embed="swinv2"))


def time_run(video: Path, ref: Path, out: Path, method: str, system, device, working_size: int) -> dict:
    load_before = os.getloadavg()[0]
    cpu0 = time.process_time()
    stats = colorize_video(video, ref, out, method=method, system=system, working_size=working_size,
                           device=device, progress=False)
    cpu = time.process_time() - cpu0
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"frames_per_second": stats["frames_per_second"], "frames_per_cpu_second": stats["frames"] / cpu,
            "seconds": stats["seconds"], "cpu_seconds": cpu, "seconds_by_stage": stats["seconds_by_stage"],
            "working_size": stats["working_size"],
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--sizes", default="256x256,854x480", help="input WIDTHxHEIGHT, comma-separated")
    parser.add_argument("--methods", default="global,temporal,exemplar,fusion")
    parser.add_argument("--embeddings", default="demo,swinv2-t")
    parser.add_argument("--threads", default="1,2", help="torch intra-op thread counts to run")
    parser.add_argument("--working_size", type=int, default=DEFAULT_WORKING_SIZE)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "colorize.json"))
    args = parser.parse_args()
    device = best_device(args.device)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    embeddings = args.embeddings.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    results = {"frames": args.frames, "working_size": args.working_size, "device": str(device),
               "cpu_count": os.cpu_count(), "torch": torch.__version__, "opencv_threads": cv2.getNumThreads(),
               "python": platform.python_version(), "machine": platform.machine(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        swin = swinv2_t_folder(folder) if "swinv2-t" in embeddings else None
        for width, height in sizes:
            video, ref = make_clip(folder, args.frames, height, width, f"clip{width}x{height}")
            warm, warm_ref = make_clip(folder, 4, height, width, f"warm{width}x{height}")
            for method in methods:
                for embedding in (embeddings if method in EXEMPLAR_METHODS else ["none"]):
                    system = build_system("demo" if embedding == "none" else embedding, swin)
                    for n_threads in threads:
                        torch.set_num_threads(n_threads)
                        run_system = system if method in EXEMPLAR_METHODS or method == "temporal" else None
                        time_run(warm, warm_ref, folder / "warm_out.mp4", method, run_system, device,
                                 args.working_size)
                        row = {"size": f"{width}x{height}", "method": method, "embedding": embedding,
                               "threads": n_threads,
                               **time_run(video, ref, folder / "out.mp4", method, run_system, device,
                                          args.working_size)}
                        results["runs"].append(row)
                        print(f"{row['size']:>8} {method:>8} {embedding:>7} threads {n_threads}: "
                              f"{row['frames_per_second']:6.2f} frames/s wall, "
                              f"{row['frames_per_cpu_second']:6.2f} frames per CPU-second "
                              f"(working {row['working_size'][0]}x{row['working_size'][1]}, "
                              f"load {row['load_average'][0]}->{row['load_average'][1]})", flush=True)
                        atomic_write_json(args.out, results)  # partial results survive an interrupted run
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
