"""Converter size and speed, and similarity-metric cost, at real backbone dims.

For each converter kind mapping V-JEPA 2 ViT-L temporal tokens (8, 1024) to VideoMAE-base
(8, 768): parameters (fitted buffers included), forward latency for a batch of clips, one
training step (AdamW) or the closed-form fit, and checkpoint size. Then the wall time of the
similarity metrics on N clip vectors, full versus minibatch CKA.

    python benchmarks/align_converters.py [--device cpu] [--batch 64] [--n 2000]

Prints a table and writes benchmarks/results/align_converters.json.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from polyspace_core.align.converters import CONVERTER_KINDS, ConverterConfig, build_converter
from polyspace_core.align.losses import AlignmentLoss
from polyspace_core.align.metrics import (
    debiased_cka,
    linear_cka,
    minibatch_cka,
    mutual_knn,
    rbf_cka,
    retrieval_top1,
)
from polyspace_core.align.train import save_converter
from polyspace_core.io import atomic_write_json
from polyspace_core.measure import count_parameters
from polyspace_core.seeding import best_device, seed_everything

STUDENT = (8, 1024)   # V-JEPA 2 ViT-L, 16 frames, temporal tokens
TEACHER = (8, 768)    # VideoMAE-base, 16 frames, temporal tokens


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_converters(device: torch.device, batch: int, repeats: int) -> list[dict]:
    rows = []
    x = torch.randn(batch, *STUDENT, device=device)
    y = torch.randn(batch, *TEACHER, device=device)
    fit_x, fit_y = torch.randn(512, *STUDENT, device=device), torch.randn(512, *TEACHER, device=device)
    loss_fn = AlignmentLoss("l2+cos")
    for kind in CONVERTER_KINDS:
        config = ConverterConfig(kind, STUDENT[1], TEACHER[1], STUDENT[0], TEACHER[0])
        conv = build_converter(config).to(device)
        row = {"kind": kind, "params": count_parameters(conv, include_buffers=True)}
        if conv.closed_form:
            row["fit_512_clips_s"] = timed(lambda conv=conv: conv.fit(fit_x, fit_y), device, max(1, repeats // 3))
        else:
            opt = torch.optim.AdamW(conv.parameters(), lr=1e-4)

            def step(conv=conv, opt=opt):
                loss, _ = loss_fn(conv(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            row["train_step_s"] = timed(step, device, repeats)
        conv.eval()
        with torch.no_grad():
            row["forward_ms_per_clip"] = 1000 * timed(lambda conv=conv: conv(x), device, repeats) / batch
        with tempfile.TemporaryDirectory() as tmp:
            save_converter(tmp, conv)
            row["checkpoint_bytes"] = (Path(tmp) / "converter.safetensors").stat().st_size
        rows.append(row)
    return rows


def bench_metrics(n: int, dim: int = 768) -> dict:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, dim, generator=g)
    b = a @ torch.randn(dim, dim, generator=g) / dim ** 0.5 + torch.randn(n, dim, generator=g)
    out = {"n": n, "dim": dim}
    for name, fn in (("linear_cka", lambda: linear_cka(a, b)), ("rbf_cka", lambda: rbf_cka(a, b)),
                     ("debiased_cka", lambda: debiased_cka(a, b)),
                     ("minibatch_cka_256", lambda: minibatch_cka(a, b, batch_size=256)),
                     ("mutual_knn_10", lambda: mutual_knn(a, b, k=10)),
                     ("retrieval_top1", lambda: retrieval_top1(a, b))):
        t0 = time.perf_counter()
        value = fn()
        out[name] = {"value": round(float(value), 4), "seconds": round(time.perf_counter() - t0, 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--n", type=int, default=2000, help="clip vectors for the metric timings")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    seed_everything(0)
    device = best_device(args.device)
    converters = bench_converters(device, args.batch, args.repeats)
    metrics = bench_metrics(args.n)
    print(f"converters {STUDENT} -> {TEACHER} on {device}, batch {args.batch}")
    print(f"{'kind':<11}{'params':>11}{'fwd ms/clip':>13}{'train step s':>14}{'fit s':>8}{'ckpt MB':>9}")
    for r in converters:
        print(f"{r['kind']:<11}{r['params']:>11,}{r['forward_ms_per_clip']:>13.3f}"
              f"{r.get('train_step_s', float('nan')):>14.3f}{r.get('fit_512_clips_s', float('nan')):>8.3f}"
              f"{r['checkpoint_bytes'] / 1e6:>9.2f}")
    print(f"metrics on N={metrics['n']} x {metrics['dim']}:")
    for k, v in metrics.items():
        if isinstance(v, dict):
            print(f"  {k:<18} {v['seconds']:>7.3f} s   value {v['value']}")
    result = {"device": str(device), "torch_threads": torch.get_num_threads(), "host": platform.node(),
              "student": STUDENT, "teacher": TEACHER, "batch": args.batch, "converters": converters,
              "metrics": metrics}
    path = atomic_write_json(Path(__file__).resolve().parent / "results" / "align_converters.json", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
