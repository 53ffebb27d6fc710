"""Training loops for the vanilla TSM baseline (one frame count) and FFN (several).

Both run unchanged on one CPU/GPU or under `accelerate launch` / `torchrun` (DDP): Accelerate
wraps the model, shards the loaders, handles mixed precision on GPU and gathers metrics. Each
frame count's BatchNorms are separate modules, so under DDP every stream keeps its own
statistics (broadcast from rank 0 per forward, as DDP does for all buffers).

Reproducibility: epoch e draws its shuffling, crops and dropout from (seed, e), not from
whatever the RNG held before, so "train 2 epochs" and "train 1, resume, train 1" give the same
weights on CPU. Checkpoints: `best` (highest validation accuracy at the highest trained frame
count), `epoch_N` every `save_every` epochs, `final`; see checkpoint.py for the format.

The recipe (TrainConfig): SGD with momentum and weight decay, the classifier's lr multiplied
(x5 weight, x10 bias, as the official TSM/FFN code's `fc_lr5`), gradient-norm clipping, and a
cosine or a step schedule (the official: x0.1 at epochs 20 and 40 of 50). `lr_batch` makes the
lr scale linearly with the total batch (per-process batch x processes): lr is the rate for a
total batch of lr_batch (the official FFN run: lr 0.01 at batch 32); None uses lr as given.
recipe.py holds the official values by name.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..distributed import make_accelerator
from ..errors import PolySpaceError
from ..io import atomic_write_json, read_json
from ..scalar_log import LOG_FOLDER, ScalarLog
from ..seeding import best_device
from .checkpoint import read_checkpoint, save_checkpoint
from .data import SKIPPED
from .evaluate import accuracy_by_frames, tfd_summary
from .loss import LossParts, TemporalDistillationLoss
from .tsm_resnet import TSMResNet


@dataclass
class TrainConfig:
    """Optimisation settings (TSM/FFN recipe: SGD 0.9, lr 0.01, wd 5e-4, clip 20; cosine by
    default, step 20/40 x0.1 as the official runs with schedule="step")."""

    epochs: int = 50
    batch_size: int = 8              # per process
    lr: float = 0.01                 # at a total batch of lr_batch when that is set
    lr_batch: int | None = None      # linear scaling: lr x total batch / lr_batch; None: lr as given
    schedule: str = "cosine"         # cosine (to 0 at `epochs`) or step (x lr_decay at each of lr_steps)
    lr_steps: tuple[int, ...] = (20, 40)
    lr_decay: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4       # not applied to BatchNorm parameters and biases
    fc_lr_mult: float = 5.0          # new classifier learns faster than the (pretrained) backbone
    fc_bias_lr_mult: float = 10.0
    clip_grad_norm: float = 20.0     # 0 disables clipping
    lambda_kl: float = 1.0           # FFN only: weight of the KL terms
    eval_every: int = 1              # validate every N epochs (and after the last)
    save_every: int = 5              # write epoch_N every N epochs; 0 = never
    max_batches: int | None = None   # cap batches per loop (--test_run uses 2)
    num_workers: int = 0
    mixed_precision: str = "auto"    # auto (bf16/fp16 on CUDA, off elsewhere), no, fp16, bf16
    device: str = "auto"             # auto (CUDA > MPS > CPU) or cpu
    seed: int = 0
    log_every: int = 10              # steps per entry of the CE/KL curve
    verbose: bool = True

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise PolySpaceError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise PolySpaceError(f"--lr must be > 0, got {self.lr}")
        if self.lr_batch is not None and self.lr_batch < 1:
            raise PolySpaceError(f"--lr_batch must be >= 1 (or left out), got {self.lr_batch}")
        if self.schedule not in SCHEDULES:
            raise PolySpaceError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        self.lr_steps = tuple(int(e) for e in self.lr_steps)
        if self.schedule == "step" and (not self.lr_steps or list(self.lr_steps) != sorted(set(self.lr_steps))
                                        or self.lr_steps[0] < 1):
            raise PolySpaceError(f"--lr_steps must be increasing epochs >= 1, got {list(self.lr_steps)}")
        if not 0 < self.lr_decay <= 1:
            raise PolySpaceError(f"--lr_decay must be in (0, 1], got {self.lr_decay}")
        for name in ("momentum", "weight_decay"):
            if getattr(self, name) < 0:
                raise PolySpaceError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise PolySpaceError(f"mixed_precision must be auto, no, fp16 or bf16, got {self.mixed_precision!r}")


SCHEDULES = ("cosine", "step")


def effective_lr(config: TrainConfig, num_processes: int = 1) -> float:
    """The base lr a run uses: config.lr, scaled by total batch / lr_batch when lr_batch is set."""
    if config.lr_batch is None:
        return config.lr
    return config.lr * config.batch_size * num_processes / config.lr_batch


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch schedule: cosine to 0 over config.epochs, or x lr_decay at each of lr_steps
    (stepped after each epoch, so epochs 1-20 of the official 20/40 run at the base lr)."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.lr_steps), gamma=config.lr_decay)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)


def scheduler_state_from_json(state: dict[str, Any]) -> dict[str, Any]:
    """A scheduler state read back from JSON: MultiStepLR's milestones are a Counter of int epochs
    (JSON made them a dict of strings, which would never match an epoch and never decay)."""
    if isinstance(state.get("milestones"), dict):
        state = {**state, "milestones": Counter({int(k): int(v) for k, v in state["milestones"].items()})}
    return state


def parameter_groups(model: torch.nn.Module, config: TrainConfig, lr: float | None = None) -> list[dict[str, Any]]:
    """SGD groups: conv weights (decay), BN params + biases (no decay), classifier weight (lr x
    fc_lr_mult, decay), classifier bias (lr x fc_bias_lr_mult, no decay): the official code's
    groups (its `lr5_weight` / `lr10_bias`; the ResNet convs have no bias). lr: base lr (default
    config.lr)."""
    lr = config.lr if lr is None else lr
    groups: dict[str, list] = {"weights": [], "norm_and_bias": [], "classifier_weight": [], "classifier_bias": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("fc."):
            groups["classifier_weight" if name.endswith("weight") else "classifier_bias"].append(p)
        elif p.ndim <= 1:  # BatchNorm weights/biases and any bias
            groups["norm_and_bias"].append(p)
        else:
            groups["weights"].append(p)
    settings = {
        "weights": (1.0, config.weight_decay),
        "norm_and_bias": (1.0, 0.0),
        "classifier_weight": (config.fc_lr_mult, config.weight_decay),
        "classifier_bias": (config.fc_bias_lr_mult, 0.0),
    }
    return [{"params": params, "lr": lr * settings[name][0], "weight_decay": settings[name][1], "name": name}
            for name, params in groups.items() if params]


def run_identity(trainer: TSMTrainer) -> dict[str, Any]:
    """What must match for a saved run to stand in for this trainer's: the model config and the
    training config (display-only fields left out)."""
    train = {k: v for k, v in asdict(trainer.config).items() if k not in ("verbose", "num_workers")}
    train = json.loads(json.dumps(train))  # as a checkpoint holds it (tuples as lists)
    identity = {"model_config": trainer.unwrapped_model.config.to_dict(), "train_config": train}
    if trainer.data_settings is not None:
        identity["data_settings"] = trainer.data_settings
    if trainer.start is not None:
        # a run started from ImageNet and one from random weights are different runs
        identity["start"] = trainer.start
    return identity


def saved_run(save_dir: str | Path, trainer: TSMTrainer) -> Path | None:
    """The checkpoint a rerun of this trainer continues from in `save_dir`: `final.json` when the
    run finished, else the newest `epoch_N.json`; None when the folder holds no checkpoint. A
    folder holding a run with other settings is an error: training here would overwrite its
    best and final checkpoints (the caller decides whether --overwrite allows it)."""
    save_dir = Path(save_dir)
    epochs = sorted((int(p.stem.split("_")[1]), p) for p in save_dir.glob("epoch_*.json") if p.stem[6:].isdigit())
    newest = save_dir / "final.json" if (save_dir / "final.json").is_file() else (epochs[-1][1] if epochs else None)
    if newest is None:
        return None
    info = read_json(newest)
    ours = run_identity(trainer)
    theirs = {"model_config": info.get("model_config"),
              "train_config": saved_train_config(info.get("train_config", {}), ours["train_config"])}
    if "data_settings" in ours and info.get("data") is not None:
        # runs saved before data settings were recorded have none: those are not compared
        theirs["data_settings"] = info["data"]
    else:
        ours.pop("data_settings", None)
    if "start" in ours or info.get("start") is not None:
        # a run started from ImageNet is not a random-start run (whose identity has no start)
        ours = {**ours, "start": ours.get("start")}
        theirs["start"] = info.get("start")
    if info.get("kind") != trainer.kind or theirs != ours:
        differs = [k for k in ours if theirs.get(k) != ours[k]] or ["kind"]
        raise PolySpaceError(f"{save_dir}: holds a {info.get('kind')} run with another "
                             f"{' and '.join(d.replace('_', ' ') for d in differs)}; replace it (--overwrite, or "
                             f"delete the folder) or save this run elsewhere (another --save_dir)")
    return newest


# TrainConfig fields added after runs were saved: a saved run without them ran with these values
ADDED_FIELDS = {"lr_batch": None, "schedule": "cosine", "lr_steps": [20, 40], "lr_decay": 0.1}


def saved_train_config(saved: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """A saved run's train config in the keys of `ours`, with ADDED_FIELDS' values where it predates them."""
    return {k: saved.get(k, ADDED_FIELDS.get(k)) for k in ours if k in saved or k in ADDED_FIELDS}


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


class TSMTrainer:
    """Vanilla TSM: trains its single frame count with cross-entropy; validates at every frame
    count the validation batches carry (that is where the TFD shows).

    Batches are `(clip_a, clip_b, ..., labels)` with clips (B, C, T, H, W); the trainer uses the
    clip(s) whose T the model trains. `save_dir=None` keeps checkpoints off disk.
    """

    kind = "tsm"

    def __init__(self, model: TSMResNet, train_data: Dataset, val_data: Dataset | None,
                 config: TrainConfig, save_dir: str | Path | None = None):
        self.config = config
        device = best_device(config.device)
        if config.mixed_precision not in ("auto", "no") and device.type != "cuda":
            raise PolySpaceError(f"mixed_precision={config.mixed_precision} needs a CUDA device; got {device}")
        self.accelerator = make_accelerator(device, config.mixed_precision)
        self.device = self.accelerator.device
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.train_data, self.val_data = train_data, val_data
        # the training clips' settings (MultiFrameClips.settings; None for other datasets), kept
        # in checkpoints so that resuming with other crops, sizes or a JPEG cache is refused
        settings = getattr(train_data, "settings", None)
        self.data_settings: dict[str, Any] | None = json.loads(json.dumps(settings)) if settings else None
        self._check_model(model)
        self.train_frames: tuple[int, ...] = tuple(model.frame_counts)
        self.select_frames = max(self.train_frames)  # `best` is chosen on this frame count

        self.loader_generator = torch.Generator().manual_seed(config.seed)
        train_loader = DataLoader(train_data, batch_size=config.batch_size, shuffle=True, drop_last=True,
                                  num_workers=config.num_workers, generator=self.loader_generator)
        if len(train_loader) == 0:
            raise PolySpaceError(
                f"training set has {len(train_data)} clips, fewer than one batch of {config.batch_size}; "
                f"lower --batch_size")
        val_loader = None
        if val_data is not None:
            val_loader = DataLoader(val_data, batch_size=config.batch_size, shuffle=False,
                                    num_workers=config.num_workers)
        self.base_lr = effective_lr(config, self.accelerator.num_processes)
        optimizer = torch.optim.SGD(parameter_groups(model, config, self.base_lr), lr=self.base_lr,
                                    momentum=config.momentum)
        # stepped once per epoch, by us (not prepared: Accelerate would step it once per process)
        self.scheduler = make_scheduler(optimizer, config)
        if val_loader is not None:
            self.model, self.optimizer, self.train_loader, self.val_loader = self.accelerator.prepare(
                model, optimizer, train_loader, val_loader)
        else:
            self.model, self.optimizer, self.train_loader = self.accelerator.prepare(model, optimizer, train_loader)
            self.val_loader = None

        self.epoch = 0                           # completed epochs
        self.global_step = 0
        self.best_acc = 0.0                      # best validation accuracy at select_frames
        # the best checkpoint's epoch and its accuracy at every validated frame count (what
        # best_acc_<T>f means), and each frame count's own maximum over epochs (max_acc_<T>f)
        self.best_epoch: int | None = None
        self.best_frames_acc: dict[int, float] = {}
        self.max_by_frames: dict[int, float] = {}
        self.history: list[dict[str, Any]] = []  # one row per epoch
        self.curve: list[dict[str, float]] = []  # loss terms every log_every steps
        self.train_seconds = 0.0                 # wall time in train_epoch, summed over resumes
        self.scalars = ScalarLog(None)           # TensorBoard curves while train() runs
        # what a new run's weights started from (train-ffn sets them: imagenet / none / release, and
        # the file); recorded in checkpoints, and `start` is part of the run's identity
        self.start: str | None = None
        self.start_source: str | None = None

    # --- what differs between TSM and FFN ---------------------------------------------------
    def _check_model(self, model: TSMResNet) -> None:
        if len(model.frame_counts) != 1:
            raise PolySpaceError(f"TSMTrainer trains one frame count, the model has {list(model.frame_counts)}; "
                                 f"use FFNTrainer")

    def compute_loss(self, clips: dict[int, torch.Tensor],
                     labels: torch.Tensor) -> tuple[dict[int, torch.Tensor], LossParts]:
        (frames,) = self.train_frames
        logits = self.model(clips[frames])
        ce = torch.nn.functional.cross_entropy(logits.float(), labels)
        return {frames: logits}, LossParts(loss=ce, ce=ce, kl=torch.zeros_like(ce))

    # --- loops -------------------------------------------------------------------------------
    @property
    def unwrapped_model(self) -> TSMResNet:
        return self.accelerator.unwrap_model(self.model)

    def _clips_by_frames(self, clips: list[torch.Tensor]) -> dict[int, torch.Tensor]:
        by_frames = {int(c.shape[2]): c for c in clips}
        missing = [t for t in self.train_frames if t not in by_frames]
        if missing:
            raise PolySpaceError(
                f"training batches hold {sorted(by_frames)}-frame clips "
                f"but the model trains {list(self.train_frames)}; "
                "build the dataset with those frame counts")
        return by_frames

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training data -> mean loss/ce/kl, train accuracy per frame count, lr."""
        started = time.perf_counter()
        seed = _epoch_seed(self.config.seed, self.epoch)
        self.loader_generator.manual_seed(seed)                          # shuffling (and worker seeds)
        if hasattr(self.train_data, "set_epoch"):                        # TSN offsets and crops
            self.train_data.set_epoch(self.epoch)
        # Accelerate's loader calls the dataset's set_epoch with its own count of passes when it
        # starts iterating; a resumed run must count from its epoch, not from 0, or it draws epoch
        # 0's offsets and crops again (the run would not resume exactly)
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(self.epoch)
        torch.manual_seed(seed + self.accelerator.process_index)        # dropout, crops in the main process
        self.model.train()
        sums = torch.zeros(3, dtype=torch.float64)                       # loss, ce, kl (x batch size)
        correct = dict.fromkeys(self.train_frames, 0)
        seen = skipped = 0
        window: list[torch.Tensor] = []
        lr = self.optimizer.param_groups[0]["lr"]
        bar = tqdm(self.train_loader, desc=f"{self.kind} epoch {self.epoch + 1}/{self.config.epochs}", leave=False,
                   disable=not self.accelerator.is_main_process)
        for step, batch in enumerate(bar):
            if self.config.max_batches is not None and step >= self.config.max_batches:
                break
            *clips, labels = batch
            read = labels != SKIPPED
            if not bool(read.all()):   # videos that did not decode (on_error="skip"): train on the rest
                skipped += int((~read).sum())
                if not bool(read.any()):
                    if self.accelerator.num_processes > 1:   # every process must take the step
                        raise PolySpaceError(f"{self.kind} epoch {self.epoch + 1} step {step}: no video of this "
                                             "process's batch decoded; fix or remove the unreadable videos")
                    continue
                clips, labels = [c[read] for c in clips], labels[read]
            logits, parts = self.compute_loss(self._clips_by_frames(clips), labels)
            if not torch.isfinite(parts.loss):
                raise PolySpaceError(f"{self.kind} training diverged at epoch {self.epoch + 1} step {step} "
                                     f"(loss {float(parts.loss)}); lower --lr")
            self.optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(parts.loss)
            if self.config.clip_grad_norm:
                self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
            self.optimizer.step()
            self.global_step += 1

            terms = torch.stack([parts.loss.detach(), parts.ce.detach(), parts.kl.detach()]).double().cpu()
            sums += terms * len(labels)
            seen += len(labels)
            for t, out in logits.items():
                correct[t] += int((out.argmax(-1) == labels).sum())
            window.append(terms)
            if len(window) == self.config.log_every:
                mean = torch.stack(window).mean(0).tolist()
                self.curve.append({"step": self.global_step, "epoch": self.epoch + step / len(self.train_loader),
                                   "loss": mean[0], "ce": mean[1], "kl": mean[2]})
                self.scalars.add(self.global_step, self.curve[-1], prefix="step_")
                window = []
            bar.set_postfix(loss=f"{terms[0].item():.3f}")
        self.scheduler.step()
        self.epoch += 1
        self.train_seconds += time.perf_counter() - started

        # sum over processes so every rank reports the same numbers
        totals = torch.cat([sums, torch.tensor([float(seen), float(skipped)]
                                               + [float(correct[t]) for t in self.train_frames],
                                               dtype=torch.float64)]).to(self.device)
        totals = self.accelerator.reduce(totals, reduction="sum").cpu().tolist()
        n = max(totals[3], 1.0)
        metrics = {"loss": totals[0] / n, "ce": totals[1] / n, "kl": totals[2] / n, "lr": lr}
        for i, t in enumerate(self.train_frames):
            metrics[f"acc_{t}f"] = 100.0 * totals[5 + i] / n
        if totals[4]:
            metrics["skipped"] = int(totals[4])   # clips left out: their videos did not decode
        return metrics

    def validate(self, frame_count: int | None = None) -> dict[str, float]:
        """Validation accuracy (percent) and CE at every frame count of the batches, or only at
        `frame_count`: {"acc_4f", "loss_4f", ..., "tfd_gap"}."""
        if self.val_loader is None:
            raise PolySpaceError("this trainer has no validation data; pass val_data")
        results = accuracy_by_frames(self.model, self.val_loader, accelerator=self.accelerator,
                                     max_batches=self.config.max_batches, desc=f"{self.kind} validate")
        if frame_count is not None:
            if frame_count not in results:
                raise PolySpaceError(f"validation batches hold {sorted(results)}-frame clips, not {frame_count}")
            results = {frame_count: results[frame_count]}
        metrics = tfd_summary(results)
        metrics.update({f"loss_{t}f": r["loss"] for t, r in results.items()})
        if len(results) == 1:
            metrics.pop("tfd_gap")
        return metrics

    def train(self, epochs: int | None = None) -> list[dict[str, Any]]:
        """Train until `epochs` epochs are complete (default config.epochs), validating every
        eval_every epochs; saves best/epoch_N/final when save_dir is set. Returns the history."""
        epochs = self.config.epochs if epochs is None else epochs
        if epochs > self.config.epochs:
            raise PolySpaceError(f"train({epochs}) beyond the schedule's {self.config.epochs} epochs; raise --epochs")
        # curves against the optimizer step (the per-step loss and the per-epoch rows share one
        # axis); a resumed run drops what the interrupted one logged after its checkpoint
        main = self.accelerator.is_main_process and self.save_dir is not None
        self.scalars = ScalarLog(self.save_dir / LOG_FOLDER if main else None, first_step=self.global_step + 1)
        while self.epoch < epochs:
            row: dict[str, Any] = {"epoch": self.epoch + 1}
            row.update({f"train_{k}": v for k, v in self.train_epoch().items()})
            # in the history before `best` is saved, so best holds its own epoch's row (resuming
            # from it keeps that row, and best_acc_<T>f of a resumed run come from it)
            self.history.append(row)
            if self.val_loader is not None and (self.epoch % self.config.eval_every == 0 or self.epoch == epochs):
                val = self.validate()
                row.update({f"val_{k}": v for k, v in val.items()})
                by_frames = {int(k[4:-1]): acc for k, acc in val.items() if k.startswith("acc_")}
                for t, acc in by_frames.items():
                    self.max_by_frames[t] = max(self.max_by_frames.get(t, 0.0), acc)
                selected = by_frames.get(self.select_frames)
                if selected is not None and selected > self.best_acc:
                    self.best_acc, self.best_epoch, self.best_frames_acc = selected, self.epoch, by_frames
                    row["new_best"] = True
                    self.save("best")
            self._log(row)
            self.scalars.add(self.global_step, row)
            if self.config.save_every and self.epoch % self.config.save_every == 0:
                self.save(f"epoch_{self.epoch}")
        self.save("final")
        self.scalars.close()
        return self.history

    def _log(self, row: dict[str, Any]) -> None:
        if not (self.config.verbose and self.accelerator.is_main_process):
            return
        train = " ".join(f"{k[6:]}={v:.3f}" for k, v in row.items()
                         if k.startswith("train_") and k not in ("train_lr", "train_skipped"))
        val = " ".join(f"{k[4:]}={v:.1f}" for k, v in row.items() if k.startswith("val_acc_"))
        tqdm.write(f"[{self.kind}] epoch {row['epoch']}/{self.config.epochs} lr={row['train_lr']:.5f} {train}"
                   + (f" | val {val}" if val else "") + (" *best*" if row.get("new_best") else "")
                   + "".join(f" | {k[:-8]} skipped {row[k]} undecodable"
                             for k in ("train_skipped", "val_skipped") if row.get(k)))

    # --- checkpoints -------------------------------------------------------------------------
    def checkpoint_info(self) -> dict[str, Any]:
        info = {
            "kind": self.kind,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "train_seconds": self.train_seconds,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            # the seed kept each frame count's maximum over epochs under best_acc_<T>f, which can
            # come from different epochs than best_acc; here they are the best checkpoint's own
            # accuracies, and the maxima are max_acc_<T>f
            **{f"best_acc_{t}f": acc for t, acc in sorted(self.best_frames_acc.items())},
            **{f"max_acc_{t}f": acc for t, acc in sorted(self.max_by_frames.items())},
            "lambda_kl": self.config.lambda_kl if self.kind == "ffn" else 0.0,
            "model_config": self.unwrapped_model.config.to_dict(),
            "train_config": asdict(self.config),
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": self.accelerator.scaler.state_dict() if self.accelerator.scaler is not None else None,
            "history": self.history,
            "curve": self.curve,
        }
        if self.start is not None:
            info.update(start=self.start, start_source=self.start_source)
        if self.data_settings is not None:
            info["data"] = self.data_settings
        return info

    def save(self, name: str) -> Path | None:
        """Write checkpoint `<save_dir>/<name>` (main process only); returns its JSON path."""
        if self.save_dir is None:
            return None
        self.accelerator.wait_for_everyone()
        path = None
        if self.accelerator.is_main_process:
            path = save_checkpoint(self.save_dir / name, self.unwrapped_model.state_dict(),
                                   self.optimizer.state_dict(), self.checkpoint_info())
            atomic_write_json(self.save_dir / "history.json", {"history": self.history, "curve": self.curve})
        self.accelerator.wait_for_everyone()
        return path

    def resume(self, path: str | Path) -> int:
        """Restore model, optimizer, scheduler, grad scaler, counters, bests and history from a
        checkpoint (ours: <name>.json or the seed-layout <name>.pth); returns the number of
        completed epochs (training continues from there)."""
        info, model_state, optimizer_state = read_checkpoint(path)
        if info.get("kind") != self.kind:
            raise PolySpaceError(f"{path}: is a {info.get('kind')} checkpoint, this is a {self.kind} trainer")
        ours = self.unwrapped_model.config.to_dict()
        if info["model_config"] != ours:
            diff = sorted(k for k in ours if info["model_config"].get(k) != ours[k])
            raise PolySpaceError(f"{path}: model config differs from this run's in {diff}; "
                                 f"build the model the checkpoint was trained with")
        saved = info.get("train_config", {})
        planned = saved.get("epochs", self.config.epochs)
        if planned != self.config.epochs:
            raise PolySpaceError(f"{path}: was trained on a {planned}-epoch schedule; resume it with "
                                 f"--epochs {planned} (this run has {self.config.epochs})")
        ours_schedule = {k: json.loads(json.dumps(getattr(self.config, k)))
                         for k in ("schedule", "lr_steps", "lr_decay")}
        theirs_schedule = saved_train_config(saved, ours_schedule)
        if theirs_schedule != ours_schedule:
            diff = [k for k in ours_schedule if theirs_schedule.get(k) != ours_schedule[k]]
            raise PolySpaceError(f"{path}: was trained with another {', '.join(diff)} "
                                 f"({', '.join(f'{k}={theirs_schedule.get(k)}' for k in diff)}); resume it with those")
        theirs_data = info.get("data")
        if theirs_data is not None and self.data_settings is not None and theirs_data != self.data_settings:
            diff = [k for k in self.data_settings if theirs_data.get(k) != self.data_settings[k]]
            raise PolySpaceError(f"{path}: was trained on clips with another {', '.join(diff)} "
                                 f"({', '.join(f'{k}={theirs_data.get(k)}' for k in diff)}); resume it with those")
        self.unwrapped_model.load_state_dict(model_state)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(scheduler_state_from_json(info["scheduler"]))
        if info.get("grad_scaler") and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(info["grad_scaler"])
        self.epoch = int(info["epoch"])
        self.global_step = int(info.get("global_step", 0))
        self.train_seconds = float(info.get("train_seconds", 0.0))
        self.best_acc = float(info["best_acc"])
        self.history = list(info.get("history", []))
        # from the history, so checkpoints written before best_epoch was recorded resume right too
        best_rows = [row for row in self.history if row.get("new_best")]
        self.best_epoch = int(best_rows[-1]["epoch"]) if best_rows else None
        self.best_frames_acc = ({int(k[8:-1]): float(v) for k, v in best_rows[-1].items()
                                 if k.startswith("val_acc_")} if best_rows else {})
        self.max_by_frames = {}
        for row in self.history:
            for k, v in row.items():
                if k.startswith("val_acc_"):
                    self.max_by_frames[int(k[8:-1])] = max(self.max_by_frames.get(int(k[8:-1]), 0.0), float(v))
        self.curve = list(info.get("curve", []))
        if "start" in info:  # the run keeps the start it was begun with
            self.start, self.start_source = info["start"], info.get("start_source")
        return self.epoch


class FFNTrainer(TSMTrainer):
    """Frame Flexible Network: every batch runs the low, middle and high frame-count clips
    through their own streams; loss = CE(high) + lambda_kl * sum KL(high || lower).
    Tracks CE and KL separately and train accuracy per frame count."""

    kind = "ffn"

    def __init__(self, model: TSMResNet, train_data: Dataset, val_data: Dataset | None,
                 config: TrainConfig, save_dir: str | Path | None = None):
        self.loss_fn = TemporalDistillationLoss(config.lambda_kl)
        super().__init__(model, train_data, val_data, config, save_dir)

    def _check_model(self, model: TSMResNet) -> None:
        if len(model.frame_counts) < 2:
            raise PolySpaceError(f"FFNTrainer needs a model with several frame counts, got {list(model.frame_counts)}; "
                                 "use TSMTrainer for one")

    def compute_loss(self, clips: dict[int, torch.Tensor],
                     labels: torch.Tensor) -> tuple[dict[int, torch.Tensor], LossParts]:
        ordered = [clips[t] for t in self.train_frames]           # lowest first, teacher last
        logits = self.model(*ordered)
        return dict(zip(self.train_frames, logits)), self.loss_fn(logits, labels)
