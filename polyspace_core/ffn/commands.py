"""`polyspace train-ffn`: train FFN (or the vanilla TSM baseline) on Something-Something V2.

    polyspace train-ffn --video_dir data/20bn-something-something-v2 --labels_dir data/labels \\
        --epochs 50 --batch_size 8                        # full training
    polyspace train-ffn ... --test_run                    # 2 batches of train and validation
    polyspace train-ffn ... --eval_only --resume checkpoints/ffn/best.json
    polyspace train-ffn ... --eval_only --resume ckpt.best.pth.tar   # an official FFN/TSM release

--recipe official sets the paper's recipe as the official code runs it (recipe.py: step decay
20/40 of 50, lr 0.01 at a total batch of 32 scaled linearly, TSN's multi-scale crop, ...);
explicit flags win over the recipe.

A new ResNet-50/101 run starts from torchvision's ImageNet weights (--pretrained imagenet, the
default for those archs): --imagenet_weights FILE, or the file in torchvision's cache folder
($TORCH_HOME/hub/checkpoints). --pretrained none trains from random weights, and says so.

Runs single-process, or under `accelerate launch` / `torchrun` for several GPUs or nodes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .archs import ARCHS
from .recipe import DEFAULT, RECIPES

R = "(recipe default: {})"  # flags a recipe sets have default None and say the recipe's default value


def _recipe_help(text: str, key: str) -> str:
    return f"{text} {R.format(DEFAULT[key])}" if text else R.format(DEFAULT[key])


def register(subparsers) -> None:
    p = subparsers.add_parser("train-ffn", help="train/evaluate a Frame Flexible Network (TSM ResNet) on SSv2",
                              description=__doc__.splitlines()[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--video_dir", required=True, help="folder of SSv2 <id>.webm videos (20bn-something-something-v2)")
    p.add_argument("--labels_dir", required=True, help="SSv2 labels folder (labels.json, train.json, validation.json)")
    p.add_argument("--recipe", default="default", choices=list(RECIPES),
                   help="the settings the flags below start from: official = the FFN paper's recipe as the official "
                        "code runs it (polyspace_core/ffn/recipe.py); explicit flags win")
    p.add_argument("--epochs", type=int, default=None, help=_recipe_help("", "epochs"))
    p.add_argument("--batch_size", type=int, default=None,
                   help=_recipe_help("clips per process and step", "batch_size"))
    p.add_argument("--lr", type=float, default=None,
                   help=_recipe_help("base lr; with --lr_batch, the lr at that total batch", "lr"))
    p.add_argument("--lr_batch", type=int, default=None,
                   help="linear scaling: lr x (batch_size x processes) / lr_batch (official: 32); default none (recipe "
                        "official: 32)")
    p.add_argument("--schedule", default=None, choices=["cosine", "step"],
                   help=_recipe_help("per-epoch lr schedule (official: step)", "schedule"))
    p.add_argument("--lr_steps", type=int, nargs="+", default=None,
                   help=_recipe_help("epochs after which a step schedule multiplies the lr by --lr_decay", "lr_steps"))
    p.add_argument("--lr_decay", type=float, default=None, help=_recipe_help("", "lr_decay"))
    p.add_argument("--momentum", type=float, default=None, help=_recipe_help("SGD momentum", "momentum"))
    p.add_argument("--weight_decay", type=float, default=None,
                   help=_recipe_help("on conv and classifier weights; none on BatchNorm and biases", "weight_decay"))
    p.add_argument("--fc_lr_mult", type=float, default=None,
                   help=_recipe_help("classifier weight lr multiplier (official lr5_weight)", "fc_lr_mult"))
    p.add_argument("--fc_bias_lr_mult", type=float, default=None,
                   help=_recipe_help("classifier bias lr multiplier (official lr10_bias)", "fc_bias_lr_mult"))
    p.add_argument("--clip_grad_norm", type=float, default=None, help=_recipe_help("0 disables", "clip_grad_norm"))
    p.add_argument("--dropout", type=float, default=None, help=_recipe_help("before the classifier", "dropout"))
    p.add_argument("--lambda_kl", type=float, default=None,
                   help=_recipe_help("weight of KL(high || lower) terms", "lambda_kl"))
    p.add_argument("--num_frames_h", type=int, default=None, help=_recipe_help("high frame count (teacher)",
                                                                               "num_frames_h"))
    p.add_argument("--num_frames_m", type=int, default=None, help=_recipe_help("medium frame count", "num_frames_m"))
    p.add_argument("--num_frames_l", type=int, default=None, help=_recipe_help("low frame count", "num_frames_l"))
    p.add_argument("--test_run", action="store_true",
                   help="one epoch of 2 batches (train and validation), saved as best, epoch_1 and final")
    p.add_argument("--eval_only", action="store_true", help="evaluate the --resume checkpoint at l/m/h frames")
    p.add_argument("--resume", default=None,
                   help="checkpoint to resume from or to evaluate: ours (.json), or an official FFN-pytorch / "
                        "temporal-shift-module release (.pth/.pth.tar), whose weights then start the run")
    p.add_argument("--release_layout", default="auto", choices=["auto", "ffn", "tsm", "ffn-tsm", "tsn"],
                   help="layout of an official --resume file; auto detects ffn and tsm by their keys (FFN-pytorch's "
                        "TSM baseline, ffn-tsm, and TSN share key names: name those)")
    p.add_argument("--save_dir", default="checkpoints/ffn", help="where best/epoch_N/final checkpoints go")
    p.add_argument("--overwrite", action="store_true",
                   help="train afresh into a --save_dir that holds a run with other settings (replacing its "
                        "checkpoints); without it that is an error, and the same run again resumes")
    p.add_argument("--arch", default=None, choices=list(ARCHS), help=_recipe_help("TSM ResNet size", "arch"))
    p.add_argument("--model", default="ffn", choices=["ffn", "tsm"],
                   help="ffn: all three frame counts; tsm: vanilla TSM trained at --num_frames_h")
    p.add_argument("--pretrained", default=None, choices=["auto", "imagenet", "none"],
                   help="what a new run starts from: imagenet (torchvision's ResNet weights) or none (random "
                        "weights); auto: imagenet for resnet50/resnet101, none for the small archs (they have no "
                        "ImageNet weights); the start is printed and recorded either way "
                        "(recipe default: auto; official: imagenet)")
    p.add_argument("--imagenet_weights", default=None,
                   help="torchvision ResNet state dict (.pth/.safetensors) for --pretrained imagenet; default: "
                        "torchvision's cache folder, $TORCH_HOME/hub/checkpoints (resnet50-19c8e357.pth, "
                        "resnet50-0676ba61.pth or resnet50-11ad3fa6.pth)")
    p.add_argument("--size", type=int, default=None, help=_recipe_help("crop side in pixels", "size"))
    p.add_argument("--short_side", type=int, default=None,
                   help=_recipe_help("resize the short side to this before cropping", "short_side"))
    p.add_argument("--crop", default=None, choices=["random", "multiscale"],
                   help=_recipe_help("training crop: random position, or TSN's multi-scale crop with fixed offsets "
                                     "(one crop for every frame count of a video)", "crop"))
    p.add_argument("--scales", type=float, nargs="+", default=None,
                   help=_recipe_help("multi-scale crop: crop sides as fractions of the short side", "scales"))
    p.add_argument("--max_distort", type=int, default=None,
                   help=_recipe_help("multi-scale crop: scale steps width and height may differ", "max_distort"))
    p.add_argument("--more_fix_crop", default=None, type=_bool,
                   help=_recipe_help("multi-scale crop: 13 fixed offsets (true) or 5", "more_fix_crop"))
    p.add_argument("--backend", default="auto", choices=["auto", "torchcodec", "decord", "pyav"],
                   help="video decoder (auto: torchcodec where installed with FFmpeg and right, else decord/PyAV)")
    p.add_argument("--on_error", default="error", choices=["error", "skip"],
                   help="a video that does not decode: stop (error) or leave it out and count it (skip)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader worker processes")
    p.add_argument("--cache", action="store_true",
                   help="decode every video once into memory (small sets; --cache_gib caps it)")
    p.add_argument("--cache_gib", type=float, default=4.0, help="cap of the in-memory --cache, GiB")
    p.add_argument("--frame_cache", default=None,
                   help="folder of an on-disk frame cache: every video decoded once (at --short_side, uint8) and "
                        "reused by later epochs and runs")
    p.add_argument("--frame_cache_gib", type=float, default=None,
                   help="cap of --frame_cache in GiB (default: no cap; it always keeps 2 GiB of the disk free)")
    p.add_argument("--frame_cache_format", default="uint8", choices=["uint8", "jpeg"],
                   help="how --frame_cache stores frames: uint8 (exactly the decoded pixels) or jpeg (lossy: ~1/18 "
                        "of the bytes and 42 dB PSNR at quality 90 in benchmarks/ffn_loader.py; decoded again on "
                        "every read; training then sees other pixels than decoding gives)")
    p.add_argument("--frame_cache_quality", type=int, default=90, help="JPEG quality of --frame_cache_format jpeg")
    p.add_argument("--eval_every", type=int, default=1)
    p.add_argument("--save_every", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU) or cpu")
    p.set_defaults(func=run_train_ffn)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def resolved_settings(args: argparse.Namespace) -> dict:
    """The recipe's settings with the explicit flags laid over them (recipe.resolve_recipe)."""
    from .recipe import resolve_recipe

    return resolve_recipe(args.recipe, {k: getattr(args, k) for k in DEFAULT})


