"""Video layer: write and probe videos, read frames at indices with torchcodec, decord or PyAV,
sample frame indices, spatial transforms, and decode-once serving of several clip requests.
multiscale.py (TSN's multi-scale crop) and frame_cache.py (decoded frames kept on disk) are
imported from their modules.

    from polyspace_core.video import ClipRequest, SpatialTransform, decode_clips
    out = decode_clips("v.mp4", [ClipRequest("f16", 16, "tsn"), ClipRequest("f4", 4, "tsn")],
                       train=True, rng=np.random.default_rng(0),
                       transform=SpatialTransform(short_side=128, crop=112, train=True))
    out.clips["f16"]  # (16, 112, 112, 3) uint8, same crop as out.clips["f4"]
"""

from .decode import (
    LONG_VIDEO_FRAMES,
    VideoDecodeError,
    VideoInfo,
    choose_backend,
    probe,
    read_frames,
    torchcodec_problem,
)
from .encode import write_video
from .multi import ClipRequest, DecodedClips, decode_clips
from .sampling import dense_indices, sample_indices, tsn_indices, uniform_indices
from .transforms import SpatialTransform, TransformParams

__all__ = [
    "ClipRequest", "DecodedClips", "LONG_VIDEO_FRAMES", "SpatialTransform", "TransformParams",
    "VideoDecodeError", "VideoInfo", "choose_backend", "decode_clips", "dense_indices", "probe",
    "read_frames", "sample_indices", "torchcodec_problem", "tsn_indices", "uniform_indices", "write_video",
]
