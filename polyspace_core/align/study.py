"""What notebooks 02 (train converters) and 03 (alignment) call, one function per cell.

    features = feature_store(ws)                         # 01's store (or the stage's features parameter)
    grid = converter_grid(ws, features)                  # 02: every (teacher, kind, loss) on the train split
    selected = selection(ws, grid)                       # one converter per teacher, chosen ON VALIDATION
    fidelity = held_out_fidelity(ws, grid, selected)     # every run on ws.p.converter_eval_split
    seeds = selected_over_seeds(ws, grid, selected)      # the selected ones retrained per seed of `seeds`
    save_selection(ws, grid, selected)                   # the converter set 03-05 read
    ws.write_metrics(stage_metrics(ws, fidelity, selected, seeds))

    converters = converter_set(ws)                       # 03: 02's converter set
    spaces = alignment_spaces(ws, features, converters)  # student, teacher, converted clip features
    table = alignment(ws, spaces)                        # student->teacher vs converted->teacher
    layers = layers(ws, features, spaces)                # hidden states for layer-wise CKA, or None
    ws.write_metrics(stage_metrics(ws, table))

The entry points read their settings from the workspace (`ws.p`, `ws.stage_run_dir`, `ws.device`,
`ws.seed`); below them, the experiment logic takes explicit arguments (what the tests call):
`train_converter_grid`, `select_converters`, `fidelity_table`, `save_selected`, `load_spaces`,
`alignment_table`, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import PolySpaceError
from ..measure import count_parameters
from ..scalar_log import LOG_FOLDER
from ..seeding import training_seeds
from ..stats import Claim, Interval
from .converters import CLOSED_FORM_KINDS, Converter, ConverterConfig
from .layerwise import layer_features
from .losses import format_loss_weights, parse_loss_weights
from .metrics import SIMILARITY_METRICS, linear_cka_gain, mean_cosine, retrieval_top1
from .train import (
    ConverterFit,
    converter_folder,
    evaluate_converter,
    load_converter_set,
    pairs_from_store,
    predict,
    save_converter_set,
    train_converter,
)

FIDELITY_METRICS = ("cosine", "r2", "cka", "mutual_knn", "retrieval_top1")
CLOSED_FORM_LOSS = "closed form"
CONVERTERS_DIR = "converters"  # the converter set 02 writes under its run dir

# the stages this folder serves, and the prefix of their parameters
STAGE_PREFIX = {"02_train_converters": "converter_", "03_alignment": "alignment_"}


def _param(ws, name: str) -> Any:
    """The stage's own parameter `name` (converter_<name> in 02, alignment_<name> in 03)."""
    if ws.stage not in STAGE_PREFIX:
        raise PolySpaceError(f"align study: stage {ws.stage} is not {' or '.join(STAGE_PREFIX)}")
    return getattr(ws.p, STAGE_PREFIX[ws.stage] + name)


# ---------------------------------------------------------------------------------------------
# the notebook's calls (02 and 03)


def feature_store(ws) -> Path:
    """The feature-store root this stage reads: its features parameter (converter_features in 02,
    alignment_features in 03) when set, else the one store 01_featurize wrote for this preset."""
    return find_feature_store(_param(ws, "features"), ws.stage_run_dir("01_featurize"))


def converter_grid(ws, features: Path) -> ConverterGrid:
    """02: train every (teacher, kind, loss) of ws.p.converter_* on the store's train split,
    selecting each run's epoch and measuring its fidelity on the validation split. Curves:
    <run dir>/tensorboard/<teacher>/<kind>-<loss>."""
    p = ws.p
    return train_converter_grid(features, kinds=p.converter_kinds, losses=p.converter_losses,
                                teachers=p.converter_teachers or None, epochs=p.converter_epochs,
                                batch=p.converter_batch, lr=p.converter_lr, hidden=p.converter_hidden,
                                depth=p.converter_depth, seed=training_seeds(p.seeds, ws.seed)[0], device=ws.device,
                                log_dir=ws.run_dir / LOG_FOLDER)


def selection(ws, grid: ConverterGrid) -> dict[str, ConverterRun]:
    """02: per teacher, the run with the best validation ws.p.converter_select_on."""
    return select_converters(grid, ws.p.converter_select_on)


def held_out_fidelity(ws, grid: ConverterGrid, selected: dict[str, ConverterRun]):
    """02: fidelity of every run on ws.p.converter_eval_split, marking the selected ones (a DataFrame)."""
    return fidelity_table(grid, ws.p.converter_eval_split, selected)


