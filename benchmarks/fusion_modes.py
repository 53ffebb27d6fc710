"""Fusion training throughput, cached mode versus video mode, on the same data and models.

    .venv/bin/python benchmarks/fusion_modes.py [--classes 10 --clips_per_class 30 --batch 32]

Writes benchmarks/results/fusion_modes.json. The data and models are the default preset's: its
feature store (01), converter set (02), and the videos and student named in the store's manifest,
when `make report` has produced them. Otherwise (or with --build) the benchmark builds its own
under --work: a SynthMotion set at the demo's clip size (16 frames of 64x64), featurized with the
student and one teacher, and ridge converters. Then it trains the same fusion head with the same
batches in both modes:
- video mode: decode -> the student's processor -> the frozen student -> converters -> head;
- cached mode: the feature store (memory-mapped) -> converters -> head.
Throughput is training samples per second over the training passes only (validation excluded
in both modes). `speedup` = cached / video. `loader_overhead_fraction` compares cached-mode
training from the store loader with training on the same features preloaded in memory as float32
tensors: (t_store - t_memory) / t_memory, each the fastest epoch (the least disturbed by other
processes on a shared machine).

The student defaults to the tiny zoo's trained V-JEPA 2 (data/zoo/vjepa2-tiny) when it exists and
to the random-init `vjepa2-tiny` preset otherwise; the cost per clip is the same either way (the
JSON records which one ran).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from polyspace_core.io import atomic_write_json  # noqa: E402


def default_student() -> str:
    zoo = ROOT / "data" / "zoo" / "vjepa2-tiny"
    return f"vjepa2-tiny={zoo}" if (zoo / "config.json").is_file() else "vjepa2-tiny"


def preset_data(preset: str) -> dict | None:
    """The inputs a preset's report run produced (01's store, 02's converters), or None."""
    from polyspace_core.errors import PolySpaceError
    from polyspace_core.fusion.study import inputs_from_runs

    runs = ROOT / "runs" / preset
    try:
        inputs = inputs_from_runs(ROOT, runs / "01_featurize", runs / "02_train_converters", cached=False)
    except PolySpaceError as e:
        print(f"preset {preset}: {e}")
        return None
    from polyspace_core.features.store import FeatureStore

    counts = {s: len(FeatureStore.open(inputs.features / s)) for s in ("train", "validation")}
    return {"dataset": inputs.dataset, "videos": inputs.videos, "features": inputs.features,
            "converters": inputs.converters, "student": inputs.student, "split_counts": counts,
            "source": f"preset {preset} (runs/{preset}/01_featurize, 02_train_converters)"}


