"""`polyspace synth-color`, `polyspace colorize`, `polyspace train-colorize` and `polyspace train-color`."""

from __future__ import annotations

import argparse

# the colorize default, here so `polyspace --help` does not import torch; equal to
# stream.DEFAULT_WORKING_SIZE (tests/test_colorize_stream.py checks)
DEFAULT_WORKING_SIZE = 256


def register(sub) -> None:
    p = sub.add_parser("synth-color", help="generate the SynthColor colorization dataset",
                       description="Generate SynthColor: short colour videos from scikit-image's photos with "
                                   "camera motion, moving/entering/occluding objects, an exemplar per clip, "
                                   "and train/validation/test splits (index.json).")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--clips", type=int, default=40, help="clips in all (60/20/20 train/validation/test)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--size", type=int, default=64, help="frame height and width (even, >= 32)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_synth_color)

    p = sub.add_parser("colorize", help="colorize a video from an exemplar image",
                       description="Colorize any video (colour input is turned to L first) from a reference "
                                   "image, streaming frames so memory stays bounded: one decoder reads the "
                                   "video front to back, the method predicts ab at the working size, ab is "
                                   "upsampled onto the full-resolution L guided by L, and the output is "
                                   "written to a temporary file renamed at the end.")
    p.add_argument("--input", required=True, help="input video (colour or grey)")
    p.add_argument("--reference", required=True, help="exemplar image (PNG/JPEG)")
    p.add_argument("--out", required=True, help="output video (.mp4, .mkv, .avi, .webm)")
    p.add_argument("--flow", default="dis", choices=["dis", "farneback", "raft", "memflow"],
                   help="temporal branch flow backend")
    p.add_argument("--checkpoint", default=None, help="FusionSystem folder (needed by --method fusion/exemplar)")
    p.add_argument("--method", default="fusion", choices=["fusion", "exemplar", "temporal", "global"])
    p.add_argument("--swintexco_ckpt", default=None,
                   help="--method exemplar without --checkpoint: an exemplar branch on its own, SwinTExCo's "
                        "release folder (embed_net.pth, nonlocal_net.pth, colornet.pth) or a branch saved by "
                        "save_pretrained (e.g. <checkpoint>/exemplar of `polyspace train-color`)")
    p.add_argument("--working_size", "--work-size", dest="working_size", type=int, default=DEFAULT_WORKING_SIZE,
                   help=f"short side the method predicts colour at (default {DEFAULT_WORKING_SIZE}; never more "
                        f"than the video's own); ab is upsampled onto the full-resolution L guided by L")
    p.add_argument("--match_positions", type=int, default=None,
                   help="most positions of the exemplar branch's matching grid (default: the checkpoint's, "
                        "1024; 0 = the full stride-4 grid, slower)")
    p.add_argument("--chunk", type=int, default=16, help="frames decoded and held at a time")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default, one per core). On CPU cores shared with other "
                        "work use 1: waiting threads spin, and this per-frame work was 7x slower per CPU-second "
                        "with 2 threads than with 1 on 2 busy cores (benchmarks/colorize.py)")
    p.add_argument("--device", default="auto")
    p.add_argument("--codec", default="auto", help="output codec (h264, vp9, vp8, mpeg4; auto = from suffix)")
    p.add_argument("--raft-weights", default=None, help="local torchvision RAFT state dict (--flow raft)")
    p.add_argument("--raft-variant", default="raft_small", choices=["raft_small", "raft_large"])
    p.add_argument("--memflow-path", default=None, help="MemFlow checkout (--flow memflow)")
    p.add_argument("--memflow-ckpt", default=None, help="MemFlow checkpoint (--flow memflow)")
    p.add_argument("--memflow-stage", default="sintel")
    p.set_defaults(func=_colorize)

    p = sub.add_parser("train-colorize", help="train the fusion colorization system on SynthColor",
                       description="Two-phase training (exemplar branch, then fusion) with Accelerate; also "
                                   "runs as `accelerate launch -m polyspace_core.colorize.train ...`.")
    from .train_config import add_train_arguments
    add_train_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("train-color", help="train the fusion colorization system on real colour video (the "
                                           "seed's train/train.py)",
                       description="Seed 004's train/train.py: build FusionSystem from MemFlow and SwinTExCo "
                                   "(Strategy 1 with --swintexco_ckpt, else 2) or our exemplar branch with a named "
                                   "embedding family, and train it end to end on clips of --dataset's videos (and "
                                   "pseudo-videos of --imagenet's photos), keeping the best validation epoch.")
    from .train_config import add_seed_train_arguments
    add_seed_train_arguments(p)
    p.set_defaults(func=_train_color)


