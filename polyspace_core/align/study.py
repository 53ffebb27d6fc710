"""The experiments behind notebooks 02 (train converters) and 03 (alignment), one function per cell.

02: `train_converter_grid` trains every (teacher, kind, loss) on the store's train split and
measures validation fidelity; `select_converters` picks one per teacher ON VALIDATION;
`fidelity_table` reports held-out (test) fidelity of every run; `save_selected` writes the
chosen set for the fusion stages.

03: `load_spaces` reads clip-level features of the student, each teacher and each converted
space on one split; `alignment_table` compares student->teacher with converted->teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import PolySpaceError
from .converters import CLOSED_FORM_KINDS, ConverterConfig, Converter
from .losses import format_loss_weights, parse_loss_weights
from .metrics import SIMILARITY_METRICS, mean_cosine, retrieval_top1
from .train import (
    evaluate_converter,
    load_converter_set,
    pairs_from_store,
    predict,
    save_converter_set,
    train_converter,
)

FIDELITY_METRICS = ("cosine", "r2", "cka", "mutual_knn", "retrieval_top1")
CLOSED_FORM_LOSS = "closed form"


def find_feature_store(path: str | Path | None, featurize_run_dir: Path, split: str = "train") -> Path:
    """The feature-store root to read: `path` when given, else the one folder under the
    featurize stage's run dir that holds `<split>/manifest.json`. None or several is an error."""
    if path is not None:
        root = Path(path)
        if not (root / split / "manifest.json").is_file():
            raise PolySpaceError(f"{root}: no feature store split {split!r} here ({root / split / 'manifest.json'} "
                                 f"missing); run 01_featurize or point the parameter at a store root")
        return root
    found = sorted({p.parent.parent for p in Path(featurize_run_dir).glob(f"**/{split}/manifest.json")})
    if len(found) != 1:
        what = "no feature store" if not found else f"{len(found)} feature stores ({', '.join(map(str, found))})"
        raise PolySpaceError(f"{featurize_run_dir}: {what} with a {split!r} split; run 01_featurize for this preset "
                             f"or set the features parameter to the store root")
    return found[0]


def feature_store_summary(root: str | Path):
    """One row per (split, model): role, samples ok / total, tokens T, dim D, dtype."""
    import pandas as pd

    from ..features.store import FeatureStore

    rows = []
    for manifest in sorted(Path(root).glob("*/manifest.json")):
        store = FeatureStore.open(manifest.parent)
        for name in store.models:
            t, d = store.shape(name)
            rows.append({"split": manifest.parent.name, "model": name,
                         "role": store.model_info(name).get("role", ""), "ok": int(store.ok.sum()),
                         "samples": len(store), "T": t, "D": d, "dtype": store.manifest["dtype"]})
    if not rows:
        raise PolySpaceError(f"{root}: no feature store splits (<split>/manifest.json) found")
    return pd.DataFrame(rows)


def _store_roles(root: Path, split: str, teachers: Sequence[str] | None) -> tuple[str, list[str]]:
    from ..features.store import FeatureStore

    store = FeatureStore.open(root / split)
    if store.student is None:
        raise PolySpaceError(f"{root / split}: the manifest marks no student model; re-extract with a student")
    chosen = list(teachers) if teachers else list(store.teachers)
    if not chosen:
        raise PolySpaceError(f"{root / split}: the manifest marks no teacher models; name the teachers")
    for t in chosen:
        store.model_info(t)
    return store.student, chosen


# ---------------------------------------------------------------------------------------------
# 02: train a grid of converters


@dataclass
class ConverterRun:
    """One trained converter: which teacher, kind and loss; its history and validation fidelity."""
    teacher: str
    kind: str
    loss: str
    converter: Converter
    history: dict
    validation: dict[str, float]

    @property
    def label(self) -> str:
        return f"{self.kind} · {self.loss}"


@dataclass
class ConverterGrid:
    """Every converter trained by `train_converter_grid`, with what it was trained on."""
    features: Path
    student: str
    teachers: list[str]
    train_split: str
    val_split: str
    runs: list[ConverterRun] = field(default_factory=list)

    def table(self):
        """One row per run: teacher, kind, loss, best epoch, seconds, parameters, validation fidelity."""
        import pandas as pd

        from .converters import count_parameters

        rows = []
        for r in self.runs:
            rows.append({"teacher": r.teacher, "kind": r.kind, "loss": r.loss,
                         "best_epoch": r.history["best_epoch"], "epochs": len(r.history["epoch"]),
                         "params": count_parameters(r.converter), "seconds": round(r.history["seconds"], 2),
                         **{f"val_{k}": v for k, v in r.validation.items()}})
        return pd.DataFrame(rows)


