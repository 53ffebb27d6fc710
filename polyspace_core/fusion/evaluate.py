"""05: fusion against honest baselines on the test split, side by side, with what each costs.

    report = evaluate_downstream("runs/default/04_train_fusion/fusion/best", features_root, ...)
    report.table()        # one row per method: top-1, top-5, mean per-class accuracy, params, GFLOPs
    report.metrics()      # flat dict for metrics.json (top1_student, top1_fusion, ...)

Rows (every baseline is trained on the train split and selected on validation, never random):
    student linear probe      the student's pooled features -> linear
    student matched head      the student's tokens -> a head with the fusion pipeline's trainable
                              parameter count (a fusion gain is then not just a bigger head)
    fusion                    student -> converters -> residual-gated head (the checkpoint of 04)
    teacher <name> probe      a teacher's OWN features -> linear (upper bound: running that teacher)
    teachers concat probe     all teachers' features concatenated -> linear (upper bound)
    fusion oracle             the trained fusion head fed the teachers' own features in place of
                              the converted ones, each standardised with that teacher's own
                              train-split statistics (`oracle_pipeline`; what perfect converters
                              would give)

Cost is GFLOPs per clip of everything a prediction runs, backbones included (true FLOPs, 2 per
multiply-add, counted with torch's FlopCounterMode through polyspace_core.efficiency): the student
backbone for student rows and fusion, the teacher backbones for teacher rows, all of them for the
oracle, plus the converters and heads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..distributed import make_accelerator
from ..errors import PolySpaceError
from ..stats import Claim, bootstrap_interval, claims_table, mcnemar_exact, paired_difference
from .data import TensorBatches, cached_batches, open_split_store
from .head import count_trainable
from .metrics import classification_metrics, confusion_matrix
from .pipeline import load_fusion, oracle_pipeline
from .probes import train_attentive_probe, train_linear_probe, train_matched_student_head
from .train import FitResult, TrainSettings, predict


@dataclass
class DownstreamReport:
    """rows: one dict per method (name, key, kind, top1, top5, mean_class_acc, params, gflops).
    confusion: method key -> (C, C) counts on the evaluation split. gates: per-teacher gate
    statistics of fusion. baselines: method key -> the baseline's training (FitResult: the trained
    model, its per-epoch history, best epoch, ...). class_names, split. predictions: method key ->
    predicted class per clip of the split, `labels` the true ones (so every figure can be
    resampled); each row's top1_low/top1_high is its 95% bootstrap interval. claims: what 05
    states about fusion against the student-only rows, with paired intervals and McNemar tests.
    seeds: the training seeds combined (`combine_seeds`); with several, each row's top1 (top5,
    mean_class_acc) is the mean over seeds, top1_std their std, `predictions`/`confusion`/`gates`
    are the first seed's and `correct` holds every seed's per-clip correctness (S, N)."""

    rows: list[dict[str, Any]]
    confusion: dict[str, np.ndarray]
    gates: dict[str, Any]
    baselines: dict[str, FitResult]
    class_names: list[str]
    split: str
    costs: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    claims: list[Claim] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    correct: dict[str, np.ndarray] = field(default_factory=dict)

    def table(self):
        """The rows as a pandas DataFrame indexed by method name."""
        import pandas as pd

        return pd.DataFrame(self.rows).set_index("method")

    def metrics(self) -> dict[str, Any]:
        """Flat figures for metrics.json: top1_/top5_/mean_class_acc_/gflops_<key> per row, plus the
        fusion gains over the student baselines and the mean gate per teacher."""
        out: dict[str, Any] = {"eval_split": self.split}
        for row in self.rows:
            for metric in ("top1", "top5", "mean_class_acc", "gflops", "params"):
                if row.get(metric) is not None:
                    out[f"{metric}_{row['key']}"] = row[metric]
        out["fusion_gain_over_student"] = out["top1_fusion"] - out["top1_student"]
        out["fusion_gain_over_student_matched"] = out["top1_fusion"] - out["top1_student_matched"]
        out["fusion_gain_over_student_attentive"] = out["top1_fusion"] - out["top1_student_attentive"]
        for teacher, stats in self.gates["per_teacher"].items():
            out[f"gate_mean_{teacher}"] = stats["mean"]
        out["top1_intervals"] = {row["key"]: [row["top1_low"], row["top1_high"]] for row in self.rows
                                 if "top1_low" in row}
        out["claims"] = [c.as_dict() for c in self.claims]
        if len(self.seeds) > 1:
            out["seeds"] = list(self.seeds)
            out["top1_seed_std"] = {row["key"]: row["top1_std"] for row in self.rows}
        return out

    def claims_table(self):
        """The claims as a DataFrame: statement, value, interval, McNemar p, verdict."""
        return claims_table(self.claims)


def _row(method: str, key: str, kind: str, pred: dict[str, torch.Tensor], num_classes: int,
         params: int, gflops: float | None) -> dict[str, Any]:
    m = classification_metrics(pred["logits"], pred["label"], num_classes)
    return {"method": method, "key": key, "kind": kind, "top1": m["top1"], "top5": m["top5"],
            "mean_class_acc": m["mean_class_acc"], "n": m["n"], "params": int(params), "gflops": gflops}


def gate_statistics(gates: torch.Tensor, labels: torch.Tensor, teachers: Sequence[str],
                    num_classes: int) -> dict[str, Any]:
    """gates (N, n_teachers, T) in [0, 1] -> per teacher: mean, std, share of open gates (> 0.5);
    per class and teacher: the mean gate ((C, n_teachers) nested list); per token position."""
    gates = gates.float()
    clip_mean = gates.mean(dim=2)  # (N, n_teachers)
    per_teacher = {}
    for i, name in enumerate(teachers):
        g = gates[:, i]
        per_teacher[name] = {"mean": float(g.mean()), "std": float(g.std()),
                             "open_share": float((g > 0.5).float().mean()), "per_token": g.mean(0).tolist()}
    per_class = torch.zeros(num_classes, len(teachers))
    for c in range(num_classes):
        members = labels == c
        if members.any():
            per_class[c] = clip_mean[members].mean(0)
        else:
            per_class[c] = float("nan")
    return {"teachers": list(teachers), "per_teacher": per_teacher, "per_class": per_class.tolist()}


# ---------------------------------------------------------------------------------------------
# cost


def _module_gflops(module: nn.Module, batch: Mapping[str, torch.Tensor]) -> float:
    """GFLOPs of one clip through a head/probe/pipeline (batch of one, on CPU)."""
    from ..measure import count_flops

    module = module.cpu().eval()
    one = {k: v[:1].cpu() for k, v in batch.items()}
    return count_flops(lambda: module(one)).total / 1e9


def backbone_gflops(store, name: str) -> float:
    """GFLOPs of one clip through a stored model's backbone at the clip (frames, size) it was
    extracted with, from the checkpoint's config alone (a catalogue entry, a local folder or any
    hub id: HF cache or hub), counted on the meta device: no weights are loaded. A model whose
    config cannot be read is a one-line PolySpaceError naming it."""
    from ..backbones.catalog import backbone_cost, stored_model_spec

    return backbone_cost(stored_model_spec(name, store.model_info(name))).flops / 1e9


# ---------------------------------------------------------------------------------------------
# the table


def evaluate_downstream(fusion_dir: str | Path, features: str | Path, *, split: str = "test",
                        train_split: str = "train", val_split: str = "validation",
                        probe_settings: TrainSettings | None = None, head_settings: TrainSettings | None = None,
                        features_fp16: bool | None = None, costs: bool = True, device: str = "auto",
                        progress: bool = True, accelerator=None, log_dir: str | Path | None = None) -> DownstreamReport:
    """Evaluate the fusion checkpoint in `fusion_dir` and every baseline on `split` of the
    feature store at `features` (cached mode: train/validation/`split` subfolders).

    probe_settings: training of the linear probes (default: 30 epochs, lr 1e-2, batch 64).
    head_settings: training of the matched student head (default: the fusion run's own settings,
    from its fusion.json, so both get the same budget). costs: count GFLOPs per clip.
    log_dir: each baseline's TensorBoard curves go to <log_dir>/<row name>.
    """
    acc = accelerator or make_accelerator(device)
    pipeline = load_fusion(fusion_dir)
    c = pipeline.config
    stores = {s: open_split_store(features, s, features_fp16) for s in (train_split, val_split, split)}
    class_names = stores[train_split].class_names
    if class_names != pipeline.info["class_names"]:
        raise PolySpaceError(f"{fusion_dir}: the fusion head was trained on other classes than the store "
                             f"{features} holds; evaluate it on the features it was trained for")
    if stores[train_split].student != c.student:
        raise PolySpaceError(f"{features}: the store's student is {stores[train_split].student!r}, the fusion "
                             f"head's is {c.student!r}; use the store it was trained on")
    models = [c.student, *c.teachers]
    for store in stores.values():
        missing = [m for m in models if m not in store.models]
        if missing:
            raise PolySpaceError(f"{store.split_dir}: no features of {missing}; featurize the teachers too "
                                 f"(the baselines need each teacher's own features)")
    if not (stores[split].labels >= 0).all():
        raise PolySpaceError(f"{stores[split].split_dir}: split {split!r} has unlabeled videos; "
                             f"evaluate on a labeled split")
    n_classes = len(class_names)

    # the backbones' cost first: a model whose config cannot be read stops here, before any
    # baseline is trained (not after all of them, losing that work)
    backbone = {m: backbone_gflops(stores[split], m) for m in models} if costs else {}

    probe_settings = probe_settings or TrainSettings(epochs=30, batch=64, lr=1e-2, weight_decay=1e-4)
    head_settings = head_settings or TrainSettings(**pipeline.info["settings"])
    batches = {s: cached_batches(stores[s], models, batch=probe_settings.batch, shuffle=False)
               for s in stores}
    train_b, val_b, test_b = batches[train_split], batches[val_split], batches[split]

    rows, confusion = [], {}
    pipeline = pipeline.to(acc.device)

    predictions: dict[str, np.ndarray] = {}

    def run(model, key):
        pred = predict(model.to(acc.device), test_b, accelerator=acc)
        confusion[key] = confusion_matrix(pred["logits"].argmax(1), pred["label"], n_classes).numpy()
        predictions[key] = pred["logits"].argmax(1).numpy()
        return pred

    # fusion, then the oracle: the same weights on the teachers' own features, standardised with
    # the teachers' own training-split statistics (the head's were fitted on converted features)
    fusion_pred = run(pipeline, "fusion")
    oracle = oracle_pipeline(pipeline, train_b.full_pass(c.teachers))
    oracle_pred = run(oracle, "fusion_oracle")

    def logs(name: str) -> Path | None:
        return Path(log_dir) / name if log_dir is not None else None

    student_probe = train_linear_probe([c.student], train_b, val_b, n_classes, probe_settings, accelerator=acc,
                                       progress=progress, desc="student linear probe", log_dir=logs("student"))
    matched = train_matched_student_head(pipeline, train_b, val_b, head_settings, accelerator=acc, progress=progress,
                                         log_dir=logs("student_matched"))
    attentive = train_attentive_probe(pipeline, train_b, val_b, head_settings, accelerator=acc, progress=progress,
                                      log_dir=logs("student_attentive"))
    teacher_probes = {t: train_linear_probe([t], train_b, val_b, n_classes, probe_settings, accelerator=acc,
                                            progress=progress, desc=f"teacher {t} probe",
                                            log_dir=logs(f"teacher_{t.replace('/', '_')}")) for t in c.teachers}
    concat = train_linear_probe(list(c.teachers), train_b, val_b, n_classes, probe_settings, accelerator=acc,
                                progress=progress, desc="teachers concat probe", log_dir=logs("teachers_concat"))
    baselines = {"student": student_probe, "student_matched": matched, "student_attentive": attentive,
                 **{f"teacher_{t}": r for t, r in teacher_probes.items()}, "teachers_concat": concat}

    # cost per clip, backbones included: what each row runs to predict one clip
    cost: dict[str, Any] = {}
    gflops: dict[str, float | None] = {}
    if costs:
        from ..measure import count_flops

        sample = next(iter(TensorBatches({m: test_b.features[m] for m in models}, test_b.labels, batch=1)))
        pipeline.cpu()
        z0, teacher_feats = sample[c.student], [sample[t] for t in c.teachers]
        cost = {"backbone_gflops": backbone,
                "converter_gflops": {t: count_flops(conv_m, z0).total / 1e9
                                     for t, conv_m in zip(c.teachers, pipeline.converters)},
                "head_gflops": count_flops(pipeline.head, z0, teacher_feats).total / 1e9,
                "probe_gflops": {key: _module_gflops(r.model, sample) for key, r in
                                 [("student", student_probe), ("student_matched", matched),
                                  ("student_attentive", attentive), ("teachers_concat", concat),
                                  *((f"teacher_{t}", r) for t, r in teacher_probes.items())]}}
        pipeline.to(acc.device)
        teachers_total = sum(backbone[t] for t in c.teachers)
        gflops = {"student": backbone[c.student] + cost["probe_gflops"]["student"],
                  "student_matched": backbone[c.student] + cost["probe_gflops"]["student_matched"],
                  "student_attentive": backbone[c.student] + cost["probe_gflops"]["student_attentive"],
                  "fusion": backbone[c.student] + sum(cost["converter_gflops"].values()) + cost["head_gflops"],
                  **{f"teacher_{t}": backbone[t] + cost["probe_gflops"][f"teacher_{t}"] for t in c.teachers},
                  "teachers_concat": teachers_total + cost["probe_gflops"]["teachers_concat"],
                  "fusion_oracle": backbone[c.student] + teachers_total + cost["head_gflops"]}

    pf = count_trainable(pipeline)
    rows.append(_row("student linear probe", "student", "baseline", run(student_probe.model, "student"), n_classes,
                     count_trainable(student_probe.model), gflops.get("student")))
    rows.append(_row("student matched head", "student_matched", "baseline", run(matched.model, "student_matched"),
                     n_classes, count_trainable(matched.model), gflops.get("student_matched")))
    rows.append(_row("student attentive probe", "student_attentive", "baseline",
                     run(attentive.model, "student_attentive"), n_classes, count_trainable(attentive.model),
                     gflops.get("student_attentive")))
    rows.append(_row("fusion", "fusion", "fusion", fusion_pred, n_classes, pf, gflops.get("fusion")))
    for t, r in teacher_probes.items():
        rows.append(_row(f"teacher {t} probe", f"teacher_{t}", "upper bound", run(r.model, f"teacher_{t}"), n_classes,
                         count_trainable(r.model), gflops.get(f"teacher_{t}")))
    rows.append(_row("teachers concat probe", "teachers_concat", "upper bound", run(concat.model, "teachers_concat"),
                     n_classes, count_trainable(concat.model), gflops.get("teachers_concat")))
    rows.append(_row("fusion oracle (teacher features, own statistics)", "fusion_oracle", "upper bound", oracle_pred,
                     n_classes, pf, gflops.get("fusion_oracle")))

    labels = fusion_pred["label"].numpy()
    correct = {key: (predictions[key] == labels)[None] for key in predictions}
    claims = score_rows(rows, correct, split)
    gates = gate_statistics(fusion_pred["gates"], fusion_pred["label"], c.teachers, n_classes)
    return DownstreamReport(rows=rows, confusion=confusion, gates=gates, baselines=baselines,
                            class_names=class_names, split=split, costs=cost, predictions=predictions,
                            labels=labels, claims=claims, correct=correct)


CLAIMED = (("student", "student linear probe"), ("student_matched", "student matched head"),
           ("student_attentive", "student attentive probe"))


def score_rows(rows: list[dict[str, Any]], correct: Mapping[str, np.ndarray], split: str) -> list[Claim]:
    """Each row's 95% top-1 interval (top1_low/top1_high) and the claims of fusion against the
    student-only rows, from per-clip correctness (S seeds, N clips): clips are resampled with each
    clip's correctness averaged over the seeds; McNemar runs per seed and the largest p counts."""
    seeds = next(iter(correct.values())).shape[0]
    pooled = {key: c.mean(axis=0) for key, c in correct.items()}
    for row in rows:
        ci = bootstrap_interval(pooled[row["key"]], name=f"top-1 of {row['key']}")
        row["top1_low"], row["top1_high"] = ci.low, ci.high
    return [Claim.difference(f"fusion_beats_{key}", f"fusion beats the {name} (top-1, {split} split)",
                             paired_difference(pooled["fusion"], pooled[key], name=f"fusion - {key}"),
                             max(mcnemar_exact(correct["fusion"][s], correct[key][s]) for s in range(seeds)),
                             seeds=seeds)
            for key, name in CLAIMED]


