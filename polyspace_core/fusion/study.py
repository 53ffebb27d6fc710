"""What notebooks 04 and 05 call, one function per cell, reading the earlier stages' outputs.

    inputs = fusion_inputs(ws)                  # 04: 01's feature store, 02's converters, the videos
    runs = train_fusion_stage(ws, inputs)       # cached or video mode, per ws.p.cached, once per seed
    run = runs.main                             # the first seed's run: what 05 and the figures read
    val = validation_view(ws, run, inputs)      # the selected checkpoint on the validation split
    ws.write_metrics(stage_metrics(ws, runs, val))

    inputs = downstream_inputs(ws)              # 05: the checkpoint 04 recorded, its feature store
    report = downstream_report(ws, inputs)      # the side-by-side table on ws.p.eval_split, every seed
    ws.write_metrics(stage_metrics(ws, report))

Seeds: `seeds` (a list parameter; empty = the notebook's `seed`) repeats the fusion training (04)
and every baseline's training (05) once per seed; 05 evaluates each seed's fusion checkpoint with
baselines trained under the same seed. Tables show the mean and std over seeds; intervals and
claims resample clips with each clip's correctness averaged over the seeds.

Video mode takes its data and student from the feature store's manifest (the dataset parser, its
root and the student's source and clip), so both modes train on the same videos with the same
student; the video split is checked against the store's list of videos.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PolySpaceError
from ..io import atomic_write_json, read_json
from ..scalar_log import LOG_FOLDER
from ..seeding import training_seeds
from ..stats import seed_spread
from .train import FusionRun, HeadOptions, TrainSettings, train_fusion

if TYPE_CHECKING:
    from .evaluate import DownstreamReport

LATEST = "latest.json"


@dataclass
class FusionInputs:
    """What 04 trains from. features: the store root (01); converters: the converter set (02);
    dataset / videos / student / frames / tokens: video mode's data and backbone (from the store's
    manifest); mode: "cached" or "video"."""

    mode: str
    features: Path
    converters: Path
    dataset: str
    videos: Path
    student: str
    frames: int
    tokens: str
    teachers: list[str]
    class_names: list[str]
    dtype: str

    def rows(self) -> list[tuple[str, str]]:
        return [("mode", self.mode), ("feature store", str(self.features)), ("feature dtype", self.dtype),
                ("converters", str(self.converters)), ("teachers", ", ".join(self.teachers)),
                ("videos", f"{self.dataset} at {self.videos}"), ("student", f"{self.student} ({self.frames} frames, "
                                                                             f"{self.tokens} tokens)"),
                ("classes", f"{len(self.class_names)}: {', '.join(self.class_names)}")]

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(v)}</code></td></tr>"
                       for k, v in self.rows())
        return f"<table>{body}</table>"

    def __repr__(self) -> str:
        return "\n".join(f"{k:14s} {v}" for k, v in self.rows())


def _resolve(path: str, root: Path) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else root / p


def fusion_inputs(ws, cached: bool | None = None) -> FusionInputs:
    """The inputs of stage 04 for this preset: 01's store (exactly one under its run dir), 02's
    converter set, and — from the store's manifest — the videos and the student for video mode."""
    cached = ws.p.cached if cached is None else cached
    return inputs_from_runs(ws.root, ws.stage_run_dir("01_featurize"), ws.stage_run_dir("02_train_converters"),
                            cached=cached, features=ws.p.fusion_features, converters=ws.p.fusion_converters)


def inputs_from_runs(root: Path, featurize_run_dir: Path, converters_run_dir: Path, *, cached: bool = True,
                     features: Path | None = None, converters: Path | None = None) -> FusionInputs:
    """FusionInputs from the run dirs of 01 and 02 (or explicit store / converter-set folders);
    relative paths in the store's manifest resolve against the project `root`."""
    from ..align.study import find_converter_set, find_feature_store
    from ..features.store import FeatureStore

    features = find_feature_store(features, featurize_run_dir)
    converters = find_converter_set(converters, converters_run_dir)
    store = FeatureStore.open(features / "train")
    if store.student is None:
        raise PolySpaceError(f"{store.split_dir}: the manifest names no student; re-run 01_featurize")
    info = store.model_info(store.student)
    source = info["source"]
    if not Path(source).is_absolute() and (root / source).exists():
        source = str(root / source)  # a checkpoint folder given relative to the project root
    dataset = store.manifest.get("dataset", {})
    if not dataset.get("name") or not dataset.get("root"):
        raise PolySpaceError(f"{store.split_dir / 'manifest.json'}: records no dataset; re-run 01_featurize")
    inputs = FusionInputs(mode="cached" if cached else "video", features=features, converters=converters,
                          dataset=dataset["name"], videos=_resolve(dataset["root"], root),
                          student=f"{store.student}={source}", frames=int(info["clip"]["frames"]), tokens=store.tokens,
                          teachers=list(read_json(converters / "converters.json")["teachers"]),
                          class_names=store.class_names, dtype=store.manifest["dtype"])
    if not cached:
        from ..datasets.registry import load_split

        split = load_split(inputs.dataset, inputs.videos, "train")
        videos = [str(Path(it.path).resolve()) for it in split.items]
        if videos != [str(_resolve(p, root).resolve()) for p in store.paths]:
            raise PolySpaceError(f"{inputs.videos}: its train split lists other videos than the feature store "
                                 f"{store.split_dir} was made from; re-run 01_featurize on these videos")
    return inputs


