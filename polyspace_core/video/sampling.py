"""Frame-index sampling: which frames of a video make a clip.

All samplers take the video's frame count and an optional window [start, end) (Diving48's
start_frame/end_frame), and return n int64 indices in increasing time order inside the window.

- uniform: n segments of equal length, the centre frame of each (deterministic).
- tsn: TSN segment sampling. Training draws a random frame inside each segment; evaluation
  takes the centre, which is exactly `uniform`.
- dense: n frames `stride` apart. Training places the span at a random offset; evaluation
  centres it in the window.

A window shorter than the clip needs (n frames, or (n - 1) * stride + 1 for dense) is handled
by a named policy, never by zero frames:
- "loop": run through the window again from its first frame (0 1 2 0 1 2 ...),
- "repeat_last": hold the last frame (0 1 2 2 2 ...),
- "error": raise, for pipelines that must not see repeated frames.
"""

from __future__ import annotations

import numpy as np

from ..errors import PolySpaceError

SHORT_POLICIES = ("loop", "repeat_last", "error")
SAMPLINGS = ("uniform", "tsn", "dense")


def resolve_window(num_frames: int, start: int | None = None,
                   end: int | None = None) -> tuple[int, int]:
    """Check and fill a [start, end) frame window; None means the video's first/last frame."""
    if num_frames <= 0:
        raise PolySpaceError(f"num_frames={num_frames}: a video needs at least one frame")
    start = 0 if start is None else int(start)
    end = num_frames if end is None else int(end)
    if not 0 <= start < end <= num_frames:
        raise PolySpaceError(f"window start={start}, end={end}: must satisfy 0 <= start < end <= "
                             f"num_frames={num_frames} (end is exclusive)")
    return start, end


def _check_count(n: int, name: str = "n") -> None:
    if int(n) != n or n < 1:
        raise PolySpaceError(f"{name}={n}: the number of frames to sample must be a positive "
                             f"integer")


def _fit(positions: np.ndarray, length: int, short_policy: str, what: str) -> np.ndarray:
    """Map positions that fall past the window's length back inside it by the policy."""
    if short_policy not in SHORT_POLICIES:
        raise PolySpaceError(f"short_policy={short_policy!r}: unknown; use one of "
                             f"{', '.join(SHORT_POLICIES)}")
    if positions.max() < length:
        return positions
    if short_policy == "error":
        raise PolySpaceError(f"{what} but the window holds only {length} frames; use "
                             f"short_policy='loop' or 'repeat_last', or fewer frames")
    if short_policy == "loop":
        return positions % length
    return np.minimum(positions, length - 1)


def _need_rng(rng: np.random.Generator | None, fn: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise PolySpaceError(f"{fn}(train=True) needs rng=np.random.default_rng(seed) so that "
                             f"training clips are reproducible")
    return rng


def uniform_indices(num_frames: int, n: int, *, start: int | None = None,
                    end: int | None = None, short_policy: str = "loop") -> np.ndarray:
    """The centre frame of each of n equal segments of [start, end); (n,) int64."""
    _check_count(n)
    start, end = resolve_window(num_frames, start, end)
    length = end - start
    if length < n:  # fewer frames than requested: each frame once, then the policy
        positions = _fit(np.arange(n), length, short_policy,
                         f"uniform sampling of {n} frames needs {n} distinct frames")
    else:
        segment = length / n
        positions = np.floor(segment * np.arange(n) + segment / 2).astype(np.int64)
    return (start + positions).astype(np.int64)


def segment_bounds(length: int, n: int) -> np.ndarray:
    """The n + 1 integer bounds of TSN's n equal segments of `length` frames: segment i is
    [bounds[i], bounds[i + 1]), so every frame belongs to exactly one segment; (n + 1,) int64."""
    return np.floor(np.arange(n + 1) * length / n).astype(np.int64)


def tsn_indices(num_frames: int, n: int, train: bool, rng: np.random.Generator | None = None,
                *, start: int | None = None, end: int | None = None,
                short_policy: str = "loop") -> np.ndarray:
    """TSN sampling of n frames from [start, end): split it into n equal segments and take a
    random frame of each (train, needs rng) or the centre frame (eval); (n,) int64."""
    if not train:
        return uniform_indices(num_frames, n, start=start, end=end, short_policy=short_policy)
    _check_count(n)
    rng = _need_rng(rng, "tsn_indices")
    start, end = resolve_window(num_frames, start, end)
    length = end - start
    if length < n:
        positions = _fit(np.arange(n), length, short_policy,
                         f"TSN sampling of {n} segments needs {n} frames")
        return (start + positions).astype(np.int64)
    bounds = segment_bounds(length, n)
    positions = bounds[:-1] + rng.integers(0, bounds[1:] - bounds[:-1])
    return (start + positions).astype(np.int64)


def dense_indices(num_frames: int, n: int, stride: int, train: bool,
                  rng: np.random.Generator | None = None, *, start: int | None = None,
                  end: int | None = None, short_policy: str = "loop") -> np.ndarray:
    """n frames `stride` apart inside [start, end): at a random offset (train, needs rng) or
    centred (eval); (n,) int64."""
    _check_count(n)
    if int(stride) != stride or stride < 1:
        raise PolySpaceError(f"stride={stride}: must be a positive integer")
    start, end = resolve_window(num_frames, start, end)
    length = end - start
    span = (n - 1) * stride + 1
    if length < span:
        positions = _fit(np.arange(n) * stride, length, short_policy,
                         f"dense sampling of {n} frames at stride {stride} spans {span} frames")
        return (start + positions).astype(np.int64)
    slack = length - span
    if train:
        offset = int(_need_rng(rng, "dense_indices").integers(0, slack + 1))
    else:
        offset = slack // 2
    return (start + offset + np.arange(n) * stride).astype(np.int64)


def sample_indices(sampling: str, num_frames: int, n: int, *, train: bool,
                   rng: np.random.Generator | None = None, stride: int = 1,
                   start: int | None = None, end: int | None = None,
                   short_policy: str = "loop") -> np.ndarray:
    """Dispatch by name: "uniform", "tsn" or "dense"; (n,) int64 frame indices."""
    if sampling == "uniform":
        return uniform_indices(num_frames, n, start=start, end=end, short_policy=short_policy)
    if sampling == "tsn":
        return tsn_indices(num_frames, n, train, rng, start=start, end=end,
                           short_policy=short_policy)
    if sampling == "dense":
        return dense_indices(num_frames, n, stride, train, rng, start=start, end=end,
                             short_policy=short_policy)
    raise PolySpaceError(f"sampling={sampling!r}: unknown; use one of {', '.join(SAMPLINGS)}")
