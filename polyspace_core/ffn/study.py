"""The miniature FFN reproduction behind notebook 07: SynthMotion in the SSv2 layout, vanilla TSM
trained at the highest frame count vs FFN trained at all three, same data and epochs, both
tested at every frame count (trained ones and ones never trained, e.g. 6 and 12).

What the notebook calls, the workspace first, settings from ws.p:

    data = data(ws)                                    # generated once, decoded into memory
    tsm = train(ws, data, "tsm"); ffn = train(ws, data, "ffn")   # resumable runs under ws.run_dir
    separate = per_frame_baselines(ws, data)           # a TSM per lower frame count (or none)
    accuracy = evaluate(ws, data, tsm, ffn, separate)  # test top-1 per model and frame count
    flops = flops(data, tsm, ffn)
    stage_metrics(ws, accuracy, tsm, ffn, flops)      # metrics.json

Below them, the same with explicit arguments (what tests call):

    data = prepare_data("data/synthmotion/ffn", classes=8, clips_per_class=100, size=32, crop=28)
    tsm = train_tfd_model("tsm", data, arch="tiny", epochs=6, save_dir="runs/default/07_ffn_tfd/tsm")
    ffn = train_tfd_model("ffn", data, arch="tiny", epochs=6, save_dir="runs/default/07_ffn_tfd/ffn")
    accuracy = evaluate_models({"TSM": tsm.model, "FFN": ffn.model}, data.test)

Selection and reporting: `best` checkpoints are picked on validation; the numbers reported are
the `final` models on the test split (labels from SynthMotion's test-answers.csv), so nothing
is selected on the split we report.

Real Something-Something V2 (ffn_dataset ssv2, the preset params/ssv2_ffn.yaml): the same cells
read the SSv2 folder at ffn_root instead of generating SynthMotion (its test split needs
labels/test-answers.csv), stream the videos or read them through the on-disk frame cache
(ffn_frame_cache), and train with the paper's recipe: ResNet-50 from ImageNet (ffn_pretrained),
TSN's multi-scale crop, step schedule, lr scaled with the batch (recipe.OFFICIAL has the values).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import PolySpaceError
from ..io import atomic_write_json, read_json
from ..seeding import training_seeds
from ..stats import Claim, bootstrap_interval, mcnemar_exact, paired_difference, paired_statistic
from .checkpoint import load_checkpoint
from .data import MultiFrameClips
from .evaluate import accuracy_by_frames, flops_per_frame_count
from .train import FFNTrainer, TrainConfig, TSMTrainer, run_identity, saved_run, saved_train_config
from .tsm_resnet import TSMResNet, build_model

# FFN (Zhang et al., CVPR 2023), Table 1: TSM-R50 on Something-Something V2, top-1 (%) at 4/8/16 frames
PAPER_SSV2_TSM_R50: dict[str, dict[int, float]] = {
    "TSM, trained at 16F": {4: 31.52, 8: 51.55, 16: 61.02},
    "TSM, trained per frame count": {4: 53.38, 8: 59.29, 16: 61.02},
    "FFN": {4: 56.07, 8: 61.86, 16: 63.61},
}


@dataclass
class TFDData:
    """The generated set and its three datasets: train/validation carry the trained frame counts,
    test carries every frame count we evaluate."""

    root: Path
    class_names: list[str]
    train: MultiFrameClips
    val: MultiFrameClips
    test: MultiFrameClips
    train_frames: tuple[int, ...]
    eval_frames: tuple[int, ...]
    crop: int
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"root": str(self.root), "classes": len(self.class_names),
                "videos": {"train": len(self.train), "validation": len(self.val), "test": len(self.test)},
                "train_frames": list(self.train_frames), "eval_frames": list(self.eval_frames),
                "crop": self.crop, "seconds": {k: round(v, 1) for k, v in self.seconds.items()}}

    def identity(self) -> dict[str, Any]:
        """What a trained run depends on in the data: the generator's record, the class order,
        the split sizes, the frame counts, the crop and a JPEG frame cache's quality (not where it
        lives or how long it took)."""
        record = self.root / "synthmotion.json"
        generated = read_json(record) if record.is_file() else None
        summary = {k: v for k, v in self.summary().items() if k not in ("root", "seconds")}
        identity = {**summary, "class_names": list(self.class_names), "generated": generated}
        cache = getattr(self.train, "frame_cache", None)
        if cache is not None and cache.encoding == "jpeg":
            # JPEG frames are not the decoded pixels: another run (a uint8 cache, or streaming,
            # gives the decoded ones exactly and keeps the identity it had before JPEG existed)
            identity["frame_cache"] = {"format": "jpeg", "quality": cache.jpeg_quality}
        return identity

    def _repr_html_(self) -> str:
        s = self.summary()
        rows = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                       for k, v in s.items())
        names = ", ".join(self.class_names)
        return (f"<table>{rows}<tr><th style='text-align:left'>class names</th>"
                f"<td style='text-align:left'>{names}</td></tr></table>")


@dataclass
class TrainedModel:
    """A trained TSM or FFN model with its training record."""

    kind: str
    model: TSMResNet
    history: list[dict[str, Any]]
    curve: list[dict[str, float]]
    save_dir: Path | None
    seconds: float
    best_val_acc: float

    def history_table(self):
        import pandas as pd

        return pd.DataFrame(self.history).set_index("epoch").round(3)


COMPARED = ("TSM", "FFN", "TSM per frame count")  # the rows the figures compare, in this order


@dataclass
class Accuracy:
    """Test top-1 (%) per model and frame count. results: {name: {frames: accuracy}} for every
    model evaluated ("TSM", "FFN", "TSM <T>F only"); per_frame_count: the one-model-per-frame-count
    row (None without per-frame baselines); train_frames: the trained frame counts. Shows as
    accuracy_table. correct: per clip, (N,) or (S, N) for TSM and FFN trained under S seeds
    (`ffn_seeds`): results are then means over the seeds, intervals and claims resample clips with
    each clip's correctness averaged over the seeds, and McNemar's p is the largest per seed."""

    results: dict[str, dict[int, float]]
    per_frame_count: dict[int, float] | None
    train_frames: tuple[int, ...]
    correct: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)  # per clip, as results

    @property
    def seeds(self) -> int:
        """How many training seeds the TSM/FFN rows average (1 without `ffn_seeds`)."""
        c = next(iter(self.correct.get("TSM", {}).values()), np.zeros(0))
        return c.shape[0] if c.ndim == 2 else 1

    def _per_clip(self, name: str) -> dict[int, np.ndarray]:
        # each clip's correctness averaged over the seeds (a 1-D array is one seed)
        return {t: (c.mean(axis=0) if c.ndim == 2 else c) for t, c in self.correct[name].items()}

    def intervals(self) -> dict[str, dict[int, list[float]]]:
        """95% bootstrap interval (percent) of each model's accuracy at each frame count."""
        return {name: {t: [100 * (ci := bootstrap_interval(c, name=f"{name} {t}F")).low, 100 * ci.high]
                       for t, c in self._per_clip(name).items()} for name in self.correct}

    def seed_std(self) -> dict[str, dict[int, float]]:
        """Std over seeds (ddof 1, percent) of TSM's and FFN's accuracy at each frame count; {} for one seed."""
        if self.seeds < 2:
            return {}
        return {name: {t: float(np.std(100.0 * c.mean(axis=1), ddof=1)) for t, c in self.correct[name].items()}
                for name in ("TSM", "FFN") if name in self.correct}

    def claims(self) -> list[Claim]:
        """FFN against TSM on the same test clips, in accuracy points: at every trained frame count
        (paired bootstrap interval of FFN - TSM, exact McNemar test), and the TFD gap (TSM's gap
        minus FFN's, resampled over clips: FFN's accuracy falls less from the most to the fewest frames)."""
        if not {"TSM", "FFN"} <= set(self.correct):
            return []
        tsm, ffn = self._per_clip("TSM"), self._per_clip("FFN")
        seeds = self.seeds

        def by_seed(name: str, t: int) -> np.ndarray:
            c = self.correct[name][t]
            return c if c.ndim == 2 else c[None]

        claims = []
        for t in self.train_frames:
            diff = paired_difference(100.0 * ffn[t], 100.0 * tsm[t], name=f"FFN - TSM at {t}F")
            p = max(mcnemar_exact(f, m) for f, m in zip(by_seed("FFN", t), by_seed("TSM", t)))
            claims.append(Claim.difference(f"ffn_beats_tsm_{t}f", f"FFN beats TSM at {t} frames (top-1, points)",
                                           diff, p, seeds=seeds))
        low, high = min(self.train_frames), max(self.train_frames)
        gap = paired_statistic([tsm[high], tsm[low], ffn[high], ffn[low]],
                               lambda a, b, c, d, axis=-1: 100.0 * ((a.mean(axis) - b.mean(axis))
                                                                    - (c.mean(axis) - d.mean(axis))),
                               name="TSM gap - FFN gap")
        claims.append(Claim.difference("ffn_gap_below_tsm_gap", f"FFN's TFD gap ({high}F - {low}F) is smaller than "
                                       f"TSM's (points)", gap, seeds=seeds))
        return claims

    @property
    def rows(self) -> dict[str, dict[int, float]]:
        """results plus the "TSM per frame count" row when there is one."""
        extra = {"TSM per frame count": self.per_frame_count} if self.per_frame_count else {}
        return {**self.results, **extra}

    @property
    def compared(self) -> dict[str, dict[int, float]]:
        """The rows of TSM, FFN and TSM per frame count (what the figures compare)."""
        return {k: v for k, v in self.rows.items() if k in COMPARED}

    @property
    def gaps(self) -> dict[str, float]:
        """TFD gap (highest minus lowest trained frame count) of TSM, TSM per frame count and FFN."""
        return tfd_gaps(self.rows, self.train_frames, ("TSM", "TSM per frame count", "FFN"))

    def table(self):
        return accuracy_table(self.rows, self.train_frames)

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __repr__(self) -> str:
        return repr(self.table())