def fusion_settings(ws, seed: int | None = None) -> tuple[TrainSettings, HeadOptions]:
    """The notebook parameters as training settings (under `seed`, default the notebook's) and head options."""
    p = ws.p
    settings = TrainSettings(epochs=p.fusion_epochs, batch=p.fusion_batch, lr=p.fusion_lr,
                             seed=ws.seed if seed is None else seed)
    head = HeadOptions(rank=p.fusion_rank, pooling=p.fusion_pooling, gate_l1=p.fusion_gate_l1,
                       finetune_converters=p.fusion_finetune_converters)
    return settings, head


@dataclass
class SeedRuns:
    """The fusion training repeated over seeds: seed -> FusionRun, in the order of `seeds`; the
    first seed's run (`main`) is the one 05 and the figures read."""

    runs: dict[int, FusionRun]

    @property
    def main(self) -> FusionRun:
        return next(iter(self.runs.values()))

    def spread(self) -> dict[str, Any]:
        """Mean and std over seeds of the selected checkpoints' validation top-1."""
        return seed_spread([r.best_val_top1 for r in self.runs.values()])


def _seed_dir(run_dir: Path, mode: str, seed: int, first: bool) -> Path:
    # the first seed keeps the folder a single-seed run has always used
    return run_dir / (f"fusion_{mode}" if first else f"fusion_{mode}_seed{seed}")


def train_fusion_stage(ws, inputs: FusionInputs) -> SeedRuns:
    """Train (or resume) the fusion head in the inputs' mode once per seed of `seeds`, under
    `<run dir>/fusion_<mode>/` (first seed) and `fusion_<mode>_seed<N>/`; a checkpoint made with
    other settings is announced and replaced. Records the checkpoints in `<run dir>/latest.json`
    for 05."""
    if inputs.mode == "cached":
        data: dict[str, Any] = {"features": inputs.features}
    else:
        # features: the store the student's precision (dtype, autocast) is read from
        data = {"dataset": inputs.dataset, "root": inputs.videos, "student": inputs.student, "frames": inputs.frames,
                "tokens": inputs.tokens, "workers": ws.p.fusion_workers, "features": inputs.features}
    seeds = training_seeds(ws.p.seeds, ws.seed)
    runs = {}
    for i, seed in enumerate(seeds):
        settings, head = fusion_settings(ws, seed)
        runs[seed] = train_fusion(mode=inputs.mode, converters=inputs.converters, settings=settings, head=head,
                                  save_dir=_seed_dir(ws.run_dir, inputs.mode, seed, i == 0), device=str(ws.device),
                                  on_mismatch="restart", **data)
    dirs = {str(seed): str(run.save_dir / "best") for seed, run in runs.items()}
    atomic_write_json(ws.run_dir / LATEST, {"checkpoint": dirs[str(seeds[0])], "seed_checkpoints": dirs,
                                            "mode": inputs.mode, "features": str(inputs.features)})
    return SeedRuns(runs)


def run_summary(runs: SeedRuns | FusionRun):
    """A fusion run per row (seed, mode, epochs, best epoch, validation accuracy, throughput), and
    with several seeds a mean and a std row of the validation figures."""
    import pandas as pd

    runs = runs if isinstance(runs, SeedRuns) else SeedRuns({0: runs})
    table = pd.DataFrame([{"seed": seed, **run.summary()} for seed, run in runs.runs.items()]).set_index("seed")
    if len(runs.runs) > 1:
        numeric = table[["val_top1", "val_loss", "best_epoch"]]
        table.loc["mean"] = numeric.mean()
        table.loc["std"] = numeric.std(ddof=1)
    return table


def validation_view(ws, run: FusionRun, inputs: FusionInputs) -> dict[str, Any]:
    """The selected checkpoint on the validation split (never the test split here): accuracy,
    confusion and gate statistics, from the store (cached) or the videos (video mode)."""
    from .evaluate import evaluate_checkpoint

    where = ({"features": inputs.features} if inputs.mode == "cached" else
             {"dataset": inputs.dataset, "root": inputs.videos, "student": inputs.student,
              "workers": ws.p.fusion_workers})
    return evaluate_checkpoint(run.save_dir / "best", split="validation", device=str(ws.device), **where)


# ---------------------------------------------------------------------------------------------
# 05


