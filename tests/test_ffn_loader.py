"""The on-disk frame cache the FFN loader reads SSv2 webm through: stored once, equal clips,
checked on read, bounded by the cap the user sets."""

import numpy as np
import pytest
import torch

from polyspace_core.datasets import DatasetSplit, VideoItem
from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn.data import MultiFrameClips
from polyspace_core.video import read_frames, write_video
from polyspace_core.video.frame_cache import FrameCache, read_entry


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