# ----------------------------------------------------------------------------- notebook 07's cells

def data(ws) -> TFDData:
    """ws.p.ffn_dataset "synthmotion": SynthMotion in the SSv2 layout under ws.p.ffn_root
    (generated once, reused), decoded into memory; "ssv2": the Something-Something V2 folder at
    ws.p.ffn_root, streamed or through ws.p.ffn_frame_cache (ffn_frame_cache_format uint8 or jpeg at
    ffn_frame_cache_quality). ws.p's sizes, crop and frame counts."""
    p = ws.p
    return prepare_data(ws.path(p.ffn_root), classes=p.ffn_classes, clips_per_class=p.ffn_clips_per_class,
                        frames=p.ffn_video_frames, size=p.ffn_video_size, crop=p.ffn_crop, seed=ws.seed,
                        train_frames=p.ffn_train_frames, extra_frames=p.ffn_extra_frames, dataset=p.ffn_dataset,
                        crop_mode=p.ffn_crop_mode,
                        frame_cache=ws.path(p.ffn_frame_cache) if p.ffn_frame_cache else None,
                        frame_cache_format=p.ffn_frame_cache_format, frame_cache_quality=p.ffn_frame_cache_quality)


# settings added after runs were saved, at the values those runs used: a setting at its value here
# stays out of the run folder's key (run_folder), so the runs saved before it existed are reused
EARLIER_SETTINGS: dict[str, Any] = {"pretrained": "auto", "imagenet_weights": None, "lr_batch": None,
                                    "schedule": "cosine", "lr_steps": [20, 40], "momentum": 0.9,
                                    "weight_decay": 5e-4, "num_workers": 0}