def run_train_ffn(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader

    from ..errors import PolySpaceError
    from ..io import atomic_write_json
    from ..seeding import best_device, seed_everything
    from .checkpoint import is_polyspace_checkpoint, load_model
    from .data import MultiFrameClips, load_ssv2_split
    from .evaluate import evaluate_tfd
    from .released import read_release
    from .train import FFNTrainer, TrainConfig, TSMTrainer, saved_run
    from .tsm_resnet import build_model

    args.explicit_pretrained = args.pretrained  # None unless given: a release start refuses only an explicit one
    for key, value in resolved_settings(args).items():
        setattr(args, key, value)
    if args.pretrained == "none" and args.imagenet_weights:
        raise PolySpaceError("--pretrained none with --imagenet_weights: choose one (leave out --imagenet_weights "
                             "to train from scratch)")
    seed_everything(args.seed)
    frames = (args.num_frames_l, args.num_frames_m, args.num_frames_h)
    if not (0 < frames[0] < frames[1] < frames[2]):
        raise PolySpaceError(f"--num_frames_l/m/h must increase, got {frames}")
    # an official FFN/TSM file is read (and checked) before any data is
    release = None
    if args.resume and not is_polyspace_checkpoint(args.resume):
        release = read_release(args.resume, args.release_layout, default_frames=args.num_frames_h)
    data_kw = dict(size=args.size, short_side=args.short_side, cache=args.cache, seed=args.seed,
                   backend=args.backend, on_error=args.on_error,
                   cache_limit_bytes=int(args.cache_gib * 2**30), frame_cache=args.frame_cache,
                   frame_cache_max_bytes=None if args.frame_cache_gib is None else int(args.frame_cache_gib * 2**30),
                   frame_cache_format=args.frame_cache_format, frame_cache_quality=args.frame_cache_quality)
    val_split = load_ssv2_split(args.video_dir, args.labels_dir, "validation")
    val_data = MultiFrameClips(val_split, frames, train=False, **data_kw)
    print(f"validation: {len(val_data)} videos, {len(val_split.class_names)} classes; {_frames_note(args)}")

    if args.eval_only:
        if not args.resume:
            raise PolySpaceError("--eval_only needs --resume <checkpoint.json or official .pth> to evaluate")
        _note_unused_start(args, "--eval_only evaluates the weights of --resume")
        device = best_device(args.device)
        if release is not None:
            print(release.describe())
            model = release.build().to(device).eval()
        else:
            model = load_model(args.resume, map_location=device)
        if model.config.num_classes != len(val_split.class_names):
            raise PolySpaceError(f"--resume {args.resume}: model has {model.config.num_classes} classes, "
                                 f"the labels have {len(val_split.class_names)}")
        loader = DataLoader(val_data, batch_size=args.batch_size, num_workers=args.workers)
        results = evaluate_tfd(model, loader, device=device, max_batches=2 if args.test_run else None)
        _print_tfd(results)
        if args.save_dir:
            out = atomic_write_json(Path(args.save_dir) / "tfd_validation.json",
                                    {"checkpoint": str(args.resume), **results})
            print(f"wrote {out}")
        return 0

    train_split = load_ssv2_split(args.video_dir, args.labels_dir, "train")
    train_data = MultiFrameClips(train_split, frames, train=True, crop=args.crop, scales=args.scales,
                                 max_distort=args.max_distort, more_fix_crop=args.more_fix_crop, **data_kw)
    ffn = args.model == "ffn"
    model = build_model(args.arch, num_classes=len(train_split.class_names),
                        frame_counts=frames if ffn else frames[-1:],
                        ffn=ffn, class_names=list(train_split.class_names), dropout=args.dropout)
    start = _start_choice(args, release)
    config = TrainConfig(epochs=1 if args.test_run else args.epochs, batch_size=args.batch_size, lr=args.lr,
                         lr_batch=args.lr_batch, schedule=args.schedule, lr_steps=tuple(args.lr_steps),
                         lr_decay=args.lr_decay, momentum=args.momentum, weight_decay=args.weight_decay,
                         fc_lr_mult=args.fc_lr_mult, fc_bias_lr_mult=args.fc_bias_lr_mult,
                         clip_grad_norm=args.clip_grad_norm,
                         lambda_kl=args.lambda_kl, eval_every=args.eval_every,
                         save_every=1 if args.test_run else args.save_every,  # a test run writes epoch_1 too
                         max_batches=2 if args.test_run else None, num_workers=args.workers,
                         device=args.device, seed=args.seed)
    trainer = (FFNTrainer if ffn else TSMTrainer)(model, train_data, val_data, config, args.save_dir)
    trainer.start = start
    main = trainer.accelerator.is_main_process
    if main:
        print(f"{args.model.upper()} training on {trainer.device} ({trainer.accelerator.num_processes} process(es))")
        print(f"training samples: {len(train_data)}  validation samples: {len(val_data)}  epochs: {config.epochs}"
              + (f"  lambda KL: {config.lambda_kl}" if ffn else ""))
        print(f"recipe {args.recipe}: lr {trainer.base_lr:g} (batch {config.batch_size} x "
              f"{trainer.accelerator.num_processes} process(es)"
              + (f", lr {config.lr:g} at batch {config.lr_batch}" if config.lr_batch else "") + "), "
              + (f"x{config.lr_decay:g} after epochs {list(config.lr_steps)}" if config.schedule == "step" else
                 "cosine") + f", momentum {config.momentum:g}, weight decay {config.weight_decay:g}, classifier lr "
              f"x{config.fc_lr_mult:g}/x{config.fc_bias_lr_mult:g}, {args.crop} crop {args.size}")
    resume = args.resume if release is None else None
    if resume is None and not args.overwrite:
        resume = saved_run(args.save_dir, trainer)  # the same run again continues; another is refused
    if resume is not None:
        done = trainer.resume(resume)
        if main:
            print(f"resumed from {resume} after epoch {done}"
                  + (f" (the run started from {trainer.start})" if trainer.start else ""))
            if args.resume and release is None:
                _note_unused_start(args, "the weights come from --resume")
    else:
        # weights are set after the trainer exists: a resumed run must not need the ImageNet file
        note = _apply_start(trainer, start, args, release)
        if main:
            print(note)
    if trainer.epoch < config.epochs:
        trainer.train()
    elif main:
        print(f"{args.save_dir}: this run finished already; its checkpoints are kept as they are")
    results = trainer.validate()
    if main:
        print("final evaluation (validation):")
        _print_tfd(results)
        print(f"checkpoints in {args.save_dir}")
    return 0


def _frames_note(args: argparse.Namespace) -> str:
    """Where clip frames come from, for the run's log (a JPEG cache trains on other pixels)."""
    if args.frame_cache:
        kind = (f"JPEG quality {args.frame_cache_quality}, lossy" if args.frame_cache_format == "jpeg"
                else "uint8, the decoded pixels")
        return f"frames from the on-disk frame cache {args.frame_cache} ({kind})"
    return "frames decoded once into memory" if args.cache else "frames decoded every epoch"


def _start_choice(args: argparse.Namespace, release) -> str:
    """What a new run's weights start from: '<layout> release', 'imagenet' or 'none'. The default
    is ImageNet wherever torchvision has weights for the arch (as the paper always starts)."""
    from ..errors import PolySpaceError
    from .pretrained import IMAGENET_FILES

    if release is not None:
        if args.explicit_pretrained not in (None, "auto") or args.imagenet_weights:
            raise PolySpaceError(f"--resume {args.resume}: an official release, whose weights start this run; "
                                 "leave out --pretrained / --imagenet_weights")
        return f"{release.layout} release"
    if args.pretrained != "auto":
        return args.pretrained
    return "imagenet" if args.imagenet_weights or args.arch in IMAGENET_FILES else "none"


def _apply_start(trainer, start: str, args: argparse.Namespace, release) -> str:
    """Set the new run's weights as `start` says; returns the line that announces it."""
    from .pretrained import find_imagenet_weights, load_imagenet_weights

    model = trainer.unwrapped_model
    if release is not None:
        release.load_into(model)
        trainer.start_source = str(release.path)
        return (f"starting from {release.describe()}; weights only (its optimizer state and schedule are not "
                "carried over), training starts at epoch 1")
    if start == "imagenet":
        path = find_imagenet_weights(args.arch, args.imagenet_weights)
        counts = load_imagenet_weights(model, path)
        trainer.start_source = str(path)
        return (f"starting from ImageNet weights {path} ({counts['source_tensors']} tensors; every stream's "
                "BatchNorms from the same ImageNet BatchNorm, a new classifier)")
    why = "--pretrained none" if args.pretrained == "none" else f"--arch {args.arch} has no ImageNet weights"
    return f"starting from random weights ({why}): training from scratch"


def _note_unused_start(args: argparse.Namespace, why: str) -> None:
    if args.explicit_pretrained not in (None, "auto") or args.imagenet_weights:
        print(f"note: --pretrained / --imagenet_weights not used: {why}")


def _print_tfd(results: dict) -> None:
    for key, value in results.items():
        if key.startswith("acc_"):
            print(f"  {key[4:-1]:>3}F accuracy: {value:6.2f}%")
    if "tfd_gap" in results:
        print(f"  TFD gap (high - low): {results['tfd_gap']:.2f} points")
    if results.get("skipped"):
        print(f"  left out: {results['skipped']} videos that did not decode (--on_error skip)")
