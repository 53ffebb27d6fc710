"""The paper's recipe by name: TSN's multi-scale crop, the step schedule, linear lr scaling, the
classifier's lr multipliers, `--recipe official` and the params/ssv2_ffn.yaml preset."""

import argparse
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from polyspace_core.datasets import DatasetSplit, VideoItem
from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn import commands, study
from polyspace_core.ffn.data import MultiFrameClips
from polyspace_core.ffn.recipe import OFFICIAL, resolve_recipe
from polyspace_core.ffn.train import TrainConfig, effective_lr, make_scheduler, parameter_groups
from polyspace_core.ffn.tsm_resnet import build_model
from polyspace_core.paths import project_root
from polyspace_core.video import write_video
from polyspace_core.video.multiscale import MultiScaleCrop, crop_pairs, fixed_offsets
from polyspace_core.workspace import load_preset, resolve_params


def test_multiscale_crop_follows_tsn():
    # an SSv2 frame (240 x 427): sides int(240 x s), 210 is not within 3 px of 224 so it stays
    pairs = crop_pairs(427, 240, 224)
    sides = [240, 210, 180, 158]
    assert pairs == [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= 1]
    assert len(pairs) == 10 and (158, 240) not in pairs                 # max_distort 1: neighbouring scales only
    assert crop_pairs(300, 256, 224)[:2] == [(256, 256), (224, 256)]    # 0.875 x 256 = 224 exactly
    assert crop_pairs(300, 226, 224)[0] == (224, 224)                   # 226 is snapped to the output size
    offsets = fixed_offsets(427, 240, 210, 180)                         # steps (427-210)//4 = 54, (240-180)//4 = 15
    assert len(offsets) == 13 and offsets[:5] == [(0, 0), (216, 0), (0, 60), (216, 60), (108, 30)]
    assert len(fixed_offsets(427, 240, 210, 180, more_fix_crop=False)) == 5

    crop = MultiScaleCrop(224)
    rng = np.random.default_rng(0)
    seen_sizes, seen_offsets = set(), set()
    for _ in range(400):
        p = crop.draw(rng, 240, 427)
        top, left, h, w = p.box
        assert (w, h) in pairs and (left, top) in fixed_offsets(427, 240, w, h)
        seen_sizes.add((w, h))
        seen_offsets.add((left, top))
    assert seen_sizes == set(pairs) and len(seen_offsets) > 13           # every size; positions differ per size
    frames = np.random.default_rng(1).integers(0, 256, (3, 240, 427, 3), dtype=np.uint8)
    p = crop.draw(np.random.default_rng(2), 240, 427)
    out = crop.apply(frames, p)
    top, left, h, w = p.box
    assert out.shape == (3, 224, 224, 3) and out.dtype == np.uint8
    if (h, w) == (224, 224):
        assert np.array_equal(out, frames[:, top:top + 224, left:left + 224])
    with pytest.raises(PolySpaceError, match="rng"):
        crop.draw(None, 240, 427)
    with pytest.raises(PolySpaceError, match="scales"):
        MultiScaleCrop(224, scales=[1.0, 1.5])


def test_multiscale_crop_is_shared_by_every_frame_count_and_equal_cached_or_streamed(tmp_path):
    # a static random-block texture: equal crops <=> equal clips; the frame size varies the crop size
    rng = np.random.default_rng(0)
    texture = np.kron(rng.integers(0, 256, (6, 8, 1), dtype=np.uint8), np.ones((8, 8, 3), dtype=np.uint8))
    path = write_video(tmp_path / "static.mp4", np.repeat(texture[None], 20, axis=0), options={"crf": "0"})
    split = DatasetSplit("custom", "train", [VideoItem(path, 0, "static", "static")], ["static"], tmp_path)
    kw = dict(size=24, short_side=40, crop="multiscale", progress=False)
    cached = MultiFrameClips(split, (4, 8, 16), train=True, cache=True, **kw)
    streamed = MultiFrameClips(split, (4, 8, 16), train=True, **kw)
    assert isinstance(cached.transform, MultiScaleCrop)
    firsts = []
    for epoch in range(5):
        cached.set_epoch(epoch)
        streamed.set_epoch(epoch)
        a, b = cached[0], streamed[0]
        assert all(torch.equal(x, y) for x, y in zip(a[:3], b[:3]))
        for clip in a[1:3]:
            assert (clip[:, 0] - a[0][:, 0]).abs().max() < 0.1
        firsts.append(a[0][:, 0])
    assert any((f - firsts[0]).abs().max() > 0.5 for f in firsts[1:])
    evaluation = MultiFrameClips(split, (4,), train=False, **kw)
    assert evaluation.crop == "centre" and not isinstance(evaluation.transform, MultiScaleCrop)


