"""Train a converter on paired (student, teacher) features, select on validation, save and load.

    fit = train_converter((xs, ys), (xs_val, ys_val), config, "l2+cos", epochs=10)
    fit.history      # [{"epoch": 1, "train_loss": ..., "val_loss": ..., "val_r2": ...}, ...], one dict per epoch
    fit.best_epoch, fit.seconds
    save_converter("runs/.../converters/videomae", fit.converter, config, fit.record())
    converter = load_converter("runs/.../converters/videomae")

Learned kinds train with AdamW in a plain loop; after every epoch the validation loss is measured
and the weights of the best epoch are kept (the test split is never looked at here). Closed-form
kinds (procrustes, ridge) are fitted once on the training split. A checkpoint is a folder:
`converter.safetensors` (weights and fitted buffers), `config.json` (ConverterConfig + names),
`history.json` (the run's record, `ConverterFit.record()`: best epoch, seconds, settings, and the
per-epoch history under "epochs"), all written atomically.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoints import folder_for_original_file, load_state_dict_strict
from ..errors import PolySpaceError
from ..io import atomic_write_json, load_safetensors, read_json, save_safetensors_atomic, verify_recorded
from ..scalar_log import ScalarLog
from ..seeding import best_device, seed_everything
from .converters import Converter, ConverterConfig, LearnedConverter, build_converter, pair_moments, token_statistics
from .losses import AlignmentLoss, format_loss_weights
from .metrics import TokenFidelity, linear_cka, mutual_knn, retrieval_top1

Pairs = tuple[torch.Tensor, torch.Tensor]
CHECKPOINT_FORMAT = "polyspace-converter/1"
SET_FORMAT = "polyspace-converter-set/1"


def _check_pairs(pairs: Pairs, config: ConverterConfig, split: str) -> Pairs:
    """Check (N, T_s, D_s) / (N, T_t, D_t) against the config. Tensors are cast to float32; a
    store's FeatureViews (`pairs_from_store`) stay lazy and give float32 rows when indexed."""
    from ..features.store import FeatureView

    if not isinstance(pairs, (tuple, list)) or len(pairs) != 2:
        raise PolySpaceError(f"{split} pairs must be a (student, teacher) tuple of tensors")
    x, y = (a if isinstance(a, FeatureView) else torch.as_tensor(a).float() for a in pairs)
    want_x, want_y = (config.t_in, config.d_in), (config.t_out, config.d_out)
    if x.ndim != 3 or tuple(x.shape[1:]) != want_x:
        raise PolySpaceError(f"{split} student features have shape {tuple(x.shape)}, the converter expects "
                             f"(N, {want_x[0]}, {want_x[1]}); set t_in/d_in to match the feature store")
    if y.ndim != 3 or tuple(y.shape[1:]) != want_y:
        raise PolySpaceError(f"{split} teacher features have shape {tuple(y.shape)}, the converter expects "
                             f"(N, {want_y[0]}, {want_y[1]}); set t_out/d_out to match the feature store")
    if x.shape[0] != y.shape[0]:
        raise PolySpaceError(f"{split}: {x.shape[0]} student samples but {y.shape[0]} teacher samples")
    if x.shape[0] < 2:
        raise PolySpaceError(f"{split} split has {x.shape[0]} samples; at least 2 are needed")
    return x, y


def _float_rows(a: torch.Tensor | Any, idx: torch.Tensor) -> torch.Tensor:
    """Rows `idx` of a tensor or a FeatureView as float32 (a view reads only these rows)."""
    return a[idx].float()


def _pass(pairs: Pairs, batch: int) -> Any:
    """(student, teacher) float32 batches over a split once, in order: what statistics need."""
    x, y = pairs
    for idx in _batches(x.shape[0], batch):
        yield _float_rows(x, idx), _float_rows(y, idx)


