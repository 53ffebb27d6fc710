"""Latency and peak memory of the real-size models on this machine (notebook 06 times only what is
cheap; this measures the big ones).

    .venv/bin/python benchmarks/efficiency.py [--models videomae_base vjepa2_vitl ...] [--repeats 3]
                                              [--tsm-frames 4 8 16] [--device auto]

Writes benchmarks/results/efficiency.json: per model, GFLOPs per clip (true FLOPs, 2 per
multiply-add), parameters, median latency per clip after one warm-up, and peak extra memory,
with the device it ran on. Weights are random (timing does not depend on them). Default models:
every real-size backbone on CUDA; on CPU the base models and V-JEPA 2 ViT-L (ViT-H/g take
minutes per clip there; name them with --models to include them).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from polyspace_core.backbones.catalog import REAL_BACKBONES, backbone_cost  # noqa: E402
from polyspace_core.efficiency.components import converter_cost, fusion_head_config, fusion_head_cost, tsm_cost  # noqa: E402
from polyspace_core.efficiency.pipeline import pipeline_spec  # noqa: E402
from polyspace_core.io import atomic_write_json  # noqa: E402
from polyspace_core.provenance import device_description  # noqa: E402
from polyspace_core.seeding import best_device  # noqa: E402

CPU_DEFAULT = ["videomae_base", "timesformer_base", "vivit_base", "vjepa2_vitl"]


def record(m) -> dict:
    return {"gflops": m.gflops, "params": m.params, "latency_ms": m.latency_ms,
            "latency_min_ms": m.latency.min_ms if m.latency else None,
            "latency_max_ms": m.latency.max_ms if m.latency else None,
            "repeats": m.latency.repeats if m.latency else None,
            "peak_memory_mb": m.peak_memory_mb, "memory_method": m.memory.method if m.memory else None,
            **{k: v for k, v in m.spec.items() if k in ("frames", "size", "source", "arch", "ffn")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help=f"backbones (default: see above; any of {', '.join(REAL_BACKBONES)})")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tsm-frames", type=int, nargs="*", default=[4, 8, 16])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "efficiency.json"))
    args = parser.parse_args()

    device = best_device(args.device)
    models = args.models or (list(REAL_BACKBONES) if device.type == "cuda" else CPU_DEFAULT)
    results: dict[str, dict] = {}
    for name in tqdm(models, desc="backbones"):
        m = backbone_cost(REAL_BACKBONES[name], device, latency=True, repeats=args.repeats)
        results[name] = record(m)
        print(f"{name:<18} {m.gflops:9.1f} GFLOPs {m.params / 1e6:8.1f} M  {m.latency_ms:10.1f} ms  "
              f"{m.peak_memory_mb:9.1f} MB", flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for ffn in (False, True):
        for frames in args.tsm_frames:
            m = tsm_cost("resnet50", frames, 224, ffn=ffn, frame_counts=args.tsm_frames or (16,), device=device,
                         latency=True, repeats=args.repeats)
            results[m.name] = record(m)
            print(f"{m.name:<18} {m.gflops:9.1f} GFLOPs {m.params / 1e6:8.1f} M  {m.latency_ms:10.1f} ms", flush=True)
    # converters and fusion head of the real-size pipeline (student ViT-L, the three base teachers)
    spec = pipeline_spec("vjepa2_vitl", ["videomae_base", "timesformer_base", "vivit_base"])
    student_shape = spec.shape(spec.student)
    for teacher in spec.teachers:
        m = converter_cost(f"converter_{spec.converter['kind']}_{spec.student.name}_to_{teacher.name}",
                           spec.converter, student_shape, spec.shape(teacher), device, repeats=max(10, args.repeats))
        results[m.name] = record(m)
    config = fusion_head_config(spec.student.name, student_shape, [t.name for t in spec.teachers],
                                [spec.shape(t) for t in spec.teachers], spec.num_classes, spec.head)
    m = fusion_head_cost("fusion_head", config, device, repeats=max(10, args.repeats))
    results["fusion_head"] = record(m)

    out = {"device": device_description(device),
           "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "python": platform.python_version(), "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
           "flop_convention": "true FLOPs, 2 per multiply-add", "batch": 1, "models": results}
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
