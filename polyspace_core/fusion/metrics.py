"""Classification metrics from logits: top-1, top-5, mean per-class accuracy, loss, confusion."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import PolySpaceError


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts; row = true class, column = predicted class."""
    pred, labels = torch.as_tensor(pred).long().cpu(), torch.as_tensor(labels).long().cpu()
    counts = torch.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Share of samples whose label is among the k highest logits (k capped at the class count)."""
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == labels.unsqueeze(1)).any(dim=1)
    return float(hits.float().mean())


def mean_class_accuracy(confusion: torch.Tensor) -> float:
    """Mean over classes present in the labels of per-class recall (absent classes are skipped)."""
    support = confusion.sum(dim=1)
    present = support > 0
    recall = confusion.diag()[present].double() / support[present].double()
    return float(recall.mean())


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None
                           ) -> dict[str, float]:
    """logits (N, C), labels (N,) int -> {"top1", "top5", "mean_class_acc", "loss", "n"}."""
    logits = torch.as_tensor(logits).float().cpu()
    labels = torch.as_tensor(labels).long().cpu()
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise PolySpaceError(f"metrics: logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    if logits.shape[0] == 0:
        raise PolySpaceError("metrics: no samples to score")
    num_classes = num_classes or logits.shape[1]
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise PolySpaceError(f"metrics: labels outside [0, {num_classes}); unlabeled samples cannot be scored")
    confusion = confusion_matrix(logits.argmax(1), labels, num_classes)
    return {
        "top1": topk_accuracy(logits, labels, 1),
        "top5": topk_accuracy(logits, labels, 5),
        "mean_class_acc": mean_class_accuracy(confusion),
        "loss": float(F.cross_entropy(logits, labels)),
        "n": int(labels.shape[0]),
    }
