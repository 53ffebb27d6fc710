"""TSN's multi-scale crop (the training augmentation of TSN, TSM and FFN), on uint8 clips.

The semantics of TSN's `GroupMultiScaleCrop(input_size, [1, .875, .75, .66])` as the official
TSM and FFN training code uses it (max_distort 1, fix_crop and more_fix_crop on):

1. candidate sides: `int(base * s)` for each scale s, base = the short side of the frame; a
   candidate within 3 px of the output size is snapped to it;
2. a (width, height) pair is drawn uniformly from the pairs whose scale indices differ by at most
   `max_distort` (so the aspect ratio jitters between neighbouring scales);
3. the crop's top-left corner is drawn uniformly from fixed offsets on a 4x4 grid of the free
   space: the 4 corners and the centre, plus (more_fix_crop) the 4 edge centres and the 4
   quarter points, 13 in all (duplicates kept, as TSN keeps them, so a small free space weights
   some positions more);
4. the crop is resized to `size` x `size`.

One draw is applied to every frame of every clip of a video (`draw` then `apply`, like
SpatialTransform), so FFN's 4/8/16-frame views see the same crop. `short_side` first rescales
the frame (None keeps it, as the official code crops the source frames) and the box is chosen
on the rescaled frame: the same short-side resize the frame cache stores, so a clip cut from
cached frames equals one cut from a fresh decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import PolySpaceError
from .transforms import SpatialTransform, check_frames

TSN_SCALES = (1.0, 0.875, 0.75, 0.66)
SNAP_PIXELS = 3  # TSN: a candidate side this close to the output size becomes the output size


@dataclass(frozen=True)
class MultiScaleParams:
    """One draw: the source size, the size after the short-side rescale, the box (top, left,
    height, width) on the rescaled frame, the output side and the flip."""

    source_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    box: tuple[int, int, int, int]
    size: int
    flip: bool


def fixed_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int,
                  more_fix_crop: bool = True) -> list[tuple[int, int]]:
    """TSN's fixed crop positions (x, y) for a crop_w x crop_h box in an image_w x image_h frame."""
    w_step, h_step = (image_w - crop_w) // 4, (image_h - crop_h) // 4
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
    if more_fix_crop:
        grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    return [(i * w_step, j * h_step) for i, j in grid]


def crop_pairs(image_w: int, image_h: int, size: int, scales: Sequence[float] = TSN_SCALES,
               max_distort: int = 1) -> list[tuple[int, int]]:
    """The (width, height) crop sizes TSN draws from for an image_w x image_h frame."""
    base = min(image_w, image_h)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(x - size) < SNAP_PIXELS else x for x in sides]
    return [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]


class MultiScaleCrop:
    """Training crops with TSN's multi-scale semantics (module docstring); output `size` x `size`.

    scales: fractions of the short side (the official 1, .875, .75, .66); max_distort: how many
    scale steps width and height may differ; more_fix_crop: 13 fixed positions instead of 5;
    short_side: rescale the frame's short side to this first (None: crop the source frame);
    flip: random horizontal flip (keep off for direction-sensitive classes such as SSv2's).
    """

    train = True

    def __init__(self, size: int, scales: Sequence[float] = TSN_SCALES, max_distort: int = 1,
                 more_fix_crop: bool = True, short_side: int | None = None, flip: bool = False):
        if int(size) != size or size < 1:
            raise PolySpaceError(f"multi-scale crop size={size}: must be a positive integer")
        scales = tuple(float(s) for s in scales)
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise PolySpaceError(f"multi-scale crop scales={list(scales)}: must be fractions in (0, 1]")
        if int(max_distort) != max_distort or max_distort < 0:
            raise PolySpaceError(f"multi-scale crop max_distort={max_distort}: must be an integer >= 0")
        self.size, self.scales, self.max_distort = int(size), scales, int(max_distort)
        self.more_fix_crop, self.flip = bool(more_fix_crop), bool(flip)
        self.rescale = SpatialTransform(short_side=short_side)
        self.short_side = self.rescale.short_side

    def __repr__(self) -> str:
        return (f"MultiScaleCrop(size={self.size}, scales={list(self.scales)}, max_distort={self.max_distort}, "
                f"more_fix_crop={self.more_fix_crop}, short_side={self.short_side}, flip={self.flip})")

    def draw(self, rng: np.random.Generator | None, h: int, w: int) -> MultiScaleParams:
        """Choose the crop box (and flip) for frames of size (h, w); needs `rng`."""
        if not isinstance(rng, np.random.Generator):
            raise PolySpaceError("MultiScaleCrop.draw needs rng=np.random.default_rng(seed) for reproducible crops")
        rh, rw = self.rescale.resized_size(h, w)
        pairs = crop_pairs(rw, rh, self.size, self.scales, self.max_distort)
        crop_w, crop_h = pairs[int(rng.integers(len(pairs)))]
        offsets = fixed_offsets(rw, rh, crop_w, crop_h, self.more_fix_crop)
        left, top = offsets[int(rng.integers(len(offsets)))]
        flip = bool(self.flip and rng.random() < 0.5)
        return MultiScaleParams((h, w), (rh, rw), (top, left, crop_h, crop_w), self.size, flip)

    def apply(self, frames: np.ndarray, params: MultiScaleParams) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8: the short-side rescale, then the drawn
        box resized to size x size (area averaging when shrinking, bilinear when enlarging)."""
        import cv2

        frames = check_frames(frames, params.source_hw, "MultiScaleCrop.apply")
        if params.resized_hw != params.source_hw:
            frames = self.rescale(frames)
        top, left, ch, cw = params.box
        box = frames[:, top:top + ch, left:left + cw]
        s = params.size
        if (ch, cw) != (s, s):
            interpolation = cv2.INTER_AREA if ch * cw > s * s else cv2.INTER_LINEAR
            box = np.stack([cv2.resize(np.ascontiguousarray(f), (s, s), interpolation=interpolation) for f in box])
        if params.flip:
            box = box[:, :, ::-1]
        return np.ascontiguousarray(box)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Draw and apply in one step, for a single clip."""
        return self.apply(frames, self.draw(rng, frames.shape[1], frames.shape[2]))
