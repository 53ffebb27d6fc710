"""What checking shards on read costs: reading a feature store with the per-shard integrity check
(size + xxh3-64 against the manifest, once per shard per process) versus without it.

A store of N shards at real feature sizes is written once (V-JEPA 2 ViT-L student tokens (8, 1024)
and three base-size teachers (8, 768), fp16). Each measurement is a fresh process that reads it
the way train-converter and eval do: open the split, take every model's array as float32 and
reduce it. Timed inside the process, from open to the last reduction (interpreter start and
imports left out). Warm: the shards are in the page cache. Cold: each shard is dropped from the
page cache first (posix_fadvise DONTNEED), so the read comes from disk.

    python benchmarks/store_read.py [--shards 8] [--shard_size 1000] [--repeats 5]

Prints a table and writes benchmarks/results/store_read.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from polyspace_core.features.store import FeatureStoreWriter
from polyspace_core.io import atomic_write_json

MODELS = [("vjepa2", "student", 8, 1024), ("videomae", "teacher", 8, 768), ("timesformer", "teacher", 8, 768),
          ("vivit", "teacher", 8, 768)]

READER = """
import json, sys, time
import torch
from polyspace_core.features.store import FeatureStore
split, check = sys.argv[1], sys.argv[2] == "1"
torch.set_num_threads(1)
t0 = time.perf_counter()
store = FeatureStore.open(split, check_on_read=check)
total = 0.0
for name in store.models:
    total += float(store.array(name).float().sum())
print(json.dumps({"seconds": time.perf_counter() - t0, "checksum_of_values": total}))
"""


def write_store(split_dir: Path, shards: int, shard_size: int) -> int:
    n = shards * shard_size
    models = [{"name": name, "role": role, "source": "benchmark", "T": t, "dim": d} for name, role, t, d in MODELS]
    writer = FeatureStoreWriter(split_dir, models=models, dtype="float16", tokens="temporal", shard_size=shard_size,
                                paths=[f"v{i}.avi" for i in range(n)], labels=[i % 10 for i in range(n)],
                                class_names=[f"c{i}" for i in range(10)])
    g = torch.Generator().manual_seed(0)
    for k, (start, end) in enumerate(writer.ranges):
        feats = {name: torch.randn(end - start, t, d, generator=g) for name, _, t, d in MODELS}
        writer.write_shard(k, feats, ["ok"] * (end - start), end - start, 0)
    writer.finalize()
    return sum(p.stat().st_size for p in split_dir.glob("shard_*.safetensors"))


def drop_from_page_cache(split_dir: Path) -> None:
    for shard in split_dir.glob("shard_*.safetensors"):
        fd = os.open(shard, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_once(split_dir: Path, check: bool, cold: bool) -> dict:
    if cold:
        drop_from_page_cache(split_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", READER, str(split_dir), "1" if check else "0"], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--shard_size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "store_read.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        split_dir = Path(tmp) / "train"
        size = write_store(split_dir, args.shards, args.shard_size)
        print(f"store: {args.shards} shards, {size / 2**20:.0f} MiB (fp16)")
        rows = {}
        for mode in ("warm", "cold"):
            read_once(split_dir, True, cold=False)  # warm-up (and a first check that it reads)
            times = {True: [], False: []}
            for _ in range(args.repeats):  # interleaved, so drift hits both alike
                for check in (False, True):
                    times[check].append(read_once(split_dir, check, cold=mode == "cold")["seconds"])
            plain, checked = statistics.median(times[False]), statistics.median(times[True])
            best_plain, best_checked = min(times[False]), min(times[True])
            rows[mode] = {"read_s": plain, "read_with_check_s": checked, "overhead": checked / plain - 1,
                          "overhead_of_fastest": best_checked / best_plain - 1,
                          "read_s_all": times[False], "read_with_check_s_all": times[True]}
            print(f"{mode:>5}: read {plain:.3f} s, with check {checked:.3f} s, overhead "
                  f"{100 * (checked / plain - 1):+.1f}% (medians of {args.repeats}; fastest runs "
                  f"{best_plain:.3f} vs {best_checked:.3f} s, {100 * (best_checked / best_plain - 1):+.1f}%; "
                  f"{size / 2**20 / plain:.0f} MiB/s)")
    result = {"shards": args.shards, "shard_size": args.shard_size, "bytes": size, "repeats": args.repeats,
              "check": "size + xxh3_64 per shard, once per process", "read": "every model's array as float32, summed",
              **rows, "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                  "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}}
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
