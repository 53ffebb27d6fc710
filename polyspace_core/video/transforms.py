"""Spatial transforms on uint8 clips: resize the short side, crop, optional horizontal flip.

The random parts (crop position, flip) are drawn once by `draw` and applied by `apply`, so one
draw can be applied to several clips of the same video: the FFN's 4/8/16-frame clips must share
one crop, and decode_clips applies one draw to every request that shares a transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PolySpaceError


def check_frames(frames, source_hw: tuple[int, int], who: str) -> np.ndarray:
    """frames as a uint8 (T, H, W, 3) array whose (H, W) is the size the params were drawn for."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise PolySpaceError(f"{who}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if tuple(frames.shape[1:3]) != tuple(source_hw):
        raise PolySpaceError(f"{who}: params were drawn for {source_hw} frames, got {tuple(frames.shape[1:3])}; "
                             "draw again for this size")
    return frames


@dataclass(frozen=True)
class TransformParams:
    """One draw: the source size it was drawn for, the resized size, the crop box and flip."""

    source_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    top: int
    left: int
    crop_hw: tuple[int, int]
    flip: bool


class SpatialTransform:
    """Resize so the short side is `short_side` (None: keep size), crop `crop` (int for a
    square, (h, w), or None: no crop) at a random position in training or the centre in
    evaluation, and flip horizontally with probability 0.5 in training when `flip` is True
    (keep it False for direction-sensitive data such as Something-Something V2).
    """

    def __init__(self, short_side: int | None = None, crop: int | tuple[int, int] | None = None,
                 train: bool = False, flip: bool = False):
        if short_side is not None and (int(short_side) != short_side or short_side < 1):
            raise PolySpaceError(f"short_side={short_side}: must be a positive integer or None")
        if isinstance(crop, (int, np.integer)):
            crop = (int(crop), int(crop))
        if crop is not None:
            crop = tuple(int(c) for c in crop)
            if len(crop) != 2 or min(crop) < 1:
                raise PolySpaceError(f"crop={crop}: must be a positive int, an (h, w) pair or None")
        self.short_side = None if short_side is None else int(short_side)
        self.crop = crop
        self.train = bool(train)
        self.flip = bool(flip)

    def __repr__(self) -> str:
        return (f"SpatialTransform(short_side={self.short_side}, crop={self.crop}, "
                f"train={self.train}, flip={self.flip})")

    def resized_size(self, h: int, w: int) -> tuple[int, int]:
        """(h, w) after the short-side resize."""
        if self.short_side is None:
            return h, w
        scale = self.short_side / min(h, w)
        if h <= w:
            return self.short_side, max(1, int(round(w * scale)))
        return max(1, int(round(h * scale))), self.short_side

    def draw(self, rng: np.random.Generator | None, h: int, w: int) -> TransformParams:
        """Choose the crop box and flip for frames of size (h, w). Training needs `rng`;
        evaluation is deterministic (centre crop, no flip) and ignores it."""
        rh, rw = self.resized_size(h, w)
        ch, cw = self.crop if self.crop is not None else (rh, rw)
        if ch > rh or cw > rw:
            raise PolySpaceError(f"crop={self.crop}: larger than the {rh}x{rw} frame after "
                                 f"resizing {h}x{w} with short_side={self.short_side}; lower crop "
                                 f"or raise short_side")
        if self.train and (self.crop is not None or self.flip):
            if not isinstance(rng, np.random.Generator):
                raise PolySpaceError("SpatialTransform(train=True).draw needs "
                                     "rng=np.random.default_rng(seed) for reproducible crops")
            top = int(rng.integers(0, rh - ch + 1))
            left = int(rng.integers(0, rw - cw + 1))
            flip = bool(self.flip and rng.random() < 0.5)
        else:
            top, left, flip = (rh - ch) // 2, (rw - cw) // 2, False
        return TransformParams((h, w), (rh, rw), top, left, (ch, cw), flip)

    def apply(self, frames: np.ndarray, params: TransformParams) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, crop_h, crop_w, 3) uint8 with the drawn params."""
        import cv2

        frames = check_frames(frames, params.source_hw, "SpatialTransform.apply")
        rh, rw = params.resized_hw
        if (rh, rw) != params.source_hw:
            # area averaging when shrinking avoids aliasing; bilinear when enlarging
            shrink = rh * rw < params.source_hw[0] * params.source_hw[1]
            interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            frames = np.stack([cv2.resize(f, (rw, rh), interpolation=interpolation)
                               for f in frames])
        ch, cw = params.crop_hw
        out = frames[:, params.top:params.top + ch, params.left:params.left + cw]
        if params.flip:
            out = out[:, :, ::-1]
        return np.ascontiguousarray(out)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Draw and apply in one step, for a single clip."""
        return self.apply(frames, self.draw(rng, frames.shape[1], frames.shape[2]))