def combine_seeds(reports: Mapping[int, DownstreamReport]) -> DownstreamReport:
    """One report from the same evaluation repeated under several training seeds (seed -> report,
    same split and clips): rows carry the mean over seeds (and top1_std), intervals and claims are
    recomputed from every seed's per-clip correctness; confusion, gates, predictions, baselines and
    costs are the first seed's. One report comes back with its `seeds` set."""
    seeds = list(reports)
    first = reports[seeds[0]]
    for seed, r in reports.items():
        if r.split != first.split or not np.array_equal(r.labels, first.labels):
            raise PolySpaceError(f"seed {seed}: evaluated on other clips than seed {seeds[0]}; "
                                 "seeds are combined clip by clip")
    correct = {key: np.concatenate([reports[s].correct[key] for s in seeds]) for key in first.correct}
    rows = []
    for row in first.rows:
        per_seed = [next(r for r in reports[s].rows if r["key"] == row["key"]) for s in seeds]
        merged = dict(row)
        for metric in ("top1", "top5", "mean_class_acc"):
            merged[metric] = float(np.mean([r[metric] for r in per_seed]))
        merged["top1_std"] = float(np.std([r["top1"] for r in per_seed], ddof=1)) if len(seeds) > 1 else None
        merged["seeds"] = len(seeds)
        rows.append(merged)
    claims = score_rows(rows, correct, first.split)
    return DownstreamReport(rows=rows, confusion=first.confusion, gates=first.gates, baselines=first.baselines,
                            class_names=first.class_names, split=first.split, costs=first.costs,
                            predictions=first.predictions, labels=first.labels, claims=claims, seeds=seeds,
                            correct=correct)


