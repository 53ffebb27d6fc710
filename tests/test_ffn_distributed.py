"""FFN training and evaluation under DDP: two CPU processes (gloo) launched with torchrun.

Run alone with `pytest -m distributed`. When torchrun runs this file as a script, it is the
worker: each rank trains a couple of batches, validates, and writes what it saw to a JSON file.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.distributed
def test_ffn_trains_and_evaluates_under_ddp_with_two_cpu_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["distributed_type"] == "MULTI_CPU"
    # DDP keeps the replicas identical: the same parameters after the optimiser steps
    assert ranks[0]["param_checksum"] == pytest.approx(ranks[1]["param_checksum"], rel=0, abs=0)
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2
    # validation gathers every clip exactly once across processes and both ranks agree
    assert ranks[0]["val"] == ranks[1]["val"]
    assert all(n == 10 for n in ranks[0]["val_counts"].values())
    # each stream keeps its own BatchNorm statistics
    stats = ranks[0]["stem_running_mean"]
    assert stats[0] != stats[1] and stats[1] != stats[2]
    assert (tmp_path / "ckpt" / "final.json").is_file()


def _worker(out_dir: Path) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_ffn_train import moving_bar_clips

    from polyspace_core.ffn.evaluate import accuracy_by_frames
    from polyspace_core.ffn.train import FFNTrainer, TrainConfig
    from polyspace_core.ffn.tsm_resnet import build_model

    torch.manual_seed(0)
    model = build_model("tiny", num_classes=2, frame_counts=(4, 8, 16), ffn=True)
    config = TrainConfig(epochs=1, batch_size=4, lr=0.01, device="cpu", verbose=False, save_every=0)
    trainer = FFNTrainer(model, moving_bar_clips(16, seed=1), moving_bar_clips(10, seed=2), config, out_dir / "ckpt")
    trainer.train()
    counts = accuracy_by_frames(trainer.model, trainer.val_loader, accelerator=trainer.accelerator)
    acc = trainer.accelerator
    params = trainer.unwrapped_model.state_dict()
    record = {
        "world_size": acc.num_processes,
        "distributed_type": str(acc.distributed_type).split(".")[-1],
        "steps": trainer.global_step,
        "param_checksum": float(sum(p.double().sum() for n, p in trainer.unwrapped_model.named_parameters())),
        "val": {k: v for k, v in trainer.history[-1].items() if k.startswith("val_")},
        "val_counts": {str(t): r["n"] for t, r in counts.items()},
        "stem_running_mean": [params[f"bn1.bns.{s}.running_mean"].sum().item() for s in range(3)],
    }
    (out_dir / f"rank{acc.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
