"""Accuracy per frame count, the TFD gap, and FLOPs per frame count.

Evaluation batches hold one clip per frame count and the labels, `(clip_a, clip_b, ..., labels)`
with clips shaped (B, C, T, H, W); each clip is classified on its own, so a T-frame clip goes
through the stream the model picks for T. TFD (Temporal Frequency Deviation) is measured as
the accuracy at the highest frame count minus the accuracy at the lowest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import PolySpaceError
from .data import SKIPPED


@torch.no_grad()
def accuracy_by_frames(model: torch.nn.Module, loader: Iterable, accelerator: Any = None,
                       device: torch.device | str | None = None, max_batches: int | None = None,
                       desc: str = "eval", keep_correct: bool = False) -> dict[int, dict[str, Any]]:
    """{T: {"acc": top-1 in percent, "loss": mean CE, "n": clips, "skipped": clips left out}} for every
    frame count T in the batches; with keep_correct, also "correct": a bool array, one entry per
    clip in loader order (so paired statistics can compare two models clip by clip).

    Rows labelled SKIPPED (videos that did not decode, MultiFrameClips(on_error="skip")) are left
    out of every figure and counted in "skipped"; they stay in the batch until the predictions
    are gathered, so Accelerate's de-duplication of the last distributed batch still holds.

    With an Accelerate `accelerator` (trainer, DDP) predictions are gathered across processes
    and the loader must be the prepared one; otherwise batches are moved to `device`
    (default: the model's device).
    """
    was_training = model.training
    model.eval()
    if device is None and accelerator is None:
        device = next(model.parameters()).device
    correct: dict[int, int] = {}
    loss_sum: dict[int, float] = {}
    count: dict[int, int] = {}
    hits: dict[int, list[torch.Tensor]] = {}
    skipped: dict[int, int] = {}
    show = accelerator is None or accelerator.is_main_process
    for step, batch in enumerate(tqdm(loader, desc=desc, leave=False, disable=not show)):
        if max_batches is not None and step >= max_batches:
            break
        *clips, labels = batch
        if accelerator is None:
            clips, labels = [c.to(device, non_blocking=True) for c in clips], labels.to(device)
        for clip in clips:
            frames = clip.shape[2]
            logits = model(clip).float()
            losses = F.cross_entropy(logits, labels, reduction="none", ignore_index=SKIPPED)  # 0 there
            predictions = logits.argmax(-1)
            if accelerator is not None:
                predictions, losses, targets = accelerator.gather_for_metrics((predictions, losses, labels))
            else:
                targets = labels
            read = targets != SKIPPED
            hit = (predictions == targets) & read
            correct[frames] = correct.get(frames, 0) + int(hit.sum())
            if keep_correct:
                hits.setdefault(frames, []).append(hit[read].cpu())
            loss_sum[frames] = loss_sum.get(frames, 0.0) + float(losses.sum())
            count[frames] = count.get(frames, 0) + int(read.sum())
            skipped[frames] = skipped.get(frames, 0) + int((~read).sum())
    model.train(was_training)
    if not count:
        raise PolySpaceError("evaluation loader is empty; check the validation split")
    if not any(count.values()):
        raise PolySpaceError(f"evaluation: none of the {max(skipped.values())} videos decoded")
    return {t: {"acc": 100.0 * correct[t] / count[t], "loss": loss_sum[t] / count[t], "n": count[t],
                "skipped": skipped[t], **({"correct": torch.cat(hits[t]).numpy()} if keep_correct else {})}
            for t in sorted(count)}


def tfd_summary(results: dict[int, dict[str, float]]) -> dict[str, float]:
    """accuracy_by_frames output -> {"acc_4f": .., "acc_8f": .., "acc_16f": .., "tfd_gap": high - low}."""
    summary = {f"acc_{t}f": r["acc"] for t, r in results.items()}
    counts = sorted(results)
    summary["tfd_gap"] = results[counts[-1]]["acc"] - results[counts[0]]["acc"]
    if any(r.get("skipped") for r in results.values()):
        summary["skipped"] = max(r["skipped"] for r in results.values())   # videos left out (not decoded)
    return summary


def evaluate_tfd(model: torch.nn.Module, loader: Iterable, device: torch.device | str | None = None,
                 max_batches: int | None = None) -> dict[str, float]:
    """Top-1 accuracy (percent) at every frame count of the loader's batches and the TFD gap.

    With batches (v_4, v_8, v_16, labels): {"acc_4f", "acc_8f", "acc_16f", "tfd_gap" = acc_16f - acc_4f},
    and "skipped" (videos left out because they did not decode) when there were any.
    """
    return tfd_summary(accuracy_by_frames(model, loader, device=device, max_batches=max_batches, desc="TFD"))


def flops_per_frame_count(model: torch.nn.Module, frame_counts: Iterable[int], size: int,
                          channels: int = 3) -> dict[int, float]:
    """FLOPs of one clip's forward pass per frame count (torch.utils.flop_counter; a multiply-add = 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    flops = {}
    for t in frame_counts:
        clip = torch.zeros(1, channels, t, size, size, device=device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(clip)
        flops[int(t)] = float(counter.get_total_flops())
    model.train(was_training)
    return flops
