"""The on-disk frame cache the FFN loader reads SSv2 webm through: stored once, equal clips,
checked on read, bounded by the cap the user sets; as uint8 (exact) or JPEG (lossy, smaller)."""

import json

import numpy as np
import pytest
import torch

from polyspace_core.datasets import DatasetSplit, VideoItem
from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn.data import MultiFrameClips
from polyspace_core.io import digest_bytes
from polyspace_core.video import frame_cache, read_frames, write_video
from polyspace_core.video.frame_cache import FORMATS, FrameCache, encode_entry, read_entry


@pytest.fixture(scope="module")
def webm_split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("webm")
    rng = np.random.default_rng(0)
    items = []
    for i in range(3):
        frames = np.kron(rng.integers(0, 256, (20, 6, 8, 3), dtype=np.uint8), np.ones((1, 8, 8, 1), dtype=np.uint8))
        items.append(VideoItem(write_video(folder / f"{i}.webm", frames), i % 2, f"c{i % 2}", str(i)))
    return DatasetSplit("custom", "train", items, ["c0", "c1"], folder)


def test_frames_are_stored_once_and_read_back_equal(webm_split, tmp_path):
    path = webm_split.items[0].path
    cache = FrameCache(tmp_path / "cache", short_side=32)
    first = cache.frames(path)
    assert (cache.hits, cache.misses) == (0, 1) and first.shape == (20, 32, 43, 3)
    entry = cache.entry(path)
    assert entry.is_file() and cache.size_bytes() == entry.stat().st_size
    again = FrameCache(tmp_path / "cache", short_side=32)       # another run
    assert np.array_equal(again.frames(path), first) and (again.hits, again.misses) == (1, 0)
    decoded = read_frames(path, np.arange(20))
    assert decoded.shape == (20, 48, 64, 3)
    assert np.array_equal(FrameCache(tmp_path / "full", short_side=None).frames(path), decoded)
    assert FrameCache(tmp_path / "cache", short_side=24).entry(path) != entry    # another size, another entry

    # checked on read: a flipped byte and a truncated file are one line naming the entry
    data = bytearray(entry.read_bytes())
    data[-5] ^= 0xFF
    entry.write_bytes(bytes(data))
    with pytest.raises(PolySpaceError, match=f"{entry.name}: checksum .*delete"):
        read_entry(entry)
    entry.write_bytes(bytes(data[:-100]))
    with pytest.raises(PolySpaceError, match="truncated"):
        again.frames(path)


def test_the_cap_stops_storing_not_serving(webm_split, tmp_path):
    cache = FrameCache(tmp_path / "small", short_side=32, max_bytes=100_000)   # one 80 kB video fits
    with pytest.warns(UserWarning, match="not storing more videos"):
        for item in webm_split.items:
            assert cache.frames(item.path).shape == (20, 32, 43, 3)
    assert cache.size_bytes() <= 100_000 and cache.full and "cap" in cache.full
    with pytest.raises(PolySpaceError, match="max_bytes"):
        FrameCache(tmp_path / "x", short_side=32, max_bytes=0)


@pytest.mark.parametrize("crop", ["random", "multiscale"])
def test_clips_through_the_frame_cache_equal_decoded_clips(webm_split, tmp_path, crop):
    kw = dict(size=28, short_side=32, seed=1, crop=crop, progress=False)
    streamed = MultiFrameClips(webm_split, (4, 8, 16), train=True, **kw)
    cached = MultiFrameClips(webm_split, (4, 8, 16), train=True, frame_cache=tmp_path / "c", **kw)
    for epoch in (0, 1):                  # epoch 0 fills the cache, epoch 1 reads it
        streamed.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(3):
            a, b = streamed[i], cached[i]
            assert all(torch.equal(x, y) for x, y in zip(a[:3], b[:3])) and a[3] == b[3]
    assert cached.frame_cache.hits == 3 and cached.frame_cache.misses == 3
    with pytest.raises(PolySpaceError, match="choose"):
        MultiFrameClips(webm_split, (4,), train=True, cache=True, frame_cache=tmp_path / "c", size=28)