def downstream_inputs(ws) -> dict[str, Any]:
    """The fusion checkpoints 04 recorded last (one per seed of 05's `seeds`) and the feature
    store they were trained with. 05's seeds must be ones 04 trained."""
    latest = ws.stage_run_dir("04_train_fusion") / LATEST
    if not latest.is_file():
        raise PolySpaceError(f"{latest}: no fusion checkpoint recorded; run 04_train_fusion for this preset first")
    record = read_json(latest)
    recorded = record.get("seed_checkpoints") or {str(ws.seed): record["checkpoint"]}
    seeds = training_seeds(ws.p.seeds, ws.seed)
    missing = [s for s in seeds if str(s) not in recorded]
    if missing:
        raise PolySpaceError(f"{latest}: 04 trained fusion under seeds {sorted(int(s) for s in recorded)}, not "
                             f"{missing}; run 04_train_fusion with the same seeds first")
    return {"fusion": Path(recorded[str(seeds[0])]), "features": Path(record["features"]),
            "trained_in": record["mode"], "seed_checkpoints": {s: Path(recorded[str(s)]) for s in seeds}}


def downstream_report(ws, inputs: dict[str, Any]):
    """05's table on ws.p.eval_split, every seed's fusion checkpoint against baselines trained
    under the same seed, combined over seeds; also written to `<run dir>/downstream.json`."""
    from .evaluate import combine_seeds, evaluate_downstream

    reports = {}
    for i, (seed, checkpoint) in enumerate(inputs["seed_checkpoints"].items()):
        probe = TrainSettings(epochs=ws.p.eval_probe_epochs, batch=64, lr=ws.p.eval_probe_lr, weight_decay=1e-4,
                              seed=seed)
        log_dir = ws.run_dir / LOG_FOLDER / (f"seed{seed}" if i else "")
        # costs do not depend on the seed: counted once
        reports[seed] = evaluate_downstream(checkpoint, inputs["features"], split=ws.p.eval_split,
                                            probe_settings=probe, costs=ws.p.eval_costs and i == 0,
                                            device=str(ws.device), log_dir=log_dir)
    report = combine_seeds(reports)
    atomic_write_json(ws.run_dir / "downstream.json",
                      {"rows": report.rows, "metrics": report.metrics(), "gates": report.gates, "costs": report.costs,
                       "confusion": {k: v.tolist() for k, v in report.confusion.items()},
                       "class_names": report.class_names,
                       # per clip and seed, so every figure and interval can be recomputed
                       "labels": report.labels.tolist(), "seeds": report.seeds,
                       "predictions": {k: v.tolist() for k, v in report.predictions.items()},
                       "seed_predictions": {str(s): {k: v.tolist() for k, v in r.predictions.items()}
                                            for s, r in reports.items()}})
    return report


# ---------------------------------------------------------------------------------------------
# metrics.json of 04 and 05


def stage_metrics(ws, result: SeedRuns | FusionRun | DownstreamReport,
                  validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """metrics.json of the stage `ws.stage` is.

    04_train_fusion: `result` is the SeedRuns (or one FusionRun) and `validation` the first
    seed's validation_view: mode, throughput, selection and the validation figures (top-1, top-5,
    mean per-class, mean gate per teacher), plus the validation top-1's mean and std over seeds.
    05_eval_downstream: `result` is the DownstreamReport: its flat metrics (top1_/top5_/
    mean_class_acc_/gflops_/params_<method>, the fusion gains, the mean gates; seeds combined)."""
    if ws.stage == "04_train_fusion":
        if validation is None:
            raise PolySpaceError("stage_metrics of 04_train_fusion: pass the validation view, "
                                 "stage_metrics(ws, run, validation_view(ws, run, inputs))")
        runs = result if isinstance(result, SeedRuns) else SeedRuns({ws.seed: result})
        metrics = training_metrics(runs.main, validation)
        spread = runs.spread()
        metrics.update({"seeds": list(runs.runs), "val_top1_seed_mean": spread["mean"],
                        "val_top1_seed_std": spread["std"]})
        return metrics
    if ws.stage == "05_eval_downstream":
        return result.metrics()
    raise PolySpaceError(f"fusion stage_metrics: stage {ws.stage} is not 04_train_fusion or 05_eval_downstream")


def training_metrics(run: FusionRun, val: dict[str, Any]) -> dict[str, Any]:
    """04's figures: mode, throughput, selection and the validation figures of the selected checkpoint."""
    metrics = {"mode": run.mode, "train_samples_per_s": run.train_samples_per_s, "best_epoch": run.best_epoch,
               "epochs": len(run.history), "train_samples": run.train_samples, "val_top1": val["top1"],
               "val_top5": val["top5"], "val_mean_class_acc": val["mean_class_acc"],
               "skipped_videos": len(run.skipped)}
    for teacher, stats in val["gates"]["per_teacher"].items():
        metrics[f"val_gate_mean_{teacher}"] = stats["mean"]
    return metrics
