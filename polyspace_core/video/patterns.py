"""Frames that carry their own frame number, to check that a decoder returns the right frame.

Each frame shows its index as a row of black/white blocks (one bit per block, LSB first) above
a textured background that scrolls a few pixels per frame, so the encoder has real motion to
predict (P/B-frames reference their neighbours) and a wrong frame cannot look right. The
blocks are large enough to survive lossy coding, so `frame_number` reads them back exactly.
"""

from __future__ import annotations

import numpy as np

from ..errors import PolySpaceError

BLOCK_H, BLOCK_W = 16, 12


def numbered_frames(num_frames: int, height: int = 64, width: int = 96, *, bits: int = 8,
                    seed: int = 0) -> np.ndarray:
    """(num_frames, height, width, 3) uint8 RGB; frame i shows i in `bits` blocks on top."""
    if num_frames > 2 ** bits:
        raise PolySpaceError(f"numbered_frames: {num_frames} frames need more than bits={bits}")
    if width < bits * BLOCK_W or height < 2 * BLOCK_H:
        raise PolySpaceError(f"numbered_frames: {height}x{width} is too small for {bits} "
                             f"blocks of {BLOCK_H}x{BLOCK_W}")
    rng = np.random.default_rng(seed)
    # smooth texture (a random 8x-coarser grid, bicubically enlarged): natural-image-like
    # content that codes well at 4:2:0 yet moves visibly from frame to frame
    import cv2

    coarse = rng.integers(0, 256, (height // 8 + 1, 2 * width // 8 + 1, 3), dtype=np.uint8)
    texture = cv2.resize(coarse, (2 * width, height), interpolation=cv2.INTER_CUBIC)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        frame = np.roll(texture, 3 * i, axis=1)[:height, :width]
        frame = frame.copy()
        for b in range(bits):
            frame[:BLOCK_H, b * BLOCK_W:(b + 1) * BLOCK_W] = 255 if (i >> b) & 1 else 0
        frames[i] = frame
    return frames


def frame_number(frame: np.ndarray, bits: int = 8) -> int:
    """Read the number `numbered_frames` drew into a (H, W, 3) frame (block centres only)."""
    value = 0
    for b in range(bits):
        block = frame[4:BLOCK_H - 4, b * BLOCK_W + 3:(b + 1) * BLOCK_W - 3]
        value |= int(block.mean() > 127) << b
    return value