def selected_over_seeds(ws, grid: ConverterGrid, selected: dict[str, ConverterRun]):
    """02: each teacher's selected converter retrained under every other seed of `seeds` (the grid
    ran under the first), its fidelity on ws.p.converter_eval_split per seed (a DataFrame)."""
    return seed_fidelity(grid, selected, training_seeds(ws.p.seeds, ws.seed), ws.p.converter_eval_split)


def save_selection(ws, grid: ConverterGrid, selected: dict[str, ConverterRun]) -> Path:
    """02: write the selected converters as the converter set `<run dir>/converters` (what 03-05 read)."""
    return save_selected(ws.run_dir / CONVERTERS_DIR, grid, selected)


def converter_set(ws) -> Path:
    """03: the converter set to read: ws.p.alignment_converters when set, else the one 02 saved."""
    return find_converter_set(ws.p.alignment_converters, ws.stage_run_dir("02_train_converters"))


def alignment_spaces(ws, features: Path, converters: Path) -> AlignmentSpaces:
    """03: student, teacher and converted features on the first of ws.p.alignment_splits."""
    return load_spaces(features, converters, ws.p.alignment_splits[0])


def alignment(ws, spaces: AlignmentSpaces):
    """03: the alignment table (linear CKA and ws.p.alignment_metrics, student->teacher and
    converted->teacher, per-token cosine, retrieval top-1) of `spaces` (a DataFrame)."""
    return alignment_table(spaces, ws.p.alignment_metrics)


def layers(ws, features: Path, spaces: AlignmentSpaces) -> dict[str, list[np.ndarray]] | None:
    """03: per model (the student, then each teacher), the hidden states of every layer on the
    first ws.p.alignment_layer_clips videos of the spaces' split; None when ws.p.alignment_layerwise is off."""
    if not ws.p.alignment_layerwise:
        return None
    return layer_features(features / spaces.split, [spaces.student, *spaces.teachers], ws.p.alignment_layer_clips,
                          device=ws.device)


def stage_metrics(ws, result, selected: dict[str, ConverterRun] | None = None, seeds=None) -> dict[str, Any]:
    """metrics.json of the stage `ws.stage` is.

    02_train_converters: `result` is the held-out fidelity table and `selected` the selection:
    per teacher the selected converter (`selected_<t>`) and its fidelity
    (`<converter_eval_split>_<metric>_<t>`), plus how many converters were trained; with `seeds`
    (selected_over_seeds' table) each of those figures' std over seeds (`..._seed_std`).
    03_alignment: `result` is the alignment table: `cka_student_teacher_<t>`,
    `cka_converted_teacher_<t>` (linear CKA), `cosine_<t>`, `retrieval_top1_<t>` and every other
    metric column as `<column>_<t>`."""
    if ws.stage == "02_train_converters":
        if selected is None:
            raise PolySpaceError("stage_metrics of 02_train_converters: pass the selection, "
                                 "stage_metrics(ws, fidelity, selected)")
        out = _converter_metrics(result, selected, ws.p.converter_eval_split)
        if seeds is not None and seeds["seed"].nunique() > 1:
            out["seeds"] = sorted(int(s) for s in seeds["seed"].unique())
            for teacher, group in seeds.groupby("teacher"):
                for metric in FIDELITY_METRICS:
                    out[f"{ws.p.converter_eval_split}_{metric}_{teacher}_seed_std"] = float(group[metric].std(ddof=1))
        return out
    if ws.stage == "03_alignment":
        return _alignment_metrics(result)
    raise PolySpaceError(f"align stage_metrics: stage {ws.stage} is not 02_train_converters or 03_alignment")


# ---------------------------------------------------------------------------------------------
# inputs


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
    """One trained converter: which teacher, kind and loss, and its fit (the converter, its
    per-epoch history, best epoch, seconds and validation fidelity)."""
    teacher: str
    kind: str
    loss: str
    fit: ConverterFit

    @property
    def converter(self) -> Converter:
        return self.fit.converter

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.fit.history

    @property
    def validation(self) -> dict[str, float]:
        """Fidelity on the grid's validation split (`evaluate_converter`)."""
        return self.fit.validation_fidelity

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
    settings: dict[str, Any] = field(default_factory=dict)  # epochs, batch, lr, hidden, depth, seed, device

    def table(self):
        """One row per run: teacher, kind, loss, best epoch, seconds, parameters, validation fidelity."""
        import pandas as pd

        rows = []
        for r in self.runs:
            rows.append({"teacher": r.teacher, "kind": r.kind, "loss": r.loss,
                         "best_epoch": r.fit.best_epoch, "epochs": len(r.history),
                         "params": count_parameters(r.converter, include_buffers=True),
                         "seconds": round(r.fit.seconds, 2), **{f"val_{k}": v for k, v in r.validation.items()}})
        return pd.DataFrame(rows)


