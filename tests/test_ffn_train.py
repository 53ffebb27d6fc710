"""FFN/TSM trainers on in-memory clips with real signal: learning, CE/KL tracking, checkpoints,
exact resume, optimiser groups, TFD evaluation and FLOPs."""


import pytest
import torch
from torch.utils.data import TensorDataset

from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn.checkpoint import load_checkpoint, load_model
from polyspace_core.ffn.data import SKIPPED
from polyspace_core.ffn.evaluate import accuracy_by_frames, evaluate_tfd, flops_per_frame_count
from polyspace_core.ffn.train import FFNTrainer, TrainConfig, TSMTrainer, parameter_groups
from polyspace_core.ffn.tsm_resnet import build_model


def moving_bar_clips(n, frame_counts=(4, 8, 16), size=16, seed=0, travel=8, width=3):
    """n clips of a bright vertical bar sliding left (class 0) or right (class 1) over noise.

    Every frame count samples the same trajectory at TSN segment centres and the start position
    is random, so only the order of the frames tells the classes apart."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    start = torch.randint(0, size - width - travel + 1, (n,), generator=g).float()
    noise = torch.rand(n, 3, 1, size, size, generator=g) * 0.5
    clips = []
    for t in frame_counts:
        times = (torch.arange(t) + 0.5) / t
        x = torch.where(labels[:, None] == 1, start[:, None] + travel * times,
                        start[:, None] + travel - travel * times).round().long()
        video = noise.expand(n, 3, t, size, size).clone()
        for i in range(n):
            for j in range(t):
                video[i, :, j, :, x[i, j]:x[i, j] + width] = 1.0
        clips.append((video - 0.5) / 0.25)
    return TensorDataset(*clips, labels)


def _model(ffn=True, seed=0, **kw):
    torch.manual_seed(seed)
    counts = (4, 8, 16) if ffn else (16,)
    return build_model("tiny", num_classes=2, frame_counts=counts, ffn=ffn, **kw)


def _config(**kw):
    base = dict(epochs=2, batch_size=8, lr=0.05, device="cpu", verbose=False, save_every=1, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_restores_training_exactly(tmp_path):
    data = moving_bar_clips(24, seed=1)
    straight = FFNTrainer(_model(seed=0), data, None, _config(), tmp_path / "straight")
    straight.train()

    first = FFNTrainer(_model(seed=0), data, None, _config(), tmp_path / "split")
    first.train(1)
    resumed = FFNTrainer(_model(seed=5), data, None, _config(), tmp_path / "split")
    assert resumed.resume(tmp_path / "split" / "epoch_1.json") == 1
    resumed.train()

    a, b = straight.unwrapped_model.state_dict(), resumed.unwrapped_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    assert straight.scheduler.get_last_lr() == resumed.scheduler.get_last_lr()
    assert [r["train_ce"] for r in straight.history] == [r["train_ce"] for r in resumed.history]


def test_ffn_learns_tracks_ce_kl_and_writes_checkpoints(tmp_path):
    train, val = moving_bar_clips(96, seed=2), moving_bar_clips(32, seed=3)
    config = _config(epochs=3, lr=0.01, save_every=2, lambda_kl=1.0)
    trainer = FFNTrainer(_model(dropout=0.0), train, val, config, tmp_path)
    history = trainer.train()
    first, last = history[0], history[-1]
    assert last["train_ce"] < 0.5 * first["train_ce"]
    assert min(last["val_acc_4f"], last["val_acc_8f"], last["val_acc_16f"]) >= 75.0  # chance is 50
    assert all(k in last for k in ("train_kl", "train_acc_4f", "train_acc_8f", "train_acc_16f", "val_tfd_gap"))
    assert all(r["kl"] >= 0 for r in trainer.curve) and len(trainer.curve) == 3 * 12

    for name in ("best", "epoch_2", "final"):
        assert (tmp_path / f"{name}.json").is_file() and (tmp_path / f"{name}.safetensors").is_file()
    info, model_state, optimizer_tensors = load_checkpoint(tmp_path / "final")
    assert info["epoch"] == 3 and info["lambda_kl"] == 1.0 and info["kind"] == "ffn"
    assert {"best_acc", "best_acc_4f", "best_acc_8f", "best_acc_16f", "scheduler", "model_config"} <= set(info)
    assert info["best_acc"] == max(r["val_acc_16f"] for r in history)
    assert optimizer_tensors and all(k.startswith("optimizer.") for k in optimizer_tensors)

    restored = load_model(tmp_path / "final.json")
    clip = val.tensors[0][:4]
    trainer.unwrapped_model.eval()
    with torch.no_grad():
        assert torch.equal(restored(clip), trainer.unwrapped_model(clip))

    # evaluate_tfd on a plain loader agrees with the trainer's validation
    loader = torch.utils.data.DataLoader(val, batch_size=8)
    tfd = evaluate_tfd(restored, loader)
    val_now = trainer.validate()
    assert set(tfd) == {"acc_4f", "acc_8f", "acc_16f", "tfd_gap"}
    assert tfd["acc_16f"] == pytest.approx(val_now["acc_16f"]) and tfd["acc_4f"] == pytest.approx(val_now["acc_4f"])
    assert tfd["tfd_gap"] == pytest.approx(tfd["acc_16f"] - tfd["acc_4f"])
    assert set(trainer.validate(frame_count=8)) == {"acc_8f", "loss_8f"}

    # a torn pair (tensors of another save) is detected
    (tmp_path / "final.safetensors").write_bytes((tmp_path / "epoch_2.safetensors").read_bytes())
    with pytest.raises(PolySpaceError, match="checksum"):
        load_model(tmp_path / "final.json")


def test_vanilla_tsm_trainer_trains_one_count_and_validates_all(tmp_path):
    train, val = moving_bar_clips(32, seed=4), moving_bar_clips(16, seed=5)
    trainer = TSMTrainer(_model(ffn=False), train, val, _config(epochs=1), tmp_path)
    (row,) = trainer.train()
    assert "train_acc_16f" in row and "train_acc_4f" not in row and row["train_kl"] == 0.0
    assert {"val_acc_4f", "val_acc_8f", "val_acc_16f", "val_tfd_gap"} <= set(row)
    with pytest.raises(PolySpaceError, match="ffn checkpoint"):
        TSMTrainer(_model(ffn=False), train, val, _config(), tmp_path / "x").resume(_ffn_checkpoint(tmp_path))


def _ffn_checkpoint(tmp_path):
    trainer = FFNTrainer(_model(), moving_bar_clips(8, seed=6), None, _config(epochs=1, save_every=0), tmp_path / "ffn")
    trainer.train()
    return tmp_path / "ffn" / "final.json"


def test_trainers_reject_mismatched_models_and_data():
    data = moving_bar_clips(8, frame_counts=(4, 8), seed=7)
    with pytest.raises(PolySpaceError, match="use FFNTrainer"):
        TSMTrainer(_model(), data, None, _config())
    with pytest.raises(PolySpaceError, match="use TSMTrainer"):
        FFNTrainer(_model(ffn=False), data, None, _config())
    trainer = FFNTrainer(_model(), data, None, _config())
    with pytest.raises(PolySpaceError, match="model trains \\[4, 8, 16\\]"):
        trainer.train_epoch()
    with pytest.raises(PolySpaceError, match="batch_size"):
        FFNTrainer(_model(), data, None, _config(batch_size=16))


def test_optimizer_groups_and_cosine_schedule():
    model = _model()
    config = _config(lr=0.01, weight_decay=5e-4)
    groups = {g["name"]: g for g in parameter_groups(model, config)}
    assert (groups["classifier_weight"]["lr"] == pytest.approx(0.05)
            and groups["classifier_bias"]["lr"] == pytest.approx(0.1))
    assert groups["norm_and_bias"]["weight_decay"] == 0 and groups["classifier_bias"]["weight_decay"] == 0
    assert groups["weights"]["weight_decay"] == 5e-4
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(".bns." in names[id(p)] for p in groups["norm_and_bias"]["params"])
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))

    trainer = FFNTrainer(model, moving_bar_clips(8, seed=8), None, _config(lr=0.01, epochs=2, max_batches=1))
    trainer.train_epoch()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.005)  # cos(pi/2) halfway
    assert trainer.optimizer.param_groups[3]["lr"] == pytest.approx(0.05)


def test_flops_grow_with_frames_and_ffn_costs_like_tsm():
    ffn, tsm = _model(), _model(ffn=False)
    f = flops_per_frame_count(ffn, (4, 8, 16), size=32)
    t = flops_per_frame_count(tsm, (4, 8, 16), size=32)
    assert f[8] == pytest.approx(2 * f[4], rel=0.01) and f[16] == pytest.approx(4 * f[4], rel=0.01)
    assert t[16] <= f[16] <= 1.02 * t[16]


class WithUndecodable(torch.utils.data.Dataset):
    """`data` where the items in `bad` come back as MultiFrameClips(on_error="skip") returns a
    video that does not decode: zero clips labelled SKIPPED."""

    def __init__(self, data, bad):
        self.data, self.bad = data, set(bad)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        *clips, label = self.data[i]
        return (*[torch.zeros_like(c) for c in clips], torch.tensor(SKIPPED)) if i in self.bad else (*clips, label)


def test_trainers_leave_out_and_count_undecodable_videos():
    """Training steps on the decodable rows of a batch (a batch with none is passed over) and the
    epoch row counts what was left out; validation figures are those of the decodable clips."""
    train, val = moving_bar_clips(24, seed=2), moving_bar_clips(16, seed=3)
    bad_train = {0, 1, 2, 3, 4, 5, 6, 7, 9}          # with batch 8 and no shuffle: one whole batch and one more
    trainer = FFNTrainer(_model(dropout=0.0), WithUndecodable(train, bad_train), WithUndecodable(val, {3, 11}),
                         _config(epochs=1), None)
    trainer.train_loader = torch.utils.data.DataLoader(trainer.train_data, batch_size=8, drop_last=True)
    before = {k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()}
    row = trainer.train()[0]
    assert row["train_skipped"] == len(bad_train) and row["val_skipped"] == 2
    assert trainer.global_step == 2                   # the all-undecodable batch took no step
    assert any(not torch.equal(before[k], v) for k, v in trainer.unwrapped_model.state_dict().items())

    readable = torch.utils.data.Subset(val, [i for i in range(16) if i not in (3, 11)])
    want = accuracy_by_frames(trainer.unwrapped_model, torch.utils.data.DataLoader(readable, batch_size=8))
    assert row["val_acc_4f"] == want[4]["acc"] and row["val_acc_16f"] == want[16]["acc"]
    assert trainer.validate()["skipped"] == 2
