"""The miniature FFN reproduction behind notebook 07: SynthMotion in the SSv2 layout, vanilla TSM
trained at the highest frame count vs FFN trained at all three, same data and epochs, both
tested at every frame count (trained ones and ones never trained, e.g. 6 and 12).

    data = prepare_data("data/synthmotion/ffn", classes=8, clips_per_class=100, size=32, crop=28)
    tsm = train_tfd_model("tsm", data, arch="tiny", epochs=6, save_dir="runs/default/07_ffn_tfd/tsm")
    ffn = train_tfd_model("ffn", data, arch="tiny", epochs=6, save_dir="runs/default/07_ffn_tfd/ffn")
    accuracy = evaluate_models({"TSM": tsm.model, "FFN": ffn.model}, data.test)

Selection and reporting: `best` checkpoints are picked on validation; the numbers reported are
the `final` models on the test split (labels from SynthMotion's test-answers.csv), so nothing
is selected on the split we report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from ..errors import PolySpaceError
from .data import MultiFrameClips
from .evaluate import accuracy_by_frames, flops_per_frame_count
from .trainer import FFNTrainer, TrainConfig, TSMTrainer
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

    def _repr_html_(self) -> str:
        s = self.summary()
        rows = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                       for k, v in s.items())
        names = ", ".join(self.class_names)
        return f"<table>{rows}<tr><th style='text-align:left'>class names</th><td style='text-align:left'>{names}</td></tr></table>"


def prepare_data(root: str | Path, classes: int | Sequence[str] = 8, clips_per_class: int = 100,
                 frames: int = 16, size: int = 32, crop: int = 28, seed: int = 0,
                 train_frames: Sequence[int] = (4, 8, 16), extra_frames: Sequence[int] = (6, 12),
                 progress: bool = True) -> TFDData:
    """Generate (or reuse) SynthMotion in the SSv2 layout under `root` and decode it into memory.

    frames/size: length and side of the generated videos; crop: training crops (random) and
    evaluation crops (centre). extra_frames: frame counts evaluated but never trained.
    """
    from ..datasets import generate_synthmotion, load_split

    timings = {}
    start = time.perf_counter()
    info = generate_synthmotion(root, layout="ssv2", classes=classes, clips_per_class=clips_per_class,
                                frames=frames, size=size, seed=seed, progress=progress)
    timings["generate"] = time.perf_counter() - start
    train_frames = tuple(sorted(int(t) for t in train_frames))
    eval_frames = tuple(sorted(set(train_frames) | {int(t) for t in extra_frames}))
    if max(eval_frames) > frames:
        raise PolySpaceError(f"frame counts up to {max(eval_frames)} need videos of at least that many frames; "
                             f"raise the generated frames ({frames})")
    start = time.perf_counter()
    kw = dict(size=crop, short_side=size, cache=True, seed=seed, progress=progress)
    train = MultiFrameClips(load_split("ssv2", info["root"], "train"), train_frames, train=True, **kw)
    val = MultiFrameClips(load_split("ssv2", info["root"], "validation"), train_frames, train=False, **kw)
    test = MultiFrameClips(load_split("ssv2", info["root"], "test"), eval_frames, train=False, **kw)
    timings["decode"] = time.perf_counter() - start
    return TFDData(Path(info["root"]), list(train.class_names), train, val, test, train_frames, eval_frames,
                   crop, timings)


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


def train_tfd_model(kind: str, data: TFDData, arch: str = "tiny", epochs: int = 6, batch_size: int = 16,
                    lr: float = 0.01, lambda_kl: float = 1.0, seed: int = 0, device: str = "auto",
                    save_dir: str | Path | None = None, model_overrides: dict[str, Any] | None = None,
                    verbose: bool = True, **train_overrides: Any) -> TrainedModel:
    """Train the vanilla TSM ("tsm": highest frame count only) or FFN ("ffn": every trained count).

    Both get the same data, epochs, batch size and optimiser. model_overrides: TSMConfig fields
    (e.g. dropout, stem_stride); train_overrides: TrainConfig fields. Returns the final model
    (eval mode, on CPU) and its history; checkpoints go to save_dir when given.
    """
    if kind not in ("tsm", "ffn"):
        raise PolySpaceError(f"kind={kind!r}: use 'tsm' (vanilla baseline) or 'ffn'")
    from ..seeding import seed_everything

    seed_everything(seed)
    counts = data.train_frames if kind == "ffn" else data.train_frames[-1:]
    model = build_model(arch, len(data.class_names), frame_counts=counts, ffn=kind == "ffn",
                        class_names=data.class_names, **(model_overrides or {}))
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lambda_kl=lambda_kl, seed=seed,
                         device=device, verbose=verbose, **train_overrides)
    trainer = (FFNTrainer if kind == "ffn" else TSMTrainer)(model, data.train, data.val, config, save_dir)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    final = trainer.unwrapped_model.cpu().eval()
    return TrainedModel(kind, final, trainer.history, trainer.curve, Path(save_dir) if save_dir else None,
                        seconds, trainer.best_acc)


def evaluate_models(models: dict[str, torch.nn.Module], test: MultiFrameClips, batch_size: int = 32,
                    device: str | torch.device = "cpu") -> dict[str, dict[int, float]]:
    """Top-1 (%) of each model at every frame count of `test` -> {name: {frames: accuracy}}."""
    loader = DataLoader(test, batch_size=batch_size)
    results = {}
    for name, model in models.items():
        model.to(device)
        results[name] = {t: r["acc"] for t, r in accuracy_by_frames(model, loader, device=device, desc=name).items()}
        model.cpu()
    return results


def accuracy_table(results: dict[str, dict[int, float]], train_frames: Sequence[int]):
    """Accuracy (%) per model (rows) and frame count (columns), and the TFD gap: accuracy at the
    highest minus the lowest trained frame count."""
    import pandas as pd

    table = pd.DataFrame(results).T
    table.columns = [f"{t}F" for t in table.columns]
    low, high = min(train_frames), max(train_frames)
    table["TFD gap"] = [r[high] - r[low] for r in results.values()]
    return table.round(2)


def flops_table(models: dict[str, torch.nn.Module], frame_counts: Sequence[int], size: int):
    """GFLOPs of one clip per model and frame count (FlopCounterMode; multiply-add = 2 FLOPs)."""
    import pandas as pd

    rows = {name: {f"{t}F": f / 1e9 for t, f in flops_per_frame_count(model, frame_counts, size).items()}
            for name, model in models.items()}
    return pd.DataFrame(rows).T


def tfd_metrics(results: dict[str, dict[int, float]], names: dict[str, str], frame_counts: Sequence[int]) -> dict[str, float]:
    """metrics.json entries: acc_<key>_<T>f for every model and frame count, tfd_gap_<key>."""
    low, high = min(frame_counts), max(frame_counts)
    metrics: dict[str, float] = {}
    for name, key in names.items():
        for t, acc in results[name].items():
            metrics[f"acc_{key}_{t}f"] = round(acc, 2)
        metrics[f"tfd_gap_{key}"] = round(results[name][high] - results[name][low], 2)
    return metrics


def summary_metrics(results: dict[str, dict[int, float]], tsm: TrainedModel, ffn: TrainedModel,
                    train_frames: Sequence[int], flops=None) -> dict[str, Any]:
    """Everything notebook 07 records in metrics.json: acc_tsm_<T>f, acc_ffn_<T>f for every tested
    frame count, tfd_gap_tsm / tfd_gap_ffn, the paper's gaps, training time, GFLOPs per frame
    count, and the two checks of the study (FFN gap <= 1/3 of TSM's; FFN 16F within 2 points)."""
    metrics: dict[str, Any] = tfd_metrics(results, {"TSM": "tsm", "FFN": "ffn"}, train_frames)
    high = max(train_frames)
    paper = PAPER_SSV2_TSM_R50
    metrics["paper_tfd_gap_tsm"] = round(paper["TSM, trained at 16F"][16] - paper["TSM, trained at 16F"][4], 2)
    metrics["paper_tfd_gap_ffn"] = round(paper["FFN"][16] - paper["FFN"][4], 2)
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
    return metrics