def train_converter_grid(features: str | Path, kinds: Sequence[str], losses: Sequence[str],
                         teachers: Sequence[str] | None = None, epochs: int = 10, batch: int = 128,
                         lr: float = 1e-3, hidden: int = 256, depth: int = 2, seed: int = 0,
                         device: str | torch.device = "cpu", train_split: str = "train",
                         val_split: str = "validation", log_dir: str | Path | None = None) -> ConverterGrid:
    """Train each (teacher, kind, loss) on `train_split` and measure fidelity on `val_split`.
    log_dir: each run's TensorBoard curves go to <log_dir>/<teacher>/<kind>-<loss>.

    Closed-form kinds (procrustes, ridge) do not use a loss; they are fitted once per teacher and
    listed with loss "closed form". Each run selects its epoch on the validation split.
    """
    root = Path(features)
    student, teachers = _store_roles(root, train_split, teachers)
    from ..features.store import FeatureStore

    kinds = [ConverterConfig(k, 1, 1).kind for k in kinds]  # validates names, resolves A/B/C
    store = FeatureStore.open(root / train_split)
    token_grids = {name: store.grid(name) for name in (student, *teachers)}  # (T, H, W) each side resamples over
    loss_labels = [format_loss_weights(parse_loss_weights(s)) for s in losses]
    if not kinds or (not loss_labels and any(k not in CLOSED_FORM_KINDS for k in kinds)):
        raise PolySpaceError("converter grid: give at least one kind, and a loss for learned kinds")
    grid = ConverterGrid(root, student, teachers, train_split, val_split,
                         settings=dict(epochs=epochs, batch=batch, lr=lr, hidden=hidden, depth=depth, seed=seed,
                                       device=device))
    plan = [(t, k, CLOSED_FORM_LOSS if k in CLOSED_FORM_KINDS else loss)
            for t in teachers for k in dict.fromkeys(kinds)
            for loss in ([CLOSED_FORM_LOSS] if k in CLOSED_FORM_KINDS else dict.fromkeys(loss_labels))]
    pairs: dict[str, tuple] = {}
    for teacher, kind, loss in tqdm(plan, desc="converters"):
        if teacher not in pairs:
            pairs = {teacher: (pairs_from_store(root / train_split, student, teacher),
                               pairs_from_store(root / val_split, student, teacher))}
        train, val = pairs[teacher]
        (_, t_in, d_in), (_, t_out, d_out) = train[0].shape, train[1].shape
        config = ConverterConfig(kind, d_in, d_out, t_in, t_out, hidden=hidden, depth=depth,
                                 grid_in=list(token_grids[student]), grid_out=list(token_grids[teacher]))
        fit = train_converter(train, val, config, "l2" if loss == CLOSED_FORM_LOSS else loss, epochs=epochs,
                              batch=batch, lr=lr, seed=seed, device=device, progress=False,
                              log_dir=None if log_dir is None else
                              Path(log_dir) / converter_folder(teacher) / f"{kind}-{loss.replace(' ', '_')}")
        fit.converter.cpu()
        fit.validation_fidelity = evaluate_converter(fit.converter, *val)
        grid.runs.append(ConverterRun(teacher, kind, loss, fit))
    return grid


