"""Video layer: encode, probe and decode videos, sample frame indices, spatial transforms,
and decode-once serving of several clip requests."""

from .encode import write_video

__all__ = ["write_video"]