def _texture(frames: int, height: int, width: int) -> np.ndarray:
    """Blurred noise sliding sideways: textured like footage (benchmarks/ffn_loader.py's content)."""
    import cv2

    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (height // 4, (width + 2 * frames) // 4, 3), dtype=np.uint8)
    base = cv2.resize(cv2.GaussianBlur(base, (5, 5), 0), (width + 2 * frames, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(np.stack([base[:, 2 * t:2 * t + width] for t in range(frames)]))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_jpeg_entries_round_trip_within_a_psnr_bound_and_are_smaller(tmp_path):
    video = _texture(12, 64, 96)
    raw = encode_entry(video, tmp_path / "v.webm")
    sizes, quality = {}, {}
    for q in (90, 50):
        entry = tmp_path / f"q{q}.frames"
        entry.write_bytes(encode_entry(video, tmp_path / "v.webm", "jpeg", q))
        back = read_entry(entry)
        assert back.shape == video.shape and back.dtype == np.uint8
        sizes[q], quality[q] = entry.stat().st_size, _psnr(back, video)
        header = json.loads(entry.read_bytes().split(b"\n", 1)[0])
        assert header["format"] == FORMATS["jpeg"] and header["quality"] == q and len(header["frames"]) == 12
    assert quality[90] > 40 and quality[50] < quality[90]       # measured: 43.3 and 36.7 dB
    assert sizes[90] < len(raw) / 4 and sizes[50] < sizes[90]    # measured: 1/11 and 1/17 of uint8
    # colour order: a red frame stays red (OpenCV encodes BGR)
    red = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    red[..., 0] = 200
    (tmp_path / "red.frames").write_bytes(encode_entry(red, tmp_path / "v.webm", "jpeg", 90))
    assert np.abs(read_entry(tmp_path / "red.frames").astype(int) - red).max() <= 3
    for bad in (dict(encoding="png"), dict(encoding="jpeg", jpeg_quality=0)):
        with pytest.raises(PolySpaceError, match="frame cache (encoding|JPEG quality)"):
            FrameCache(tmp_path / "x", short_side=32, **bad)


def test_a_jpeg_cache_reads_back_without_decoding_and_refuses_damage(webm_split, tmp_path, monkeypatch):
    path = webm_split.items[0].path
    cache = FrameCache(tmp_path / "j", short_side=32, encoding="jpeg")
    first = cache.frames(path)
    assert first.shape == (20, 32, 43, 3) and (cache.hits, cache.misses) == (0, 1)
    entry = cache.entry(path)
    # uint8, another quality: other entries (never mixed)
    assert entry != FrameCache(tmp_path / "j", short_side=32).entry(path)
    assert entry != FrameCache(tmp_path / "j", short_side=32, encoding="jpeg", jpeg_quality=80).entry(path)
    uint8 = FrameCache(tmp_path / "u", short_side=32)
    uint8.frames(path)
    assert entry.stat().st_size < uint8.entry(path).stat().st_size / 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("a hit decoded the video")

    monkeypatch.setattr(frame_cache, "read_frames", no_decoding)
    again = FrameCache(tmp_path / "j", short_side=32, encoding="jpeg")       # another run
    assert np.array_equal(again.frames(path), first) and (again.hits, again.misses) == (1, 0)
    # the frames a loader picks, and only those (the clips' TSN indices)
    assert np.array_equal(again.frames(path, lambda n: [0, 7, n - 1]), first[[0, 7, 19]])
    assert np.array_equal(uint8.frames(path, lambda n: [3, 4]), uint8.frames(path)[3:5])

    data = entry.read_bytes()
    damaged = bytearray(data)
    damaged[-5] ^= 0xFF
    header = json.loads(data.split(b"\n", 1)[0])
    garbage = b"\x00" * 64           # a checksum that matches, JPEG images that do not decode
    header.update(frames=[[0, 64]] * 20, payload=digest_bytes(garbage))
    for content, why in ((bytes(damaged), "checksum"), (data[:-100], "truncated"),
                         (json.dumps(header).encode() + b"\n" + garbage, "JPEG frame 0 decodes to nothing")):
        entry.write_bytes(content)
        with pytest.raises(PolySpaceError, match=f"{entry.name}: .*{why}.*delete") as e:
            again.frames(path)
        assert "\n" not in str(e.value)


def test_clips_through_a_jpeg_cache_repeat_and_stay_close_to_the_uint8_cache(webm_split, tmp_path):
    kw = dict(size=28, short_side=32, seed=1, crop="multiscale", progress=False)
    uint8 = MultiFrameClips(webm_split, (4, 8, 16), train=True, frame_cache=tmp_path / "u", **kw)
    jpeg = MultiFrameClips(webm_split, (4, 8, 16), train=True, frame_cache=tmp_path / "j", frame_cache_format="jpeg",
                           frame_cache_quality=90, **kw)
    std = jpeg.std
    for i in range(3):
        filled, read, exact = jpeg[i], jpeg[i], uint8[i]      # a miss serves what later reads give
        assert all(torch.equal(x, y) for x, y in zip(filled[:3], read[:3])) and filled[3] == read[3] == exact[3]
        for x, y in zip(read[:3], exact[:3]):
            mse = float((((x - y) * std) ** 2).mean())         # in [0, 1] pixel units
            assert 0 < mse and 10 * np.log10(1 / mse) > 21      # measured ~23.7 dB: random 8x8 colour blocks
    assert jpeg.frame_cache.hits == 3 and jpeg.frame_cache.misses == 3
    with pytest.raises(PolySpaceError, match="encoding 'png'"):
        MultiFrameClips(webm_split, (4,), train=True, frame_cache=tmp_path / "c", frame_cache_format="png", size=28)
