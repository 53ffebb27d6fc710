"""Featurize with the four default backbones at their real size: clips/s per model and peak RSS
for `--tokens temporal` and `--tokens full`, and peak RSS at shard size 1 vs 64 for `--tokens full`.

    .venv/bin/python benchmarks/realsize.py [--clips 2] [--vjepa-frames 2] [--shard-clips 16]
                                            [--shard-models videomae_base] [--cache DIR]
                                            [--device cuda --dtype bfloat16]

Writes benchmarks/results/realsize.json. The models are the real checkpoints' configurations
(backbones/catalog.py REAL_BACKBONES: V-JEPA 2 ViT-L at 256 px, VideoMAE-B, TimeSformer-B,
ViViT-B at 224 px) with RANDOM weights, saved with save_pretrained (model and processor, the
processor classes' defaults being the checkpoints' settings) into a cache folder and loaded from
there as a download would be (`load_backbone(folder)`); speed and memory do not depend on the
weights' values. Videos are SynthMotion clips in the HMDB51 layout (AVI, 32 frames, 128 px),
upscaled by each model's processor as real 320x240 videos would be.

Each measurement runs in its own process (`--child`), which loads the models, runs `featurize`
(batch 1, no loader workers, a float32 store unless --dtype) and reports its peak resident set size (VmHWM:
everything the process held, weights included; see `peak_rss_bytes` for why not ru_maxrss):
over the whole process, while loading, and while featurizing (the peak reset after loading).

The shard-size comparison holds everything but the shard size fixed (same models, clips and
batch): with the store writing each batch's rows to their shard as they are computed, the peak
while featurizing must be the same within 10% at shard size 1 and 64. Before that writer, a shard's fp32
features, a cast copy and the serialised bytes were all held until the shard was full, which the
JSON's `old_writer_buffer_bytes` estimates for the same run (and `old_writer_ratio_estimate`
the ratio that writer would have shown); `difference_bytes` is what the shard size changes now.
With `--device cuda --dtype bfloat16` it measures a GPU run (CUDA peak memory too). To stay within 10 minutes on 2
cores it runs on fewer models and clips than the first part when asked (`--shard-models`); the
JSON says which. V-JEPA 2 takes any frame count: `--vjepa-frames` (default 2, the smallest, one
tubelet) keeps the ViT-L within the time budget; the other three run their configs' own counts
(16, 8, 32).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ["vjepa2_vitl", "videomae_base", "timesformer_base", "vivit_base"]  # student first


def peak_rss_bytes() -> int:
    """This process's peak resident set size since it started (or since `reset_peak_rss`).

    Linux: VmHWM of /proc/self/status. Not getrusage's ru_maxrss there: a child inherits its
    parent's ru_maxrss across fork and exec, so a measurement process started by one that had
    built a ViT-L would report the parent's peak (it did: 2.3 GB for every run)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def reset_peak_rss() -> bool:
    """Start the peak over from the current RSS (Linux: clear_refs 5); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def save_model(name: str, folder: Path) -> Path:
    """A real-size config with random weights, saved like a download: model + processor."""
    import torch

    from polyspace_core.backbones.catalog import REAL_BACKBONES, build_backbone
    from polyspace_core.backbones.models import ARCHS, _transformers_class

    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    spec = REAL_BACKBONES[name]
    torch.manual_seed(0)
    model, _ = build_backbone(spec, device="cpu")
    processor = _transformers_class(ARCHS[spec.arch].processor_class)()  # defaults = the checkpoints'
    tmp = folder.with_name(folder.name + ".partial")
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def child(args: argparse.Namespace) -> None:
    """One measurement in this process: load, featurize, print a JSON line."""
    import torch

    from polyspace_core.backbones import load_backbones
    from polyspace_core.datasets import load_split
    from polyspace_core.features.featurize import featurize

    job = json.loads(args.child)
    torch.set_num_threads(job["threads"])
    split = load_split(job["dataset"], job["root"], "train")
    split.items = split.items[:job["clips"]]
    t0 = time.perf_counter()
    backbones = load_backbones([f"{m}={job['cache']}/{m}" for m in job["models"]], frames=job["vjepa_frames"],
                               device=job["device"], local_files_only=True)
    load_s = time.perf_counter() - t0
    load_peak = peak_rss_bytes()  # loading holds a checkpoint's tensors twice for a moment
    reset = reset_peak_rss()
    result = featurize(split, backbones[0], backbones[1:], job["out"], tokens=job["tokens"],
                       shard_size=job["shard_size"], batch=1, workers=0, device=job["device"], dtype=job["dtype"],
                       frames=job["vjepa_frames"], progress=False)
    from polyspace_core.features.store import FeatureStore

    store = FeatureStore.open(result.store_dir)
    t = result.timings
    featurize_peak = peak_rss_bytes()
    print(json.dumps({
        "peak_rss_bytes": max(load_peak, featurize_peak), "peak_rss_loading_bytes": load_peak,
        "peak_rss_featurize_bytes": featurize_peak if reset else None, "load_s": load_s,
        "clips": result.num_samples, "ok": result.num_ok, "seconds": t["total"],
        "clips_per_s": result.num_samples / t["total"],
        "forward_s": t["forward"], "clips_per_s_forward": {m: result.num_ok / s for m, s in t["forward"].items()},
        "write_s": t["write"], "decode_s": t["decode"],
        "tokens_per_clip": {m: list(store.shape(m)) for m in store.models},
        "feature_bytes_per_clip_fp32": sum(4 * store.shape(m)[0] * store.shape(m)[1] for m in store.models),
        "store_bytes": store.disk_bytes(), "shards": len(store.shards),
        "cuda_peak_allocated_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
    }))


def measure(job: dict) -> dict:
    """Run one measurement in a fresh process (its own peak RSS) and return its JSON."""
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if done.returncode != 0:
        sys.exit(f"measurement {job['tokens']} shard {job['shard_size']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2, help="clips per run of the four models")
    parser.add_argument("--vjepa-frames", type=int, default=2)
    parser.add_argument("--shard-models", default="videomae_base",
                        help="comma-separated models of the shard-size comparison (default: one, for time)")
    parser.add_argument("--shard-clips", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CI and the figures in the JSON: cpu)")
    parser.add_argument("--dtype", default="float32", help="store dtype; float16/bfloat16 also autocast on CUDA")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=None, help="where the saved models go (default: a temp folder, "
                                                     "in /dev/shm when it exists: ~2.2 GB of fp32 weights)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "realsize.json"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return

    import torch

    from polyspace_core.datasets import generate_synthmotion
    from polyspace_core.io import atomic_write_json

    shard_models = [m.strip() for m in args.shard_models.split(",") if m.strip()]
    started = time.perf_counter()
    shm = Path("/dev/shm")
    base = args.cache or tempfile.mkdtemp(prefix="polyspace_realsize_", dir=shm if shm.is_dir() else None)
    cache = Path(base)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        for name in MODELS:
            save_model(name, cache / name)
        save_s = time.perf_counter() - t0
        clips = max(args.clips, args.shard_clips)
        info = generate_synthmotion(tmp / "videos", layout="hmdb51", classes=2, clips_per_class=clips, frames=32,
                                    size=128, seed=0, progress=False)
        job = {"dataset": info["dataset"], "root": str(info["root"]), "cache": str(cache), "threads": args.threads,
               "vjepa_frames": args.vjepa_frames, "device": args.device, "dtype": args.dtype}
        runs = {}
        for tokens in ("temporal", "full"):
            runs[tokens] = measure({**job, "models": MODELS, "tokens": tokens, "shard_size": 64,
                                    "clips": args.clips, "out": str(tmp / f"store_{tokens}")})
            print(f"tokens {tokens}: {runs[tokens]['clips_per_s']:.3f} clips/s, peak RSS "
                  f"{runs[tokens]['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
        shard = {}
        for size in (1, 64):
            shard[size] = measure({**job, "models": shard_models, "tokens": "full", "shard_size": size,
                                   "clips": args.shard_clips, "out": str(tmp / f"store_shard{size}")})
            print(f"tokens full, shard size {size}: peak RSS {shard[size]['peak_rss_bytes'] / 2**30:.2f} GiB, "
                  f"while featurizing {(shard[size]['peak_rss_featurize_bytes'] or 0) / 2**30:.2f} GiB "
                  f"({shard[size]['clips']} clips, {shard[size]['shards']} shard(s))", flush=True)
    if args.cache is None:
        import shutil

        shutil.rmtree(cache, ignore_errors=True)

    # the comparison is on the featurizing phase's peak (models loaded, then the peak reset), so
    # the transient of loading a checkpoint cannot hide what the writer holds
    key = "peak_rss_featurize_bytes" if shard[1]["peak_rss_featurize_bytes"] else "peak_rss_bytes"
    ratio = shard[64][key] / shard[1][key]
    ratio_process = shard[64]["peak_rss_bytes"] / shard[1]["peak_rss_bytes"]
    per_clip = shard[64]["feature_bytes_per_clip_fp32"]
    # what the whole-shard writer held at shard size 64 here: fp32 rows + cast copy + bytes
    old_buffer = 3 * per_clip * min(64, shard[64]["clips"])
    record = {
        "models": {m: {"config": "backbones.catalog.REAL_BACKBONES", "weights": "random, saved with save_pretrained"}
                   for m in MODELS},
        "vjepa2_frames": args.vjepa_frames,
        "videos": "SynthMotion, HMDB51 layout (AVI), 32 frames, 128 px",
        "batch": 1, "workers": 0, "store_dtype": args.dtype, "device": args.device, "threads": args.threads,
        "clips": args.clips,
        "per_model_clips_per_s": {tokens: r["clips_per_s_forward"] for tokens, r in runs.items()},
        "end_to_end_clips_per_s": {tokens: r["clips_per_s"] for tokens, r in runs.items()},
        "peak_rss_bytes": {tokens: r["peak_rss_bytes"] for tokens, r in runs.items()},
        "peak_rss_loading_bytes": {tokens: r["peak_rss_loading_bytes"] for tokens, r in runs.items()},
        "peak_rss_featurize_bytes": {tokens: r["peak_rss_featurize_bytes"] for tokens, r in runs.items()},
        "feature_bytes_per_clip_fp32": {tokens: r["feature_bytes_per_clip_fp32"] for tokens, r in runs.items()},
        "tokens_per_clip": {tokens: r["tokens_per_clip"] for tokens, r in runs.items()},
        "runs": runs,
        "shard_size_comparison": {
            "tokens": "full", "models": shard_models, "clips": shard[64]["clips"],
            "note": ("fewer models than the first part, to stay within 10 minutes on 2 cores"
                     if set(shard_models) != set(MODELS) else "the four models"),
            "peak_rss_bytes": {"1": shard[1]["peak_rss_bytes"], "64": shard[64]["peak_rss_bytes"]},
            "peak_rss_featurize_bytes": {"1": shard[1]["peak_rss_featurize_bytes"],
                                         "64": shard[64]["peak_rss_featurize_bytes"]},
            "shards": {"1": shard[1]["shards"], "64": shard[64]["shards"]},
            "compared": key, "ratio_64_over_1": ratio, "ratio_64_over_1_process_peak": ratio_process,
            "difference_bytes": shard[64][key] - shard[1][key],
            "difference_over_old_writer_buffer": (shard[64][key] - shard[1][key]) / old_buffer,
            "goal": "within 10%", "within_10_percent": abs(ratio - 1) <= 0.10,
            "old_writer_buffer_bytes": old_buffer,
            "old_writer_ratio_estimate": (shard[1][key] + old_buffer) / shard[1][key],
        },
        "model_save_s": save_s,
        "seconds": time.perf_counter() - started,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cores": os.cpu_count(),
                    "load_average_1min": os.getloadavg()[0], "cpu": platform.processor() or platform.machine()},
    }
    atomic_write_json(args.out, record)
    print(f"shard size 64 / 1 peak RSS: {ratio:.3f} (goal within 10%; the whole-shard writer would have held "
          f"{old_buffer / 2**20:.0f} MiB more, ~{record['shard_size_comparison']['old_writer_ratio_estimate']:.2f}x); "
          f"total {record['seconds']:.0f} s")
    for tokens in runs:
        per = ", ".join(f"{m} {v:.3f}" for m, v in record["per_model_clips_per_s"][tokens].items())
        print(f"{tokens}: clips/s per model (forward): {per}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