# ---------------------------------------------------------------------------------------------
# one checkpoint, either mode (the `polyspace eval` of the original scripts)


def _fusion_folder(path: Path) -> Path | None:
    if (path / "fusion.json").is_file():
        return path
    if (path / "best" / "fusion.json").is_file():
        return path / "best"
    return None


def locate_fusion_checkpoint(path: str | Path) -> tuple[Path, str | None]:
    """(fusion checkpoint folder, a note saying how `path` was read, or None when it is a folder).

    `path` is the checkpoint folder, the train-fusion --save_dir holding `best/`, or the
    original's file form the seeds pass: `--fusion ./checkpoints/fusion/fusion_ep5.pt`, the file
    the original wrote after epoch 5 of `train_fusion --epochs 5 --save_dir ./checkpoints/fusion`.
    Our run keeps the epoch selected on validation (`best/`), not one file per epoch, so
    `fusion_ep<N>.pt` stands for the finished run in its folder trained with --epochs N (the last
    file such a run wrote, the one the seeds pass); another N, or a run not finished, is an error."""
    given, path = str(path), Path(path)  # messages quote the path as the user wrote it
    if path.is_dir():
        found = _fusion_folder(path)
        if found is None:
            raise PolySpaceError(f"{path}: no fusion checkpoint (fusion.json) here or in {path / 'best'}; "
                                 f"train one with `polyspace train-fusion --save_dir {path}`")
        return found, None
    from ..checkpoints import folder_for_original_file
    from ..io import read_json

    folder, epoch = folder_for_original_file(path, lambda p: _fusion_folder(p) is not None, "--fusion",
                                             "train one with `polyspace train-fusion --save_dir DIR` and pass DIR")
    found = _fusion_folder(folder)
    if epoch is None:
        return found, f"--fusion {given}: the fusion checkpoint {found}"
    history = folder / "history.json"
    record = read_json(history) if history.is_file() else {}
    record = record if isinstance(record, dict) else {}
    epochs = (record.get("settings") or {}).get("epochs")
    if not record.get("complete") or epochs != epoch:
        state = (f"was trained for {epochs} epochs" if record.get("complete") else
                 f"has not finished (no complete {history.name})")
        raise PolySpaceError(f"--fusion {given}: names the head after epoch {epoch}; the run in {folder} {state} and "
                             f"keeps the epoch selected on validation, not one file per epoch; pass {found}")
    return found, (f"--fusion {given}: the run in {folder} ({epoch} epochs); its checkpoint {found.name}/ "
                   f"(epoch {record.get('best_epoch')}, selected on validation)")


