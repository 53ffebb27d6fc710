"""Training: the fusion head in either mode, and the one loop every classifier here goes through.

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
         features it has in the store. The student runs in the store's precision (one policy,
         `backbones.autocast_dtype_for`: autocast in the store's dtype, features rounded to it),
         read from the store's manifest when `features` is given in video mode too, else from
         the store the converters were trained on (their train_args); float32 where neither is
         found (said on stdout). Converters run in float32 in both modes.

Everything after the batch source is the same code (`fit`, below): the same batches (a function of
seed and epoch), the same loss, optimiser and schedule, selection on the validation split, and the
same checkpoints — `<save_dir>/best/` (fusion.safetensors + fusion.json) and `<save_dir>/last/`
(resume state), plus `<save_dir>/history.json` (the run's summary, and its history under "epochs").
The test split is not touched here (05 reports it once).

    result = fit(model, train_batches, val_batches, TrainSettings(epochs=10, lr=1e-3), source=None)
    result.history      # [{"epoch": 1, "train_loss": ..., "val_top1": ..., ...}, ...], one dict per epoch
    result.best_epoch   # and the other facts about the whole run: best_val_top1, train_samples_per_s, ...

One plain loop: for each epoch, for each batch, `source(batch)` (video mode: the frozen student
turns pixels into token features; cached mode: nothing to do), forward, cross-entropy (+ the
model's aux loss, e.g. gate sparsity), backward, AdamW step with linear warm-up then cosine decay.
After every epoch the validation split is scored and the best epoch (top-1, then loss) is kept —
the test split is never seen here.

Scale-out goes through HF Accelerate: under `accelerate launch` / `torchrun` the model is wrapped
in DDP and each process takes its share of every global batch (`--batch` stays the global batch,
so 1 and N processes take the same optimisation steps); on one process it is a plain loop. On
CUDA the forward runs under autocast (bf16 where supported, else fp16 with loss scaling).

With `save_dir`, the loop checkpoints `last/` after every epoch (weights, optimizer moments, step,
RNG, history, best weights; safetensors + JSON) and resumes from it: the epoch's batch order is a
function of (seed, epoch), so a resumed run takes exactly the steps an uninterrupted one takes.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..checkpoints import optimizer_from_parts, optimizer_to_parts
from ..distributed import make_accelerator
from ..errors import PolySpaceError
from ..features.store import sha256_file
from ..io import atomic_write_json, load_safetensors, read_json, save_safetensors_atomic, verify_recorded
from ..scalar_log import LOG_FOLDER, ScalarLog
from .data import StudentFeatures, VideoBatches, cached_batches, open_split_store, store_precision
from .head import count_trainable
from .metrics import classification_metrics
from .pipeline import FusionPipeline, build_pipeline, load_converters, precompute_converted, save_fusion

# 2: optimizer tensors named as in every checkpoint (checkpoints.py), the history a list of per-epoch dicts;
# a state of format 1 is refused with a one-line error (train into another --save_dir)
STATE_FORMAT = "polyspace-fit-state/2"


@dataclass
class TrainSettings:
    """Optimisation settings. batch is the global batch (split across processes)."""

    epochs: int = 10
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05      # share of all steps spent warming up linearly
    min_lr_frac: float = 0.01      # cosine decays to lr * min_lr_frac
    label_smoothing: float = 0.0
    grad_clip: float = 1.0         # max gradient norm; 0 = off
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
                  ("batch", isinstance(self.batch, int) and self.batch >= 1, "an integer >= 1"),
                  ("lr", isinstance(self.lr, (int, float)) and 0 < self.lr < math.inf, "a number > 0"),
                  ("weight_decay", self.weight_decay >= 0, ">= 0"),
                  ("warmup_frac", 0 <= self.warmup_frac < 1, "in [0, 1)"),
                  ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
                  ("grad_clip", self.grad_clip >= 0, ">= 0"))
        for name, ok, want in checks:
            if not ok:
                raise PolySpaceError(f"training {name}={getattr(self, name)!r}: must be {want}")


@dataclass
class FitResult:
    """What `fit` returns.

    model: the best epoch's weights, unwrapped, in eval mode.
    history: one JSON-ready dict per epoch run, in order: epoch, train_loss, train_top1, val_loss,
        val_top1, val_mean_class_acc, lr, train_seconds (the training pass), epoch_seconds.
    The rest describes the run as a whole: the selected epoch (best validation top-1, then loss) and
    its validation figures, training samples per epoch and per second (training passes only), the
    process count, the settings, and whether every epoch is done (False after `stop_after`)."""

    model: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_top1: float
    best_val_loss: float
    train_samples: int
    train_samples_per_s: float | None
    world_size: int
    settings: dict[str, Any]
    complete: bool

    # fields that are not facts about the run (left out of `record`)
    not_recorded = ("model", "history")

    @classmethod
    def extend(cls, result: FitResult, **more: Any) -> Self:
        """A result of this subclass: the fields of `result` plus the subclass's own (`more`)."""
        return cls(**{f.name: getattr(result, f.name) for f in fields(result)}, **more)

    def record(self) -> dict[str, Any]:
        """JSON-ready: the run-level fields and, under "epochs", the history (what history.json holds)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.not_recorded}
        return {**out, "epochs": self.history}


def lr_at(step: int, total: int, settings: TrainSettings) -> float:
    """Learning rate at optimisation step `step` (0-based) of `total`: linear warm-up, cosine decay."""
    warmup = int(settings.warmup_frac * total)
    if step < warmup:
        return settings.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = settings.lr * settings.min_lr_frac
    return floor + 0.5 * (settings.lr - floor) * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two groups: matrices decay, biases/norm weights/1-d params don't."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise PolySpaceError("training: the model has no trainable parameters")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------
# resumable state: safetensors for tensors, JSON for the rest


def _save_state(directory: Path, model: nn.Module, optimizer, best_state, record: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v.detach().cpu() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt_tensors, opt_info = optimizer_to_parts(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    weights = save_safetensors_atomic(tensors, directory / "state.safetensors", metadata={"format": STATE_FORMAT})
    atomic_write_json(directory / "state.json", {**record, "format": STATE_FORMAT, "optimizer": opt_info,
                                                 "checksums": {"state.safetensors": weights}})


def _read_state(directory: Path) -> dict[str, Any] | None:
    """The record (state.json) of the state saved in `directory`, or None where there is none."""
    meta_path, weights = directory / "state.json", directory / "state.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        return None
    return read_json(meta_path)


def _state_changes(record: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> list[str]:
    """Why a saved state cannot be resumed by this run: another state format (an older version of
    this code, or not a training state), or the fingerprint keys whose values differ."""
    if record.get("format") != STATE_FORMAT:
        return [f"state format {record.get('format')!r}, this version resumes {STATE_FORMAT!r}"]
    saved = record.get("fingerprint", {})
    return sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))


def _strip(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------
# prediction


@torch.no_grad()
def predict(model: nn.Module, batches, source: Callable | None = None, accelerator=None,
            progress: bool = False, desc: str = "predict") -> dict[str, torch.Tensor]:
    """Run `model` over every batch in order (eval mode). Returns CPU tensors: logits (N, C)
    float32, label (N,), index (N,), and gates (N, n_teachers, T) when the model returns them.
    Under several processes each rank scores its share and the results are gathered, in order."""
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, list[torch.Tensor]] = {"logits": [], "label": [], "index": []}
    for batch in tqdm(batches, desc=desc, leave=False, disable=not progress, total=len(batches)):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if source is not None:
            batch = source(batch)
        with (accelerator.autocast() if accelerator is not None else contextlib.nullcontext()):
            result = model(batch)
        out["logits"].append(result["logits"].float())
        out["label"].append(batch["label"])
        out["index"].append(batch["index"])
        if "gates" in result:
            out.setdefault("gates", []).append(result["gates"].float())
    model.train(was_training)
    merged = {k: torch.cat(v) for k, v in out.items()}
    if accelerator is not None and accelerator.num_processes > 1:
        merged = _gather(accelerator, merged)
    return {k: v.cpu() for k, v in merged.items()}


def _gather(accelerator, merged: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gather per-rank predictions; pad rows (index -1) are dropped and rows sorted by index."""
    padded = {k: accelerator.pad_across_processes(v, dim=0, pad_index=-1 if k == "index" else 0)
              for k, v in merged.items()}
    gathered = {k: accelerator.gather(v) for k, v in padded.items()}
    keep = gathered["index"] >= 0
    order = torch.argsort(gathered["index"][keep])
    return {k: v[keep][order] for k, v in gathered.items()}


