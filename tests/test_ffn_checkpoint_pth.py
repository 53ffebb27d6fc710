"""The seed's checkpoint files (best.pth, epoch_N.pth, final.pth) beside ours: the seed's keys,
torch.load(weights_only=True), best_acc_<T>f of the best checkpoint, exact resume from each."""

import shutil

import pytest
import torch
from test_ffn_train import moving_bar_clips

from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn.checkpoint import load_model, read_checkpoint
from polyspace_core.ffn.train import FFNTrainer, TrainConfig
from polyspace_core.ffn.tsm_resnet import build_model

SEED_KEYS = {"epoch", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict", "best_acc", "best_acc_4f",
             "best_acc_8f", "lambda_kl"}


def _trainer(save_dir, seed=0, epochs=2):
    torch.manual_seed(seed)
    model = build_model("tiny", num_classes=2, frame_counts=(4, 8, 16), ffn=True)
    # a step schedule, so resuming must restore MultiStepLR's milestones too
    config = TrainConfig(epochs=epochs, batch_size=8, lr=0.05, schedule="step", lr_steps=(1,), device="cpu",
                         verbose=False, save_every=1, log_every=1)
    return FFNTrainer(model, moving_bar_clips(16, seed=1), moving_bar_clips(8, seed=2), config, save_dir)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight")
    trainer = _trainer(folder)
    trainer.train()
    return folder, trainer


def test_seed_files_hold_the_seed_keys_and_the_best_checkpoints_accuracies(straight):
    folder, trainer = straight
    for name in ("best", "epoch_1", "epoch_2", "final"):
        record = torch.load(folder / f"{name}.pth", weights_only=True)
        assert SEED_KEYS <= set(record) and "best_acc_16f" in record
        assert isinstance(record["model_state_dict"]["fc.weight"], torch.Tensor)
        assert record["lambda_kl"] == 1.0 and record["optimizer_state_dict"]["state"]
    final = torch.load(folder / "final.pth", weights_only=True)
    history = trainer.history
    best_row = max(history, key=lambda r: r["val_acc_16f"])  # the first epoch reaching the maximum
    assert final["epoch"] == 2 and final["best_acc"] == best_row["val_acc_16f"]
    # the 4F/8F accuracy of the 16F-selected checkpoint, not each count's best epoch
    assert final["best_acc_4f"] == best_row["val_acc_4f"] and final["best_acc_8f"] == best_row["val_acc_8f"]
    info, _, _ = read_checkpoint(folder / "final.json")
    assert info["best_epoch"] == best_row["epoch"]
    assert info["max_acc_4f"] == max(r["val_acc_4f"] for r in history)
    best = torch.load(folder / "best.pth", weights_only=True)
    assert best["epoch"] == best_row["epoch"]


@pytest.mark.parametrize("name", ["epoch_1", "best", "final"])
def test_resume_from_a_pth_alone_continues_exactly(straight, tmp_path, name):
    folder, trainer = straight
    shutil.copy(folder / f"{name}.pth", tmp_path / f"{name}.pth")   # without its JSON: the .pth itself is read
    resumed = _trainer(tmp_path / "run", seed=7)
    done = resumed.resume(tmp_path / f"{name}.pth")
    assert done == torch.load(folder / f"{name}.pth", weights_only=True)["epoch"]
    resumed.train()
    for key, value in trainer.unwrapped_model.state_dict().items():
        assert torch.equal(value, resumed.unwrapped_model.state_dict()[key]), key
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(trainer.optimizer.param_groups[0]["lr"])
    assert [r["val_acc_16f"] for r in resumed.history] == [r["val_acc_16f"] for r in trainer.history]
    # load_model reads the .pth too: same logits as the model it holds
    model = load_model(tmp_path / f"{name}.pth")
    clip = moving_bar_clips(2, seed=3).tensors[2]
    reference = _trainer(None)
    reference.unwrapped_model.load_state_dict(torch.load(folder / f"{name}.pth", weights_only=True)["model_state_dict"])
    with torch.no_grad():
        assert torch.equal(model(clip), reference.unwrapped_model.eval()(clip))


def test_a_damaged_pth_is_one_line(straight, tmp_path):
    folder, _ = straight
    data = (folder / "epoch_2.pth").read_bytes()
    (tmp_path / "epoch_2.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(PolySpaceError, match="epoch_2.pth: not a readable torch file"):
        _trainer(tmp_path / "run").resume(tmp_path / "epoch_2.pth")
