"""FusionSystem, FusionUNet, FusionLoss and the Accelerate training loop."""

import numpy as np
import pytest
import torch

from polyspace_core.colorize.data import SequenceDataset, make_clip
from polyspace_core.colorize.exemplar import ExemplarBranch, build_exemplar_branch
from polyspace_core.colorize.fusion_unet import FusionUNet
from polyspace_core.colorize.lab import split_lab
from polyspace_core.colorize.loss import FusionLoss, build_feature_net, contextual_loss
from polyspace_core.colorize.system import FusionSystem
from polyspace_core.colorize.train import TrainConfig, train_colorization
from polyspace_core.errors import PolySpaceError


def _clip(seed: int, t: int = 5, size: int = 32):
    """A panning colour texture clip whose reference is its first frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size // 4, 2 * size // 4, 3), dtype=np.uint8)
    import cv2
    big = cv2.resize(base, (2 * size, size), interpolation=cv2.INTER_CUBIC)
    frames = np.stack([big[:, 2 * i:2 * i + size] for i in range(t)])
    return make_clip(f"c{seed}", frames, frames[0].copy(), "first_frame")


def _system(seed=0):
    torch.manual_seed(seed)
    return FusionSystem(build_exemplar_branch(), FusionUNet())


def test_forward_sequence_shapes_and_memflow_outputs():
    clips = [_clip(0), _clip(1)]
    lab = torch.stack([c.lab for c in clips])
    refs = np.stack([c.reference for c in clips])                 # uint8 RGB like PIL images
    system = _system()
    system.reset_memory()
    out, mf_ab, mf_conf = system.forward_sequence(lab, None, refs, return_memflow=True)
    assert out.shape == (2, 5, 2, 32, 32) and mf_ab.shape == (2, 5, 2, 32, 32) and mf_conf.shape == (2, 5, 1, 32, 32)
    # frame 0 is propagated from the reference (= frame 0): near-full confidence, near-exact colours
    assert mf_conf[:, 0].mean() > 0.9
    assert (mf_ab[:, 0] - split_lab(lab[:, 0])[1]).abs().mean() < 0.01
    branches = system(lab, None, torch.stack([c.ref_lab for c in clips]), return_branches=True)
    assert set(branches) == {"ab", "temporal_ab", "temporal_conf", "exemplar_ab", "exemplar_sim", "gate"}


def test_untrained_fusion_prefers_the_more_confident_branch():
    net = FusionUNet()
    l = torch.zeros(1, 1, 16, 16)
    a, b = torch.full((1, 2, 16, 16), 0.5), torch.full((1, 2, 16, 16), -0.5)
    sure_t = net(l, a, torch.ones(1, 1, 16, 16), b, torch.zeros(1, 1, 16, 16))
    sure_e = net(l, a, torch.zeros(1, 1, 16, 16), b, torch.ones(1, 1, 16, 16))
    assert sure_t["ab"].mean() > 0.45 and sure_e["ab"].mean() < -0.45


def test_chunked_sequence_equals_one_pass():
    """The memory carries over between calls: streaming in chunks gives the same result."""
    clip = _clip(2, t=6)
    system = _system().eval()
    with torch.no_grad():
        system.reset_memory()
        whole = system(clip.lab[None], clip.grey[None], clip.reference[None])
        system.reset_memory()
        a = system(clip.lab[None, :4], clip.grey[None, :4], clip.reference[None])
        b = system(clip.lab[None, 4:], clip.grey[None, 4:], clip.reference[None])
    torch.testing.assert_close(torch.cat([a, b], 1), whole)


def test_parameter_groups_follow_the_seed_table(tmp_path):
    system = _system()
    groups = system.get_parameter_groups()
    assert [g["name"] for g in groups] == ["exemplar", "fusion"]
    assert [g["lr"] for g in groups] == [1e-4, 1e-4]                     # from scratch
    ids = [{id(p) for p in g["params"]} for g in groups]
    assert not ids[0] & ids[1]
    trainable = {id(p) for p in system.parameters() if p.requires_grad}
    assert ids[0] | ids[1] == trainable
    system.exemplar.save_pretrained(tmp_path / "ex")
    pretrained = FusionSystem(ExemplarBranch.from_pretrained(tmp_path / "ex"))
    groups = pretrained.get_parameter_groups()
    assert [g["lr"] for g in groups] == [1e-5, 1e-4]                     # fine-tuning
    assert len(groups[0]["params"]) == len(list(pretrained.exemplar.nonlocal_net.parameters()))
    assert [g["lr"] for g in pretrained.get_parameter_groups(3e-4, 2e-3)] == [3e-4, 2e-3]


def test_save_and_load_system(tmp_path):
    clip = _clip(3)
    system = _system()
    system.trained_size = 32
    with torch.no_grad():
        for p in system.fusion_net.parameters():
            p.add_(0.01)
    system.save_pretrained(tmp_path / "ckpt")
    loaded = FusionSystem.from_pretrained(tmp_path / "ckpt")
    assert loaded.trained_size == 32
    with torch.no_grad():
        system.reset_memory()
        loaded.reset_memory()
        torch.testing.assert_close(loaded(clip.lab[None], None, clip.reference[None]),
                                   system(clip.lab[None], None, clip.reference[None]))
    with pytest.raises(PolySpaceError, match="system.json"):
        FusionSystem.from_pretrained(tmp_path)


def test_input_errors():
    system = _system()
    clip = _clip(4)
    with pytest.raises(PolySpaceError, match="references"):
        system(clip.lab[None], None, None)
    with pytest.raises(PolySpaceError, match="frames_lab"):
        system(clip.lab, None, clip.reference[None])
    with pytest.raises(PolySpaceError, match="2 references for 1"):
        system(clip.lab[None], None, np.stack([clip.reference] * 2))


def test_fusion_loss_terms():
    clip = _clip(5)
    lab = clip.lab[None]
    _, ab = split_lab(lab)
    loss = FusionLoss(temporal_weight=1.0)
    assert float(loss(ab, lab, ab, torch.ones_like(ab[:, :, :1]))) == 0.0
    noisy = ab + 0.1
    total = loss(noisy, lab, ab, torch.ones_like(ab[:, :, :1]))
    assert loss.last_terms["l1"] == pytest.approx(0.1, abs=1e-5)
    assert loss.last_terms["temporal"] == pytest.approx(0.1, abs=1e-5)
    assert float(total) == pytest.approx(0.2, abs=1e-5)
    zero_conf = loss(noisy, lab, ab, torch.zeros_like(ab[:, :, :1]))  # untrusted flow: no temporal penalty
    assert loss.last_terms["temporal"] == 0.0 and float(zero_conf) == pytest.approx(0.1, abs=1e-5)
    with pytest.raises(PolySpaceError, match="feature_net"):
        FusionLoss(perceptual_weight=1.0)


def test_perceptual_and_contextual_terms_with_a_feature_net():
    clip = _clip(6)
    lab = clip.lab[None]
    _, ab = split_lab(lab)
    loss = FusionLoss(temporal_weight=0.0, perceptual_weight=1.0, contextual_weight=0.1,
                      feature_net=build_feature_net("random"))
    pred = (ab + 0.2 * torch.randn_like(ab)).requires_grad_(True)
    total = loss(pred, lab, references=clip.ref_lab[None])
    total.backward()
    assert loss.last_terms["perceptual"] > 0 and pred.grad.abs().sum() > 0
    perfect = loss(ab, lab, references=clip.ref_lab[None])
    assert loss.last_terms["perceptual"] < 1e-6 and float(perfect) < float(total.detach())
    x = torch.randn(1, 8, 6, 6)
    assert float(contextual_loss(x, x)) < float(contextual_loss(x, torch.randn(1, 8, 6, 6)))
    assert float(contextual_loss(x, x)) < 0.05


def test_training_learns_and_resumes(tmp_path):
    train = [_clip(s) for s in range(10, 14)]
    val = [_clip(s) for s in range(20, 22)]
    cfg = TrainConfig(exemplar_epochs=3, fusion_epochs=1, batch_size=10, frames_per_clip=5, fusion_batch_size=2,
                      lr_exemplar=3e-3, lr_fusion=3e-3)
    system, history = train_colorization(train, val, tmp_path / "run", cfg, "cpu", progress=False)
    assert [h["phase"] for h in history] == ["exemplar"] * 3 + ["fusion"]
    ex = [h["val_l1"] for h in history if h["phase"] == "exemplar"]
    assert min(ex[1:]) < 0.9 * ex[0]                       # validation error goes down
    assert (tmp_path / "run" / "checkpoint" / "system.json").is_file()
    # a finished run is loaded, not retrained, and gives the same colours
    again, history2 = train_colorization(train, val, tmp_path / "run", cfg, "cpu", progress=False)
    assert history2 == history
    with torch.no_grad():
        system.reset_memory()
        again.reset_memory()
        torch.testing.assert_close(again(train[0].lab[None], None, train[0].reference[None]),
                                   system(train[0].lab[None], None, train[0].reference[None]))


def test_training_with_bf16_autocast_and_accumulation(tmp_path):
    train = [_clip(s, t=3) for s in range(30, 32)]
    cfg = TrainConfig(exemplar_epochs=1, fusion_epochs=1, batch_size=2, frames_per_clip=2, fusion_batch_size=1,
                      mixed_precision="bf16", grad_accum=2)
    before = [p.detach().clone() for p in build_exemplar_branch(embed_seed=0).colornet.parameters()]
    system, history = train_colorization(train, train[:1], tmp_path / "run", cfg, "cpu", progress=False)
    assert all(np.isfinite(h["train_loss"]) for h in history)
    after = list(system.exemplar.colornet.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))   # accumulated steps did update
    with torch.no_grad():  # the returned system runs in fp32 again (no autocast left on forward)
        system.reset_memory()
        out = system(train[0].lab[None], None, train[0].reference[None])
    assert out.dtype == torch.float32
    with pytest.raises(PolySpaceError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8").check()


def test_sequence_dataset_starts_at_frame_zero():
    ds = SequenceDataset([_clip(7, t=6), _clip(8, t=6)], seq_len=4)
    item = ds[1]
    assert item["lab"].shape == (4, 3, 32, 32) and item["grey"].dtype == torch.uint8
    torch.testing.assert_close(item["lab"][0], ds.clips[1].lab[0])
    with pytest.raises(PolySpaceError, match="longer than"):
        SequenceDataset([_clip(7, t=3)], seq_len=4)
