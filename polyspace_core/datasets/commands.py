"""`polyspace synth` (generate SynthMotion) and `polyspace data-info` (what a dataset holds)."""

from __future__ import annotations

import argparse
import json
import os
import time


def register(sub: argparse._SubParsersAction) -> None:
    from .registry import DATASETS
    from .synthmotion_layouts import LAYOUTS

    p = sub.add_parser("synth", help="generate the SynthMotion action dataset as real videos in an "
                                     "official dataset layout")
    p.add_argument("--layout", required=True, choices=LAYOUTS, help="which dataset's layout to write")
    p.add_argument("--out", required=True, help="output folder (created; must be empty or hold this set)")
    p.add_argument("--classes", default="12",
                   help="number of classes (the first N, 2-14) or comma-separated class names (default 12)")
    p.add_argument("--clips-per-class", "--clips_per_class", dest="clips_per_class", type=int,
                   default=100, help="videos per class (default 100)")
    p.add_argument("--frames", type=int, default=16, help="frames per video (default 16, at least 8)")
    p.add_argument("--size", type=int, default=64, help="square frame size in pixels, even (default 64)")
    p.add_argument("--seed", type=int, default=0, help="everything is derived from it (default 0)")
    p.add_argument("--test-fraction", "--test_fraction", dest="test_fraction", type=float, default=0.2,
                   help="share of each class's videos in the test split (default 0.2)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="processes rendering and encoding (0 = in this process)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("data-info", help="videos, classes with counts and first items of a dataset split")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--root", required=True, help="the dataset folder")
    p.add_argument("--split", default=None, help="train, validation or test (default: all three)")
    p.add_argument("--split-id", "--split_id", dest="split_id", type=int, default=1,
                   help="official split for HMDB51/UCF101 (1-3)")
    p.add_argument("--val-fraction", "--val_fraction", dest="val_fraction", type=float, default=0.1,
                   help="share of train held out as validation where the format has none")
    p.add_argument("--seed", type=int, default=0, help="seed of that hold-out")
    p.add_argument("--show", type=int, default=5, help="how many first items to list (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_data_info)


def _synth(args: argparse.Namespace) -> int:
    from .synthmotion_layouts import generate_synthmotion

    classes: int | list[str]
    classes = int(args.classes) if args.classes.strip().isdigit() else \
        [c.strip() for c in args.classes.split(",") if c.strip()]
    start = time.perf_counter()
    info = generate_synthmotion(args.out, args.layout, classes, args.clips_per_class, args.frames,
                                args.size, args.seed, args.workers, test_fraction=args.test_fraction)
    took = "already there" if info["cached"] else f"generated in {time.perf_counter() - start:.1f} s"
    counts = ", ".join(f"{k} {v}" for k, v in info["split_counts"].items())
    print(f"SynthMotion ({info['layout']} layout) at {info['root']}: {info['videos']} videos, "
          f"{len(info['classes'])} classes, {info['frames']} frames of {info['size']}x{info['size']} "
          f"({counts}); {took}")
    print(f"read it with: polyspace data-info --dataset {info['dataset']} --root {info['root']}")
    return 0


def split_info(split, show: int) -> dict:
    """Counts, missing files and the first `show` items of a DatasetSplit, as plain data."""
    missing = [item for item in split.items if not item.path.is_file()]
    return {
        "videos": len(split),
        "missing_files": len(missing),
        "first_missing": [os.fspath(item.path) for item in missing[:3]],
        "class_counts": split.class_counts(),
        "first_items": [{"path": os.fspath(item.path), "label": item.label,
                         "class_name": item.class_name, "video_id": item.video_id}
                        for item in split.items[:show]],
        "notes": split.notes,
    }


def _data_info(args: argparse.Namespace) -> int:
    from .base import SPLITS, check_split
    from .registry import load_split

    splits = [check_split(args.split)] if args.split else list(SPLITS)
    result: dict = {"dataset": args.dataset, "root": os.path.abspath(args.root), "splits": {}}
    for name in splits:
        split = load_split(args.dataset, args.root, name, split_id=args.split_id,
                           val_fraction=args.val_fraction, seed=args.seed)
        result["class_names"] = split.class_names
        result["format"] = split.dataset
        result["splits"][name] = split_info(split, args.show)

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.dataset} ({result['format']} layout) at {result['root']}: "
          f"{len(result['class_names'])} classes")
    for name, info in result["splits"].items():
        print(f"\n[{name}] {info['videos']} videos, {info['missing_files']} missing files")
        for note in info["notes"]:
            print(f"  note: {note}")
        if info["missing_files"]:
            print(f"  missing, e.g.: {', '.join(info['first_missing'])}")
        print("  label  count  class")
        for label, (cls, count) in enumerate(info["class_counts"].items()):
            shown = label if cls != "<unlabeled>" else -1
            print(f"  {shown:>5}  {count:>5}  {cls}")
        print("  first items:")
        for item in info["first_items"]:
            print(f"    {item['label']:>4}  {item['class_name']}  {item['path']}")
    return 0
