"""Baselines trained on the same splits with the same loop as fusion (never random heads).

    probe = train_linear_probe(["student"], train, val, num_classes, settings)   # student-only
    probe = train_linear_probe(["videomae"], train, val, ...)                     # a teacher's own features
    probe = train_linear_probe(teachers, train, val, ...)                         # all teachers concatenated
    head  = train_matched_student_head(fusion, train, val, settings)              # same capacity as fusion
    probe = train_attentive_probe(fusion, train, val, settings)                   # V-JEPA 2's read-out, same size

train / val are TensorBatches (cached features); selection on validation happens in `fit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .data import TensorBatches
from .head import LinearProbe, count_trainable, matched_attentive_probe, matched_student_head
from .train import FitResult, TrainSettings, fit


@dataclass
class MatchedHeadResult(FitResult):
    """FitResult of the matched student head, with its trainable parameter count (`params`), the
    fusion pipeline's it was matched to (`params_fusion`) and its hidden width."""

    params: int
    params_fusion: int
    hidden: int


def fit_standardizer_on(probe: LinearProbe, batches: TensorBatches) -> LinearProbe:
    """Standardisation statistics from ALL training samples (not one process's share)."""
    return probe.fit_standardizer(batches.full_pass(probe.models))


def train_linear_probe(models: Sequence[str], train: TensorBatches, val: TensorBatches, num_classes: int,
                       settings: TrainSettings, *, accelerator=None, progress: bool = True,
                       desc: str | None = None, log_dir: str | Path | None = None) -> FitResult:
    """A linear classifier on the mean-pooled, standardised features of `models` (concatenated
    when several). Returns the best validation epoch's probe, its history and summary (FitResult)."""
    dims = [int(train.features[m].shape[2]) for m in models]
    probe = fit_standardizer_on(LinearProbe(models, dims, num_classes), train)
    return fit(probe, train, val, settings, accelerator=accelerator, progress=progress,
               desc=desc or f"probe {'+'.join(models)}", log_dir=log_dir)


def train_matched_student_head(fusion: nn.Module, train: TensorBatches, val: TensorBatches,
                               settings: TrainSettings, *, accelerator=None, progress: bool = True,
                               log_dir: str | Path | None = None) -> MatchedHeadResult:
    """A student-only head with as many trainable parameters as `fusion` (a FusionPipeline: head
    plus fine-tuned converters, if any), trained like it. The result records both counts."""
    c = fusion.config
    target = count_trainable(fusion)
    torch.manual_seed(settings.seed)
    head = matched_student_head(target, c.student, c.student_dim, c.student_tokens, c.num_classes,
                                pooling=c.pooling, dropout=c.dropout)
    head.fit_input_statistics(train.full_pass([c.student]))  # the same standardisation as fusion's
    result = fit(head, train, val, settings, accelerator=accelerator, progress=progress, desc="student matched head",
                 log_dir=log_dir)
    return MatchedHeadResult.extend(result, params=count_trainable(head), params_fusion=target,
                                    hidden=head.config.hidden)


def train_attentive_probe(fusion: nn.Module, train: TensorBatches, val: TensorBatches, settings: TrainSettings, *,
                          accelerator=None, progress: bool = True,
                          log_dir: str | Path | None = None) -> MatchedHeadResult:
    """An attentive probe (learned queries cross-attending over the student's tokens, as V-JEPA 2
    evaluates frozen encoders) with as many trainable parameters as `fusion`, trained like it; its
    width is the result's `hidden`."""
    c = fusion.config
    target = count_trainable(fusion)
    torch.manual_seed(settings.seed)
    probe = matched_attentive_probe(target, c.student, c.student_dim, c.student_tokens, c.num_classes,
                                    dropout=c.dropout)
    probe.fit_input_statistics(train.full_pass([c.student]))
    result = fit(probe, train, val, settings, accelerator=accelerator, progress=progress,
                 desc="student attentive probe", log_dir=log_dir)
    return MatchedHeadResult.extend(result, params=count_trainable(probe), params_fusion=target,
                                    hidden=probe.config.width)
