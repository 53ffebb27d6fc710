"""`polyspace featurize`, `polyspace import-pickle`, `polyspace features-info` and `polyspace zoo`.

Flags keep the original featurize.py names (`--dataset --root --split --out --student
--teachers --batch --workers --frames --shard_size --fp16`) and its defaults for --out
(./features), --student (vjepa2) and --teachers (videomae timesformer vivit), which the seeds'
shorter commands rely on; `--bf16`, `--tokens`, `--on_error`, `--device`, `--overwrite` are new.
Rerunning a command resumes it.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("featurize", help="extract student/teacher token features into a feature store",
                       description="Decode each video once, run the student and teachers, write "
                                   "<out>/<split>/manifest.json + safetensors shards. Rerun to resume. "
                                   "Works under torchrun / accelerate launch (videos split by shard).")
    p.add_argument("--dataset", help="hmdb51 | hmdb51-csv | ucf101 | diving48 | ssv2 | synthmotion")
    p.add_argument("--root", help="dataset folder")
    p.add_argument("--split", default="train", help="train | validation | test (default train)")
    p.add_argument("--split_id", type=int, default=1, help="official split number (HMDB51/UCF101)")
    p.add_argument("--out", default="./features", help="store root; the split goes to OUT/SPLIT/ (default ./features)")
    p.add_argument("--student", default="vjepa2",
                   help="backbone: registry key, tiny preset, hub id or local dir (NAME=SOURCE ok); default vjepa2")
    p.add_argument("--teachers", nargs="*", default=["videomae", "timesformer", "vivit"],
                   help="teacher backbones, same forms as --student (default videomae timesformer vivit; "
                        "--teachers with no name: none)")
    p.add_argument("--batch", type=int, default=8, help="clips per forward pass")
    p.add_argument("--workers", type=int, default=2, help="loader processes for decoding + preprocessing")
    p.add_argument("--min_frames", type=int, default=1,
                   help="leave out (with the reason recorded) a video whose window holds fewer frames; shorter "
                        "windows than a clip are looped and the manifest records it per sample (default 1)")
    p.add_argument("--frames", type=int, default=16, help="frames for models that take any count (V-JEPA 2); "
                                                          "the others use their own")
    p.add_argument("--shard_size", type=int, default=1000, help="samples per shard (the unit of resume)")
    half = p.add_mutually_exclusive_group()
    half.add_argument("--fp16", action="store_true", help="store float16 (and autocast fp16 on CUDA)")
    half.add_argument("--bf16", action="store_true", help="store bfloat16 (and autocast bf16 on CUDA)")
    p.add_argument("--tokens", default="temporal", choices=["temporal", "full", "clip"],
                   help="temporal: spatial mean per time index (default); full: every token; clip: one vector")
    p.add_argument("--on_error", default="skip", choices=["skip", "error"],
                   help="bad video: skip (recorded as failed in the manifest) or error (stop)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--backend", default="auto", help="video backend: auto | torchcodec | decord | pyav")
    p.add_argument("--overwrite", action="store_true", help="replace a store made with other settings")
    p.add_argument("--import-pickle", dest="import_pickle", metavar="FILE",
                   help="instead of extracting, convert an original feature cache (as import-pickle)")
    p.add_argument("--allow-pickle", dest="allow_pickle", action="store_true",
                   help="permit unpickling --import-pickle FILE (pickle can run code: trusted files only)")
    p.set_defaults(func=run_featurize)

    p = sub.add_parser("import-pickle", help="convert an original PolySpace feature cache into a feature store",
                       description="Reads every layout the original featurize wrote: features_<ds>_<split>.json "
                                   "(first version), .pkl (one pickle), .index.json with pickle shards or npy_dir "
                                   "shard folders (its default), or a folder holding one .index.json.")
    p.add_argument("file", help="features_<ds>_<split>.index.json, .pkl or .json (or the folder of one .index.json)")
    p.add_argument("--out", required=True, help="store root; written to OUT/SPLIT/")
    p.add_argument("--split", default="train")
    p.add_argument("--allow-pickle", dest="allow_pickle", action="store_true",
                   help="required for the pickle layouts (.pkl, pkl shards): pickle can run code, so only import "
                        "files you made or trust; JSON and npy_dir hold no pickle and need no permission")
    p.add_argument("--fp16", action="store_true", help="store float16 (default: the cache's dtype)")
    p.add_argument("--shard_size", type=int, default=1000)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_import_pickle)

    p = sub.add_parser("features-info", help="summarise a feature store split")
    p.add_argument("store", help="OUT/SPLIT folder holding manifest.json")
    p.add_argument("--verify", action="store_true", help="check every shard's sha256")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_features_info)

    p = sub.add_parser("zoo", help="train the tiny backbones on SynthMotion pretraining data (cached)")
    p.add_argument("--out", default="data/zoo", help="zoo folder (default data/zoo)")
    p.add_argument("--data", default="data/synthmotion_pretrain", help="where the pretraining set is generated")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the zoo's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="retrain even if the zoo is there")
    p.set_defaults(func=run_zoo)


def run_featurize(args: argparse.Namespace) -> int:
    from ..errors import PolySpaceError

    if args.import_pickle:
        from pathlib import Path

        from .pickle_import import import_pickle

        store = import_pickle(args.import_pickle, Path(args.out) / args.split, allow_pickle=args.allow_pickle,
                              dtype="float16" if args.fp16 else None, shard_size=args.shard_size,
                              overwrite=args.overwrite)
        print(store)
        return 0
    if args.allow_pickle:
        raise PolySpaceError("--allow-pickle: only meaningful with --import-pickle FILE")
    missing = [f"--{k}" for k in ("dataset", "root") if not getattr(args, k)]
    if missing:
        raise PolySpaceError(f"featurize: {', '.join(missing)} required (or --import-pickle FILE)")
    from ..datasets import load_split
    from .featurize import featurize

    split = load_split(args.dataset, args.root, args.split, split_id=args.split_id)
    dtype = "float16" if args.fp16 else "bfloat16" if args.bf16 else "float32"
    result = featurize(split, args.student, args.teachers, args.out, tokens=args.tokens, dtype=dtype,
                       shard_size=args.shard_size, batch=args.batch, workers=args.workers, device=args.device,
                       on_error=args.on_error, frames=args.frames, min_frames=args.min_frames, backend=args.backend,
                       overwrite=args.overwrite)
    if result.rank == 0:
        print(result.summary())
    return 0


def run_import_pickle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .pickle_import import import_pickle

    store = import_pickle(args.file, Path(args.out) / args.split, allow_pickle=args.allow_pickle,
                          dtype="float16" if args.fp16 else None, shard_size=args.shard_size,
                          overwrite=args.overwrite)
    print(store)
    return 0


def run_features_info(args: argparse.Namespace) -> int:
    from .stats import store_summary
    from .store import FeatureStore

    store = FeatureStore.open(args.store, verify=args.verify)
    summary = store_summary(store)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(store)
    for row in summary["models"]:
        print(f"  {row['model']:>20s} {row['role']:>8s}  T={row['T']:<4d} D={row['dim']:<5d} "
              f"mean norm {row['mean_token_norm']:.3f}  {row['disk_mb']:.2f} MB  ({row['source']})")
    for index, path, reason in store.failures:
        print(f"  failed #{index} {path}: {reason}")
    return 0


def run_zoo(args: argparse.Namespace) -> int:
    from .zoo import build_zoo

    cards = build_zoo(args.out, args.data, epochs=args.epochs, device=args.device, force=args.force)
    for name, card in cards.items():
        print(f"{name}: {card['objective']}, probe accuracy {card['probe']['accuracy']:.3f} -> {card['path']}")
    return 0
