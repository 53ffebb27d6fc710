"""VideoClipDataset / ClipLoader on a generated set: clips, labels, determinism, skip/error."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from polyspace_core.datasets import generate_synthmotion, load_split
from polyspace_core.datasets.clip_dataset import ClipLoader, VideoClipDataset, collate_clips
from polyspace_core.errors import PolySpaceError
from polyspace_core.video import ClipRequest, SpatialTransform, VideoDecodeError, read_frames, uniform_indices


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clipds") / "synth"
    generate_synthmotion(root, "hmdb51-csv", ["move_left", "move_right", "blink_once"], clips_per_class=4,
                         frames=8, size=32, seed=2, progress=False)
    return root


REQUESTS = [ClipRequest("f8", 8, "uniform"), ClipRequest("f4", 4, "tsn")]


def test_items_hold_every_requested_clip_from_one_decode(synth_root: Path):
    split = load_split("hmdb51-csv", synth_root, "train")
    ds = VideoClipDataset(split, REQUESTS)
    item = ds[3]
    assert set(item) == {"clips", "label", "path", "index"}
    assert item["label"] == split.items[3].label and item["path"] == str(split.items[3].path)
    f8, f4 = item["clips"]["f8"], item["clips"]["f4"]
    assert f8.shape == (8, 32, 32, 3) and f8.dtype == torch.uint8 and f4.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(f8.numpy(), read_frames(split.items[3].path, range(8)))
    np.testing.assert_array_equal(f4.numpy(), f8.numpy()[uniform_indices(8, 4)])  # eval = centres


def test_training_draws_repeat_per_seed_and_change_per_epoch(synth_root: Path):
    split = load_split("hmdb51-csv", synth_root, "train")
    make = lambda seed: VideoClipDataset(  # noqa: E731
        split, REQUESTS, train=True, seed=seed,
        transform=SpatialTransform(crop=20, train=True))
    a, b = make(0), make(0)
    assert a[1]["clips"]["f4"].shape == (4, 20, 20, 3)
    assert torch.equal(a[1]["clips"]["f8"], b[1]["clips"]["f8"])
    draws = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        item = a[1]
        x, f4 = item["clips"]["f8"].numpy(), item["clips"]["f4"].numpy()
        draws.add(x.tobytes())
        # a 20x20 window of the decoded frames ...
        full = read_frames(split.items[1].path, range(8))
        assert any(np.array_equal(x, full[:, t:t + 20, s:s + 20]) for t in range(13) for s in range(13))
        # ... and one crop shared by both requests: every f4 frame is one of f8's (all 8) frames
        assert all(any(np.array_equal(frame, x[t]) for t in range(8)) for frame in f4)
    assert len(draws) > 1


def test_float_output_is_channels_first_and_normalised(synth_root: Path):
    split = load_split("hmdb51-csv", synth_root, "test")
    raw = VideoClipDataset(split, REQUESTS)[0]["clips"]["f8"].numpy()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x = VideoClipDataset(split, REQUESTS, output="float", mean=mean, std=std)[0]["clips"]["f8"]
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    expected = (raw.transpose(0, 3, 1, 2) / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    with pytest.raises(PolySpaceError, match="mean/std"):
        VideoClipDataset(split, REQUESTS, mean=mean, std=std)
    with pytest.raises(PolySpaceError, match="on_error='ignore'"):
        VideoClipDataset(split, REQUESTS, on_error="ignore")


@pytest.fixture
def split_with_bad_videos(synth_root: Path, tmp_path: Path):
    split = load_split("hmdb51-csv", synth_root, "train")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    items = list(split.items)
    items[2] = type(items[2])(corrupt, items[2].label, items[2].class_name, "corrupt")
    items[5] = type(items[5])(tmp_path / "missing.mp4", items[5].label, items[5].class_name, "missing")
    split.items = items
    return split, {str(corrupt), str(tmp_path / "missing.mp4")}


def test_error_policy_raises_one_line_naming_the_file(split_with_bad_videos):
    split, bad = split_with_bad_videos
    ds = VideoClipDataset(split, REQUESTS, on_error="error")
    with pytest.raises(VideoDecodeError) as e:
        ds[2]
    message = str(e.value)
    assert "corrupt.mp4" in message and "\n" not in message and "on_error='skip'" in message


@pytest.mark.parametrize("workers", [0, 1])
def test_skip_policy_drops_and_reports_bad_videos(split_with_bad_videos, caplog, workers):
    split, bad = split_with_bad_videos
    ds = VideoClipDataset(split, REQUESTS, on_error="skip")
    loader = ClipLoader(ds, batch_size=4, num_workers=workers)
    seen, labels = [], []
    with caplog.at_level(logging.WARNING, logger="polyspace.datasets"):
        for batch in loader:
            seen += batch["path"]
            labels += batch["label"].tolist()
            assert batch["clips"]["f8"].shape[0] == len(batch["path"])
            # no stand-in clip: every kept clip is a real decoded video
            assert all(clip.float().std() > 5 for clip in batch["clips"]["f8"])
    assert len(seen) == len(split) - 2 and not set(seen) & bad
    assert labels == [it.label for it in split.items if str(it.path) not in bad]
    assert {path for path, _ in ds.skipped} == bad
    assert all(reason for _, reason in ds.skipped)
    assert "skipped 2 of" in caplog.text


def test_collate_of_only_skipped_items_is_an_empty_batch():
    batch = collate_clips([{"skipped": True, "path": "a.mp4", "reason": "corrupt", "index": 0}])
    assert batch["clips"] == {} and batch["label"].shape == (0,) and batch["skipped"] == [("a.mp4", "corrupt")]
