"""Decode once, serve many: one pass over a video yields clips for several consumers.

Each consumer states what it needs as a ClipRequest (frame count, sampling, stride). The frame
indices of all requests are drawn first, their union is decoded once (each distinct frame decoded
and converted once, frames no request uses never converted), and every clip is assembled from
that pool. Requests that share a SpatialTransform object share ONE random draw (crop box, flip),
so e.g. the FFN's 4/8/16-frame clips see the same crop, and the transform runs once per distinct
frame rather than once per clip.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PolySpaceError
from .decode import BACKENDS, VideoDecodeError, VideoInfo, read_unique_frames, scan
from .sampling import SAMPLINGS, SHORT_POLICIES, sample_indices
from .transforms import SpatialTransform, TransformParams


@dataclass(frozen=True)
class ClipRequest:
    """One consumer's clip: `num_frames` frames sampled by "uniform", "tsn" or "dense"
    (frames `stride` apart). transform: this request's own SpatialTransform (None: the shared
    one given to decode_clips, or none). short_policy: "loop", "repeat_last" or "error" for a
    video shorter than the clip."""

    name: str
    num_frames: int
    sampling: str = "uniform"
    stride: int = 1
    transform: SpatialTransform | None = None
    short_policy: str = "loop"

    def __post_init__(self):
        if not self.name:
            raise PolySpaceError("ClipRequest name: must be a non-empty string")
        if self.sampling not in SAMPLINGS:
            raise PolySpaceError(f"ClipRequest {self.name!r} sampling={self.sampling!r}: unknown; "
                                 f"use one of {', '.join(SAMPLINGS)}")
        if self.short_policy not in SHORT_POLICIES:
            raise PolySpaceError(f"ClipRequest {self.name!r} short_policy={self.short_policy!r}: "
                                 f"unknown; use one of {', '.join(SHORT_POLICIES)}")
        if int(self.stride) != self.stride or self.stride < 1:
            raise PolySpaceError(f"ClipRequest {self.name!r} stride={self.stride}: must be a "
                                 f"positive integer")
        if int(self.num_frames) != self.num_frames or self.num_frames < 1:
            raise PolySpaceError(f"ClipRequest {self.name!r} num_frames={self.num_frames}: must "
                                 f"be a positive integer")


@dataclass
class DecodedClips:
    """clips: name -> (T, H, W, 3) uint8; indices: name -> (T,) frame indices used;
    frames_decoded: distinct frames decoded for all requests together (each once);
    transform_params: name -> the TransformParams applied (None without a transform)."""

    clips: dict[str, np.ndarray]
    indices: dict[str, np.ndarray]
    frames_decoded: int
    info: VideoInfo
    transform_params: dict[str, TransformParams | None] = field(default_factory=dict)


def decode_clips(path: str | os.PathLike, requests: Sequence[ClipRequest], *,
                 train: bool = False, rng: np.random.Generator | None = None,
                 window: tuple[int | None, int | None] | None = None,
                 transform: SpatialTransform | None = None, backend: str = "auto",
                 threads: int = 1) -> DecodedClips:
    """Sample every request's indices, decode their union once, and build each clip.

    train: random TSN offsets / dense offsets / crops (needs rng) versus centred ones.
    window: (start, end) frame range, end exclusive (Diving48 start_frame/end_frame); None for
    the whole video. transform: the SpatialTransform for requests without their own; one draw
    per transform object. Raises VideoDecodeError for a bad file and for a window or clip that
    this video cannot provide (window past its end, short_policy="error" on a short video);
    PolySpaceError for bad requests or arguments.
    """
    path = Path(path)
    if not requests:
        raise PolySpaceError(f"{path}: decode_clips needs at least one ClipRequest")
    names = [r.name for r in requests]
    if len(set(names)) != len(names):
        raise PolySpaceError(f"{path}: ClipRequest names must be unique, got {names}")
    if backend not in BACKENDS:
        raise PolySpaceError(f"backend={backend!r}: unknown video backend; use one of "
                             f"{', '.join(BACKENDS)}")
    if train and not isinstance(rng, np.random.Generator):
        raise PolySpaceError("decode_clips(train=True) needs rng=np.random.default_rng(seed) so "
                             "that training clips are reproducible")
    start, end = window if window is not None else (None, None)

    info, table = scan(path)
    indices = {}
    for request in requests:
        try:
            indices[request.name] = sample_indices(
                request.sampling, info.num_frames, request.num_frames, train=train, rng=rng,
                stride=request.stride, start=start, end=end, short_policy=request.short_policy)
        except PolySpaceError as e:
            # a window past the video's end or a clip too long for it is a problem of this
            # video (annotation and file disagree), so datasets apply their error/skip policy
            raise VideoDecodeError(f"{path}: {e} (request {request.name!r}, video has "
                                   f"{info.num_frames} frames)") from None
    union = sorted({int(i) for idx in indices.values() for i in idx})
    pool = read_unique_frames(path, union, info, table, backend, threads)

    # group requests by the transform object they use: one draw per group
    groups: dict[int, tuple[SpatialTransform | None, list[ClipRequest]]] = {}
    for request in requests:
        t = request.transform if request.transform is not None else transform
        groups.setdefault(id(t), (t, []))[1].append(request)

    clips, params_used = {}, {}
    for t, members in groups.values():
        used = sorted({int(i) for r in members for i in indices[r.name]})
        row = {frame_index: k for k, frame_index in enumerate(used)}
        frames = np.stack([pool[i] for i in used])
        params = None
        if t is not None:
            params = t.draw(rng, frames.shape[1], frames.shape[2])
            frames = t.apply(frames, params)
        for r in members:
            clips[r.name] = frames[[row[int(i)] for i in indices[r.name]]]
            params_used[r.name] = params
    return DecodedClips(clips={n: clips[n] for n in names}, indices=indices,
                        frames_decoded=len(union), info=info,
                        transform_params={n: params_used[n] for n in names})
