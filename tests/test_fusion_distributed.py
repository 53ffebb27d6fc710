"""`polyspace train-fusion` under torchrun with 2 CPU processes (DDP over gloo) reaches the
metrics of a single-process run: --batch is the global batch, so both take the same steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from polyspace_core.cli import main

pytestmark = pytest.mark.distributed
ROOT = Path(__file__).resolve().parent.parent


def write_store(split_dir: Path, n: int, seed: int) -> None:
    """A store whose student features carry the class and whose teacher features are a fixed
    nonlinear map of the student's (so the ridge converters have something to fit)."""
    from polyspace_core.features.store import FeatureStoreWriter

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    centers = torch.randn(4, 16, generator=torch.Generator().manual_seed(99))
    student = centers[labels].unsqueeze(1) + 0.8 * torch.randn(n, 4, 16, generator=g)
    mix = torch.randn(16, 8, generator=torch.Generator().manual_seed(7))
    teacher = torch.tanh(student[:, ::2] @ mix)
    models = [{"name": "stu", "role": "student", "source": "synthetic", "T": 4, "dim": 16},
              {"name": "tea", "role": "teacher", "source": "synthetic", "T": 2, "dim": 8}]
    writer = FeatureStoreWriter(split_dir, models=models, dtype="float32", tokens="temporal", shard_size=1000,
                                paths=[f"v{i}.mp4" for i in range(n)], labels=labels.tolist(),
                                class_names=["a", "b", "c", "d"])
    writer.write_shard(0, {"stu": student, "tea": teacher}, ["ok"] * n, n, 0)
    writer.finalize()


def test_two_process_ddp_matches_one_process(tmp_path):
    features = tmp_path / "features"
    write_store(features / "train", 96, 0)
    write_store(features / "validation", 48, 1)
    assert main(["train-converter", "--features", str(features), "--save_dir", str(tmp_path / "conv"),
                 "--kind", "ridge", "--device", "cpu"]) == 0
    common = ["train-fusion", "--use_cached_features", "--root", str(features), "--converters", str(tmp_path / "conv"),
              "--epochs", "3", "--batch", "16", "--lr", "3e-3", "--rank", "8", "--gate_hidden", "8", "--dropout", "0",
              "--device", "cpu"]
    assert main(common + ["--save_dir", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "polyspace_core.cli",
                          *common, "--save_dir", str(tmp_path / "two")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["train_samples"] == one["train_samples"] == 96

    def column(record, key):
        return [row[key] for row in record["epochs"]]

    # the same steps, up to float summation order (dropout is off: each process would draw its
    # own masks, which is correct DDP but not comparable sample by sample)
    assert column(two, "train_loss") == pytest.approx(column(one, "train_loss"), rel=1e-3)
    assert column(two, "val_loss") == pytest.approx(column(one, "val_loss"), rel=1e-3)
    assert column(two, "val_top1") == column(one, "val_top1")
    assert column(one, "val_top1")[-1] > 0.5  # and it learned (4 classes)