def check_checkpoint_flags(fusion_dir: str | Path, *, student: str | None = None,
                           teachers: Sequence[str] | None = None, converters: str | Path | None = None,
                           num_classes: int | None = None) -> list[str]:
    """Check what the original eval's flags say of a fusion checkpoint against it; notes to show.

    The original eval rebuilt the pipeline from --student, --teachers, --converters and --classes;
    ours reads the student's name, the teachers, the converters (their weights are in the
    checkpoint) and the classes from the checkpoint itself, so each flag given must agree with
    it: a student by name or source, the same teachers (any order), a converter set that is the
    one it was trained with (its folder, or the same weights), the same number of classes.
    Anything else is a one-line error; nothing is substituted."""
    import torch

    from ..align.train import load_converter_set, resolve_converter_set

    pipeline = load_fusion(fusion_dir)
    c, info = pipeline.config, pipeline.info
    source = (info.get("data") or {}).get("student_source")
    if student is not None and student not in (c.student, source):
        raise PolySpaceError(f"--student {student!r}: the fusion checkpoint {fusion_dir} was trained on student "
                             f"{c.student!r} ({source}); pass that or omit --student")
    if teachers is not None and sorted(teachers) != sorted(c.teachers):
        raise PolySpaceError(f"--teachers {' '.join(teachers)}: the fusion checkpoint {fusion_dir} fuses "
                             f"{' '.join(c.teachers)}; pass those or omit --teachers")
    if num_classes is not None and num_classes != len(info["class_names"]):
        raise PolySpaceError(f"--classes {num_classes}: the fusion checkpoint {fusion_dir} classifies "
                             f"{len(info['class_names'])} classes")
    notes = []
    if converters is not None:
        folder, note = resolve_converter_set(converters)
        notes += [note] if note else []
        recorded = info.get("converters_dir")
        same = recorded is not None and Path(recorded).resolve() == folder.resolve()
        if not same and not pipeline.finetune_converters:
            # a copy of the set it was trained with: the same weights
            trained_on, convs = load_converter_set(folder, teachers=c.teachers)
            same = trained_on == c.student and all(
                a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
                for a, b in ((convs[t].state_dict(), m.state_dict()) for t, m in zip(c.teachers, pipeline.converters)))
        if not same:
            raise PolySpaceError(f"--converters {converters}: the fusion checkpoint {fusion_dir} was trained with the "
                                 f"converters in {recorded}, {folder} holds others; pass those or omit --converters "
                                 f"(the checkpoint carries its own)")
    return notes