def test_step_schedule_linear_scaling_and_classifier_multipliers():
    config = TrainConfig(epochs=50, batch_size=8, lr=0.01, lr_batch=32, schedule="step", device="cpu")
    assert effective_lr(config) == pytest.approx(0.0025)
    assert effective_lr(config, num_processes=4) == pytest.approx(0.01)
    assert effective_lr(TrainConfig(batch_size=8, lr=0.01)) == 0.01             # no lr_batch: lr as given
    model = build_model("tiny", 3, frame_counts=(4, 8, 16), ffn=True)
    groups = {g["name"]: g for g in parameter_groups(model, config, effective_lr(config))}
    assert groups["classifier_weight"]["lr"] == pytest.approx(5 * 0.0025)
    assert groups["classifier_bias"]["lr"] == pytest.approx(10 * 0.0025)
    assert groups["classifier_weight"]["weight_decay"] == 5e-4 and groups["classifier_bias"]["weight_decay"] == 0
    optimizer = torch.optim.SGD(list(groups.values()), lr=0.0025, momentum=0.9)
    scheduler = make_scheduler(optimizer, config)
    lrs = []
    for _ in range(50):                       # the lr each epoch trains at, stepped after the epoch
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:20] == [pytest.approx(0.0025)] * 20
    assert lrs[20:40] == [pytest.approx(0.00025)] * 20 and lrs[40:] == [pytest.approx(0.000025)] * 10
    for bad, match in ((dict(schedule="linear"), "schedule"), (dict(schedule="step", lr_steps=(40, 20)), "lr_steps"),
                       (dict(lr_batch=0), "lr_batch"), (dict(momentum=-1), "momentum")):
        with pytest.raises(PolySpaceError, match=match):
            TrainConfig(**bad)


def _parse(*argv):
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    return parser.parse_args(["train-ffn", "--video_dir", "v", "--labels_dir", "l", *argv])


def test_recipe_by_name_and_explicit_flags_win():
    official = commands.resolved_settings(_parse("--recipe", "official"))
    assert official == OFFICIAL
    assert official["schedule"] == "step" and official["lr_steps"] == [20, 40] and official["lr_decay"] == 0.1
    assert (official["lr"], official["lr_batch"]) == (0.01, 32)
    assert (official["momentum"], official["weight_decay"]) == (0.9, 5e-4)
    assert (official["fc_lr_mult"], official["fc_bias_lr_mult"], official["crop"]) == (5.0, 10.0, "multiscale")
    assert official["scales"] == [1.0, 0.875, 0.75, 0.66] and official["max_distort"] == 1 and official["more_fix_crop"]
    mine = commands.resolved_settings(_parse("--recipe", "official", "--epochs", "10", "--lr_steps", "4", "8",
                                             "--more_fix_crop", "false"))
    assert mine["epochs"] == 10 and mine["lr_steps"] == [4, 8] and mine["more_fix_crop"] is False
    default = commands.resolved_settings(_parse())
    assert default["schedule"] == "cosine" and default["crop"] == "random" and default["lr_batch"] is None
    with pytest.raises(PolySpaceError, match="unknown"):
        resolve_recipe("paper", {})


def test_ssv2_preset_parses_and_resolves_to_the_official_recipe(tmp_path):
    root = project_root()
    assert load_preset("ssv2_ffn", root)["preset"] == "ssv2_ffn"
    notebook = load_preset("default", root)
    p = resolve_params("07_ffn_tfd", {**notebook, "preset": "ssv2_ffn"}, root=root)
    assert p["ffn_dataset"] == "ssv2" and p["ffn_pretrained"] == "imagenet" and p["ffn_arch"] == OFFICIAL["arch"]
    settings = study.settings_from_params(SimpleNamespace(**p), seed=0, device="cpu")
    assert settings["pretrained"] == "imagenet"
    overrides = {k: v for k, v in settings.items() if k not in ("arch", "pretrained", "imagenet_weights")}
    config = study.tfd_train_config(**overrides)
    for key in ("epochs", "batch_size", "lr", "lr_batch", "schedule", "lr_decay", "momentum", "weight_decay",
                "fc_lr_mult", "fc_bias_lr_mult", "clip_grad_norm", "lambda_kl"):
        assert getattr(config, key) == OFFICIAL[key], key
    assert list(config.lr_steps) == OFFICIAL["lr_steps"]
    assert (p["ffn_crop_mode"], p["ffn_crop"], p["ffn_video_size"]) == (OFFICIAL["crop"], OFFICIAL["size"],
                                                                        OFFICIAL["short_side"])
    assert p["ffn_train_frames"] == [OFFICIAL[f"num_frames_{k}"] for k in "lmh"]
    assert build_model(p["ffn_arch"], 174, frame_counts=(4, 8, 16), ffn=True).config.dropout == OFFICIAL["dropout"]
    # the placeholder root is one line naming the key
    with pytest.raises(PolySpaceError, match="^ffn_root .*no Something-Something V2 folder"):
        study.prepare_data(tmp_path / "ssv2", dataset="ssv2", size=256, crop=224, progress=False)