def _settings(ws) -> dict[str, Any]:
    """The training settings every model of the stage shares (train_tfd_model's keywords)."""
    weights = str(ws.path(ws.p.ffn_imagenet_weights)) if ws.p.ffn_imagenet_weights else None
    return settings_from_params(ws.p, ws.seed, str(ws.device), weights)


def settings_from_params(p: Any, seed: int, device: str, imagenet_weights: str | None = None) -> dict[str, Any]:
    """Stage parameters (ws.p, or any object with the ffn_* attributes) -> train_tfd_model's keywords."""
    added = dict(pretrained=p.ffn_pretrained, imagenet_weights=imagenet_weights,
                 lr_batch=p.ffn_lr_batch, schedule=p.ffn_schedule, lr_steps=list(p.ffn_lr_steps),
                 momentum=p.ffn_momentum, weight_decay=p.ffn_weight_decay, num_workers=p.ffn_workers)
    return dict(arch=p.ffn_arch, epochs=p.ffn_epochs, batch_size=p.ffn_batch, lr=p.ffn_lr,
                fc_lr_mult=p.ffn_fc_lr_mult, lambda_kl=p.ffn_lambda_kl, seed=seed, device=device,
                **{k: v for k, v in added.items() if v != EARLIER_SETTINGS[k]})


def runs(ws, data: TFDData) -> Path:
    """The folder under ws.run_dir that holds this data's and these settings' runs (run_folder)."""
    return run_folder(ws.run_dir, data, **_settings(ws))