def seed_fidelity(grid: ConverterGrid, selected: dict[str, ConverterRun], seeds: Sequence[int],
                  split: str = "test"):
    """Each teacher's selected converter under every seed: the grid's run for the grid's seed,
    retrained with the grid's settings for the others (closed-form kinds have no randomness and
    are not refitted: every seed gets the same fit). One row per (teacher, seed) with the fidelity
    on `split` (seed_spread_table: mean and std over seeds)."""
    import pandas as pd

    cfg = grid.settings
    rows = []
    for teacher, run in selected.items():
        train = pairs_from_store(grid.features / grid.train_split, grid.student, teacher)
        val = pairs_from_store(grid.features / grid.val_split, grid.student, teacher)
        held_out = pairs_from_store(grid.features / split, grid.student, teacher)
        for seed in seeds:
            converter = run.converter
            if seed != cfg["seed"] and run.kind not in CLOSED_FORM_KINDS:
                fit = train_converter(train, val, run.converter.config, run.loss, epochs=cfg["epochs"],
                                      batch=cfg["batch"], lr=cfg["lr"], seed=seed, device=cfg["device"],
                                      progress=False)
                converter = fit.converter.cpu()
            rows.append({"teacher": teacher, "converter": run.label, "seed": seed,
                         **evaluate_converter(converter, *held_out)})
    table = pd.DataFrame(rows)
    return table


def seed_spread_table(table):
    """seed_fidelity's table as per-teacher mean and std over seeds of each fidelity metric."""
    return table.groupby(["teacher", "converter"])[list(FIDELITY_METRICS)].agg(["mean", "std"])


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


def _converter_metrics(fidelity, selected: dict[str, ConverterRun], split: str) -> dict[str, Any]:
    """02's metrics: per teacher the selected converter (`selected_<t>`) and its held-out fidelity
    (`<split>_<metric>_<t>`), plus how many converters were trained."""
    out: dict = {"converters_trained": int(len(fidelity))}
    for teacher, run in selected.items():
        row = fidelity[(fidelity["teacher"] == teacher) & (fidelity["kind"] == run.kind)
                       & (fidelity["loss"] == run.loss)]
        out[f"selected_{teacher}"] = run.label
        for metric in FIDELITY_METRICS:
            out[f"{split}_{metric}_{teacher}"] = float(row[metric].iloc[0])
    return out


def find_converter_set(path: str | Path | None, converters_run_dir: Path) -> Path:
    """The converter set to read: `path` when given, else `<02 run dir>/converters`."""
    folder = Path(path) if path is not None else Path(converters_run_dir) / CONVERTERS_DIR
    if not (folder / "converters.json").is_file():
        hint = "run 02_train_converters for this preset" if path is None else "point it at a converter set folder"
        raise PolySpaceError(f"{folder}: no converters.json (a converter set); {hint}")
    return folder


def save_selected(directory: str | Path, grid: ConverterGrid, selected: dict[str, ConverterRun]) -> Path:
    """Write the selected converter of each teacher as a converter set (converters.json + folders)."""
    return save_converter_set(directory, grid.student, {t: r.converter for t, r in selected.items()},
                              {t: r.fit.record() for t, r in selected.items()},
                              info={"selected_on": grid.val_split,
                                    # the store they were trained on: video mode reads its precision there
                                    "train_args": {"features": str(Path(grid.features).resolve())}})


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
        # the alignment analysis keeps this split's tokens (AlignmentSpaces.tokens): read them in
        x, y = x[:], y[:]
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
    converted->teacher, the CKA gain (converted - student) with its 95% paired bootstrap interval
    over clips (cka_gain_low/high; with 3 clips or more), plus the converted space's per-token
    cosine and clip retrieval top-1 against the teacher."""
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
        if len(s) >= 3:
            gain = linear_cka_gain(s, converted, teacher)
            row.update(cka_gain=gain.value, cka_gain_low=gain.low, cka_gain_high=gain.high)
        row["cosine"] = mean_cosine(spaces.tokens[spaces.converted_key(t)], spaces.tokens[spaces.teacher_key(t)])
        row["retrieval_top1"] = retrieval_top1(converted, teacher)
        rows.append(row)
    return pd.DataFrame(rows)


def _alignment_metrics(table) -> dict[str, float]:
    """03's metrics: the alignment table as flat keys: `cka_student_teacher_<teacher>`,
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
    out["claims"] = [c.as_dict() for c in alignment_claims(table)]
    return out


def alignment_claims(table) -> list[Claim]:
    """Per teacher: "the converter brings the student closer to the teacher" (linear CKA of
    converted vs student features with the teacher, on the same clips); holds when the paired
    interval of the gain lies above 0. None without intervals (fewer than 3 clips)."""
    if "cka_gain_low" not in table.columns:
        return []
    return [Claim.difference(f"converter_raises_cka_{row['teacher']}",
                             f"the {row['teacher']} converter raises linear CKA with the teacher",
                             Interval(row["cka_gain"], row["cka_gain_low"], row["cka_gain_high"], 0))
            for _, row in table.iterrows()]

