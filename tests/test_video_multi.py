"""Decode once, serve many: one decode feeds several clip requests, each frame decoded once,
clips identical to separate reads, one shared crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import polyspace_core.video.decode as decode_module
import polyspace_core.video.multi as multi_module
from polyspace_core.errors import PolySpaceError
from polyspace_core.video import ClipRequest, SpatialTransform, VideoDecodeError, decode_clips, read_frames, write_video
from polyspace_core.video.patterns import frame_number, numbered_frames

N = 80


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("multi")
    frames = numbered_frames(N, 64, 96, seed=1)
    return {"mp4": write_video(folder / "v.mp4", frames, fps=25, gop=20, bframes=0),
            "webm": write_video(folder / "v.webm", frames, fps=25, gop=20)}


FFN_REQUESTS = [ClipRequest("f16", 16, "tsn"), ClipRequest("f8", 8, "tsn"),
                ClipRequest("f4", 4, "tsn"), ClipRequest("dense", 8, "dense", stride=2)]


@pytest.fixture
def count_conversions(monkeypatch):
    """Count frames converted to RGB by the PyAV path (each decoded frame we keep)."""
    converted = []
    original = decode_module._rgb

    def counting(frame):
        converted.append(frame.pts)
        return original(frame)

    monkeypatch.setattr(decode_module, "_rgb", counting)
    return converted


@pytest.mark.parametrize("key", ["mp4", "webm"])
@pytest.mark.parametrize("train", [False, True])
def test_one_decode_serves_all_requests(videos, key, train, monkeypatch, count_conversions):
    calls = []
    original = multi_module.read_unique_frames

    def recording(path, indices, *args, **kwargs):
        calls.append(sorted(indices))
        return original(path, indices, *args, **kwargs)

    monkeypatch.setattr(multi_module, "read_unique_frames", recording)
    out = decode_clips(videos[key], FFN_REQUESTS, train=train, rng=np.random.default_rng(0),
                       backend="pyav")
    union = sorted({int(i) for idx in out.indices.values() for i in idx})
    assert calls == [union]  # a single decode call, asking for exactly the union
    assert out.frames_decoded == len(union) <= sum(r.num_frames for r in FFN_REQUESTS)
    assert len(count_conversions) == len(union) == len(set(count_conversions))  # each once
    for r in FFN_REQUESTS:
        clip = out.clips[r.name]
        assert clip.shape == (r.num_frames, 64, 96, 3) and clip.dtype == np.uint8
        assert [frame_number(f) for f in clip] == out.indices[r.name].tolist()
        # the same pixels as a separate read of that request's frames
        np.testing.assert_array_equal(clip, read_frames(videos[key], out.indices[r.name],
                                                        backend="pyav"))


def test_eval_requests_share_frames_and_count_them_once(videos):
    out = decode_clips(videos["mp4"], [ClipRequest("a", 16), ClipRequest("b", 16),
                                       ClipRequest("c", 8, "dense", stride=2)])
    np.testing.assert_array_equal(out.indices["a"], out.indices["b"])
    assert out.frames_decoded == len(set(out.indices["a"]) | set(out.indices["c"]))
    assert out.frames_decoded < 16 + 16 + 8


def test_shared_transform_draws_one_crop_for_all_requests(videos):
    transform = SpatialTransform(short_side=48, crop=40, train=True, flip=True)
    for seed in range(4):
        out = decode_clips(videos["webm"], FFN_REQUESTS, train=True,
                           rng=np.random.default_rng(seed), transform=transform)
        params = {out.transform_params[r.name] for r in FFN_REQUESTS}
        assert len(params) == 1
        (p,) = params
        # every clip equals its raw frames under that one crop/flip
        for r in FFN_REQUESTS:
            raw = read_frames(videos["webm"], out.indices[r.name])
            np.testing.assert_array_equal(out.clips[r.name], transform.apply(raw, p))
            assert out.clips[r.name].shape == (r.num_frames, 40, 40, 3)
    # different seeds give different crops (it is random, not centred)
    draws = {decode_clips(videos["webm"], FFN_REQUESTS[:1], train=True,
                          rng=np.random.default_rng(s), transform=transform)
             .transform_params["f16"] for s in range(8)}
    assert len(draws) > 1


def test_request_with_its_own_transform(videos):
    own = SpatialTransform(short_side=32)
    out = decode_clips(videos["mp4"], [ClipRequest("model_a", 8, transform=own),
                                       ClipRequest("model_b", 8)],
                       transform=SpatialTransform(crop=48))
    assert out.clips["model_a"].shape == (8, 32, 48, 3)
    assert out.clips["model_b"].shape == (8, 48, 48, 3)
    assert out.frames_decoded == 8


def test_window_and_short_policy_in_decode_clips(videos):
    out = decode_clips(videos["mp4"], [ClipRequest("w", 4)], window=(40, 60))
    assert out.indices["w"].tolist() == [42, 47, 52, 57]
    assert [frame_number(f) for f in out.clips["w"]] == [42, 47, 52, 57]
    out = decode_clips(videos["mp4"], [ClipRequest("s", 8, short_policy="repeat_last")],
                       window=(70, 73))
    assert [frame_number(f) for f in out.clips["s"]] == [70, 71, 72, 72, 72, 72, 72, 72]
    assert out.frames_decoded == 3


def test_bad_requests_and_files(videos, tmp_path):
    with pytest.raises(PolySpaceError, match="unique"):
        decode_clips(videos["mp4"], [ClipRequest("a", 4), ClipRequest("a", 8)])
    with pytest.raises(PolySpaceError, match="rng"):
        decode_clips(videos["mp4"], [ClipRequest("a", 4, "tsn")], train=True)
    with pytest.raises(PolySpaceError, match="sampling='random'"):
        ClipRequest("a", 4, "random")
    with pytest.raises(PolySpaceError, match="stride=0"):
        ClipRequest("a", 4, "dense", stride=0)
    # a window past the end or a too-short video is this video's problem: VideoDecodeError
    with pytest.raises(VideoDecodeError, match=f"v.mp4: window.*{N} frames"):
        decode_clips(videos["mp4"], [ClipRequest("a", 4)], window=(10, N + 5))
    with pytest.raises(VideoDecodeError, match="v.mp4: .*short_policy"):
        decode_clips(videos["mp4"], [ClipRequest("a", 8, short_policy="error")], window=(0, 4))
    missing = tmp_path / "gone.webm"
    with pytest.raises(VideoDecodeError, match="gone.webm"):
        decode_clips(missing, [ClipRequest("a", 4)])