def train(ws, data: TFDData, kind: str) -> TrainedModel:
    """The vanilla TSM ("tsm") or FFN ("ffn") trained with ws.p's settings, saved under
    runs(ws, data)/<kind> and resumed or reused from there."""
    return train_tfd_model(kind, data, save_dir=runs(ws, data) / kind, **_settings(ws))


def seed_repeats(ws, data: TFDData) -> dict[int, dict[str, TrainedModel]]:
    """TSM and FFN trained again under every seed of ws.p.ffn_seeds after the first (the
    notebook's `seed` trains the models above; empty = that seed alone): {seed: {"tsm", "ffn"}},
    each in its own run folder (the seed is part of the settings' key)."""
    seeds = training_seeds(ws.p.ffn_seeds, ws.seed)
    if seeds[0] != ws.seed:
        raise PolySpaceError(f"ffn_seeds {seeds}: the first must be the notebook's seed {ws.seed} "
                             "(its run is the one the figures show)")
    repeats = {}
    for seed in seeds[1:]:
        settings = {**_settings(ws), "seed": seed}
        folder = run_folder(ws.run_dir, data, **settings)
        repeats[seed] = {kind: train_tfd_model(kind, data, save_dir=folder / kind, **settings)
                         for kind in ("tsm", "ffn")}
    return repeats


def repeats_summary(repeats: dict[int, dict[str, TrainedModel]]) -> dict[str, str]:
    """{"seed <s> <TSM|FFN>": "<seconds> s, best val <acc> %"} for each repeat."""
    return {f"seed {seed} {kind.upper()}": f"{run.seconds:.0f} s, best val {run.best_val_acc:.1f} %"
            for seed, runs in repeats.items() for kind, run in runs.items()}


def per_frame_baselines(ws, data: TFDData) -> dict[int, TrainedModel]:
    """With ws.p.ffn_per_frame_baselines, a vanilla TSM trained at each lower trained frame count
    (saved under runs(ws, data)/tsm_<T>f); else {}."""
    if not ws.p.ffn_per_frame_baselines:
        return {}
    return train_per_frame_baselines(data, runs(ws, data), **_settings(ws))


def baselines_summary(separate: dict[int, TrainedModel]) -> dict[str, str]:
    """{"TSM <T>F only": "<seconds> s, best val <acc> %"} for each per-frame-count baseline."""
    return {f"TSM {t}F only": f"{run.seconds:.0f} s, best val {run.best_val_acc:.1f} %" for t, run in separate.items()}


def evaluate(ws, data: TFDData, tsm: TrainedModel, ffn: TrainedModel,
             separate: dict[int, TrainedModel] | None = None,
             repeats: dict[int, dict[str, TrainedModel]] | None = None) -> Accuracy:
    """Every model on data.test at every frame count, on ws.device; with `separate`, also the
    "TSM per frame count" row (the model trained at T, tested at T); with `repeats`
    (seed_repeats), TSM and FFN are the means over the seeds (per clip: (S, N) correctness)."""
    separate = separate or {}
    models = {"TSM": tsm.model, "FFN": ffn.model, **{f"TSM {t}F only": run.model for t, run in separate.items()}}
    correct: dict[str, dict[int, np.ndarray]] = clip_correctness(models, data.test, device=ws.device)
    if repeats:
        more = [clip_correctness({"TSM": r["tsm"].model, "FFN": r["ffn"].model}, data.test, device=ws.device)
                for r in repeats.values()]
        for name in ("TSM", "FFN"):
            correct[name] = {t: np.stack([c, *(m[name][t] for m in more)]) for t, c in correct[name].items()}
    results = accuracy_from_correctness(correct)
    per_frame_count = (per_frame_count_accuracy(results, {t: f"TSM {t}F only" for t in separate})
                       if separate else None)
    return Accuracy(results, per_frame_count, data.train_frames, correct)


def flops(data: TFDData, tsm: TrainedModel, ffn: TrainedModel):
    """GFLOPs of one clip of TSM and FFN at every evaluated frame count and the working crop."""
    return flops_table({"TSM": tsm.model, "FFN": ffn.model}, data.eval_frames, data.crop)