def resolve_fusion_dir(path: str | Path) -> Path:
    """A fusion checkpoint folder, given it, the save_dir holding `best/`, or the original's file
    form (see locate_fusion_checkpoint)."""
    return locate_fusion_checkpoint(path)[0]


def video_student_features(dataset: str, root: str | Path, split: str, backbone, tokens: str = "temporal",
                           batch: int = 8, workers: int = 0, on_error: str = "error", split_seed: int = 0,
                           accelerator=None, progress: bool = True) -> TensorBatches:
    """Video mode without a store: decode `split`, run the student (featurize's code path) and
    keep its token features in memory as TensorBatches {student: (N, T, D)}."""
    from tqdm.auto import tqdm

    from ..datasets.registry import load_split
    from .data import StudentFeatures, VideoBatches

    device = accelerator.device if accelerator is not None else torch.device("cpu")
    items = load_split(dataset, root, split, seed=split_seed)
    videos = VideoBatches(items.items, items.labels, backbone, batch=batch, workers=workers, on_error=on_error)
    source = StudentFeatures(backbone, tokens).to(device)
    feats, labels = {}, torch.as_tensor(items.labels, dtype=torch.int64)
    for b in tqdm(videos, total=len(videos), desc=f"student features ({split})", disable=not progress, leave=False):
        out = source({k: v.to(device) for k, v in b.items()})
        for i, row in zip(out["index"].tolist(), out[backbone.name].cpu()):
            feats[i] = row
    kept = sorted(feats)
    stacked = torch.zeros(len(items), *feats[kept[0]].shape)
    stacked[kept] = torch.stack([feats[i] for i in kept])
    batches = TensorBatches({backbone.name: stacked}, labels, kept, batch=batch)
    batches.skipped = dict(videos.skipped)
    return batches