def train_converter_grid(features: str | Path, kinds: Sequence[str], losses: Sequence[str],
                         teachers: Sequence[str] | None = None, epochs: int = 10, batch: int = 128,
                         lr: float = 1e-3, hidden: int = 256, depth: int = 2, seed: int = 0,
                         device: str | torch.device = "cpu", train_split: str = "train",
                         val_split: str = "validation") -> ConverterGrid:
    """Train each (teacher, kind, loss) on `train_split` and measure fidelity on `val_split`.

    Closed-form kinds (procrustes, ridge) do not use a loss; they are fitted once per teacher and
    listed with loss "closed form". Each run selects its epoch on the validation split.
    """
    root = Path(features)
    student, teachers = _store_roles(root, train_split, teachers)
    kinds = [ConverterConfig(k, 1, 1).kind for k in kinds]  # validates names, resolves A/B/C
    loss_labels = [format_loss_weights(parse_loss_weights(s)) for s in losses]
    if not kinds or (not loss_labels and any(k not in CLOSED_FORM_KINDS for k in kinds)):
        raise PolySpaceError("converter grid: give at least one kind, and a loss for learned kinds")
    grid = ConverterGrid(root, student, teachers, train_split, val_split)
    plan = [(t, k, CLOSED_FORM_LOSS if k in CLOSED_FORM_KINDS else loss)
            for t in teachers for k in dict.fromkeys(kinds)
            for loss in ([CLOSED_FORM_LOSS] if k in CLOSED_FORM_KINDS else dict.fromkeys(loss_labels))]
    pairs: dict[str, tuple] = {}
    for teacher, kind, loss in tqdm(plan, desc="converters"):
        if teacher not in pairs:
            pairs = {teacher: (pairs_from_store(root / train_split, student, teacher),
                               pairs_from_store(root / val_split, student, teacher))}
        train, val = pairs[teacher]
        (n, t_in, d_in), (_, t_out, d_out) = train[0].shape, train[1].shape
        config = ConverterConfig(kind, d_in, d_out, t_in, t_out, hidden=hidden, depth=depth)
        converter, history = train_converter(train, val, config, "l2" if loss == CLOSED_FORM_LOSS else loss,
                                             epochs=epochs, batch=batch, lr=lr, seed=seed, device=device,
                                             progress=False)
        converter = converter.cpu()
        grid.runs.append(ConverterRun(teacher, kind, loss, converter, history, evaluate_converter(converter, *val)))
    return grid


def select_converters(grid: ConverterGrid, metric: str = "r2") -> dict[str, ConverterRun]:
    """Per teacher, the run with the highest VALIDATION `metric` (never the test split)."""
    if metric not in FIDELITY_METRICS:
        raise PolySpaceError(f"selection metric {metric!r} is unknown; use one of {', '.join(FIDELITY_METRICS)}")
    chosen = {}
    for teacher in grid.teachers:
        runs = [r for r in grid.runs if r.teacher == teacher]
        chosen[teacher] = max(runs, key=lambda r: r.validation[metric])
    return chosen


def fidelity_table(grid: ConverterGrid, split: str = "test", selected: dict[str, ConverterRun] | None = None):
    """Held-out fidelity of every run on `split`: teacher, kind, loss, cosine, R², CKA, mutual kNN,
    retrieval top-1, and whether validation selected it."""
    import pandas as pd

    rows = []
    for teacher in grid.teachers:
        x, y = pairs_from_store(grid.features / split, grid.student, teacher)
        for r in (r for r in grid.runs if r.teacher == teacher):
            row = {"teacher": teacher, "kind": r.kind, "loss": r.loss, **evaluate_converter(r.converter, x, y)}
            if selected is not None:
                row["selected"] = selected.get(teacher) is r
            rows.append(row)
    return pd.DataFrame(rows)


def converter_metrics(fidelity, selected: dict[str, ConverterRun], split: str = "test") -> dict:
    """metrics.json keys of notebook 02: per teacher the selected converter (`selected_<t>`) and
    its held-out fidelity (`<split>_<metric>_<t>`), plus how many converters were trained."""
    out: dict = {"converters_trained": int(len(fidelity))}
    for teacher, run in selected.items():
        row = fidelity[(fidelity["teacher"] == teacher) & (fidelity["kind"] == run.kind) & (fidelity["loss"] == run.loss)]
        out[f"selected_{teacher}"] = run.label
        for metric in FIDELITY_METRICS:
            out[f"{split}_{metric}_{teacher}"] = float(row[metric].iloc[0])
    return out


def find_converter_set(path: str | Path | None, converters_run_dir: Path) -> Path:
    """The converter set to read: `path` when given, else `<02 run dir>/converters`."""
    folder = Path(path) if path is not None else Path(converters_run_dir) / "converters"
    if not (folder / "converters.json").is_file():
        hint = "run 02_train_converters for this preset" if path is None else "point it at a converter set folder"
        raise PolySpaceError(f"{folder}: no converters.json (a converter set); {hint}")
    return folder


def save_selected(directory: str | Path, grid: ConverterGrid, selected: dict[str, ConverterRun]) -> Path:
    """Write the selected converter of each teacher as a converter set (converters.json + folders)."""
    return save_converter_set(directory, grid.student, {t: r.converter for t, r in selected.items()},
                              {t: r.history for t, r in selected.items()},
                              info={"selected_on": grid.val_split})


