"""Multi-frame-count clips from SSv2-layout videos: one shared crop, cache == streaming,
SSv2 folder handling, unreadable videos (stopped on, or skipped and counted)."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from polyspace_core.datasets import DatasetSplit, VideoItem, generate_synthmotion, load_split
from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn.data import SKIPPED, MultiFrameClips, load_ssv2_split
from polyspace_core.ffn.evaluate import accuracy_by_frames
from polyspace_core.ffn.tsm_resnet import build_model
from polyspace_core.video import VideoDecodeError, write_video


@pytest.fixture(scope="module")
def ssv2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_ssv2")
    generate_synthmotion(root / "set", layout="ssv2", classes=4, clips_per_class=5, frames=16, size=32,
                         seed=0, progress=False)
    return root / "set"


def test_cached_clips_equal_streamed_clips_in_every_epoch(ssv2_root):
    split = load_split("ssv2", ssv2_root, "train")
    kw = dict(size=28, short_side=32, seed=3, progress=False)
    for train in (True, False):
        cached = MultiFrameClips(split, (16, 4, 8), train=train, cache=True, **kw)
        streamed = MultiFrameClips(split, (4, 8, 16), train=train, cache=False, **kw)
        assert cached.frame_counts == (4, 8, 16)
        for epoch in (0, 1):
            cached.set_epoch(epoch)
            streamed.set_epoch(epoch)
            for i in (0, 5):
                a, b = cached[i], streamed[i]
                assert [tuple(c.shape) for c in a[:3]] == [(3, 4, 28, 28), (3, 8, 28, 28), (3, 16, 28, 28)]
                assert all(torch.equal(x, y) for x, y in zip(a[:3], b[:3]))
                assert a[3] == b[3] == split.items[i].label
    cached.set_epoch(0)
    first = cached[0][2]
    cached.set_epoch(1)
    assert torch.equal(first, cached[0][2])  # evaluation: centre crop and segment centres every epoch


def test_all_frame_counts_share_one_crop_that_changes_between_epochs(tmp_path):
    # a static random-block texture: every frame is the same picture, so equal crops <=> equal clips
    rng = np.random.default_rng(0)
    texture = np.kron(rng.integers(0, 256, (6, 6, 1), dtype=np.uint8), np.ones((8, 8, 3), dtype=np.uint8))
    path = write_video(tmp_path / "static.mp4", np.repeat(texture[None], 20, axis=0), options={"crf": "0"})
    split = DatasetSplit("custom", "train", [VideoItem(path, 0, "static", "static")], ["static"], tmp_path)
    data = MultiFrameClips(split, (4, 8, 16), train=True, size=24, cache=True, progress=False)
    first_frames = []
    for epoch in range(6):
        data.set_epoch(epoch)
        v4, v8, v16, _ = data[0]
        for clip in (v8, v16):
            assert (clip[:, 0] - v4[:, 0]).abs().max() < 0.1
        first_frames.append(v4[:, 0])
    assert any((f - first_frames[0]).abs().max() > 0.5 for f in first_frames[1:])


def test_ssv2_folders_from_the_seed_flags(ssv2_root, tmp_path):
    split = load_ssv2_split(ssv2_root / "20bn-something-something-v2", ssv2_root / "labels", "validation")
    assert len(split) == 4 and all(item.path.is_file() for item in split.items)
    moved = tmp_path / "videos"
    shutil.copytree(ssv2_root / "20bn-something-something-v2", moved)
    relocated = load_ssv2_split(moved, ssv2_root / "labels", "validation")
    assert all(item.path.parent == moved for item in relocated.items)
    assert [i.label for i in relocated.items] == [i.label for i in split.items]
    with pytest.raises(PolySpaceError, match="--video_dir"):
        load_ssv2_split(tmp_path / "nope", ssv2_root / "labels", "train")
    with pytest.raises(PolySpaceError, match="--labels_dir"):
        load_ssv2_split(moved, ssv2_root, "train")


def test_unreadable_and_unlabeled_videos(ssv2_root, tmp_path):
    split = load_split("ssv2", ssv2_root, "validation")
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1a\x45\xdf\xa3 not really a webm")
    items = [split.items[0], dataclasses.replace(split.items[1], path=broken)]
    bad = dataclasses.replace(split, items=items)
    with pytest.raises(VideoDecodeError, match="broken.webm"):
        MultiFrameClips(bad, train=False, size=28, cache=True, progress=False)
    kept = MultiFrameClips(bad, train=False, size=28, cache=True, on_error="skip", progress=False)
    assert len(kept) == 1 and kept.skipped[0][0] == str(broken)
    unlabeled = dataclasses.replace(split, items=[dataclasses.replace(split.items[0], label=-1)])
    with pytest.raises(PolySpaceError, match="unlabeled"):
        MultiFrameClips(unlabeled, train=False, size=28)


@pytest.mark.parametrize("source", ["stream", "frame_cache"])
def test_streamed_skip_leaves_undecodable_videos_out_and_counts_them(ssv2_root, tmp_path, source):
    """SSv2 holds a few videos that do not decode. Streaming (or through the frame cache) with
    on_error="skip", such an item comes back labelled SKIPPED with zero clips, so batches keep
    their shape; accuracy_by_frames leaves it out and counts it: the figures equal those of the
    split without it. With on_error="error" it is one line naming the video."""
    split = load_split("ssv2", ssv2_root, "validation")
    whole = split.items[1].path.read_bytes()
    broken = tmp_path / "broken.webm"
    broken.write_bytes(whole[:len(whole) // 2])                        # a truncated download
    bad = dataclasses.replace(split, items=[*split.items[:2], dataclasses.replace(split.items[1], path=broken),
                                            *split.items[2:]])
    def clips(data_split, tag, **kw):
        cache = tmp_path / f"cache_{tag}" if source == "frame_cache" else None
        return MultiFrameClips(data_split, (4, 8), train=False, size=28, short_side=32, frame_cache=cache,
                               progress=False, **kw)

    with pytest.raises(VideoDecodeError, match="broken.webm.*on_error='skip'") as error:
        clips(bad, "a")[2]
    assert "\n" not in str(error.value)
    data = clips(bad, "b", on_error="skip")
    with pytest.warns(UserWarning, match="broken.webm"):
        *zeros, label = data[2]
    assert label == SKIPPED and [tuple(c.shape) for c in zeros] == [(3, 4, 28, 28), (3, 8, 28, 28)]
    assert all(not c.any() for c in zeros)

    torch.manual_seed(0)
    model = build_model("tiny", num_classes=len(split.class_names), frame_counts=(4, 8), ffn=True).eval()
    loader = torch.utils.data.DataLoader(data, batch_size=2)
    with pytest.warns(UserWarning, match="broken.webm"):
        got = accuracy_by_frames(model, loader, keep_correct=True)
    want = accuracy_by_frames(model, torch.utils.data.DataLoader(clips(split, "c"), batch_size=2), keep_correct=True)
    for t in (4, 8):
        assert (got[t]["n"], got[t]["skipped"], want[t]["skipped"]) == (len(split), 1, 0)
        assert got[t]["acc"] == want[t]["acc"] and got[t]["loss"] == pytest.approx(want[t]["loss"], rel=1e-5)
        assert np.array_equal(got[t]["correct"], want[t]["correct"])
