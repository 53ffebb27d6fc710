"""`polyspace train-converter`: train one converter per teacher from the feature store.

    polyspace train-converter --features runs/default/01_featurize/features --teachers videomae timesformer \\
        --d_in 768 --d_out 768 --epochs 10 --batch 128 --lr 1e-3 --save_dir checkpoints/converters \\
        --kind mlp --loss_weights 1,1,0,0,0,0

Trains on `<features>/train`, selects the epoch on `<features>/validation`, and writes
`<save_dir>/<teacher>/` checkpoints plus `<save_dir>/converters.json`. A teacher whose checkpoint
was already written with the same settings is skipped (rerun to resume; --overwrite to retrain).

As in the seeds, `--features` may name the original's entry file of the training split,
`<out>/features_<dataset>_<split>.json` (or .index.json / .pkl): where featurize wrote that split
as a store, `<out>/<split>/`, that is read (checked to hold <dataset>); an original cache file
itself is converted first with `polyspace import-pickle`. --save_dir defaults to the original's
./checkpoints/converters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import PolySpaceError
from ..io import read_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-converter", help="train student->teacher converters from the feature store",
                       description=__doc__.splitlines()[0])
    p.add_argument("--features", required=True,
                   help="feature store root holding <split>/manifest.json (or the original's entry file "
                        "<root>/features_<ds>_<split>.json naming that split)")
    p.add_argument("--teachers", nargs="+", default=None,
                   help="teacher model names (default: every teacher in the store)")
    p.add_argument("--student", default=None, help="student model name (default: the store's student)")
    p.add_argument("--d_in", type=int, default=None, help="student feature dim; checked against the store")
    p.add_argument("--d_out", type=int, nargs="+", default=None,
                   help="teacher feature dim, one for all teachers or one per teacher; checked against the store")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--save_dir", default="./checkpoints/converters",
                   help="output folder for the converter set (default ./checkpoints/converters, the original's)")
    p.add_argument("--kind", default="mlp",
                   help="procrustes, ridge, mlp, attention (A), resampler (B) or linear (C); default mlp")
    p.add_argument("--loss_weights", default="1,1,0,0,0,0",
                   help="weights l2,cos,nce,vic,bar,l1 as a vector (default 1,1,0,0,0,0) or terms like l2+0.1*nce")
    p.add_argument("--temperature", type=float, default=0.07, help="InfoNCE temperature")
    p.add_argument("--weight_decay", type=float, default=1e-4)
    p.add_argument("--hidden", type=int, default=256, help="trunk width of mlp/attention/resampler")
    p.add_argument("--depth", type=int, default=2, help="residual / latent self-attention blocks")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--latents", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--ridge_alpha", type=float, default=1e-3)
    p.add_argument("--train_split", default="train")
    p.add_argument("--val_split", default="validation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--overwrite", action="store_true",
                   help="retrain teachers that already have a checkpoint, replacing one trained with other "
                        "settings or another student's set (without it, those are an error)")
    p.set_defaults(func=_train_converter)


def _train_converter(args: argparse.Namespace) -> int:
    from ..features.store import FeatureStore
    from ..scalar_log import LOG_FOLDER
    from .converters import ConverterConfig
    from .losses import format_loss_weights, parse_loss_weights
    from .train import (
        converter_folder,
        evaluate_converter,
        load_converter,
        pairs_from_store,
        save_converter,
        train_converter,
        write_converter_index,
    )

    root = _store_root(Path(args.features), args.train_split)
    if (root / "manifest.json").is_file():
        raise PolySpaceError(f"--features {root}: this is one split of a store; pass its parent folder "
                             f"(train-converter reads <features>/{args.train_split} and <features>/{args.val_split})")
    train_dir, val_dir = root / args.train_split, root / args.val_split
    train_store, val_store = FeatureStore.open(train_dir), FeatureStore.open(val_dir)
    student = args.student or train_store.student
    if student is None:
        raise PolySpaceError(f"{train_dir}: the manifest marks no student model; "
                             f"pass --student (one of {train_store.models})")
    teachers = args.teachers or train_store.teachers
    if not teachers:
        raise PolySpaceError(f"{train_dir}: the manifest marks no teacher models; pass --teachers")
    if student in teachers:
        raise PolySpaceError(f"--teachers includes the student {student!r}; "
                             f"a converter maps the student to other models")
    for store in (train_store, val_store):
        for name in (student, *teachers):
            store.model_info(name)  # unknown model -> error naming the store and its models
    t_in, d_in = train_store.shape(student)
    if args.d_in is not None and args.d_in != d_in:
        raise PolySpaceError(f"--d_in {args.d_in} does not match the store: {student!r} features are {d_in}-dim")
    if args.d_out is not None and len(args.d_out) not in (1, len(teachers)):
        raise PolySpaceError(f"--d_out takes one value or one per teacher ({len(teachers)}), got {len(args.d_out)}")
    weights = parse_loss_weights(args.loss_weights)
    loss_label = format_loss_weights(weights)

    save_dir = Path(args.save_dir)
    plan = []  # (teacher, config, train_args, folder, done): every check before any training
    for i, teacher in enumerate(teachers):
        t_out, d_out = train_store.shape(teacher)
        if args.d_out is not None:
            want = args.d_out[0] if len(args.d_out) == 1 else args.d_out[i]
            if want != d_out:
                raise PolySpaceError(f"--d_out {want} does not match the store: {teacher!r} features are {d_out}-dim")
        if val_store.shape(teacher) != (t_out, d_out) or val_store.shape(student) != (t_in, d_in):
            raise PolySpaceError(f"{val_dir}: feature shapes differ from {train_dir}; "
                                 f"extract both splits with the same models")
        config = ConverterConfig(args.kind, d_in, d_out, t_in, t_out, hidden=args.hidden, depth=args.depth,
                                 heads=args.heads, latents=args.latents, dropout=args.dropout,
                                 ridge_alpha=args.ridge_alpha, grid_in=list(train_store.grid(student)),
                                 grid_out=list(train_store.grid(teacher)))
        train_args = {"features": str(root.resolve()), "loss_weights": loss_label, "epochs": args.epochs,
                      "batch": args.batch, "lr": args.lr, "seed": args.seed, "temperature": args.temperature,
                      "weight_decay": args.weight_decay}
        folder = save_dir / converter_folder(teacher)
        plan.append((teacher, config, train_args, folder,
                     not args.overwrite and _finished_here(folder, config, train_args)))
    if not args.overwrite:
        _refuse_other_set(save_dir, student)

    for teacher, config, train_args, folder, done in plan:
        if done:
            print(f"{teacher}: already trained with these settings in {folder}; skipping (--overwrite retrains)")
            load_converter(folder)  # a damaged checkpoint is an error now, not in train-fusion later
            write_converter_index(save_dir, student, [teacher], merge=True)
            continue
        (t_in, d_in), (t_out, d_out) = (config.t_in, config.d_in), (config.t_out, config.d_out)
        train = pairs_from_store(train_dir, student, teacher)
        val = pairs_from_store(val_dir, student, teacher)
        print(f"{teacher}: {config.kind} converter {student}{(t_in, d_in)} -> {teacher}{(t_out, d_out)}, "
              f"loss {loss_label}, {len(train[0])} train / {len(val[0])} validation clips")
        fit = train_converter(train, val, config, weights, epochs=args.epochs, batch=args.batch, lr=args.lr,
                              seed=args.seed, device=args.device, weight_decay=args.weight_decay,
                              temperature=args.temperature,
                              log_dir=save_dir / LOG_FOLDER / converter_folder(teacher))
        fit.validation_fidelity = fidelity = evaluate_converter(fit.converter, *val)
        # written per teacher as soon as it is done, so an interrupted run keeps finished teachers
        save_converter(folder, fit.converter, record=fit.record(),
                       info={"student": student, "teacher": teacher, "train_args": train_args})
        write_converter_index(save_dir, student, [teacher], merge=True)
        print(f"{teacher}: best epoch {fit.best_epoch}/{len(fit.history)}, "
              + ", ".join(f"{k} {v:.3f}" for k, v in fidelity.items()) + f" (validation) -> {folder}")
    print(f"converters: {save_dir / 'converters.json'}")
    return 0


def _store_root(path: Path, train_split: str) -> Path:
    """The store root `--features` names: itself, or for the original's entry file of a split
    (`./features/features_hmdb51_train.json`, as seed 003 passes it) the folder featurize wrote
    that split under, checked to be the training split of the dataset the name says."""
    from ..features.store import FeatureStore, original_entry

    entry = original_entry(path)
    if entry is None or path.is_dir():
        return path
    dataset, split = entry
    if path.is_file():
        raise PolySpaceError(f"--features {path}: a cache of the original featurize; convert it first "
                             f"(`polyspace import-pickle {path} --out DIR --split {split}`, --allow-pickle for its "
                             f"pickles) and pass DIR")
    store_dir = path.parent / split
    if not (store_dir / "manifest.json").is_file():
        raise PolySpaceError(f"--features {path}: no such file, and no {split} split featurized at {store_dir}; "
                             f"featurize --out {path.parent} --split {split} writes it there")
    if split != train_split:
        raise PolySpaceError(f"--features {path}: names the {split} split; converters train on --train_split "
                             f"{train_split}")
    found = (FeatureStore.open(store_dir).manifest.get("dataset") or {}).get("name")
    if found not in (None, dataset):
        raise PolySpaceError(f"--features {path}: names {dataset} features, but {store_dir} holds {found} features")
    return path.parent


def _finished_here(folder: Path, config, train_args: dict) -> bool:
    """True when `folder` holds this teacher's converter trained with these settings (resume:
    skip it); False when it holds none. A converter trained with other settings is an error:
    replacing it would lose a result (--overwrite says to)."""

    if not (folder / "config.json").is_file():
        return False
    done = read_json(folder / "config.json")
    differs = [name for name, ours, theirs in (("converter config", config.to_dict(), done.get("config")),
                                               ("training arguments", train_args, done.get("train_args")))
               if ours != theirs]
    if not differs:
        return True
    raise PolySpaceError(f"{folder}: holds a converter trained with other {' and '.join(differs)}; pass --overwrite "
                         f"to replace it, or choose another --save_dir")


def _refuse_other_set(save_dir: Path, student: str) -> None:
    """A converter set of another student in `save_dir` is not merged into or replaced silently."""

    index = save_dir / "converters.json"
    if index.is_file():
        other = read_json(index).get("student")
        if other != student:
            raise PolySpaceError(f"{index}: holds the converter set of student {other!r}, not {student!r}; pass "
                                 f"--overwrite to replace it, or choose another --save_dir")
