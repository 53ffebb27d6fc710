"""Train the fusion head: one entry point, two modes.

    run = train_fusion(mode="cached", features="runs/default/01_featurize/features",
                       converters="runs/default/02_train_converters/converters", save_dir=...)
    run = train_fusion(mode="video", dataset="synthmotion", root="data/synthmotion",
                       student="data/zoo/vjepa2-tiny", converters=..., save_dir=...)

cached   feature store -> converters -> head. Only the student's features are read (memory-mapped,
         cast to float32 from the manifest's dtype); no video is decoded, no backbone runs. Frozen
         converters are applied once to every stored clip before training (same values, not
         recomputed every epoch); fine-tuned ones run per batch.
video    videos -> decode -> the student's processor -> the frozen student -> converters -> head,
         through featurize's own ClipSource and VideoBackbone.features, so a video gives the
         features it has in the store.

Everything after the batch source is the same code (`engine.fit`): the same batches (a function of
seed and epoch), the same loss, optimiser and schedule, selection on the validation split, and the
same checkpoints — `<save_dir>/best/` (fusion.safetensors + fusion.json) and `<save_dir>/last/`
(resume state), plus `<save_dir>/history.json`. The test split is not touched here (05 reports it once).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import PolySpaceError
from ..features.store import sha256_file
from ..io import atomic_write_json
from .data import StudentFeatures, VideoBatches, cached_batches, open_split_store
from ..distributed import make_accelerator
from .engine import TrainSettings, fit
from .head import count_trainable
from .pipeline import FusionPipeline, build_pipeline, load_converters, precompute_converted, save_fusion

MODES = ("cached", "video")


@dataclass
class HeadOptions:
    """Fusion head hyper-parameters (see head.FusionConfig)."""

    rank: int = 64
    gate_hidden: int = 64
    pooling: str = "mean"
    dropout: float = 0.1
    gate_l1: float = 0.0
    finetune_converters: bool = False


@dataclass
class FusionRun:
    """The result of train_fusion: the best validation epoch's pipeline (eval mode), its
    history (curves, best epoch, train_samples_per_s), the mode, and where it was saved."""

    pipeline: FusionPipeline
    history: dict[str, Any]
    mode: str
    save_dir: Path | None
    class_names: list[str]
    skipped: dict[str, str]

    def summary(self) -> dict[str, Any]:
        h = self.history
        return {"mode": self.mode, "best_epoch": h["best_epoch"], "val_top1": h["best_val_top1"],
                "val_loss": h["best_val_loss"], "train_samples": h["train_samples"],
                "train_samples_per_s": h["train_samples_per_s"], "params_trainable": count_trainable(self.pipeline),
                "epochs_run": len(h["epoch"]), "skipped_videos": len(self.skipped)}


def _digest(items: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(items).encode("utf-8")).hexdigest()[:16]


def _training_pass(batches, source, device):
    """Every training sample once, in a fixed order, with the student's features in each batch
    (video mode: decoded and run through the student here)."""
    if source is not None:
        source = source.to(device)
    for batch in batches.full_pass():
        batch = {k: v.to(device) for k, v in batch.items()}
        yield source(batch) if source is not None else batch


def _check_classes(num_classes: int | None, class_names: Sequence[str], where: str) -> None:
    if num_classes is not None and num_classes != len(class_names):
        raise PolySpaceError(f"--classes {num_classes}: {where} has {len(class_names)} classes; "
                             f"drop --classes or pass {len(class_names)}")


def train_fusion(*, mode: str, converters: str | Path, settings: TrainSettings, head: HeadOptions | None = None,
                 features: str | Path | None = None, dataset: str | None = None, root: str | Path | None = None,
                 student: str | None = None, teachers: Sequence[str] | None = None, num_classes: int | None = None,
                 frames: int = 16, tokens: str = "temporal", split_seed: int = 0, train_split: str = "train", val_split: str = "validation",
                 features_fp16: bool | None = None, save_dir: str | Path | None = None, resume: bool = True,
                 device: str = "auto", workers: int = 0, on_error: str = "error", stop_after: int | None = None,
                 on_mismatch: str = "error", precompute_budget_bytes: int = 4 * 2**30, progress: bool = True,
                 accelerator=None) -> FusionRun:
    """Train a fusion head in `mode` "cached" (needs `features`, the store root with train and
    validation splits) or "video" (needs `dataset`, `root` and the `student` backbone spec).

    converters: folder of a converter set (02 / `polyspace train-converter`); `teachers` picks a
    subset (default: all of them). num_classes / features_fp16: optional checks against the data
    (the seed's --classes and --features_fp16). save_dir: checkpoints (see module docstring);
    a checkpoint made with other settings is an error unless on_mismatch="restart".
    precompute_budget_bytes: in cached mode with frozen converters, the converted features are
    computed once when they fit in this much memory (else per batch; the history says which).
    Returns a FusionRun. Raises PolySpaceError for missing or inconsistent inputs.
    """
    if mode not in MODES:
        raise PolySpaceError(f"mode={mode!r}: use cached (feature store) or video (decode videos)")
    head = head or HeadOptions()
    acc = accelerator or make_accelerator(device)
    source = None

    if mode == "cached":
        if features is None:
            raise PolySpaceError("cached mode needs the feature store root (--root/--features); run featurize first")
        train_store = open_split_store(features, train_split, features_fp16)
        val_store = open_split_store(features, val_split, features_fp16)
        student_name = train_store.student
        if student_name is None:
            raise PolySpaceError(f"{train_store.split_dir}: the manifest names no student model; re-run featurize")
        if student is not None and student not in (student_name, train_store.model_info(student_name)["source"]):
            raise PolySpaceError(f"--student {student!r}: the feature store's student is {student_name!r} "
                                 f"({train_store.model_info(student_name)['source']}); pass that or omit --student")
        if train_store.class_names != val_store.class_names:
            raise PolySpaceError(f"{features}: train and validation stores list different classes; re-extract them")
        shape = train_store.shape(student_name)
        if val_store.shape(student_name) != shape:
            raise PolySpaceError(f"{features}: student features differ in shape between {train_split} and {val_split}")
        class_names = train_store.class_names
        _check_classes(num_classes, class_names, str(train_store.split_dir))
        train_b = cached_batches(train_store, [student_name], batch=settings.batch, shuffle=True, seed=settings.seed)
        val_b = cached_batches(val_store, [student_name], batch=settings.batch, shuffle=False)
        data_info = {"features": str(Path(features).resolve()), "dtype": train_store.manifest["dtype"],
                     "tokens": train_store.tokens, "student_source": train_store.model_info(student_name)["source"],
                     "store_fingerprints": [train_store.manifest.get("fingerprint"), val_store.manifest.get("fingerprint")]}
    else:
        from ..backbones import load_backbone
        from ..datasets.registry import load_split

        if dataset is None or root is None or student is None:
            raise PolySpaceError("video mode needs --dataset, --root (the videos) and --student (the backbone)")
        backbone = load_backbone(student, frames=frames, device=acc.device)
        student_name = backbone.name
        # split_seed must be the one featurize used, so validation is the same hold-out in both modes
        train_split_obj = load_split(dataset, root, train_split, seed=split_seed)
        val_split_obj = load_split(dataset, root, val_split, seed=split_seed)
        class_names = list(train_split_obj.class_names)
        _check_classes(num_classes, class_names, f"{dataset} at {root}")
        shape = (backbone.num_tokens(tokens), backbone.dim)
        train_b = VideoBatches(train_split_obj.items, train_split_obj.labels, backbone, batch=settings.batch,
                               shuffle=True, seed=settings.seed, workers=workers, on_error=on_error)
        val_b = VideoBatches(val_split_obj.items, val_split_obj.labels, backbone, batch=settings.batch,
                             workers=workers, on_error=on_error)
        source = StudentFeatures(backbone, tokens)
        data_info = {"dataset": dataset, "root": str(Path(root).resolve()), "tokens": tokens,
                     "student_source": backbone.source, "frames": backbone.frames,
                     "videos": _digest([str(it.path) for it in train_split_obj.items + val_split_obj.items])}

    convs = load_converters(converters, student_name, teachers, device="cpu")
    pipeline = build_pipeline(student_name, shape, convs, len(class_names), rank=head.rank,
                              gate_hidden=head.gate_hidden, pooling=head.pooling, dropout=head.dropout,
                              gate_l1=head.gate_l1, finetune_converters=head.finetune_converters)

    # cached mode, frozen converters: their output is a fixed function of the stored features, so
    # it is computed once (the seed's "pre-apply converters"), not again in every epoch
    converters_applied, precompute_s = "per batch", 0.0
    if mode == "cached" and not head.finetune_converters:
        c = pipeline.config
        need = 4 * (train_b.labels.shape[0] + val_b.labels.shape[0]) * sum(
            t * d for t, d in zip(c.teacher_tokens, c.teacher_dims))
        if need <= precompute_budget_bytes:
            t0 = time.perf_counter()
            for b in (train_b, val_b):
                b.features.update(precompute_converted(pipeline, b.features[student_name], acc.device))
            precompute_s = time.perf_counter() - t0
            converters_applied = "once before training (frozen converters)"
        else:
            print(f"fusion: converted features would take {need / 2**30:.1f} GiB > precompute_budget_bytes; "
                  f"applying the converters per batch")
    # the head standardises its inputs with statistics of the whole training split: one pass in
    # order (every process sees every sample, so the statistics do not depend on the process count)
    pipeline.to(acc.device).fit_input_statistics(_training_pass(train_b, source, acc.device))
    info = {"class_names": class_names, "mode": mode, "data": data_info, "converters_dir": str(Path(converters).resolve()),
            "settings": asdict(settings), "head_options": asdict(head)}
    save_dir = Path(save_dir) if save_dir is not None else None

    def on_best(model, summary):
        if save_dir is not None:
            save_fusion(save_dir / "best", model, {**info, **summary})

    # what makes a checkpoint resumable: the model, the data it learns from and the converters' weights
    fingerprint = {"fusion": pipeline.config.to_dict(), "head_options": asdict(head),
                   "converters": [c.config.to_dict() for c in pipeline.converters],
                   "converter_weights": _digest([sha256_file(p) for p in sorted(Path(converters).rglob("*.safetensors"))]),
                   "class_names": class_names, "train_samples": train_b.num_samples,
                   "data": {k: v for k, v in data_info.items() if k in ("store_fingerprints", "videos", "student_source")}}
    result = fit(pipeline, train_b, val_b, settings, source=source, accelerator=acc, save_dir=save_dir,
                 resume=resume, fingerprint=fingerprint, on_best=on_best, stop_after=stop_after,
                 on_mismatch=on_mismatch, progress=progress, desc=f"fusion ({mode})")
    skipped = {**getattr(train_b, "skipped", {}), **getattr(val_b, "skipped", {})}
    h = result.history
    seconds = sum(h["train_seconds"]) + precompute_s
    h.update(mode=mode, skipped=skipped, converters_applied=converters_applied,
             converter_precompute_seconds=precompute_s,
             train_samples_per_s=len(h["epoch"]) * h["train_samples"] / seconds if seconds > 0 else None)
    if save_dir is not None and acc.is_main_process:
        atomic_write_json(save_dir / "history.json", result.history)
    return FusionRun(result.model, result.history, mode, save_dir, class_names, skipped)
