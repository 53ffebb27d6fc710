"""Training curves for TensorBoard: one event-file folder per training run.

Every trainer takes a `log_dir` (None: nothing is written) and logs, once per epoch, the numbers of
the history row it keeps anyway (losses and their terms, lr, validation metrics, per-frame-count
accuracies, gate means), so a run that lasts days can be watched while it runs:

    log = ScalarLog(run_folder / "tensorboard", first_step=start_epoch)
    log.add(epoch, {"train_loss": 0.41, "val_top1": 0.35})   # -> tags train/loss, val/top1
    log.close()

Tags group by their first word (train/, val/, test/, lr, ...), which is how TensorBoard sorts
them into panels. A resumed run passes the first epoch it will run as `first_step`: events the
interrupted run wrote from that step on are dropped, so a resumed curve is not drawn twice.
`make tensorboard PRESET=...` serves runs/<preset>/ (every stage's folder) and the zoo's logs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LOG_FOLDER = "tensorboard"  # the sub-folder of a run folder that holds its event files


def tag(key: str) -> str:
    """A history key as a TensorBoard tag: 'val_top1' -> 'val/top1', 'train_loss_kl' -> 'train/loss_kl'."""
    head, _, rest = key.partition("_")
    return f"{head}/{rest}" if rest and head in ("train", "val", "test", "best", "gate", "step") else key


class ScalarLog:
    """Scalars of one training run as TensorBoard event files in `log_dir` (None: a no-op)."""

    def __init__(self, log_dir: str | os.PathLike | None, first_step: int | None = None):
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._writer = None
        if self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when logging

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.log_dir), purge_step=first_step)

    def add(self, step: int, values: Mapping[str, Any], prefix: str = "") -> None:
        """Log every finite number in `values` (bools and non-numbers are skipped) at `step`."""
        if self._writer is None:
            return
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            if key in ("epoch", "step"):
                continue
            self._writer.add_scalar(tag(prefix + key), float(value), int(step))
        # on disk before the trainer checkpoints what it logged: a kill -9 after the checkpoint
        # must not lose points that the resumed run will not log again
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ScalarLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of every event file under `log_dir` (TensorBoard's own reader); for
    tests and for notebooks that plot a run's curves."""
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # the reader announces each purge a resumed or rerun run asked for; that is the point, not news
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    scalars: dict[str, list[tuple[int, float]]] = {}
    for folder in sorted({p.parent for p in Path(log_dir).rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for name in acc.Tags()["scalars"]:
            key = str(folder.relative_to(log_dir) / name) if folder != Path(log_dir) else name
            scalars[key] = [(e.step, e.value) for e in acc.Scalars(name)]
    return scalars
