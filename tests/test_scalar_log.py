"""TensorBoard curves: what a trainer logs is what TensorBoard's own reader finds, a resumed run
does not draw its curve twice, and no log_dir means no files."""

from __future__ import annotations

import math

from polyspace_core.scalar_log import ScalarLog, read_scalars, tag


def test_history_keys_become_grouped_tags():
    assert tag("val_top1") == "val/top1" and tag("train_loss_kl") == "train/loss_kl"
    assert tag("gate_videomae") == "gate/videomae" and tag("lr") == "lr" and tag("epoch_seconds") == "epoch_seconds"


def test_logged_rows_read_back_with_tensorboards_reader(tmp_path):
    with ScalarLog(tmp_path / "run") as log:
        for epoch in (1, 2, 3):
            log.add(epoch, {"epoch": epoch, "train_loss": 1.0 / epoch, "val_top1": 0.1 * epoch, "phase": "fusion",
                            "new_best": True, "val_l1": math.nan})
    scalars = read_scalars(tmp_path / "run")
    assert set(scalars) == {"train/loss", "val/top1"}  # text, bools, NaN and the step itself are left out
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [round(v, 4) for _, v in scalars["val/top1"]] == [0.1, 0.2, 0.3]


def test_a_resumed_run_replaces_what_the_interrupted_one_logged_after_its_checkpoint(tmp_path):
    with ScalarLog(tmp_path / "run", first_step=1) as log:
        for epoch in (1, 2, 3):  # killed after logging epoch 3, checkpointed after epoch 2
            log.add(epoch, {"train_loss": 10.0 + epoch})
    with ScalarLog(tmp_path / "run", first_step=3) as log:
        for epoch in (3, 4):
            log.add(epoch, {"train_loss": 20.0 + epoch})
    assert read_scalars(tmp_path / "run")["train/loss"] == [(1, 11.0), (2, 12.0), (3, 23.0), (4, 24.0)]


def test_no_log_dir_writes_nothing(tmp_path):
    with ScalarLog(None) as log:
        log.add(1, {"train_loss": 1.0})
    assert list(tmp_path.iterdir()) == []
