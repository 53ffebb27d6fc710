"""featurize: the CLI on a small SynthMotion set writes valid fp32/fp16 stores, each video is decoded
once for all models, bad videos are recorded and skipped, workers do not change the result, and a
rerun with other settings is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polyspace_core.errors import PolySpaceError
from polyspace_core.features.store import FeatureStore

MODELS = ["--student", "vjepa2-tiny", "--teachers", "videomae-tiny", "timesformer-tiny", "vivit-tiny"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from polyspace_core.datasets import generate_synthmotion

    root = tmp_path_factory.mktemp("synth")
    generate_synthmotion(root, layout="hmdb51-csv", classes=4, clips_per_class=4, frames=16, size=32,
                         seed=3, progress=False)
    return root


def run_cli(*args: str) -> int:
    from polyspace_core.cli import main

    return main(["featurize", "--dataset", "synthmotion", "--workers", "0", *args])


def test_cli_writes_fp32_and_fp16_stores(synth, tmp_path, monkeypatch):
    import polyspace_core.video.multi as multi
    from polyspace_core.datasets import load_split

    calls = []
    real = multi.decode_clips
    monkeypatch.setattr(multi, "decode_clips", lambda path, requests, **kw: calls.append(len(requests)) or
                        real(path, requests, **kw))
    n = len(load_split("synthmotion", synth, "train"))
    assert run_cli("--root", str(synth), "--out", str(tmp_path / "f32"), *MODELS, "--batch", "3",
                   "--shard_size", "4") == 0
    # one decode per video, serving all four models
    assert calls == [4] * n
    f32 = FeatureStore.open(tmp_path / "f32" / "train", verify=True)
    assert len(f32) == n and f32.ok.all() and f32.dtype == torch.float32
    assert f32.manifest["decodes"]["videos_decoded"] == n
    assert f32.student == "vjepa2-tiny" and f32.teachers == ["videomae-tiny", "timesformer-tiny", "vivit-tiny"]
    expected = {"vjepa2-tiny": (8, 96), "videomae-tiny": (8, 128), "timesformer-tiny": (8, 96),
                "vivit-tiny": (8, 64)}
    for m, shape in expected.items():
        assert f32.shape(m) == shape and f32.array(m).shape == (n, *shape)
        assert torch.isfinite(f32.array(m)).all()
        info = f32.model_info(m)
        assert info["clip"]["frames"] == (8 if m == "timesformer-tiny" else 16) and info["tokens"] == "temporal"
    assert f32.class_names == load_split("synthmotion", synth, "train").class_names
    # distinct videos give distinct features (no constant output, no shared rows)
    x = f32.array("videomae-tiny").flatten(1)
    assert torch.cdist(x, x).fill_diagonal_(1.0).min() > 1e-4

    assert run_cli("--root", str(synth), "--out", str(tmp_path / "f16"), *MODELS, "--batch", "3",
                   "--shard_size", "4", "--fp16") == 0
    f16 = FeatureStore.open(tmp_path / "f16" / "train", verify=True)
    assert f16.dtype == torch.float16 and f16.manifest["dtype"] == "float16"
    for m in expected:
        torch.testing.assert_close(f16.array(m).float(), f32.array(m), rtol=2e-3, atol=2e-3)
    assert f16.disk_bytes() / f32.disk_bytes() < 0.52


def test_bad_video_is_recorded_and_skipped_or_stops_the_run(synth, tmp_path):
    from polyspace_core.datasets import load_split
    from polyspace_core.features.featurize import featurize

    split = load_split("synthmotion", synth, "validation")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 200)
    split.items.insert(1, type(split.items[0])(bad, 0, split.class_names[0], "broken"))
    result = featurize(split, "vjepa2-tiny", ["timesformer-tiny"], tmp_path / "out", batch=2, device="cpu",
                       progress=False)
    store = FeatureStore.open(result.store_dir)
    assert store.ok.tolist() == [True, False] + [True] * (len(split) - 2)
    assert [f[0] for f in result.failures] == [1] and "broken.mp4" in result.failures[0][2]
    assert torch.isnan(store.array("timesformer-tiny")[1]).all()
    assert torch.isfinite(store.array("timesformer-tiny")[store.ok]).all()
    assert "failed #1" in result.summary()
    with pytest.raises(PolySpaceError, match="broken.mp4") as e:
        featurize(split, "vjepa2-tiny", ["timesformer-tiny"], tmp_path / "strict", batch=2, device="cpu",
                  on_error="error", progress=False)
    assert "\n" not in str(e.value)


def test_a_short_video_is_looped_and_recorded_or_left_out_by_min_frames(synth, tmp_path):
    """A 2-frame video among 16-frame ones: its clips loop its 2 frames and the manifest says so
    (frames available, fill) instead of passing it off as a 16-frame clip; with min_frames it is
    left out with the reason recorded, and that setting is part of what a resumed store must match."""
    from polyspace_core.datasets import load_split
    from polyspace_core.features.featurize import featurize
    from polyspace_core.video import write_video

    split = load_split("synthmotion", synth, "validation")
    short = write_video(tmp_path / "short.mp4", np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3),
                                                                                  dtype=np.uint8))
    split.items.insert(1, type(split.items[0])(short, 0, split.class_names[0], "short"))
    models = ("vjepa2-tiny", ["timesformer-tiny"])  # 16 and 8 frames per clip
    store = FeatureStore.open(featurize(split, *models, tmp_path / "loop", batch=2, device="cpu",
                                        progress=False).store_dir)
    assert store.ok.all()
    clips = store.manifest["clips"]
    assert clips[1] == {"frames_available": 2, "fill": "loop"}
    assert all(c == {"frames_available": 16, "fill": None} for i, c in enumerate(clips) if i != 1)
    assert "policy" not in store.manifest  # the default keeps the fingerprint of stores made before

    result = featurize(split, *models, tmp_path / "skip", batch=2, device="cpu", min_frames=8, progress=False)
    store = FeatureStore.open(result.store_dir)
    assert store.ok.tolist() == [True, False] + [True] * (len(split) - 2)
    assert "2 frames, fewer than min_frames=8" in store.status[1] and store.manifest["clips"][1] is None
    assert store.manifest["policy"] == {"min_frames": 8}
    with pytest.raises(PolySpaceError, match="other settings|--overwrite|replace"):
        featurize(split, *models, tmp_path / "skip", batch=2, device="cpu", min_frames=4, progress=False)
    with pytest.raises(PolySpaceError, match="min_frames 0: must be a positive integer"):
        featurize(split, *models, tmp_path / "bad", device="cpu", min_frames=0, progress=False)


def test_workers_tokens_and_changed_settings(synth, tmp_path):
    from polyspace_core.datasets import load_split
    from polyspace_core.features.featurize import featurize

    split = load_split("synthmotion", synth, "test")
    kw = dict(batch=2, device="cpu", progress=False, shard_size=3)
    serial = featurize(split, "vjepa2-tiny", ["vivit-tiny"], tmp_path / "a", workers=0, **kw)
    parallel = featurize(split, "vjepa2-tiny", ["vivit-tiny"], tmp_path / "b", workers=2, **kw)
    a, b = FeatureStore.open(serial.store_dir), FeatureStore.open(parallel.store_dir)
    for m in a.models:
        assert torch.equal(a.array(m), b.array(m))
    # rerunning the same command reuses every shard
    again = featurize(split, "vjepa2-tiny", ["vivit-tiny"], tmp_path / "a", **kw)
    assert again.shards_computed == [] and again.shards_reused == list(range(len(a.shards)))
    # other settings into the same folder: refused, unless overwrite
    with pytest.raises(PolySpaceError, match="--overwrite"):
        featurize(split, "vjepa2-tiny", ["vivit-tiny"], tmp_path / "a", tokens="clip", **kw)
    clip = featurize(split, "vjepa2-tiny", ["vivit-tiny"], tmp_path / "a", tokens="clip", replace_stale=True, **kw)
    assert clip.shards_reused == []
    assert featurize(split, "vjepa2-tiny", ["vivit-tiny"], tmp_path / "a", tokens="clip", replace_stale=True,
                     **kw).shards_computed == []  # same settings: replace_stale resumes
    assert featurize(split, "vjepa2-tiny", ["vivit-tiny"], tmp_path / "a", tokens="clip", overwrite=True,
                     **kw).shards_reused == []  # overwrite always starts over
    c = FeatureStore.open(clip.store_dir)
    assert c.tokens == "clip" and c.shape("vivit-tiny") == (1, 64)
    # the clip rule of ViViT is its CLS token, not the mean of the temporal tokens
    assert not torch.allclose(c.array("vivit-tiny")[:, 0], a.array("vivit-tiny").mean(1), atol=1e-3)


def test_full_tokens_are_the_same_at_any_shard_size(synth, tmp_path):
    """Rows are written into their shard batch by batch: one shard per clip or one for all gives
    the same features (and a store that verifies); no temp file is left behind."""
    from polyspace_core.datasets import load_split
    from polyspace_core.features.featurize import featurize

    split = load_split("synthmotion", synth, "test")
    kw = dict(tokens="full", batch=1, device="cpu", progress=False, workers=0)
    one = featurize(split, "vjepa2-tiny", ["timesformer-tiny"], tmp_path / "one", shard_size=1, **kw)
    all_ = featurize(split, "vjepa2-tiny", ["timesformer-tiny"], tmp_path / "all", shard_size=64, **kw)
    a, b = FeatureStore.open(one.store_dir, verify=True), FeatureStore.open(all_.store_dir, verify=True)
    assert len(a.shards) == len(split) and len(b.shards) == 1
    for m in a.models:
        assert a.shape(m)[0] > 8 and torch.equal(a.array(m), b.array(m))  # every patch token
    assert list(tmp_path.rglob("*.tmp")) == []


def test_cli_errors_are_one_line(synth, tmp_path, capsys):
    assert run_cli("--root", str(synth), "--out", str(tmp_path), "--student", "vjepa9") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model 'vjepa9'") and err.count("\n") == 1
    assert run_cli("--root", str(synth), "--out", str(tmp_path), "--student", "vjepa2-tiny", "--teachers",
                   "vjepa2-tiny") == 2
    assert "name" in capsys.readouterr().err
    assert run_cli("--root", str(tmp_path / "nothing"), "--out", str(tmp_path), "--student", "vjepa2-tiny") == 2
    assert "error:" in capsys.readouterr().err


def test_features_info_and_summary(synth, tmp_path, capsys):
    from polyspace_core.cli import main
    from polyspace_core.features.stats import store_summary

    assert run_cli("--root", str(synth), "--split", "validation", "--out", str(tmp_path), "--student",
                   "vjepa2-tiny", "--teachers", "timesformer-tiny", "--bf16") == 0
    capsys.readouterr()
    assert main(["features-info", str(tmp_path / "validation"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    store = FeatureStore.open(tmp_path / "validation")
    assert summary == json.loads(json.dumps(store_summary(store)))
    row = {r["model"]: r for r in summary["models"]}["timesformer-tiny"]
    assert row["dtype"] == "bfloat16" and row["dim"] == 96 and row["T"] == 8
    norms = store.array("timesformer-tiny").float().norm(dim=-1)
    assert row["mean_token_norm"] == pytest.approx(float(norms.mean()), rel=1e-5)
    # summed a batch at a time, the same as over the split in memory
    assert row["std_token_norm"] == pytest.approx(float(norms.std()), rel=1e-4)
    assert row["mean_abs"] == pytest.approx(float(store.array("timesformer-tiny").float().abs().mean()), rel=1e-5)
    expected_mb = len(store) * 8 * 96 * 2 / 2**20
    assert row["disk_mb"] == pytest.approx(expected_mb)
    assert np.isclose(sum(r["disk_mb"] for r in summary["models"]), summary["disk_mb"], rtol=0.2)


def test_token_figure_shows_frames_and_every_model(synth, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from polyspace_core.datasets import load_split
    from polyspace_core.features.featurize import featurize
    from polyspace_core.features.plots import plot_norms, plot_token_features

    split = load_split("synthmotion", synth, "validation")
    result = featurize(split, "vjepa2-tiny", ["vivit-tiny"], tmp_path, device="cpu", progress=False)
    store = FeatureStore.open(result.store_dir)
    frames = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    fig = plot_token_features(store, 1, frames)
    heatmaps = [ax for ax in fig.axes if ax.images and ax.get_ylabel().endswith("(centred)")]
    assert len(heatmaps) == 2
    # centred + row-normalised: each time step of the shown clip is a unit vector over the shown dims
    shown = heatmaps[1].images[0].get_array()
    assert shown.shape == (64, 8) and np.allclose(np.linalg.norm(shown, axis=0), 1.0, atol=1e-5)
    assert len(plot_norms(store).axes) == 2


def test_replaced_videos_are_never_resumed(tmp_path):
    from polyspace_core.datasets.base import DatasetSplit, VideoItem
    from polyspace_core.features.featurize import featurize
    from polyspace_core.video import write_video

    rng = np.random.default_rng(0)
    paths = [write_video(tmp_path / f"v{i}.mp4", rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))
             for i in range(2)]
    split = DatasetSplit("custom", "train", [VideoItem(p, i, "ab"[i], p.stem) for i, p in enumerate(paths)],
                         ["a", "b"], tmp_path)
    first = featurize(split, "timesformer-tiny", [], tmp_path / "f", device="cpu", progress=False)
    before = FeatureStore.open(first.store_dir).array("timesformer-tiny").clone()
    write_video(paths[1], rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8))  # same name, new content
    with pytest.raises(PolySpaceError, match="other settings"):
        featurize(split, "timesformer-tiny", [], tmp_path / "f", device="cpu", progress=False)
    again = featurize(split, "timesformer-tiny", [], tmp_path / "f", device="cpu", progress=False, replace_stale=True)
    after = FeatureStore.open(again.store_dir).array("timesformer-tiny")
    assert again.shards_computed == [0] and torch.equal(after[0], before[0]) and not torch.equal(after[1], before[1])
