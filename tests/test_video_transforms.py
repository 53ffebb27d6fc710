"""SpatialTransform: resize short side, centre/random crop, flip; values against cv2 reference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from polyspace_core.errors import PolySpaceError
from polyspace_core.video import SpatialTransform


@pytest.fixture
def clip() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 60, 80, 3), dtype=np.uint8)


def test_eval_resize_and_centre_crop_match_reference(clip):
    t = SpatialTransform(short_side=30, crop=24, train=False)
    out = t(clip)
    assert out.shape == (3, 24, 24, 3) and out.dtype == np.uint8
    # reference: shrink to 30x40 with area averaging, then the centre 24x24
    resized = np.stack([cv2.resize(f, (40, 30), interpolation=cv2.INTER_AREA) for f in clip])
    np.testing.assert_array_equal(out, resized[:, 3:27, 8:32])


def test_portrait_frames_and_no_crop(clip):
    portrait = clip.transpose(0, 2, 1, 3)  # 80 x 60
    assert SpatialTransform(short_side=30)(portrait).shape == (3, 40, 30, 3)
    np.testing.assert_array_equal(SpatialTransform()(clip), clip)


def test_train_crop_is_random_in_bounds_and_reproducible(clip):
    t = SpatialTransform(short_side=None, crop=(20, 30), train=True)
    boxes = {(p.top, p.left) for p in (t.draw(np.random.default_rng(s), 60, 80)
                                       for s in range(50))}
    assert len(boxes) > 10
    assert all(0 <= top <= 40 and 0 <= left <= 50 for top, left in boxes)
    params = t.draw(np.random.default_rng(3), 60, 80)
    out = t.apply(clip, params)
    np.testing.assert_array_equal(
        out, clip[:, params.top:params.top + 20, params.left:params.left + 30])
    assert t.draw(np.random.default_rng(3), 60, 80) == params


def test_flip_only_when_enabled_and_training(clip):
    flips = [SpatialTransform(crop=40, train=True, flip=True).draw(np.random.default_rng(s), 60, 80)
             .flip for s in range(40)]
    assert 5 < sum(flips) < 35  # about half
    assert not any(SpatialTransform(crop=40, train=True, flip=False)
                   .draw(np.random.default_rng(s), 60, 80).flip for s in range(40))
    assert not SpatialTransform(crop=40, train=False, flip=True).draw(None, 60, 80).flip
    t = SpatialTransform(train=True, flip=True)
    params = next(p for p in (t.draw(np.random.default_rng(s), 60, 80) for s in range(40))
                  if p.flip)
    np.testing.assert_array_equal(t.apply(clip, params), clip[:, :, ::-1])


def test_errors(clip):
    with pytest.raises(PolySpaceError, match="crop=.*larger"):
        SpatialTransform(short_side=30, crop=32).draw(None, 60, 80)
    with pytest.raises(PolySpaceError, match="rng"):
        SpatialTransform(crop=32, train=True).draw(None, 60, 80)
    params = SpatialTransform(crop=32).draw(None, 60, 80)
    with pytest.raises(PolySpaceError, match="drawn for"):
        SpatialTransform(crop=32).apply(clip[:, :50], params)
    with pytest.raises(PolySpaceError, match="uint8"):
        SpatialTransform(crop=32).apply(clip.astype(np.float32), params)
    with pytest.raises(PolySpaceError, match="short_side=0"):
        SpatialTransform(short_side=0)
