"""`polyspace flops`: FLOPs, parameters (and optionally latency) of one model for one clip.

    polyspace flops --model vjepa2_vitl                      # real configuration, counted on meta
    polyspace flops --model videomae --frames 16 --size 224  # a registry key at another clip
    polyspace flops --model data/zoo/vjepa2-tiny --latency   # a local checkpoint folder
    polyspace flops --model MCG-NJU/videomae-huge-finetuned-kinetics  # any hub id: its config.json
    polyspace flops --model tsm_r50 --frames 8               # TSM ResNet-50 (ffn_r50: the FFN model)

FLOPs are true FLOPs (2 per multiply-add) of matmuls, convolutions and attention, counted with
torch's FlopCounterMode; GMACs are half of that.
"""

from __future__ import annotations

import argparse
import re

_TSM = re.compile(r"^(tsm|ffn)_(r50|r101|resnet50|resnet101|small|tiny)$")
_TSM_ARCH = {"r50": "resnet50", "r101": "resnet101"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flops", help="FLOPs and parameters of one model per clip (true FLOPs, 2 per multiply-add)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True,
                   help="a backbone (vjepa2_vitl, vjepa2_vith, vjepa2_vitg, videomae_base, timesformer_base, "
                        "vivit_base, the *_tiny presets, registry keys like videomae, a local checkpoint folder, "
                        "any hub id of those architectures: counted from its config.json) "
                        "or tsm_r50 / ffn_r50 / tsm_small")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's own)")
    p.add_argument("--size", type=int, default=None, help="crop size in pixels (default: the model's own)")
    p.add_argument("--latency", action="store_true",
                   help="also time it (random weights on --device; slow for the real-size models on CPU)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up (with --latency)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (with --latency)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=_flops)


def _flops(args: argparse.Namespace) -> int:
    import json

    from ..errors import PolySpaceError
    from ..seeding import best_device

    if args.frames is not None and args.frames < 1:
        raise PolySpaceError(f"--frames {args.frames}: must be a positive integer")
    if args.size is not None and args.size < 1:
        raise PolySpaceError(f"--size {args.size}: must be a positive integer")
    if args.repeats < 1:
        raise PolySpaceError(f"--repeats {args.repeats}: must be a positive integer")
    device = best_device(args.device)
    match = _TSM.match(args.model.strip().lower())
    if match:
        from .components import tsm_cost

        kind, arch = match.groups()
        result = tsm_cost(_TSM_ARCH.get(arch, arch), args.frames or 16, args.size or 224, ffn=kind == "ffn",
                          device=device, latency=args.latency, repeats=args.repeats)
    else:
        from ..backbones.catalog import backbone_cost, resolve_backbone

        spec = resolve_backbone(args.model, frames=args.frames, size=args.size)
        result = backbone_cost(spec, device, latency=args.latency, repeats=args.repeats)

    from ..measure import ATTENTION_OPS

    attention = sum(v for k, v in result.flops_by_op.items() if k in ATTENTION_OPS)
    record = {"model": result.name, **{k: v for k, v in result.spec.items() if k != "kind"},
              "gflops": result.gflops, "gmacs": result.gflops / 2, "attention_gflops": attention / 1e9,
              "params": result.params, "flops_by_op": result.flops_by_op,
              "latency_ms": result.latency_ms, "peak_memory_mb": result.peak_memory_mb,
              "device": str(device) if args.latency else None,
              "flop_convention": "true FLOPs, 2 per multiply-add"}
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    clip = ", ".join(f"{k} {record[k]}" for k in ("frames", "size") if record.get(k) is not None)
    print(f"{record['model']}  ({clip}; {record.get('source') or record.get('arch', '')})")
    print(f"  GFLOPs per clip   {record['gflops']:.3f}   (true FLOPs, 2 per multiply-add; GMACs {record['gmacs']:.3f})")
    print(f"  attention GFLOPs  {record['attention_gflops']:.3f}")
    print(f"  parameters        {record['params'] / 1e6:.2f} M")
    for op, flops in sorted(result.flops_by_op.items(), key=lambda kv: -kv[1]):
        print(f"    {op:<52} {flops / 1e9:12.3f} GFLOPs")
    if args.latency:
        print(f"  latency           {record['latency_ms']:.2f} ms per clip (median of {args.repeats}, {device})")
        print(f"  peak memory       {record['peak_memory_mb']:.1f} MB beyond weights ({result.memory.method})")
    return 0