def build_data(work: Path, args) -> dict:
    """SynthMotion videos -> feature store (train, validation) -> ridge converters, cached under work/."""
    from polyspace_core.cli import main as cli
    from polyspace_core.datasets import generate_synthmotion, load_split
    from polyspace_core.features.featurize import featurize

    info = generate_synthmotion(work / "videos", layout="hmdb51-csv", classes=args.classes,
                                clips_per_class=args.clips_per_class, frames=args.frames, size=args.size, seed=0,
                                workers=0, progress=False)
    for split in ("train", "validation"):
        featurize(load_split(info["dataset"], info["root"], split), args.student, [args.teacher], work / "features",
                  batch=16, device=args.device, progress=False)
    if not (work / "converters" / "converters.json").is_file():
        cli(["train-converter", "--features", str(work / "features"), "--save_dir", str(work / "converters"),
             "--kind", "ridge", "--device", args.device])
    return {"dataset": info["dataset"], "videos": info["root"], "features": work / "features",
            "converters": work / "converters", "split_counts": info["split_counts"], "student": args.student,
            "source": f"built by the benchmark under {work}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="use this preset's 01/02 outputs when they exist")
    parser.add_argument("--build", action="store_true",
                        help="build the benchmark's own data even if the preset has some")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--clips_per_class", type=int, default=30)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--student", default=None, help="student backbone (default: zoo vjepa2-tiny, else the preset)")
    parser.add_argument("--teacher", default="videomae-tiny", help="teacher backbone (for fitting the converter)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--video_epochs", type=int, default=1)
    parser.add_argument("--cached_epochs", type=int, default=6)
    parser.add_argument("--workers", type=int, default=0, help="video mode decoding workers (0: in process)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench" / "fusion_modes"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fusion_modes.json"))
    args = parser.parse_args()
    args.student = args.student or default_student()

    from polyspace_core.distributed import make_accelerator
    from polyspace_core.fusion.data import cached_batches, open_split_store
    from polyspace_core.fusion.pipeline import build_pipeline, load_converters
    from polyspace_core.fusion.train import HeadOptions, TrainSettings, fit, train_fusion

    work = Path(args.work)
    t0 = time.perf_counter()
    data = (None if args.build else preset_data(args.preset)) or build_data(work, args)
    prep_s = time.perf_counter() - t0
    acc = make_accelerator(args.device)
    head = HeadOptions()
    results: dict = {}

    # the two modes, same head, same batches
    for mode, epochs in (("video", args.video_epochs), ("cached", args.cached_epochs)):
        settings = TrainSettings(epochs=epochs, batch=args.batch, lr=1e-3, seed=0)
        torch.manual_seed(0)
        extra = ({"features": data["features"]} if mode == "cached" else
                 {"dataset": data["dataset"], "root": data["videos"], "student": data["student"],
                  "workers": args.workers})
        run = train_fusion(mode=mode, converters=data["converters"], settings=settings, head=head, accelerator=acc,
                           progress=False, **extra)
        per_epoch = [run.train_samples / row["train_seconds"] for row in run.history]
        results[mode] = {"epochs": epochs, "train_samples": run.train_samples,
                         "train_samples_per_s": run.train_samples_per_s,
                         "train_samples_per_s_per_epoch": per_epoch,
                         "best_val_top1": run.best_val_top1}
        print(f"{mode:6s} mode: {run.train_samples_per_s:.1f} train samples/s over {epochs} epoch(s)")

    # the cached loader against the same features already in memory as float32
    train_store = open_split_store(data["features"], "train")
    val_store = open_split_store(data["features"], "validation")
    student = train_store.student
    seconds = {}
    for kind in ("store", "memory"):
        preload = kind == "memory"
        train_b = cached_batches(train_store, [student], batch=args.batch, shuffle=True, preload=preload)
        val_b = cached_batches(val_store, [student], batch=args.batch, shuffle=False, preload=preload)
        convs = load_converters(data["converters"], student)
        torch.manual_seed(0)
        model = build_pipeline(student, train_store.shape(student), convs, len(train_store.class_names))
        result = fit(model, train_b, val_b, TrainSettings(epochs=args.cached_epochs, batch=args.batch, seed=0),
                     accelerator=acc, progress=False)
        seconds[kind] = min(row["train_seconds"] for row in result.history)
    overhead = (seconds["store"] - seconds["memory"]) / seconds["memory"]

    speedup = results["cached"]["train_samples_per_s"] / results["video"]["train_samples_per_s"]
    record = {
        "speedup": speedup,
        "speedup_goal": 50.0,
        "loader_overhead_fraction": overhead,
        "loader_overhead_goal": 0.20,
        "video": results["video"],
        "cached": results["cached"],
        "epoch_train_seconds": {"store_loader": seconds["store"], "in_memory_float32": seconds["memory"]},
        "setup": {"data": data["source"], "student": data["student"], "dataset": data["dataset"],
                  "videos": str(data["videos"]), "split_counts": data["split_counts"], "batch": args.batch,
                  "video_workers": args.workers, "feature_dtype": train_store.manifest["dtype"],
                  "converters": sorted({c.config.kind for c in load_converters(data["converters"], student).values()}),
                  "teachers": list(load_converters(data["converters"], student)), "head": vars(head)},
        "machine": {"device": str(acc.device), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "gpu": (torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu"
                            else None)},
        "data_preparation_seconds": prep_s,
    }
    atomic_write_json(args.out, record)
    print(f"speedup cached/video: {speedup:.1f}x (goal >= 50x); loader overhead over in-memory tensors: "
          f"{overhead:+.3f} (goal < 0.20) -> {args.out}")


if __name__ == "__main__":
    main()