def stage_metrics(ws, accuracy: Accuracy, tsm: TrainedModel, ffn: TrainedModel, flops: Any = None) -> dict[str, Any]:
    """Everything notebook 07 records in metrics.json: acc_tsm_<T>f, acc_ffn_<T>f for every tested
    frame count, tfd_gap_tsm / tfd_gap_ffn, the paper's gaps, training time, GFLOPs per frame
    count (with `flops`, a flops_table), the two checks of the study (FFN gap <= 1/3 of TSM's; FFN
    16F within 2 points) and, when `accuracy` has a per-frame-count row (one model per frame
    count), acc_separate_<T>f and whether the separately trained lowest count stays below the
    highest (the data is hard at few frames). `ws` is the stage's workspace (nothing else of it
    is needed)."""
    results, train_frames, per_frame_count = accuracy.results, accuracy.train_frames, accuracy.per_frame_count
    metrics: dict[str, Any] = _tfd_metrics(results, {"TSM": "tsm", "FFN": "ffn"}, train_frames)
    high = max(train_frames)
    paper = PAPER_SSV2_TSM_R50
    metrics["paper_tfd_gap_tsm"] = round(tfd_gap(paper["TSM, trained at 16F"], (4, 16)), 2)
    metrics["paper_tfd_gap_ffn"] = round(tfd_gap(paper["FFN"], (4, 16)), 2)
    metrics["train_seconds_tsm"] = round(tsm.seconds, 1)
    metrics["train_seconds_ffn"] = round(ffn.seconds, 1)
    metrics["best_val_acc_tsm"] = round(tsm.best_val_acc, 2)
    metrics["best_val_acc_ffn"] = round(ffn.best_val_acc, 2)
    if flops is not None:
        for name, key in (("TSM", "tsm"), ("FFN", "ffn")):
            for column, value in flops.loc[name].items():
                metrics[f"gflops_{key}_{column.lower()}"] = round(float(value), 4)
    gap_tsm, gap_ffn = metrics["tfd_gap_tsm"], metrics["tfd_gap_ffn"]
    metrics["ffn_gap_at_most_third_of_tsm"] = bool(gap_tsm > 0 and gap_ffn <= gap_tsm / 3)
    metrics["ffn_high_within_2_points_of_tsm"] = bool(results["FFN"][high] >= results["TSM"][high] - 2)
    if per_frame_count:
        for t, acc in per_frame_count.items():
            metrics[f"acc_separate_{t}f"] = round(acc, 2)
        low = min(train_frames)
        metrics["tfd_gap_separate"] = round(tfd_gap(per_frame_count, train_frames), 2)
        metrics["separate_low_below_high"] = bool(per_frame_count[low] < per_frame_count[high])
    if accuracy.correct:
        metrics["acc_intervals"] = {name.lower(): {f"{t}f": [round(v, 2) for v in ci] for t, ci in by_frames.items()}
                                    for name, by_frames in accuracy.intervals().items() if name in ("TSM", "FFN")}
        metrics["test_clips"] = int(next(iter(accuracy.correct["TSM"].values())).shape[-1])
        metrics["claims"] = [c.as_dict() for c in accuracy.claims()]
        if accuracy.seeds > 1:
            metrics["seeds"] = training_seeds(ws.p.ffn_seeds, ws.seed)
            metrics["acc_seed_std"] = {name.lower(): {f"{t}f": round(v, 2) for t, v in by.items()}
                                       for name, by in accuracy.seed_std().items()}
    return metrics


# ----------------------------------------------------------------------------- the experiment