# ---------------------------------------------------------------------------------------------
# 03: alignment of spaces


@dataclass
class AlignmentSpaces:
    """Clip-level features (N, D) of one split: the student, each teacher, each converted space.
    Token-level teacher and converted features are kept for per-token cosine."""
    split: str
    student: str
    teachers: list[str]
    clip: dict[str, np.ndarray]
    tokens: dict[str, np.ndarray]

    @staticmethod
    def student_key(name: str) -> str:
        return f"student:{name}"

    @staticmethod
    def teacher_key(name: str) -> str:
        return f"teacher:{name}"

    @staticmethod
    def converted_key(name: str) -> str:
        return f"converted:{name}"


def load_spaces(features: str | Path, converters_dir: str | Path, split: str = "test",
                teachers: Sequence[str] | None = None) -> AlignmentSpaces:
    """Read student and teacher features of `split` and convert the student with each teacher's
    converter from a converter set (as written by notebook 02 or train-converter)."""
    root = Path(features)
    student_in_set, converters = load_converter_set(converters_dir, teachers=teachers)
    student, _ = _store_roles(root, split, list(converters))
    if student_in_set != student:
        raise PolySpaceError(f"{converters_dir}: converters were trained from student {student_in_set!r} but the "
                             f"store {root / split} has student {student!r}; retrain them on this store")
    clip: dict[str, np.ndarray] = {}
    tokens: dict[str, np.ndarray] = {}
    for teacher, converter in converters.items():
        x, y = pairs_from_store(root / split, student, teacher)
        converted = predict(converter, x)
        if converted.shape != y.shape:
            raise PolySpaceError(f"{converters_dir}: the {teacher!r} converter outputs {tuple(converted.shape[1:])} "
                                 f"but the store's {teacher!r} features are {tuple(y.shape[1:])}; retrain it")
        clip.setdefault(AlignmentSpaces.student_key(student), x.mean(1).numpy())
        clip[AlignmentSpaces.teacher_key(teacher)] = y.mean(1).numpy()
        clip[AlignmentSpaces.converted_key(teacher)] = converted.mean(1).numpy()
        tokens[AlignmentSpaces.teacher_key(teacher)] = y.numpy()
        tokens[AlignmentSpaces.converted_key(teacher)] = converted.numpy()
    # order: student, teachers, converted — the heatmap reads in blocks
    order = [AlignmentSpaces.student_key(student)] + [AlignmentSpaces.teacher_key(t) for t in converters] \
        + [AlignmentSpaces.converted_key(t) for t in converters]
    return AlignmentSpaces(split, student, list(converters), {k: clip[k] for k in order}, tokens)


def alignment_table(spaces: AlignmentSpaces, metrics: Sequence[str] = ("linear_cka",), knn_k: int = 10):
    """Per teacher: each similarity metric (linear CKA always) for student->teacher and
    converted->teacher, plus the converted space's per-token cosine and clip retrieval top-1
    against the teacher."""
    import pandas as pd

    unknown = [m for m in metrics if m not in SIMILARITY_METRICS]
    if unknown:
        raise PolySpaceError(f"alignment metric {unknown[0]!r} is unknown; use {', '.join(SIMILARITY_METRICS)}")
    metrics = list(dict.fromkeys(["linear_cka", *metrics]))  # linear CKA always: metrics.json reports it
    s = spaces.clip[spaces.student_key(spaces.student)]
    rows = []
    for t in spaces.teachers:
        teacher, converted = spaces.clip[spaces.teacher_key(t)], spaces.clip[spaces.converted_key(t)]
        row = {"teacher": t}
        for m in metrics:
            fn = SIMILARITY_METRICS[m]
            kwargs = {"k": min(knn_k, len(s) - 1)} if m == "mutual_knn" else {}
            row[f"{m}_student_teacher"] = fn(s, teacher, **kwargs)
            row[f"{m}_converted_teacher"] = fn(converted, teacher, **kwargs)
        row["cosine"] = mean_cosine(spaces.tokens[spaces.converted_key(t)], spaces.tokens[spaces.teacher_key(t)])
        row["retrieval_top1"] = retrieval_top1(converted, teacher)
        rows.append(row)
    return pd.DataFrame(rows)


def alignment_metrics(table) -> dict[str, float]:
    """The alignment table as flat metrics.json keys: `cka_student_teacher_<teacher>`,
    `cka_converted_teacher_<teacher>` (linear CKA), `cosine_<teacher>`, `retrieval_top1_<teacher>`,
    and every other metric column as `<column>_<teacher>`."""
    out: dict[str, float] = {}
    for _, row in table.iterrows():
        t = row["teacher"]
        for col, value in row.items():
            if col == "teacher":
                continue
            key = col.replace("linear_cka_", "cka_", 1) if col.startswith("linear_cka_") else col
            out[f"{key}_{t}"] = float(value)
    return out