# ---------------------------------------------------------------------------------------------
# the loop


def fit(model: nn.Module, train_batches, val_batches, settings: TrainSettings, *,
        source: Callable | None = None, accelerator=None, save_dir: str | Path | None = None,
        resume: bool = True, fingerprint: Mapping[str, Any] | None = None,
        on_best: Callable[[nn.Module, dict], None] | None = None, stop_after: int | None = None,
        on_mismatch: str = "error", progress: bool = True, desc: str = "train",
        log_dir: str | Path | None = None) -> FitResult:
    """Train `model` (batch dict -> {"logits", "aux_loss"}) and keep the best validation epoch.

    train_batches / val_batches: TensorBatches or VideoBatches (their rank/world are set here).
    source: video mode's StudentFeatures (pixels -> features), or None. save_dir: checkpoint
    `last/` there after each epoch and resume from it when `resume` (a state saved with another
    `fingerprint` — model config, data, settings — is an error, not a silent restart; with
    on_mismatch="restart" it is announced and the run starts over, as notebooks want). on_best:
    called on the main process with (unwrapped model, summary) whenever validation improves,
    e.g. to export a fusion checkpoint. stop_after: end this run after that epoch (checkpointed;
    the same call resumes it), to cut a long run into jobs. Returns FitResult(best model in eval
    mode, per-epoch history and the run's summary); result.complete says whether all epochs are done.
    log_dir: TensorBoard curves of the run (the history row of each epoch and the mean validation
    gate per teacher, gate/<teacher>); a resumed run continues them from its next epoch.
    """
    acc = accelerator or make_accelerator("auto")
    for b in (train_batches, val_batches):
        b.rank, b.world = acc.process_index, acc.num_processes
    train_batches.batch = val_batches.batch = settings.batch
    train_batches.shuffle, val_batches.shuffle = True, False
    train_batches.seed = settings.seed

    torch.manual_seed(settings.seed)
    model = model.to(acc.device)
    if source is not None:
        source = source.to(acc.device)
    # the fused kernel (CPU and CUDA) does the whole update in one op: the head is small, so
    # per-parameter Python overhead would otherwise dominate a cached-mode step
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=settings.lr,
                                  fused=acc.device.type in ("cpu", "cuda"))
    steps_per_epoch = len(train_batches)
    total_steps = settings.epochs * steps_per_epoch
    fingerprint = {"settings": asdict(settings), "steps_per_epoch": steps_per_epoch,
                   "world_size": acc.num_processes, **dict(fingerprint or {})}
    fingerprint = json.loads(json.dumps(fingerprint, default=str))

    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "top1": -1.0, "loss": math.inf}
    best_state: dict[str, torch.Tensor] = {}
    start_epoch, step = 1, 0
    last_dir = Path(save_dir) / "last" if save_dir is not None else None

    if last_dir is not None and resume:
        record = _read_state(last_dir)
        if record is not None:
            changed = _state_changes(record, fingerprint)
            if changed and on_mismatch != "restart":
                raise PolySpaceError(f"{last_dir}: a run with other settings ({', '.join(changed)}) is checkpointed "
                                     f"here; use another save_dir, or pass resume=False / --no_resume to start over")
            if changed:
                print(f"{desc}: {last_dir} holds a run with other settings ({', '.join(changed)}); starting over")
                record = None
        if record is not None:
            fix = f"start over (delete {last_dir}, or resume=False / --no_resume)"
            verify_recorded(last_dir / "state.safetensors", record.get("checksums"), fix=fix)
            tensors = load_safetensors(last_dir / "state.safetensors", fix=fix)
            model.load_state_dict(_strip(tensors, "model."))
            optimizer.load_state_dict(optimizer_from_parts(tensors, record["optimizer"]))
            best_state = _strip(tensors, "best.")
            torch.set_rng_state(tensors["rng.torch"])
            history, best = record["history"], record["best"]
            start_epoch, step = record["epoch"] + 1, record["step"]

    # Accelerate wraps the model (DDP) and optimizer (loss scaling) only where there is something
    # to do; a single process without mixed precision runs the plain modules
    prepared = acc.num_processes > 1 or acc.mixed_precision != "no"
    wrapped, optimizer = acc.prepare(model, optimizer) if prepared else (model, optimizer)
    trainable = [p for p in model.parameters() if p.requires_grad]

    log = ScalarLog(log_dir if acc.is_main_process else None, first_step=start_epoch)
    gate_names = list(getattr(getattr(model, "config", None), "teachers", None) or [])
    # one bar for the whole run (steps), with the latest validation figures as its postfix
    bar = tqdm(total=total_steps, initial=(start_epoch - 1) * steps_per_epoch, desc=desc, unit="step",
               disable=not progress or not acc.is_main_process)
    for epoch in range(start_epoch, settings.epochs + 1):
        t_epoch = time.perf_counter()
        wrapped.train()
        loss_sum, correct, seen = 0.0, 0, 0
        t_train = time.perf_counter()
        for batch in train_batches.epoch(epoch):
            batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
            if source is not None:
                batch = source(batch)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, settings)
            with acc.autocast():
                out = wrapped(batch)
                loss = F.cross_entropy(out["logits"].float(), batch["label"],
                                       label_smoothing=settings.label_smoothing) + out["aux_loss"]
            if not torch.isfinite(loss):
                raise PolySpaceError(f"{desc}: training loss became {float(loss)} at epoch {epoch}; "
                                     f"lower the learning rate (now {settings.lr})")
            optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            if settings.grad_clip > 0:
                if acc.scaler is not None:
                    acc.unscale_gradients()  # clip the true gradients, not the loss-scaled ones
                torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip, foreach=True)
            optimizer.step()
            step += 1
            n = batch["label"].shape[0]
            loss_sum += float(loss.detach()) * n
            correct += int((out["logits"].argmax(1) == batch["label"]).sum())
            seen += n
            bar.update(1)
        train_seconds = time.perf_counter() - t_train
        if acc.num_processes > 1:  # every process saw its share; report the whole batch
            totals = acc.reduce(torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=acc.device), "sum")
            loss_sum, correct, seen = float(totals[0]), int(totals[1]), int(totals[2])

        val = predict(wrapped, val_batches, source, acc, desc=f"{desc} validation")
        val_metrics = classification_metrics(val["logits"], val["label"], val["logits"].shape[1])
        history.append({"epoch": epoch, "train_loss": loss_sum / max(1, seen), "train_top1": correct / max(1, seen),
                        "val_loss": val_metrics["loss"], "val_top1": val_metrics["top1"],
                        "val_mean_class_acc": val_metrics["mean_class_acc"], "lr": optimizer.param_groups[0]["lr"],
                        "train_seconds": train_seconds, "epoch_seconds": time.perf_counter() - t_epoch})

        gates = val["gates"].float().flatten(2).mean(dim=(0, 2)).tolist() if "gates" in val else []
        log.add(epoch, {**history[-1], **{f"gate_{name}": g for name, g in zip(gate_names, gates)}})
        bar.set_postfix(epoch=epoch, train_loss=f"{history[-1]['train_loss']:.3f}",
                        val_top1=f"{val_metrics['top1']:.3f}", refresh=False)
        improved = (val_metrics["top1"], -val_metrics["loss"]) > (best["top1"], -best["loss"])
        if improved:
            best = {"epoch": epoch, "top1": val_metrics["top1"], "loss": val_metrics["loss"]}
            best_state = {k: v.detach().cpu().clone() for k, v in acc.unwrap_model(wrapped).state_dict().items()}
            if on_best is not None and acc.is_main_process:
                on_best(acc.unwrap_model(wrapped), {"best_epoch": epoch, "val_top1": best["top1"],
                                                    "val_loss": best["loss"]})
        if last_dir is not None:
            if acc.is_main_process:
                _save_state(last_dir, acc.unwrap_model(wrapped), optimizer.optimizer if hasattr(optimizer, "optimizer")
                            else optimizer, best_state,
                            {"fingerprint": fingerprint, "epoch": epoch, "step": step, "history": history,
                             "best": best})
            acc.wait_for_everyone()
        if stop_after is not None and epoch >= stop_after:
            break
    bar.close()
    log.close()

    model = acc.unwrap_model(wrapped)
    if prepared:
        acc.free_memory()  # drop the accelerator's references to this model and optimizer
    if best_state:
        model.load_state_dict(best_state)
    done = sum(row["train_seconds"] for row in history)
    return FitResult(model.eval(), history, best_epoch=best["epoch"], best_val_top1=best["top1"],
                     best_val_loss=best["loss"], train_samples=train_batches.num_samples,
                     train_samples_per_s=(len(history) * train_batches.num_samples / done) if done > 0 else None,
                     world_size=acc.num_processes, settings=asdict(settings),
                     complete=len(history) == settings.epochs)