def prepare_data(root: str | Path, classes: int | Sequence[str] = 8, clips_per_class: int = 100,
                 frames: int = 16, size: int = 32, crop: int = 28, seed: int = 0,
                 train_frames: Sequence[int] = (4, 8, 16), extra_frames: Sequence[int] = (6, 12),
                 progress: bool = True, dataset: str = "synthmotion", crop_mode: str = "random",
                 frame_cache: str | Path | None = None, frame_cache_format: str = "uint8",
                 frame_cache_quality: int = 90) -> TFDData:
    """Generate (or reuse) SynthMotion in the SSv2 layout under `root` and decode it into memory,
    or (dataset="ssv2") read the Something-Something V2 folder at `root`.

    frames/size: length and side of the generated videos (SSv2: `size` is the short side frames
    are resized to; `classes`, `clips_per_class`, `frames` are not used); crop: side of the
    training crops (crop_mode "random" or TSN's "multiscale") and evaluation crops (centre).
    extra_frames: frame counts evaluated but never trained. frame_cache: an on-disk frame cache
    folder (SSv2; without it SSv2 videos are decoded every epoch), storing frames as
    `frame_cache_format` "uint8" (exact) or "jpeg" (lossy, at `frame_cache_quality`).
    """
    from ..datasets import generate_synthmotion, load_split

    timings = {}
    start = time.perf_counter()
    if dataset == "synthmotion":
        info = generate_synthmotion(root, layout="ssv2", classes=classes, clips_per_class=clips_per_class,
                                    frames=frames, size=size, seed=seed, progress=progress)
        root = Path(info["root"])
    elif dataset == "ssv2":
        root = Path(root)
        if not (root / "labels").is_dir() or not (root / "20bn-something-something-v2").is_dir():
            raise PolySpaceError(f"ffn_root {root}: no Something-Something V2 folder there (it needs labels/ and "
                                 "20bn-something-something-v2/); set ffn_root to where SSv2 is (params/ssv2_ffn.yaml, "
                                 "or -p ffn_root DIR)")
    else:
        raise PolySpaceError(f"ffn_dataset {dataset!r}: use synthmotion or ssv2")
    timings["generate"] = time.perf_counter() - start
    train_frames = tuple(sorted(int(t) for t in train_frames))
    eval_frames = tuple(sorted(set(train_frames) | {int(t) for t in extra_frames}))
    if dataset == "synthmotion" and max(eval_frames) > frames:
        raise PolySpaceError(f"frame counts up to {max(eval_frames)} need videos of at least that many frames; "
                             f"raise the generated frames ({frames})")
    start = time.perf_counter()
    # SynthMotion fits in memory; SSv2 is streamed, or read through the on-disk frame cache
    kw = dict(size=crop, short_side=size, seed=seed, progress=progress, cache=dataset == "synthmotion",
              frame_cache=frame_cache if dataset == "ssv2" else None, frame_cache_format=frame_cache_format,
              frame_cache_quality=frame_cache_quality)
    train = MultiFrameClips(load_split("ssv2", root, "train"), train_frames, train=True, crop=crop_mode, **kw)
    val = MultiFrameClips(load_split("ssv2", root, "validation"), train_frames, train=False, **kw)
    test = MultiFrameClips(load_split("ssv2", root, "test"), eval_frames, train=False, **kw)
    timings["decode"] = time.perf_counter() - start
    return TFDData(root, list(train.class_names), train, val, test, train_frames, eval_frames, crop, timings)


def train_tfd_model(kind: str, data: TFDData, arch: str = "tiny", epochs: int = 6, batch_size: int = 16,
                    lr: float = 0.01, fc_lr_mult: float = 5.0, lambda_kl: float = 1.0, seed: int = 0,
                    device: str = "auto", frames: int | None = None,
                    save_dir: str | Path | None = None, model_overrides: dict[str, Any] | None = None,
                    verbose: bool = True, pretrained: str = "auto", imagenet_weights: str | Path | None = None,
                    **train_overrides: Any) -> TrainedModel:
    """Train the vanilla TSM ("tsm": one frame count, `frames`, default the highest trained) or
    FFN ("ffn": every trained count).

    Every model gets the same data, epochs, batch size and optimiser. fc_lr_mult: classifier lr
    multiplier (its bias gets twice that, as in the x5/x10 recipe; 1 suits training from scratch,
    where every layer is new). pretrained: "imagenet" starts from torchvision's ImageNet weights
    (`imagenet_weights`, or the file in torchvision's cache folder: pretrained.py), "none" from
    random weights, "auto" ImageNet for the archs torchvision has weights for (resnet50/101) and
    random for the miniature ones (tiny, small). model_overrides: TSMConfig fields (e.g. dropout,
    stem_stride); train_overrides: TrainConfig fields (lr_batch, schedule, lr_steps, momentum,
    weight_decay, num_workers, ...). Returns the final model (eval mode, on CPU) and its history.

    With save_dir, checkpoints are written every epoch and the run is resumable: a finished run
    with the same model and training config is loaded instead of retrained, an interrupted one
    continues from its last epoch, a run with other settings is an error (use another folder).
    """
    if kind not in ("tsm", "ffn"):
        raise PolySpaceError(f"kind={kind!r}: use 'tsm' (vanilla baseline) or 'ffn'")
    from ..seeding import seed_everything

    if kind == "ffn":
        if frames is not None:
            raise PolySpaceError("frames: FFN trains every frame count of the data; leave frames=None")
        counts = data.train_frames
    else:
        frames = data.train_frames[-1] if frames is None else int(frames)
        if frames not in data.train_frames:
            raise PolySpaceError(f"frames={frames}: the training data carries {list(data.train_frames)} frames; "
                                 "pick one of them")
        counts = (frames,)
    seed_everything(seed)
    model = build_model(arch, len(data.class_names), frame_counts=counts, ffn=kind == "ffn",
                        class_names=data.class_names, **(model_overrides or {}))
    config = tfd_train_config(epochs=epochs, batch_size=batch_size, lr=lr, fc_lr_mult=fc_lr_mult,
                              lambda_kl=lambda_kl, seed=seed, device=device, verbose=verbose,
                              **{"save_every": 1 if save_dir is not None else 0, **train_overrides})
    trainer = (FFNTrainer if kind == "ffn" else TSMTrainer)(model, data.train, data.val, config, save_dir)
    from .pretrained import IMAGENET_FILES, find_imagenet_weights, load_imagenet_weights

    if pretrained not in ("auto", "imagenet", "none"):
        raise PolySpaceError(f"ffn_pretrained {pretrained!r}: use auto, imagenet or none")
    if pretrained == "imagenet" or (pretrained == "auto" and (imagenet_weights or arch in IMAGENET_FILES)):
        trainer.start = "imagenet"  # part of the run's identity (a random start stays unrecorded, as before)
    last = None
    if save_dir is not None:
        finished = _finished_run(Path(save_dir), trainer)
        if finished is not None:
            return finished
        last = saved_run(save_dir, trainer)  # an interrupted run with these settings continues
    if last is not None:
        trainer.resume(last)
    elif trainer.start == "imagenet":  # the file is needed only by a new run
        path = find_imagenet_weights(arch, imagenet_weights)
        load_imagenet_weights(trainer.unwrapped_model, path)
        trainer.start_source = str(path)
    trainer.train()
    seconds = trainer.train_seconds
    if save_dir is not None:
        atomic_write_json(Path(save_dir) / RUN_RECORD, {"kind": kind, "seconds": seconds,
                                                        **run_identity(trainer)})
    final = trainer.unwrapped_model.cpu().eval()
    return TrainedModel(kind, final, trainer.history, trainer.curve, Path(save_dir) if save_dir else None,
                        seconds, trainer.best_acc)