def _batches(n: int, batch: int, order: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Index batches over n samples; a last batch of one sample joins the previous one, because
    the batch-statistics losses (nce, vic, bar) need at least two samples."""
    order = torch.arange(n) if order is None else order
    starts = list(range(0, n, batch))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    return [order[s:(starts[i + 1] if i + 1 < len(starts) else n)] for i, s in enumerate(starts)]


@torch.no_grad()
def predict(converter: Converter, student: torch.Tensor, batch: int = 256,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Converted features (N, T_t, D_t), float32 on CPU, in eval mode. `student`: a tensor or a
    store's FeatureView (read a batch at a time)."""
    device = next(iter(converter.state_dict().values())).device if device is None else torch.device(device)
    was_training = converter.training
    converter.eval()
    if isinstance(student, (torch.Tensor, np.ndarray)):
        student = torch.as_tensor(student).float()
    out = [converter(_float_rows(student, idx).to(device)).float().cpu()
           for idx in _batches(student.shape[0], batch)]
    converter.train(was_training)
    return torch.cat(out)


def _loss_units(converter: Converter, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(prediction, target) in the units the loss compares: learned kinds' standardised teacher
    units (see LearnedConverter), raw features for the closed forms."""
    if isinstance(converter, LearnedConverter):
        return converter.to_unit(pred), converter.to_unit(target)
    return pred, target


@torch.no_grad()
def _validate(converter: Converter, pairs: Pairs, loss_fn: AlignmentLoss, batch: int,
              device: torch.device) -> dict[str, float]:
    """Validation loss (same batching as training, fixed order) plus cosine and R² of all tokens,
    a batch at a time (the split's predictions are never held together)."""
    x, y = pairs
    converter.eval()
    total, n = 0.0, 0
    fidelity = TokenFidelity()
    for idx in _batches(x.shape[0], batch):
        target = _float_rows(y, idx)
        pred = converter(_float_rows(x, idx).to(device))
        loss, _ = loss_fn(*_loss_units(converter, pred, target.to(device)))
        total += float(loss) * len(idx)
        n += len(idx)
        fidelity.add(pred.float().cpu(), target)
    return {"loss": total / n, **fidelity.result()}


@dataclass
class ConverterFit:
    """What `train_converter` returns.

    converter: the best validation epoch's weights (the fitted map for closed-form kinds), eval
        mode, on the training device.
    history: one JSON-ready dict per epoch, in order: `epoch`, `train_loss`, `train_<term>` for each
        weighted loss term (learned kinds), `val_loss`, `val_cosine`, `val_r2`. A closed-form fit
        has one row (its training-split loss and the validation figures).
    The rest describes the run as a whole: the selected epoch and its validation loss, wall time,
    the validation loss / cosine / R² of the untrained converter (learned kinds; None for closed
    forms), the settings, and the validation fidelity (`evaluate_converter`) where a caller
    measured it."""

    converter: Converter
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_loss: float
    seconds: float
    initial_val: dict[str, float] | None
    settings: dict[str, Any]
    validation_fidelity: dict[str, float] | None = None

    def record(self) -> dict[str, Any]:
        """JSON-ready: the run-level fields and, under "epochs", the history (what history.json holds)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("converter", "history")}
        return {**out, "epochs": self.history}


def train_converter(train_pairs: Pairs, val_pairs: Pairs, config: ConverterConfig,
                    loss_weights: str | Sequence[float] | Mapping[str, float] = "l2",
                    epochs: int = 10, batch: int = 128, lr: float = 1e-3, seed: int = 0,
                    device: str | torch.device = "cpu", weight_decay: float = 1e-4,
                    temperature: float = 0.07, progress: bool = True,
                    log_dir: str | Path | None = None) -> ConverterFit:
    """Train (or fit, for closed-form kinds) one converter student -> teacher.

    train_pairs / val_pairs: (student (N, T_s, D_s), teacher (N, T_t, D_t)) tensors of any float
    dtype, or a store's FeatureViews (`pairs_from_store`): then every pass reads the split a batch
    at a time, and the closed forms and the standardisation are fitted from float64 sums over
    batches, never from a float64 copy of the split.
    Returns a ConverterFit: the converter holding the best validation epoch's weights (eval mode,
    on `device`), its per-epoch history and the run's best epoch, best validation loss, seconds.
    log_dir: TensorBoard event files of this run go there (every history column, per epoch).
    """
    if isinstance(config, dict):
        config = ConverterConfig.from_dict(config)
    for name, value, ok in (("epochs", epochs, isinstance(epochs, int) and epochs >= 1),
                            ("batch", batch, isinstance(batch, int) and batch >= 2),
                            ("lr", lr, isinstance(lr, (int, float)) and 0 < lr < math.inf)):
        if not ok:
            raise PolySpaceError(f"train_converter {name}={value!r} is invalid; epochs >= 1, batch >= 2, lr > 0")
    train_pairs = _check_pairs(train_pairs, config, "train")
    val_pairs = _check_pairs(val_pairs, config, "validation")
    seed_everything(seed)
    device = best_device(device) if isinstance(device, str) else torch.device(device)
    converter = build_converter(config).to(device)
    loss_fn = AlignmentLoss(loss_weights, temperature)
    settings = {"kind": config.kind, "loss_weights": format_loss_weights(loss_fn.weights), "seed": seed,
                "epochs": epochs, "batch": batch, "lr": lr, "n_train": int(train_pairs[0].shape[0]),
                "n_val": int(val_pairs[0].shape[0])}
    started = time.perf_counter()

    if converter.closed_form:
        # the closed form is the optimum of its own objective; there is nothing to iterate
        converter.fit_moments(pair_moments(_pass(train_pairs, max(batch, 256)), converter))
        fit_train = _validate(converter, train_pairs, loss_fn, batch, device)
        val = _validate(converter, val_pairs, loss_fn, batch, device)
        history = [{"epoch": 1, "train_loss": fit_train["loss"], "val_loss": val["loss"],
                    "val_cosine": val["cosine"], "val_r2": val["r2"]}]
        with ScalarLog(log_dir, first_step=1) as log:
            log.add(1, history[0])
        return ConverterFit(converter.eval(), history, best_epoch=1, best_val_loss=val["loss"],
                            seconds=time.perf_counter() - started, initial_val=None, settings=settings)

    converter.set_statistics_from(*token_statistics(_pass(train_pairs, max(batch, 256))))
    initial = _validate(converter, val_pairs, loss_fn, batch, device)
    terms = [k for k, w in loss_fn.weights.items() if w > 0]
    optimizer = torch.optim.AdamW(converter.parameters(), lr=lr, weight_decay=weight_decay)
    shuffle = torch.Generator().manual_seed(seed)
    x_train, y_train = train_pairs
    history: list[dict[str, Any]] = []
    best_loss, best_state, best_epoch = math.inf, None, 0
    log = ScalarLog(log_dir, first_step=0)  # a converter restarts from scratch: its old curve goes
    log.add(0, {f"val_{k}": v for k, v in initial.items()})  # the untrained converter, for scale
    for epoch in range(1, epochs + 1):
        converter.train()
        sums: dict[str, float] = {"loss": 0.0}
        seen = 0
        order = torch.randperm(x_train.shape[0], generator=shuffle)
        for idx in tqdm(_batches(x_train.shape[0], batch, order), desc=f"{config.kind} epoch {epoch}/{epochs}",
                        leave=False, disable=not progress):
            target = _float_rows(y_train, idx).to(device, non_blocking=True)
            pred = converter(_float_rows(x_train, idx).to(device, non_blocking=True))
            loss, parts = loss_fn(*_loss_units(converter, pred, target))
            if not torch.isfinite(loss):
                raise PolySpaceError(f"{config.kind} converter: training loss became {float(loss)} at epoch {epoch}; "
                                     f"lower lr (now {lr}) or check the features for extreme values")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums["loss"] += float(loss.detach()) * len(idx)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            seen += len(idx)
        val = _validate(converter, val_pairs, loss_fn, batch, device)
        history.append({"epoch": epoch, "train_loss": sums["loss"] / seen,
                        **{f"train_{k}": sums[k] / seen for k in terms},
                        "val_loss": val["loss"], "val_cosine": val["cosine"], "val_r2": val["r2"]})
        log.add(epoch, {**history[-1], "lr": optimizer.param_groups[0]["lr"]})
        if val["loss"] < best_loss:
            best_loss, best_epoch = val["loss"], epoch
            best_state = copy.deepcopy(converter.state_dict())
    log.close()
    if best_state is None:  # every validation loss was NaN
        raise PolySpaceError(f"{config.kind} converter: validation loss was never finite; "
                             f"check the validation features")
    converter.load_state_dict(best_state)
    return ConverterFit(converter.eval(), history, best_epoch=best_epoch, best_val_loss=best_loss,
                        seconds=time.perf_counter() - started, initial_val=initial, settings=settings)


def evaluate_converter(converter: Converter, student: torch.Tensor, teacher: torch.Tensor,
                       batch: int = 256, knn_k: int = 10) -> dict[str, float]:
    """Held-out fidelity of converted student features against the teacher's.

    cosine and R² compare every token (accumulated a batch at a time); CKA, mutual kNN and
    retrieval top-1 compare clip vectors (mean over tokens), the unit the fusion head and
    downstream tasks consume. student/teacher: tensors or a store's FeatureViews.
    """
    if isinstance(teacher, (torch.Tensor, np.ndarray)):
        teacher = torch.as_tensor(teacher).float()
    if isinstance(student, (torch.Tensor, np.ndarray)):
        student = torch.as_tensor(student).float()
    device = next(iter(converter.state_dict().values())).device
    was_training = converter.training
    converter.eval()
    fidelity, clip_pred, clip_teacher = TokenFidelity(), [], []
    with torch.no_grad():
        for idx in _batches(student.shape[0], batch):
            pred = converter(_float_rows(student, idx).to(device)).float().cpu()
            target = _float_rows(teacher, idx)
            if pred.shape != target.shape:
                raise PolySpaceError(f"converted features {tuple(pred.shape[1:])} do not match teacher features "
                                     f"{tuple(target.shape[1:])}; the converter was trained for another teacher")
            fidelity.add(pred, target)
            clip_pred.append(pred.mean(1))
            clip_teacher.append(target.mean(1))
    converter.train(was_training)
    clip_pred, clip_teacher = torch.cat(clip_pred), torch.cat(clip_teacher)
    n = clip_pred.shape[0]
    return {
        **fidelity.result(),
        "cka": linear_cka(clip_pred, clip_teacher),
        "mutual_knn": mutual_knn(clip_pred, clip_teacher, k=min(knn_k, n - 1)),
        "retrieval_top1": retrieval_top1(clip_pred, clip_teacher),
    }


def pairs_from_store(split_dir: str | Path, student: str, teacher: str) -> Pairs:
    """(student (N, T_s, D_s), teacher (N, T_t, D_t)) features of one feature-store split, as
    lazy FeatureViews over the samples whose extraction succeeded (failed rows are NaN in the
    store): indexing one reads those rows from the memory-mapped shards as float32, so a split
    larger than memory trains and evaluates a batch at a time."""
    from ..features.store import FeatureStore

    store = FeatureStore.open(split_dir)
    ok = store.indices(ok_only=True)
    if len(ok) == 0:
        raise PolySpaceError(f"{split_dir}: no sample was extracted successfully; see the manifest's status")
    store.check_finite(student)
    store.check_finite(teacher)
    return store.view(student, ok, torch.float32), store.view(teacher, ok, torch.float32)


# ---------------------------------------------------------------------------------------------
# checkpoints


def save_converter(directory: str | Path, converter: Converter, config: ConverterConfig | None = None,
                   record: Mapping | None = None, info: Mapping | None = None) -> Path:
    """Write converter.safetensors + config.json (+ history.json) into `directory`, atomically.
    `record` is the run's record (`ConverterFit.record()`), written as history.json; `info` adds
    names to config.json (e.g. {"student": "vjepa2", "teacher": "videomae"})."""
    directory = Path(directory)
    config = converter.config if config is None else config
    if config.to_dict() != converter.config.to_dict():
        raise PolySpaceError(f"save_converter({directory}): the config given differs from the converter's own config")
    state = {k: v.detach().cpu() for k, v in converter.state_dict().items()}
    weights = save_safetensors_atomic(state, directory / "converter.safetensors",
                                      metadata={"format": CHECKPOINT_FORMAT, "kind": config.kind})
    if record is not None:
        atomic_write_json(directory / "history.json", record)
    # config.json last: its presence marks a complete checkpoint
    atomic_write_json(directory / "config.json", {"format": CHECKPOINT_FORMAT, "config": config.to_dict(),
                                                  **dict(info or {}),
                                                  "checksums": {"converter.safetensors": weights}})
    return directory


def load_converter(directory: str | Path, device: str | torch.device = "cpu") -> Converter:
    """Rebuild a converter saved by save_converter, in eval mode. Its config.json (with any names
    saved alongside) is available as `converter.info`."""
    directory = Path(directory)
    meta = read_json(directory / "config.json")
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or "config" not in meta:
        raise PolySpaceError(f"{directory / 'config.json'}: not a converter checkpoint ({CHECKPOINT_FORMAT}); "
                             f"train one with `polyspace train-converter`")
    weights = directory / "converter.safetensors"
    if not weights.is_file():
        raise PolySpaceError(f"{weights}: file not found; the checkpoint is incomplete, train it again")
    converter = build_converter(ConverterConfig.from_dict(meta["config"]))
    verify_recorded(weights, meta.get("checksums"), fix="train the converter again")
    load_state_dict_strict(converter, load_safetensors(weights, fix="train the converter again"), weights)
    converter.info = meta
    return converter.to(device).eval()


def converter_folder(teacher: str) -> str:
    """The sub-folder name of a teacher's converter in a set (hub ids like org/name become org_name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", teacher).strip("._") or "teacher"


def write_converter_index(directory: str | Path, student: str, teachers: Sequence[str], merge: bool = False) -> Path:
    """Write `directory/converters.json` naming the student and each teacher's folder. With
    `merge`, teachers already listed there for the same student (trained by an earlier run) stay."""
    folders = {}
    index_path = Path(directory) / "converters.json"
    if merge and index_path.is_file():
        old = read_json(index_path)
        if old.get("format") == SET_FORMAT and old.get("student") == student:
            folders.update(old.get("teachers", {}))
    folders.update({t: converter_folder(t) for t in teachers})
    if len(set(folders.values())) != len(folders):
        raise PolySpaceError(f"teachers {list(teachers)} map to clashing folder names; rename them")
    return atomic_write_json(index_path, {"format": SET_FORMAT, "student": student, "teachers": folders})


def save_converter_set(directory: str | Path, student: str, converters: Mapping[str, Converter],
                       records: Mapping[str, Mapping | None] | None = None, info: Mapping | None = None) -> Path:
    """One converter per teacher under `directory/<teacher>/`, plus `converters.json` naming the
    student and each teacher's folder (what train-fusion and eval read). `records`: per teacher
    the run's record (`ConverterFit.record()`) written as its history.json."""
    directory = Path(directory)
    write_converter_index(directory, student, list(converters))  # checks the folder names first
    for teacher, converter in converters.items():
        save_converter(directory / converter_folder(teacher), converter, record=(records or {}).get(teacher),
                       info={"student": student, "teacher": teacher, **dict(info or {})})
    return directory


def resolve_converter_set(path: str | Path) -> tuple[Path, str | None]:
    """(converter set folder, a note saying how `path` was read, or None when it is the folder).

    The seeds pass the original's files: `--converters ./checkpoints/converters.pt` (the set in
    ./checkpoints/converters, the original's default --save_dir, or in ./checkpoints) and
    `--converters ./checkpoints/converters/converters_ep10.pt` (the original's file after epoch
    10 of `train_converter --epochs 10 --save_dir ./checkpoints/converters`). Ours is one folder
    per set keeping each teacher's epoch selected on validation, not a file per epoch, so
    `converters_ep<N>.pt` stands for the set in its folder trained with --epochs N — the last
    file such a run wrote, the one the seeds pass — and another N is an error naming the
    epochs the set was trained for."""
    given, path = str(path), Path(path)  # messages quote the path as the user wrote it
    if path.is_dir():
        return path, None
    fix = "train one with `polyspace train-converter --save_dir DIR` and pass DIR"
    folder, epoch = folder_for_original_file(path, lambda p: (p / "converters.json").is_file(), "--converters", fix)
    index = read_json(folder / "converters.json")
    teachers = index.get("teachers", {}) if isinstance(index, dict) else {}
    trained = {t: (read_json(folder / f / "config.json").get("train_args") or {}).get("epochs")
               for t, f in teachers.items() if (folder / f / "config.json").is_file()}
    if epoch is not None and (not trained or set(trained.values()) != {epoch}):
        had = ", ".join(f"{t}: {e if e is not None else 'not recorded'}" for t, e in trained.items()) or "none"
        raise PolySpaceError(f"--converters {given}: names the converters after epoch {epoch}; the set in "
                             f"{folder} "
                             f"was trained for other epochs ({had}) and keeps each teacher's epoch selected on "
                             f"validation, not one file per epoch; pass {folder}")
    return folder, (f"--converters {given}: the converter set in {folder}"
                    + (f" (trained {epoch} epochs; each teacher's epoch selected on validation)" if epoch else ""))


def load_converter_set(directory: str | Path, device: str | torch.device = "cpu",
                       teachers: Sequence[str] | None = None) -> tuple[str, dict[str, Converter]]:
    """(student name, {teacher: converter}) from a folder written by save_converter_set.
    `teachers` picks a subset (in that order); a teacher not in the set is an error."""
    directory = Path(directory)
    index = read_json(directory / "converters.json")
    if not isinstance(index, dict) or index.get("format") != SET_FORMAT:
        raise PolySpaceError(f"{directory / 'converters.json'}: not a converter set ({SET_FORMAT})")
    folders = index["teachers"]
    wanted = list(folders) if teachers is None else list(teachers)
    missing = [t for t in wanted if t not in folders]
    if missing:
        raise PolySpaceError(f"{directory}: no converter for teacher(s) {missing}; it has {sorted(folders)}")
    return index["student"], {t: load_converter(directory / folders[t], device) for t in wanted}