# ---------------------------------------------------------------------------------------------
# the fusion head in cached or video mode


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
class FusionRun(FitResult):
    """The result of train_fusion: FitResult's fields (model: the best validation epoch's
    FusionPipeline, eval mode; the per-epoch history; best epoch, ...) and the mode, where it was
    saved, the class names, the videos skipped, and how the converters were applied. Its
    train_samples_per_s counts the converters' one-off precompute as training time."""

    mode: str
    save_dir: Path | None
    class_names: list[str]
    skipped: dict[str, str]
    converters_applied: str
    converter_precompute_seconds: float

    not_recorded = ("model", "history", "save_dir", "class_names")

    @property
    def pipeline(self) -> FusionPipeline:
        return self.model

    def summary(self) -> dict[str, Any]:
        """One row about the run: mode, selection, throughput, trainable parameters."""
        return {"mode": self.mode, "best_epoch": self.best_epoch, "val_top1": self.best_val_top1,
                "val_loss": self.best_val_loss, "train_samples": self.train_samples,
                "train_samples_per_s": self.train_samples_per_s, "params_trainable": count_trainable(self.pipeline),
                "epochs_run": len(self.history), "skipped_videos": len(self.skipped)}


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


def _video_precision(features: str | Path | None, converters: str | Path, train_split: str) -> str:
    """The store dtype whose precision video mode runs the student in: the store at `features`,
    else the one the converter set was trained on (its train_args), else float32 (announced)."""
    if features is not None:
        return store_precision(features, train_split)
    from ..align.train import resolve_converter_set

    folder, _ = resolve_converter_set(converters)
    for config in sorted(folder.glob("*/config.json")):
        recorded = (read_json(config).get("train_args") or {}).get("features")
        if recorded and (Path(recorded) / train_split / "manifest.json").is_file():
            return store_precision(recorded, train_split)
    print("video mode: no feature store found (pass features=/--features) to read the student's precision "
          "from; the student runs in float32")
    return "float32"