def tfd_train_config(epochs: int, batch_size: int, lr: float, fc_lr_mult: float, lambda_kl: float, seed: int,
                     device: str, verbose: bool = True, **overrides: Any) -> TrainConfig:
    """The TrainConfig of train_tfd_model: the classifier bias learns at twice the weight's
    multiplier (x5 / x10 in the official recipe); `overrides` are other TrainConfig fields."""
    if "lr_steps" in overrides:
        overrides["lr_steps"] = tuple(overrides["lr_steps"])
    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, fc_lr_mult=fc_lr_mult,
                       fc_bias_lr_mult=2 * fc_lr_mult, lambda_kl=lambda_kl, seed=seed, device=device,
                       verbose=verbose, **overrides)


def train_per_frame_baselines(data: TFDData, save_root: str | Path | None = None,
                              **settings: Any) -> dict[int, TrainedModel]:
    """The paper's middle row: a vanilla TSM trained separately at each lower trained frame count
    (4F, 8F; the 16F one is the vanilla TSM itself), same settings as train_tfd_model's.
    Checkpoints go to <save_root>/tsm_<T>f when save_root is given."""
    return {t: train_tfd_model("tsm", data, frames=t, save_dir=Path(save_root) / f"tsm_{t}f" if save_root else None,
                               **settings)
            for t in data.train_frames[:-1]}


def per_frame_count_accuracy(results: dict[str, dict[int, float]], separate: dict[int, str],
                             high: str = "TSM") -> dict[int, float]:
    """Accuracy of "one model per frame count": the model trained at T, tested at T (separate
    maps T -> its name in results; the highest count is the vanilla TSM `high`)."""
    row = {t: results[name][t] for t, name in separate.items()}
    top = max(t for t in results[high] if t >= max(separate, default=0))
    row[top] = results[high][top]
    return dict(sorted(row.items()))


def run_folder(run_dir: str | Path, data: TFDData, **settings: Any) -> Path:
    """<run_dir>/<key>: one folder per (data, settings), recorded in its identity.json.

    The runs inside are resumed and reused by train_tfd_model; keying the folder on everything
    they depend on means a changed parameter trains afresh beside the earlier runs instead of
    being refused by them (or, for a data change the model config cannot see, reusing them)."""
    identity = {"data": data.identity(), "settings": settings}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(run_dir) / key
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "identity.json").is_file():
        atomic_write_json(folder / "identity.json", identity)
    return folder


RUN_RECORD = "run.json"  # written after `final`: what the run was and how long it trained