def evaluate_checkpoint(fusion_dir: str | Path, *, split: str = "test", features: str | Path | None = None,
                        dataset: str | None = None, root: str | Path | None = None, student: str | None = None,
                        features_fp16: bool | None = None, batch: int = 64, workers: int = 0,
                        on_error: str = "error", split_seed: int = 0, device: str = "auto",
                        frames: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Top-1 / top-5 / mean per-class accuracy and the confusion matrix of one fusion checkpoint on
    `split`: from the store at `features` (cached) or from the videos (`dataset`, `root`; the
    student defaults to the one the checkpoint was trained with). `frames`: the student's frames
    per clip, checked against the checkpoint's (video mode) or the store's (cached mode)."""
    from .data import StudentFeatures, VideoBatches

    acc = make_accelerator(device)
    fusion_dir = resolve_fusion_dir(fusion_dir)
    pipeline = load_fusion(fusion_dir, device=acc.device)
    c = pipeline.config
    source = None
    if features is not None:
        store = open_split_store(features, split, features_fp16)
        if store.student != c.student:
            raise PolySpaceError(f"{store.split_dir}: the store's student is {store.student!r}, the checkpoint's "
                                 f"is {c.student!r}")
        clip = store.model_info(c.student).get("clip") or {}
        if frames is not None and clip.get("frames") not in (None, frames):
            raise PolySpaceError(f"--frames {frames}: the store's {c.student!r} features were extracted from "
                                 f"{clip['frames']}-frame clips ({store.split_dir})")
        batches = cached_batches(store, [c.student], batch=batch, shuffle=False)
        class_names, mode = store.class_names, "cached"
    else:
        from ..backbones import load_backbone
        from ..datasets.registry import load_split

        if dataset is None or root is None:
            raise PolySpaceError("evaluating on videos needs --dataset and --root "
                                 "(or --use_cached_features with a store)")
        spec = student or f"{c.student}={pipeline.info['data']['student_source']}"
        trained_frames = int(pipeline.info["data"].get("frames", 16))
        if frames is not None and frames != trained_frames:
            raise PolySpaceError(f"--frames {frames}: the fusion checkpoint {fusion_dir} was trained on "
                                 f"{trained_frames}-frame student clips")
        backbone = load_backbone(spec, frames=trained_frames, device=acc.device)
        if backbone.name != c.student:
            raise PolySpaceError(f"--student {spec!r} is named {backbone.name!r}; the checkpoint's student is "
                                 f"{c.student!r} (write {c.student}=SOURCE)")
        items = load_split(dataset, root, split, seed=split_seed)
        batches = VideoBatches(items.items, items.labels, backbone, batch=batch, workers=workers, on_error=on_error)
        # the precision the head was trained on (checkpoints saved before it was recorded: float32)
        source = StudentFeatures(backbone, pipeline.info["data"].get("tokens", "temporal"),
                                 pipeline.info["data"].get("dtype", "float32")).to(acc.device)
        class_names, mode = list(items.class_names), "video"
    if class_names != pipeline.info["class_names"]:
        raise PolySpaceError(f"{fusion_dir}: trained on other classes than split {split!r} has")
    pred = predict(pipeline, batches, source, acc, progress=progress, desc=f"eval {split}")
    metrics = classification_metrics(pred["logits"], pred["label"], len(class_names))
    metrics.update(mode=mode, split=split, checkpoint=str(fusion_dir),
                   confusion=confusion_matrix(pred["logits"].argmax(1), pred["label"], len(class_names)).tolist(),
                   gates=gate_statistics(pred["gates"], pred["label"], c.teachers, len(class_names)),
                   skipped=getattr(batches, "skipped", {}))
    return metrics
