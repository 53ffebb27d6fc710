"""The tiny zoo: supervised training learns on clips with temporal signal, and build_zoo saves members
that load through load_backbone like any checkpoint, with a zoo card, and reuses them when cached."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polyspace_core.backbones import load_backbone
from polyspace_core.features.zoo import build_zoo, clip_features, linear_probe_accuracy, train_classifier


def order_clips(n: int, frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: a bright blob in the first half of the clip, class 1: in the second half, at a random
    place on noise. Every frame-averaged statistic is the same for both: only temporal order tells."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, frames, 3, 32, 32, generator=g) * 0.5
    y = torch.arange(n) % 2
    for i in range(n):
        r, c = torch.randint(0, 24, (2,), generator=g).tolist()
        half = slice(0, frames // 2) if y[i] == 0 else slice(frames // 2, frames)
        x[i, half, :, r:r + 8, c:c + 8] += 2.0
    return x, y


def test_supervised_training_learns_temporal_order():
    b = load_backbone("videomae-tiny")
    xtr, ytr = order_clips(64, b.frames, 0)
    xte, yte = order_clips(32, b.frames, 1)
    before = linear_probe_accuracy(clip_features(b, xtr), ytr, clip_features(b, xte), yte, 2)
    history = train_classifier(b, xtr, ytr, 2, epochs=10, batch=16, lr=2e-3, weight_decay=0.0, warmup=0.1,
                               seed=0, device=torch.device("cpu"), desc="test")
    after = linear_probe_accuracy(clip_features(b, xtr), ytr, clip_features(b, xte), yte, 2)
    assert history[-1]["loss"] < history[0]["loss"]
    assert after >= 0.9 and after > before + 0.2, (before, after)


def test_linear_probe_accuracy_separates_and_chance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] > 0).long()
    assert linear_probe_accuracy(x[:100], y[:100], x[100:], y[100:], 2) > 0.9
    noise = torch.randn(200, 5, generator=g)
    assert abs(linear_probe_accuracy(noise[:100], y[:100], noise[100:], y[100:], 2) - 0.5) < 0.2


def test_build_zoo_saves_loadable_members_and_reuses_them(tmp_path):
    small = dict(classes=4, clips_per_class=5, size=32)
    cards = build_zoo(tmp_path / "zoo", tmp_path / "data", members=["vjepa2-tiny", "timesformer-tiny"], epochs=1,
                      device="cpu", workers=0, progress=False, pretrain=small)
    assert list(cards) == ["vjepa2-tiny", "timesformer-tiny"]
    student, teacher = cards["vjepa2-tiny"], cards["timesformer-tiny"]
    assert student["role"] == "student" and "coarse" in student["objective"] and "direction" in student["objective"]
    assert teacher["role"] == "teacher" and "4 fine" in teacher["objective"]
    for name, card in cards.items():
        saved = json.loads((tmp_path / "zoo" / name / "zoo_card.json").read_text())
        assert saved["epochs"] == 1 and len(saved["history"]) == 1
        assert 0.0 <= saved["probe"]["accuracy"] <= 1.0 and saved["probe"]["chance"] == 0.25
        assert saved["pretrain_data"]["seed"] != 0  # not the downstream demo's seed
        loaded = load_backbone(card["path"])
        assert loaded.name == name and loaded.arch.key == name.split("-")[0]
        random_init = load_backbone(name)
        clip = [np.random.default_rng(0).integers(0, 256, (loaded.frames, 32, 32, 3), dtype=np.uint8)]
        assert not torch.allclose(loaded.features(loaded.preprocess(clip)),
                                  random_init.features(random_init.preprocess(clip)))
    again = build_zoo(tmp_path / "zoo", tmp_path / "data", members=["vjepa2-tiny", "timesformer-tiny"], epochs=1,
                      device="cpu", workers=0, progress=False, pretrain=small)
    assert all(c["cached"] for c in again.values())
    from polyspace_core.errors import PolySpaceError

    with pytest.raises(PolySpaceError, match="unknown"):
        build_zoo(tmp_path / "zoo", members=["resnet-tiny"])
