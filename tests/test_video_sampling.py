"""Frame-index sampling: uniform, TSN, dense; windows; short-video policies."""

from __future__ import annotations

import numpy as np
import pytest

from polyspace_core.errors import PolySpaceError
from polyspace_core.video import dense_indices, sample_indices, tsn_indices, uniform_indices


def test_uniform_takes_segment_centres():
    # 100 frames, 4 segments of 25: centres at 12.5 -> 12, 37, 62, 87
    np.testing.assert_array_equal(uniform_indices(100, 4), [12, 37, 62, 87])
    np.testing.assert_array_equal(uniform_indices(8, 8), np.arange(8))
    idx = uniform_indices(301, 16)
    assert idx.dtype == np.int64 and idx.shape == (16,)
    assert np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < 301


def test_tsn_eval_is_centre_and_train_is_random_within_segments():
    np.testing.assert_array_equal(tsn_indices(100, 4, train=False), uniform_indices(100, 4))
    draws = np.stack([tsn_indices(100, 4, train=True, rng=np.random.default_rng(s))
                      for s in range(200)])
    bounds = np.array([0, 25, 50, 75, 100])
    assert np.all(draws >= bounds[:-1]) and np.all(draws < bounds[1:])  # one per segment
    # random: every offset inside a segment shows up, not just the centre
    assert len(np.unique(draws[:, 0])) == 25
    # reproducible from the generator
    np.testing.assert_array_equal(tsn_indices(100, 4, True, np.random.default_rng(7)),
                                  tsn_indices(100, 4, True, np.random.default_rng(7)))


def test_dense_eval_centred_train_random_offset():
    np.testing.assert_array_equal(dense_indices(100, 8, 2, train=False),
                                  42 + 2 * np.arange(8))  # span 15, slack 85 -> offset 42
    starts = {int(dense_indices(20, 4, 3, train=True, rng=np.random.default_rng(s))[0])
              for s in range(300)}
    assert starts == set(range(0, 20 - 10 + 1))  # span 10 fits at offsets 0..10
    clip = dense_indices(20, 4, 3, train=True, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(np.diff(clip), [3, 3, 3])


def test_window_restricts_every_sampler():
    # Diving48-style window: frames 30..69 of a 200-frame video (end exclusive)
    for train in (False, True):
        rng = np.random.default_rng(0)
        for idx in (tsn_indices(200, 8, train, rng, start=30, end=70),
                    dense_indices(200, 8, 4, train, rng, start=30, end=70),
                    uniform_indices(200, 8, start=30, end=70)):
            assert idx.min() >= 30 and idx.max() < 70
    np.testing.assert_array_equal(uniform_indices(200, 2, start=30, end=70), [40, 60])


@pytest.mark.parametrize("start,end", [(-1, 10), (10, 10), (0, 201), (50, 20)])
def test_bad_window_is_an_error(start, end):
    with pytest.raises(PolySpaceError, match="window"):
        uniform_indices(200, 4, start=start, end=end)


def test_short_video_policies_never_pad():
    np.testing.assert_array_equal(uniform_indices(3, 8, short_policy="loop"),
                                  [0, 1, 2, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(uniform_indices(3, 8, short_policy="repeat_last"),
                                  [0, 1, 2, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(tsn_indices(3, 5, True, np.random.default_rng(0),
                                              short_policy="loop"), [0, 1, 2, 0, 1])
    # dense at stride 2 needs 7 frames; a 5-frame window at offset 10 loops inside the window
    np.testing.assert_array_equal(dense_indices(100, 4, 2, False, start=10, end=15,
                                                short_policy="loop"), [10, 12, 14, 11])
    np.testing.assert_array_equal(dense_indices(100, 4, 2, False, start=10, end=15,
                                                short_policy="repeat_last"), [10, 12, 14, 14])
    with pytest.raises(PolySpaceError, match="short_policy"):
        uniform_indices(3, 8, short_policy="error")
    with pytest.raises(PolySpaceError, match="short_policy='pad'"):
        uniform_indices(3, 8, short_policy="pad")


def test_bad_arguments_are_errors():
    with pytest.raises(PolySpaceError, match="rng"):
        tsn_indices(100, 4, train=True)
    with pytest.raises(PolySpaceError, match="stride=0"):
        dense_indices(100, 4, 0, train=False)
    with pytest.raises(PolySpaceError, match="n=0"):
        uniform_indices(100, 0)
    with pytest.raises(PolySpaceError, match="num_frames=0"):
        uniform_indices(0, 4)
    with pytest.raises(PolySpaceError, match="sampling='random'"):
        sample_indices("random", 100, 4, train=False)