def _finished_run(save_dir: Path, trainer: TSMTrainer) -> TrainedModel | None:
    record_path = save_dir / RUN_RECORD
    if not record_path.is_file():
        return None
    record = read_json(record_path)
    ours = run_identity(trainer)
    theirs = {k: record.get(k) for k in ours}
    if isinstance(theirs.get("train_config"), dict):  # a run saved before later TrainConfig fields existed
        theirs["train_config"] = saved_train_config(theirs["train_config"], ours["train_config"])
    if theirs != ours or record.get("kind") != trainer.kind or record.get("start") != trainer.start:
        raise PolySpaceError(f"{save_dir}: holds a {record.get('kind')} run with other settings; "
                             "delete the folder or save this run elsewhere")
    info, state, _ = load_checkpoint(save_dir / "final")
    model = trainer.unwrapped_model
    model.load_state_dict(state)
    return TrainedModel(trainer.kind, model.cpu().eval(), list(info.get("history", [])), list(info.get("curve", [])),
                        save_dir, float(record["seconds"]), float(info["best_acc"]))


def evaluate_models(models: dict[str, torch.nn.Module], test: MultiFrameClips, batch_size: int = 32,
                    device: str | torch.device = "cpu") -> dict[str, dict[int, float]]:
    """Top-1 (%) of each model at every frame count of `test` -> {name: {frames: accuracy}}."""
    return accuracy_from_correctness(clip_correctness(models, test, batch_size, device))


def accuracy_from_correctness(correct: dict[str, dict[int, np.ndarray]]) -> dict[str, dict[int, float]]:
    """{name: {frames: bool per clip}} -> {name: {frames: top-1 in percent}}."""
    return {name: {t: 100.0 * float(c.mean()) for t, c in by_frames.items()} for name, by_frames in correct.items()}


def clip_correctness(models: dict[str, torch.nn.Module], test: MultiFrameClips, batch_size: int = 32,
                     device: str | torch.device = "cpu") -> dict[str, dict[int, np.ndarray]]:
    """Whether each model classifies each test clip right, per frame count -> {name: {frames:
    bool array over the clips, in test order}} (the same clips for every model and frame count)."""
    loader = DataLoader(test, batch_size=batch_size)
    correct = {}
    for name, model in models.items():
        model.to(device)
        results = accuracy_by_frames(model, loader, device=device, desc=name, keep_correct=True)
        correct[name] = {t: r["correct"] for t, r in results.items()}
        model.cpu()
    return correct


def tfd_gap(accuracy: dict[int, float], frame_counts: Sequence[int]) -> float:
    """The temporal frequency deviation gap: accuracy at the highest minus the lowest of frame_counts."""
    return accuracy[max(frame_counts)] - accuracy[min(frame_counts)]


def tfd_gaps(results: dict[str, dict[int, float]], frame_counts: Sequence[int],
             names: Sequence[str] | None = None) -> dict[str, float]:
    """tfd_gap of each model in `names` (default all) that `results` holds."""
    return {name: tfd_gap(results[name], frame_counts) for name in (names or results) if name in results}


def accuracy_table(results: dict[str, dict[int, float]], train_frames: Sequence[int]):
    """Accuracy (%) per model (rows) and frame count (columns), and the TFD gap: accuracy at the
    highest minus the lowest trained frame count."""
    import pandas as pd

    table = pd.DataFrame(results).T
    table.columns = [f"{t}F" for t in table.columns]
    table["TFD gap"] = [tfd_gap(r, train_frames) for r in results.values()]
    return table.round(2)


def flops_table(models: dict[str, torch.nn.Module], frame_counts: Sequence[int], size: int):
    """GFLOPs of one clip per model and frame count (FlopCounterMode; multiply-add = 2 FLOPs)."""
    import pandas as pd

    rows = {name: {f"{t}F": f / 1e9 for t, f in flops_per_frame_count(model, frame_counts, size).items()}
            for name, model in models.items()}
    return pd.DataFrame(rows).T


def _tfd_metrics(results: dict[str, dict[int, float]], names: dict[str, str],
                 frame_counts: Sequence[int]) -> dict[str, float]:
    """metrics.json entries: acc_<key>_<T>f for every model and frame count, tfd_gap_<key>."""
    metrics: dict[str, float] = {}
    for name, key in names.items():
        for t, acc in results[name].items():
            metrics[f"acc_{key}_{t}f"] = round(acc, 2)
        metrics[f"tfd_gap_{key}"] = round(tfd_gap(results[name], frame_counts), 2)
    return metrics
