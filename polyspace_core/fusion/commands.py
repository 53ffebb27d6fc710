"""`polyspace train-fusion` and `polyspace eval`, with the original scripts' flags.

    polyspace train-fusion --use_cached_features --root runs/default/01_featurize/features \\
        --converters runs/default/02_train_converters/converters --epochs 20 --save_dir ckpt/fusion
    polyspace train-fusion --dataset synthmotion --root data/synthmotion --student data/zoo/vjepa2-tiny \\
        --converters ... --save_dir ckpt/fusion                       # video mode
    polyspace eval --fusion ckpt/fusion --split test --use_cached_features --root FEATURES
    polyspace eval --student_only --split test --use_cached_features --root FEATURES
    polyspace eval --fusion ckpt/fusion --baselines --use_cached_features --root FEATURES --out table.json

In cached mode `--root` is the feature store root (as in the original: "change --root to the
features directory"); `--features` says the same explicitly. The feature dtype is read from the
manifest; `--features_fp16` is accepted and checked against it. Both commands run unchanged under
`accelerate launch` / `torchrun` (DDP; --batch is the global batch).

The seeds' commands run as written. `--converters` and `--fusion` also take the original's file
form: `./checkpoints/converters.pt` is the converter set in ./checkpoints/converters (or
./checkpoints), `<dir>/converters_ep10.pt` the set in <dir> trained with --epochs 10, and
`<dir>/fusion_ep5.pt` the run in <dir> trained with --epochs 5 (our folders keep the epoch selected
on validation, not a file per epoch; align/train.resolve_converter_set,
fusion/evaluate.locate_fusion_checkpoint). train-fusion keeps the original's defaults where a seed
relies on them: --save_dir ./checkpoints/fusion and --epochs 5 (so a default run ends at the
seeds' fusion_ep5.pt). eval takes the original's --teachers, --converters and --classes and
checks them against the checkpoint, which carries its own converters (--student and --frames too).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None, help="video mode: dataset parser (hmdb51, hmdb51-csv, ucf101, "
                                                   "diving48, ssv2, synthmotion)")
    p.add_argument("--root", default=None, help="video mode: the dataset folder; cached mode: the feature store root")
    p.add_argument("--features", default=None,
                   help="cached mode: the feature store root (default: --root); video mode: the store whose "
                        "precision (dtype, autocast) the student runs in (default: the converters' store)")
    p.add_argument("--student", default=None, help="video mode: the student backbone (key, tiny preset, hub id, "
                                                    "local dir or NAME=SOURCE)")
    p.add_argument("--frames", type=int, default=16, help="video mode: frames for students that take any count (16)")
    p.add_argument("--batch", type=int, default=64, help="global batch size (default 64)")
    p.add_argument("--use_cached_features", action="store_true", help="train/evaluate from the feature store")
    p.add_argument("--features_fp16", action="store_true",
                   help="compatibility flag: the dtype is read from the manifest; "
                        "given with non-fp16 features it is an error")
    p.add_argument("--workers", type=int, default=0, help="video mode: decoding worker processes")
    p.add_argument("--on_error", choices=("error", "skip"), default="error",
                   help="video mode: stop at an undecodable video, or skip it and list it at the end")
    p.add_argument("--split_seed", type=int, default=0, help="seed of the validation hold-out (as featurize used)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-fusion", help="train the residual-gated fusion head (cached or video mode)")
    _common(p)
    p.add_argument("--split", default="train", help="training split (default train)")
    p.add_argument("--val_split", default="validation", help="selection split (default validation)")
    p.add_argument("--teachers", nargs="+", default=None, help="teachers to fuse (default: every converter)")
    p.add_argument("--converters", required=True,
                   help="converter set folder (train-converter --save_dir), or the original's file form "
                        "(DIR/converters_epN.pt, ./checkpoints/converters.pt)")
    p.add_argument("--classes", type=int, default=None, help="number of classes, checked against the data")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default 5, the original's)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight_decay", type=float, default=0.05)
    p.add_argument("--rank", type=int, default=64, help="rank of each teacher's projection")
    p.add_argument("--gate_hidden", type=int, default=64, help="width of each gate MLP")
    p.add_argument("--pooling", choices=("mean", "attention"), default="mean")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--gate_l1", type=float, default=0.0, help="gate sparsity penalty weight (0 = off)")
    p.add_argument("--finetune_converters", action="store_true", help="train the converters with the head")
    p.add_argument("--tokens", default="temporal", help="video mode: token rule (as featurize used)")
    p.add_argument("--save_dir", default="./checkpoints/fusion",
                   help="checkpoints: best/, last/ (resume), history.json (default ./checkpoints/fusion, the "
                        "original's)")
    p.add_argument("--no_resume", action="store_true", help="start over even if save_dir has a checkpoint")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a fusion checkpoint and/or the student-only and teacher baselines")
    _common(p)
    p.set_defaults(frames=None)  # checked against the checkpoint when given (video mode: its student's clips)
    p.add_argument("--fusion", default=None,
                   help="fusion checkpoint folder, the train-fusion --save_dir, or the original's DIR/fusion_epN.pt")
    p.add_argument("--teachers", nargs="+", default=None,
                   help="with --fusion: the teachers it fuses (checked against the checkpoint)")
    p.add_argument("--converters", default=None,
                   help="with --fusion: the converter set it was trained with (checked; the checkpoint carries "
                        "its own converters); a folder or the original's file form")
    p.add_argument("--classes", type=int, default=None, help="number of classes, checked against the data")
    p.add_argument("--student_only", action="store_true",
                   help="train a student-only linear probe (train split, selected on validation) and report it")
    p.add_argument("--baselines", action="store_true",
                   help="with --fusion: the full table of 05 (probes, matched head, teachers, oracle, GFLOPs)")
    p.add_argument("--split", default="test", help="split to report on (default test)")
    p.add_argument("--no_costs", action="store_true",
                   help="with --baselines: leave out the GFLOPs (e.g. features imported without their backbones)")
    p.add_argument("--probe_epochs", type=int, default=30)
    p.add_argument("--probe_lr", type=float, default=1e-2)
    p.add_argument("--out", default=None, help="write the result as JSON here")
    p.set_defaults(func=_eval)


def _features_root(args: argparse.Namespace) -> str:
    from ..errors import PolySpaceError

    root = args.features or args.root
    if root is None:
        raise PolySpaceError("--use_cached_features needs the feature store root: --root or --features")
    return root


def _train(args: argparse.Namespace) -> int:
    from ..align.train import resolve_converter_set
    from ..seeding import seed_everything
    from .train import HeadOptions, TrainSettings, train_fusion

    seed_everything(args.seed)
    converters, note = resolve_converter_set(args.converters)
    if note:
        print(note)
    settings = TrainSettings(epochs=args.epochs, batch=args.batch, lr=args.lr, weight_decay=args.weight_decay,
                             seed=args.seed)
    head = HeadOptions(rank=args.rank, gate_hidden=args.gate_hidden, pooling=args.pooling, dropout=args.dropout,
                       gate_l1=args.gate_l1, finetune_converters=args.finetune_converters)
    cached = args.use_cached_features
    run = train_fusion(mode="cached" if cached else "video", converters=converters, settings=settings, head=head,
                       features=_features_root(args) if cached else args.features, dataset=args.dataset,
                       root=None if cached else args.root, student=args.student, teachers=args.teachers,
                       num_classes=args.classes, frames=args.frames, tokens=args.tokens, train_split=args.split,
                       val_split=args.val_split, features_fp16=args.features_fp16 or None, save_dir=args.save_dir,
                       resume=not args.no_resume, device=args.device, workers=args.workers, on_error=args.on_error,
                       split_seed=args.split_seed)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun / accelerate launch the main process reports
    s = run.summary()
    print(f"fusion ({s['mode']} mode): best epoch {s['best_epoch']}, validation top-1 {s['val_top1']:.4f}, "
          f"{s['train_samples_per_s']:.1f} train samples/s; checkpoint {run.save_dir / 'best'}")
    for path, reason in run.skipped.items():
        print(f"  skipped {path}: {reason}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..errors import PolySpaceError
    from ..io import atomic_write_json
    from ..seeding import seed_everything
    from .train import TrainSettings

    seed_everything(args.seed)
    if not args.fusion and not args.student_only:
        raise PolySpaceError("eval: give --fusion CHECKPOINT and/or --student_only")
    if not args.fusion and (args.teachers or args.converters):
        raise PolySpaceError("--teachers/--converters describe a fusion checkpoint: give --fusion with them "
                             "(--student_only uses the student alone)")
    fusion_dir = None
    if args.fusion:
        from .evaluate import check_checkpoint_flags, locate_fusion_checkpoint

        fusion_dir, note = locate_fusion_checkpoint(args.fusion)
        # a video-mode --student is a backbone spec, checked by name when it is loaded
        student = args.student if args.use_cached_features else None
        notes = check_checkpoint_flags(fusion_dir, student=student, teachers=args.teachers,
                                       converters=args.converters, num_classes=args.classes)
        for line in ([note] if note else []) + notes:
            print(line)
    probe = TrainSettings(epochs=args.probe_epochs, batch=args.batch, lr=args.probe_lr, weight_decay=1e-4,
                          seed=args.seed)
    result: dict = {}
    if args.baselines:
        from ..scalar_log import LOG_FOLDER
        from .evaluate import evaluate_downstream

        if not args.fusion or not args.use_cached_features:
            raise PolySpaceError("--baselines needs --fusion and --use_cached_features (the baselines train on the "
                                 "stored teacher features)")
        # the baselines' curves go beside the fusion run's own: <train-fusion --save_dir>/tensorboard/
        log_dir = Path(fusion_dir).resolve().parent / LOG_FOLDER / f"baselines_{args.split}"
        report = evaluate_downstream(fusion_dir, _features_root(args), split=args.split,
                                     probe_settings=probe, features_fp16=args.features_fp16 or None,
                                     costs=not args.no_costs, device=args.device, log_dir=log_dir)
        print(f"baseline training curves: {log_dir}")
        print(report.table().to_string(float_format=lambda v: f"{v:.4f}"))
        result = {"rows": report.rows, "metrics": report.metrics(), "gates": report.gates}
    else:
        if args.fusion:
            from .evaluate import evaluate_checkpoint

            m = evaluate_checkpoint(fusion_dir, split=args.split,
                                    features=_features_root(args) if args.use_cached_features else None,
                                    dataset=args.dataset, root=args.root,
                                    student=None if args.use_cached_features else args.student,
                                    features_fp16=args.features_fp16 or None, batch=args.batch, workers=args.workers,
                                    on_error=args.on_error, split_seed=args.split_seed, device=args.device,
                                    frames=args.frames)
            print(f"fusion on {args.split} ({m['mode']} mode): top-1 {m['top1']:.4f}, top-5 {m['top5']:.4f}, "
                  f"mean per-class {m['mean_class_acc']:.4f} (n={m['n']})")
            result["fusion"] = m
        if args.student_only:
            m = _student_only(args, probe)
            print(f"student-only linear probe on {args.split} ({m['mode']} mode): top-1 {m['top1']:.4f}, "
                  f"top-5 {m['top5']:.4f}, mean per-class {m['mean_class_acc']:.4f} (n={m['n']})")
            result["student_only"] = m
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def _student_only(args: argparse.Namespace, probe) -> dict:
    """A student-only linear probe trained on train (selected on validation), scored on args.split."""
    from ..distributed import make_accelerator
    from ..errors import PolySpaceError
    from .data import cached_batches, open_split_store
    from .metrics import classification_metrics
    from .probes import train_linear_probe
    from .train import check_classes, predict

    acc = make_accelerator(args.device)
    splits = ("train", "validation", args.split)
    if args.use_cached_features:
        stores = [open_split_store(_features_root(args), s, args.features_fp16 or None) for s in splits]
        student = stores[0].student
        source = stores[0].model_info(student).get("source")
        if args.student is not None and args.student not in (student, source):
            raise PolySpaceError(f"--student {args.student!r}: the feature store's student is {student!r} ({source}); "
                                 f"pass that or omit --student")
        check_classes(args.classes, stores[0].class_names, str(stores[0].split_dir))
        data = [cached_batches(s, [student], batch=args.batch, shuffle=False) for s in stores]
        classes, mode = len(stores[0].class_names), "cached"
    else:
        from ..backbones import load_backbone
        from .evaluate import video_student_features

        if args.dataset is None or args.root is None or args.student is None:
            raise PolySpaceError("--student_only on videos needs --dataset, --root and --student "
                                 "(or --use_cached_features with a store)")
        backbone = load_backbone(args.student, frames=args.frames or 16, device=acc.device)
        student = backbone.name
        data = [video_student_features(args.dataset, args.root, s, backbone, batch=args.batch, workers=args.workers,
                                       on_error=args.on_error, split_seed=args.split_seed, accelerator=acc)
                for s in splits]
        from ..datasets.registry import load_split

        class_names = load_split(args.dataset, args.root, "train", seed=args.split_seed).class_names
        check_classes(args.classes, class_names, f"{args.dataset} at {args.root}")
        classes, mode = len(class_names), "video"
    result = train_linear_probe([student], data[0], data[1], classes, probe, accelerator=acc)
    pred = predict(result.model, data[2], accelerator=acc)
    m = classification_metrics(pred["logits"], pred["label"], classes)
    m.update(mode=mode, split=args.split, best_epoch=result.best_epoch, val_top1=result.best_val_top1)
    return m