def _synth_color(args: argparse.Namespace) -> int:
    from ..datasets.synthcolor import generate_synthcolor, load_synthcolor_index

    path = generate_synthcolor(args.out, clips=args.clips, frames=args.frames, size=args.size, seed=args.seed)
    index = load_synthcolor_index(path.parent)
    counts = ", ".join(f"{k} {len(v)}" for k, v in index["splits"].items())
    print(f"SynthColor at {path.parent}: {counts} clips of {args.frames} frames, {args.size}x{args.size}")
    return 0


def _colorize(args: argparse.Namespace) -> int:
    import json

    from ..errors import PolySpaceError
    from ..io import output_folder
    from ..seeding import best_device
    from .flow import build_flow_backend
    from .stream import colorize_video
    from .system import FusionSystem

    output_folder(args.out)  # before any model is loaded or frame decoded
    if args.match_positions is not None and args.match_positions < 0:
        raise PolySpaceError(f"colorize --match_positions={args.match_positions}: must be >= 0 (0 = no pooling)")
    if args.threads < 0:
        raise PolySpaceError(f"colorize --threads={args.threads}: must be >= 0 (0 = torch's default)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    device = best_device(args.device)
    flow = build_flow_backend(args.flow, raft_weights=args.raft_weights, raft_variant=args.raft_variant,
                              memflow_path=args.memflow_path, memflow_ckpt=args.memflow_ckpt,
                              memflow_stage=args.memflow_stage, device=device)
    system = None
    if args.swintexco_ckpt is not None:
        if args.method != "exemplar":
            raise PolySpaceError(f"colorize --swintexco_ckpt: an exemplar branch alone runs --method exemplar, not "
                                 f"{args.method} (fusion needs the fusion net of a --checkpoint)")
        if args.checkpoint is not None:
            raise PolySpaceError("colorize: give --checkpoint (a FusionSystem) or --swintexco_ckpt (an exemplar "
                                 "branch), not both")
        from .system import load_exemplar

        # the branch alone: the system's fusion net is never called by --method exemplar
        system = FusionSystem(load_exemplar(args.swintexco_ckpt, map_location=device), flow=flow)
    if args.checkpoint is not None:
        system = FusionSystem.from_pretrained(args.checkpoint, flow=flow, map_location=device)
    if system is not None and args.match_positions is not None:
        if not hasattr(system.exemplar.nonlocal_net, "max_positions"):
            raise PolySpaceError("colorize --match_positions: SwinTExCo's non-local net matches every position; "
                                 "the flag applies to our exemplar branch only")
        system.exemplar.nonlocal_net.max_positions = args.match_positions
    stats = colorize_video(args.input, args.reference, args.out, method=args.method, system=system, flow=flow,
                           working_size=args.working_size, chunk=args.chunk, device=device, codec=args.codec)
    print(json.dumps(stats, indent=2))
    return 0


def _train_color(args: argparse.Namespace) -> int:
    from .train import run_seed_training

    return run_seed_training(args)


def _train(args: argparse.Namespace) -> int:
    from .train import run_from_args

    return run_from_args(args)