def check_classes(num_classes: int | None, class_names: Sequence[str], where: str) -> None:
    """The seeds' --classes N, checked against the classes the data has (one-line error)."""
    if num_classes is not None and num_classes != len(class_names):
        raise PolySpaceError(f"--classes {num_classes}: {where} has {len(class_names)} classes; "
                             f"drop --classes or pass {len(class_names)}")


def train_fusion(*, mode: str, converters: str | Path, settings: TrainSettings, head: HeadOptions | None = None,
                 features: str | Path | None = None, dataset: str | None = None, root: str | Path | None = None,
                 student: str | None = None, teachers: Sequence[str] | None = None, num_classes: int | None = None,
                 frames: int = 16, tokens: str = "temporal", split_seed: int = 0, train_split: str = "train",
                 val_split: str = "validation",
                 features_fp16: bool | None = None, save_dir: str | Path | None = None, resume: bool = True,
                 device: str = "auto", workers: int = 0, on_error: str = "error", stop_after: int | None = None,
                 on_mismatch: str = "error", precompute_budget_bytes: int = 4 * 2**30, progress: bool = True,
                 accelerator=None) -> FusionRun:
    """Train a fusion head in `mode` "cached" (needs `features`, the store root with train and
    validation splits) or "video" (needs `dataset`, `root` and the `student` backbone spec; a
    `features` store given there sets the precision the student runs in, see the module docstring).

    converters: folder of a converter set (02 / `polyspace train-converter`); `teachers` picks a
    subset (default: all of them). num_classes / features_fp16: optional checks against the data
    (the seed's --classes and --features_fp16). save_dir: checkpoints (see module docstring);
    a checkpoint made with other settings is an error unless on_mismatch="restart".
    precompute_budget_bytes: in cached mode with frozen converters, the converted features are
    computed once when they fit in this much memory (else per batch; run.converters_applied says which).
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
        check_classes(num_classes, class_names, str(train_store.split_dir))
        train_b = cached_batches(train_store, [student_name], batch=settings.batch, shuffle=True, seed=settings.seed)
        val_b = cached_batches(val_store, [student_name], batch=settings.batch, shuffle=False)
        data_info = {"features": str(Path(features).resolve()), "dtype": train_store.manifest["dtype"],
                     "tokens": train_store.tokens, "student_source": train_store.model_info(student_name)["source"],
                     "store_fingerprints": [train_store.manifest.get("fingerprint"),
                                            val_store.manifest.get("fingerprint")]}
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
        check_classes(num_classes, class_names, f"{dataset} at {root}")
        shape = (backbone.num_tokens(tokens), backbone.dim)
        train_b = VideoBatches(train_split_obj.items, train_split_obj.labels, backbone, batch=settings.batch,
                               shuffle=True, seed=settings.seed, workers=workers, on_error=on_error)
        val_b = VideoBatches(val_split_obj.items, val_split_obj.labels, backbone, batch=settings.batch,
                             workers=workers, on_error=on_error)
        student_dtype = _video_precision(features, converters, train_split)
        source = StudentFeatures(backbone, tokens, student_dtype)
        data_info = {"dataset": dataset, "root": str(Path(root).resolve()), "tokens": tokens,
                     "student_source": backbone.source, "frames": backbone.frames, "dtype": student_dtype,
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
    info = {"class_names": class_names, "mode": mode, "data": data_info,
            "converters_dir": str(Path(converters).resolve()), "settings": asdict(settings),
            "head_options": asdict(head)}
    save_dir = Path(save_dir) if save_dir is not None else None

    def on_best(model, summary):
        if save_dir is not None:
            save_fusion(save_dir / "best", model, {**info, **summary})

    # what makes a checkpoint resumable: the model, the data it learns from and the converters' weights
    fingerprint = {"fusion": pipeline.config.to_dict(), "head_options": asdict(head),
                   "converters": [c.config.to_dict() for c in pipeline.converters],
                   "converter_weights": _digest([sha256_file(p)
                                                 for p in sorted(Path(converters).rglob("*.safetensors"))]),
                   "class_names": class_names, "train_samples": train_b.num_samples,
                   "data": {k: v for k, v in data_info.items()
                            if k in ("store_fingerprints", "videos", "student_source", "dtype")}}
    result = fit(pipeline, train_b, val_b, settings, source=source, accelerator=acc, save_dir=save_dir,
                 resume=resume, fingerprint=fingerprint, on_best=on_best, stop_after=stop_after,
                 on_mismatch=on_mismatch, progress=progress, desc=f"fusion ({mode})",
                 log_dir=save_dir / LOG_FOLDER if save_dir is not None else None)
    skipped = {**getattr(train_b, "skipped", {}), **getattr(val_b, "skipped", {})}
    seconds = sum(row["train_seconds"] for row in result.history) + precompute_s
    run = FusionRun.extend(result, mode=mode, save_dir=save_dir, class_names=class_names, skipped=skipped,
                           converters_applied=converters_applied, converter_precompute_seconds=precompute_s)
    # the one-off precompute is part of what training cost
    run.train_samples_per_s = len(run.history) * run.train_samples / seconds if seconds > 0 else None
    if save_dir is not None and acc.is_main_process:
        atomic_write_json(save_dir / "history.json", run.record())
    return run
