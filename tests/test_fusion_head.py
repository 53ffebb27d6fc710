"""Fusion head, probes and the training engine on in-memory features with a known signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from polyspace_core.distributed import make_accelerator
from polyspace_core.errors import PolySpaceError
from polyspace_core.fusion.data import TensorBatches, epoch_batches
from polyspace_core.fusion.head import FusionConfig, FusionHead, count_trainable, matched_student_head
from polyspace_core.fusion.metrics import classification_metrics, confusion_matrix, topk_accuracy
from polyspace_core.fusion.pipeline import FusionPipeline, load_fusion, save_fusion
from polyspace_core.fusion.probes import train_linear_probe, train_matched_student_head
from polyspace_core.fusion.train import TrainSettings, fit, predict

T_S, D_S = 4, 16


class AbsConverter(nn.Module):
    """A fixed 'converter' that makes a nonlinear student code linearly readable: |z| per token,
    resampled to 2x the tokens and widened to 24 dims (teacher space shape differs from the student's)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(D_S, 24, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(24, D_S))

    def forward(self, z):
        z = self.proj(z.abs())
        return torch.repeat_interleave(z, 2, dim=1)  # (B, 2*T_S, 24)


def xor_features(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4 balanced classes given by (|x1| > q, |x2| > q) with q the median of |N(0,1)|: a linear
    read-out of the pooled student features sees no class signal, |x| makes it linear."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    q = 0.6745
    labels = (x[:, 0].abs() > q).long() + 2 * (x[:, 1].abs() > q).long()
    z = 0.1 * torch.randn(n, T_S, D_S, generator=g)
    z[:, :, 0] += x[:, 0:1]
    z[:, :, 1] += x[:, 1:2]
    return z, labels


def make_pipeline(gate_l1: float = 0.0, pooling: str = "mean") -> FusionPipeline:
    config = FusionConfig(student="student", student_dim=D_S, student_tokens=T_S, teachers=["abs"],
                          teacher_dims=[24], teacher_tokens=[2 * T_S], num_classes=4, rank=8, gate_hidden=16,
                          pooling=pooling, dropout=0.0, gate_l1=gate_l1)
    return FusionPipeline(FusionHead(config), [AbsConverter()])


@pytest.fixture(scope="module")
def splits():
    (ztr, ytr), (zva, yva) = xor_features(384, 0), xor_features(256, 1)
    train = TensorBatches({"student": ztr}, ytr, batch=32)
    val = TensorBatches({"student": zva}, yva, batch=128)
    return train, val


@pytest.fixture(scope="module")
def accelerator():
    return make_accelerator("cpu")


def test_head_shapes_gates_and_zero_start():
    torch.manual_seed(0)
    config = FusionConfig(student="s", student_dim=D_S, student_tokens=T_S, teachers=["a", "b"],
                          teacher_dims=[24, 8], teacher_tokens=[8, 2], num_classes=5, pooling="attention")
    head = FusionHead(config).eval()
    z0 = torch.randn(3, T_S, D_S)
    a, b = torch.randn(3, 8, 24), torch.randn(3, 2, 8)
    out = head(z0, [a, b])
    assert out["logits"].shape == (3, 5)
    assert out["gates"].shape == (3, 2, T_S)  # per teacher, per student token (length adapted)
    assert bool(((out["gates"] > 0) & (out["gates"] < 1)).all())
    # the up-projections start at zero: an untrained head does not depend on the teachers yet
    other = head(z0, [10 * torch.randn(3, 8, 24), torch.randn(3, 2, 8)])
    torch.testing.assert_close(out["logits"], other["logits"])
    with pytest.raises(PolySpaceError, match="expects 'b' features"):
        head(z0, [a, torch.randn(3, 2, 9)])
    with pytest.raises(PolySpaceError, match="pooling"):
        FusionConfig(student="s", student_dim=4, student_tokens=1, teachers=["a"], teacher_dims=[4],
                     teacher_tokens=[1], num_classes=3, pooling="max")


def test_fusion_learns_what_a_student_probe_cannot(splits, accelerator):
    train, val = splits
    settings = TrainSettings(epochs=12, batch=32, lr=3e-3, weight_decay=0.0, seed=0)
    probe = train_linear_probe(["student"], train, val, 4, settings, accelerator=accelerator, progress=False)
    torch.manual_seed(0)
    fusion = fit(make_pipeline(), train, val, settings, accelerator=accelerator, progress=False)
    assert probe.best_val_top1 < 0.45  # the linear read-out of the student sees ~chance
    assert fusion.best_val_top1 > 0.85
    assert fusion.history[-1]["train_loss"] < fusion.history[0]["train_loss"]
    # the gates learned to let the informative teacher in
    out = predict(fusion.model, val, accelerator=accelerator)
    assert out["gates"].shape == (val.num_samples, 1, T_S)
    assert float(out["gates"].mean()) > 0.3


def test_matched_student_head_has_the_fusion_capacity(splits, accelerator):
    pipeline = make_pipeline()
    target = count_trainable(pipeline)
    head = matched_student_head(target, "student", D_S, T_S, 4)
    assert abs(count_trainable(head) - target) / target < 0.02
    train, val = splits
    result = train_matched_student_head(pipeline, train, val, TrainSettings(epochs=2, batch=64, lr=1e-3),
                                        accelerator=accelerator, progress=False)
    assert result.params_fusion == target
    assert abs(result.params - target) / target < 0.02


def test_gate_sparsity_penalty_closes_gates(splits, accelerator):
    train, val = splits
    settings = TrainSettings(epochs=4, batch=32, lr=3e-3, weight_decay=0.0)
    means = []
    for l1 in (0.0, 2.0):
        torch.manual_seed(0)
        result = fit(make_pipeline(gate_l1=l1), train, val, settings, accelerator=accelerator, progress=False)
        means.append(float(predict(result.model, val, accelerator=accelerator)["gates"].mean()))
    assert means[1] < 0.5 * means[0]


def test_resume_takes_the_same_steps_as_an_uninterrupted_run(splits, accelerator, tmp_path):
    train, val = splits
    settings = TrainSettings(epochs=4, batch=64, lr=3e-3, seed=3)
    torch.manual_seed(0)
    straight = fit(make_pipeline(), train, val, settings, accelerator=accelerator, progress=False,
                   save_dir=tmp_path / "a")
    torch.manual_seed(0)
    first = fit(make_pipeline(), train, val, settings, accelerator=accelerator, progress=False,
                save_dir=tmp_path / "b", stop_after=2)
    assert first.complete is False and [row["epoch"] for row in first.history] == [1, 2]
    torch.manual_seed(123)  # a fresh process: other init, restored from the checkpoint
    resumed = fit(make_pipeline(), train, val, settings, accelerator=accelerator, progress=False,
                  save_dir=tmp_path / "b")
    assert resumed.complete is True
    assert [row["train_loss"] for row in resumed.history] == [row["train_loss"] for row in straight.history]
    for (k, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    # other settings on the same save_dir is an error, not a silent restart
    with pytest.raises(PolySpaceError, match="other settings"):
        fit(make_pipeline(), train, val, TrainSettings(epochs=4, batch=64, lr=1e-3, seed=3),
            accelerator=accelerator, progress=False, save_dir=tmp_path / "b")


def test_a_state_of_an_older_format_is_refused_or_restarted_never_resumed(splits, accelerator, tmp_path):
    """A last/ written by an older version (state format 1) cannot be resumed: the CLI's default is a
    one-line error; on_mismatch="restart" (the notebooks) announces it and trains from scratch."""
    train, val = splits
    settings = TrainSettings(epochs=2, batch=64, lr=3e-3, seed=3)
    torch.manual_seed(0)
    straight = fit(make_pipeline(), train, val, settings, accelerator=accelerator, progress=False,
                   save_dir=tmp_path / "a")
    torch.manual_seed(0)
    fit(make_pipeline(), train, val, settings, accelerator=accelerator, progress=False, save_dir=tmp_path / "b",
        stop_after=1)
    state = tmp_path / "b" / "last" / "state.json"
    state.write_text(state.read_text().replace('"polyspace-fit-state/2"', '"polyspace-fit-state/1"'))
    with pytest.raises(PolySpaceError, match="state format 'polyspace-fit-state/1'"):
        fit(make_pipeline(), train, val, settings, accelerator=accelerator, progress=False, save_dir=tmp_path / "b")
    torch.manual_seed(0)
    restarted = fit(make_pipeline(), train, val, settings, accelerator=accelerator, progress=False,
                    save_dir=tmp_path / "b", on_mismatch="restart")
    assert [row["train_loss"] for row in restarted.history] == [row["train_loss"] for row in straight.history]


def test_fusion_checkpoint_roundtrip(tmp_path):
    from polyspace_core.align.converters import ConverterConfig, build_converter
    from polyspace_core.fusion.pipeline import build_pipeline

    torch.manual_seed(0)
    conv = build_converter(ConverterConfig("mlp", d_in=D_S, d_out=24, t_in=T_S, t_out=8, hidden=16, depth=1))
    pipe = build_pipeline("student", (T_S, D_S), {"videomae": conv}, 4, rank=8, finetune_converters=True)
    for p in pipe.parameters():
        p.data.normal_()
    save_fusion(tmp_path / "ckpt", pipe, {"class_names": list("abcd")})
    loaded = load_fusion(tmp_path / "ckpt")
    z = torch.randn(5, T_S, D_S)
    pipe.eval()
    torch.testing.assert_close(pipe({"student": z})["logits"], loaded({"student": z})["logits"])
    assert loaded.info["class_names"] == list("abcd") and loaded.finetune_converters
    # a converter that does not fit the features is a clear error
    with pytest.raises(PolySpaceError, match="converter for 'videomae'"):
        build_pipeline("student", (T_S + 1, D_S), {"videomae": conv}, 4)
    with pytest.raises(PolySpaceError, match="no fusion checkpoint"):
        load_fusion(tmp_path / "nothing")


def test_frozen_converters_get_no_gradient_and_stay_in_eval():
    conv = nn.Sequential(nn.Linear(D_S, 24), nn.Dropout(0.5))
    config = FusionConfig(student="s", student_dim=D_S, student_tokens=T_S, teachers=["t"], teacher_dims=[24],
                          teacher_tokens=[T_S], num_classes=3)
    pipe = FusionPipeline(FusionHead(config), [conv]).train()
    assert not conv.training and all(not p.requires_grad for p in conv.parameters())
    assert count_trainable(pipe) == count_trainable(pipe.head)


def test_metrics_against_a_direct_count():
    logits = torch.tensor([[3.0, 1, 0, 2], [0, 3, 1, 2], [1, 0, 3, 2], [3, 2, 1, 0], [0, 1, 2, 3], [1, 3, 2, 0]])
    labels = torch.tensor([0, 1, 3, 1, 3, 0])
    m = classification_metrics(logits, labels)
    pred = logits.argmax(1)
    assert m["top1"] == pytest.approx(float((pred == labels).float().mean()))  # 3/6
    top2 = [labels[i].item() in logits[i].topk(2).indices.tolist() for i in range(6)]
    assert classification_metrics(logits[:, :4], labels)["top5"] == 1.0  # capped at 4 classes
    cm = confusion_matrix(pred, labels, 4)
    assert cm.sum() == 6 and cm[0, 0] == 1 and cm[3, 3] == 1 and cm[1, 1] == 1 and cm[3, 2] == 1
    # per-class recall: class0 1/2, class1 1/2, class3 1/2 (class 2 absent, skipped)
    assert m["mean_class_acc"] == pytest.approx(0.5)
    assert m["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, labels)))
    assert topk_accuracy(logits, labels, 2) == pytest.approx(sum(top2) / 6)  # 5/6 by hand
    assert sum(top2) == 5


def test_epoch_batches_are_a_function_of_seed_and_epoch():
    a = epoch_batches(10, 4, epoch=3, seed=1, shuffle=True)
    b = epoch_batches(10, 4, epoch=3, seed=1, shuffle=True)
    c = epoch_batches(10, 4, epoch=4, seed=1, shuffle=True)
    assert all((x == y).all() for x, y in zip(a, b)) and not all((x == y).all() for x, y in zip(a, c))
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    # a last batch smaller than the process count joins the previous one
    assert [len(x) for x in epoch_batches(9, 4, 0, 0, False, min_size=2)] == [4, 5]


def test_full_pass_serves_every_sample_once_in_order_whatever_the_share():
    feats = {"student": torch.arange(10 * 2 * 3, dtype=torch.float32).reshape(10, 2, 3), "t": torch.zeros(10, 1, 4)}
    labels = np.arange(10) % 3
    share = TensorBatches(feats, labels, indices=[1, 3, 4, 6, 7, 9], batch=2, shuffle=True, rank=1, world=2)
    batches = list(share.full_pass(["student"], batch=4))
    assert [b["index"].tolist() for b in batches] == [[1, 3, 4, 6], [7, 9]]
    assert set(batches[0]) == {"student", "label", "index"}
    assert torch.equal(torch.cat([b["student"] for b in batches]), feats["student"][[1, 3, 4, 6, 7, 9]])
    assert torch.cat([b["label"] for b in batches]).tolist() == (np.array([1, 3, 4, 6, 7, 9]) % 3).tolist()


def where_features(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """2 classes told apart by ONE token (at a random place) carrying +-1.5 on dim 0 under unit
    noise (the best possible accuracy is Phi(1.5) = 0.93): the mean over tokens dilutes it 8-fold,
    a query that attends to the marked token reads it whole."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 8, D_S, generator=g)
    labels = torch.arange(n) % 2
    where = torch.randint(0, 8, (n,), generator=g)
    z[torch.arange(n), where, 0] += 1.5 * (2 * labels.float() - 1)
    z[torch.arange(n), where, 1] += 5.0  # the marker an attention score can find
    return z, labels


def test_attentive_probe_matches_the_fusion_size_and_reads_one_token(accelerator):
    from polyspace_core.fusion.head import matched_attentive_probe
    from polyspace_core.fusion.probes import train_attentive_probe

    pipeline = make_pipeline()
    target = count_trainable(pipeline)
    probe = matched_attentive_probe(target, "student", D_S, T_S, 4)
    assert abs(count_trainable(probe) - target) / target < 0.1 and probe.config.width % probe.config.heads == 0
    (ztr, ytr), (zva, yva) = where_features(512, 0), where_features(256, 1)
    train, val = TensorBatches({"student": ztr}, ytr, batch=32), TensorBatches({"student": zva}, yva, batch=128)
    settings = TrainSettings(epochs=15, batch=32, lr=3e-3, seed=0)
    linear = train_linear_probe(["student"], train, val, 2, settings, accelerator=accelerator, progress=False)
    wide = FusionConfig(student="student", student_dim=D_S, student_tokens=8, teachers=["abs"], teacher_dims=[24],
                        teacher_tokens=[16], num_classes=2, rank=8, gate_hidden=16, dropout=0.0)
    attentive = train_attentive_probe(FusionPipeline(FusionHead(wide), [AbsConverter()]), train, val, settings,
                                      accelerator=accelerator, progress=False)
    assert attentive.best_val_top1 >= 0.8 and attentive.best_val_top1 > linear.best_val_top1 + 0.1, (
        attentive.best_val_top1, linear.best_val_top1)
