"""Decoding: write real videos, read them back with every backend, check every frame is the
right one (each frame carries its number), and that bad files raise VideoDecodeError.
torchcodec's tests run where it can load the system FFmpeg libraries (.ci/run installs them)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from polyspace_core.errors import PolySpaceError
from polyspace_core.video import (
    LONG_VIDEO_FRAMES,
    VideoDecodeError,
    VideoInfo,
    choose_backend,
    probe,
    read_frames,
    torchcodec_problem,
    write_video,
)
from polyspace_core.video.patterns import frame_number, numbered_frames

needs_torchcodec = pytest.mark.skipif(torchcodec_problem() is not None, reason=str(torchcodec_problem()))
# every backend this machine can run
BACKENDS = ["auto", "decord", "pyav"] + (["torchcodec"] if torchcodec_problem() is None else [])

N = 90  # frames per test video; several keyframes (gop 24) so random access has to seek

# name -> (file name, write_video keyword arguments)
VIDEOS = {
    "h264_mp4": ("h264.mp4", dict(codec="h264", gop=24, bframes=0)),
    "h264_bframes_mp4": ("h264_b.mp4", dict(codec="h264", gop=24, bframes=3)),
    "vp9_webm": ("vp9.webm", dict(codec="vp9", gop=24)),
    "h264_bframes_avi": ("h264_b.avi", dict(codec="h264", gop=24, bframes=3)),
    "mpeg4_bframes_avi": ("mpeg4_b.avi", dict(codec="mpeg4", gop=24, bframes=2)),
    "mpeg4_avi": ("mpeg4.avi", dict(codec="mpeg4", gop=24)),
}


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return numbered_frames(N, 64, 96, seed=0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory, source) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {key: write_video(folder / name, source, fps=25, **kwargs)
            for key, (name, kwargs) in VIDEOS.items()}


def sequential_pyav(path: Path) -> np.ndarray:
    """Reference: every frame of a plain front-to-back PyAV decode."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def random_indices(seed: int, count: int = 20) -> list[int]:
    rng = np.random.default_rng(seed)
    # unsorted, with duplicates, and both ends of the video
    return [int(i) for i in rng.integers(0, N, count)] + [N - 1, 0, 37, 37]


def test_write_video_round_trip(videos, source):
    for key, path in videos.items():
        info = probe(path)
        assert (info.num_frames, info.height, info.width) == (N, 64, 96), key
        assert info.fps == pytest.approx(25.0), key
        decoded = sequential_pyav(path)
        assert decoded.shape == source.shape
        mse = np.mean((decoded.astype(np.float64) - source) ** 2)
        psnr = 10 * np.log10(255.0 ** 2 / mse)
        # 4:2:0 chroma alone caps this colourful texture at ~29 dB (lossless x264: 29.2 dB)
        assert psnr > 27, f"{key}: lossy coding too coarse ({psnr:.1f} dB)"
        assert [frame_number(f) for f in decoded] == list(range(N)), key


def test_probe_reports_codec_and_b_frames(videos):
    assert probe(videos["vp9_webm"]).codec == "vp9"
    assert probe(videos["mpeg4_avi"]).codec == "mpeg4"
    assert probe(videos["h264_bframes_mp4"]).has_b_frames
    assert not probe(videos["h264_mp4"]).has_b_frames
    assert probe(videos["mpeg4_bframes_avi"]).has_b_frames


def test_write_video_atomic_and_validated(tmp_path, source):
    target = tmp_path / "clip.webm"
    write_video(target, source[:8], fps=12)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.webm"]  # no temp file left behind
    with pytest.raises(PolySpaceError, match="cannot hold h264"):
        write_video(tmp_path / "x.webm", source[:4], codec="h264")
    with pytest.raises(PolySpaceError, match="even"):
        write_video(tmp_path / "odd.mp4", source[:4, :63])
    with pytest.raises(PolySpaceError, match="uint8"):
        write_video(tmp_path / "f.mp4", source[:4].astype(np.float32))
    with pytest.raises(PolySpaceError, match="suffix"):
        write_video(tmp_path / "x.mov", source[:4])
    assert not (tmp_path / "x.webm").exists() and not (tmp_path / "odd.mp4").exists()


def test_write_video_is_repeatable(tmp_path):
    """The same frames always encode to the same pictures (generated datasets depend on it): 40
    H.264 encodes of each of a few small moving clips give one stream per clip (with libx264's
    macroblock tree some gave 2-7 distinct ones), and VP9 / MPEG-4 give one decoded clip."""
    from polyspace_core.datasets.synthmotion import make_clip

    clips = [make_clip(name, 16, size, (1, 0, 0))[0]
             for name in ("move_left", "zigzag_fast", "bounce") for size in (32, 64)]
    for clip in clips:
        streams = {write_video(tmp_path / "c.mp4", clip, fps=25).read_bytes() for _ in range(40)}
        assert len(streams) == 1
    for suffix in (".webm", ".avi"):
        decoded = {read_frames(write_video(tmp_path / f"c{suffix}", clips[0], fps=25), range(16)).tobytes()
                   for _ in range(10)}
        assert len(decoded) == 1, suffix


@pytest.mark.parametrize("key", ["h264_mp4", "vp9_webm"])
def test_backends_return_identical_frames(videos, key):
    indices = random_indices(seed=1)
    by_decord = read_frames(videos[key], indices, backend="decord")
    by_pyav = read_frames(videos[key], indices, backend="pyav")
    assert by_decord.shape == (len(indices), 64, 96, 3) and by_decord.dtype == np.uint8
    np.testing.assert_array_equal(by_decord, by_pyav)
    assert [frame_number(f) for f in by_pyav] == indices  # order of `indices`, duplicates kept


@pytest.mark.parametrize("key", ["vp9_webm", "h264_bframes_mp4", "h264_bframes_avi",
                                 "mpeg4_bframes_avi"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_access_matches_sequential_decode(videos, key, backend):
    # the streams where decord's own random access is known to go wrong: every backend
    # choice must still return exactly the frames of a sequential decode (torchcodec, which
    # reads AVI with B-frames wrong, refuses them instead)
    if backend == "torchcodec" and key.endswith("bframes_avi"):
        with pytest.raises(PolySpaceError, match="backend='torchcodec' reads this stream") as error:
            read_frames(videos[key], [0, 1], backend=backend)
        assert_one_line_naming(error, videos[key])
        assert not isinstance(error.value, VideoDecodeError)   # a setting, not a bad file to skip
        return
    reference = sequential_pyav(videos[key])
    for seed in (2, 3):
        indices = random_indices(seed)
        frames = read_frames(videos[key], indices, backend=backend)
        np.testing.assert_array_equal(frames, reference[indices])
        assert [frame_number(f) for f in frames] == indices


def test_auto_routes_unreliable_streams_to_pyav(videos, monkeypatch):
    import polyspace_core.video.decode as decode

    # without torchcodec (no FFmpeg libraries): decord where it is right, else PyAV
    monkeypatch.setattr(decode, "torchcodec_problem", lambda: "no FFmpeg here")
    assert choose_backend(probe(videos["h264_mp4"])) == "decord"
    assert choose_backend(probe(videos["mpeg4_avi"])) == "decord"
    for key in ("vp9_webm", "h264_bframes_mp4", "h264_bframes_avi", "mpeg4_bframes_avi"):
        assert choose_backend(probe(videos[key])) == "pyav", key
    long_video = VideoInfo(num_frames=LONG_VIDEO_FRAMES + 1, fps=25.0, height=64, width=96,
                           codec="h264", pixel_format="yuv420p")
    assert choose_backend(long_video) == "pyav"
    # with it: torchcodec wherever it reads right, the old rule for AVI with B-frames and 10-bit
    monkeypatch.setattr(decode, "torchcodec_problem", lambda: None)
    for key in ("h264_mp4", "mpeg4_avi", "vp9_webm", "h264_bframes_mp4"):
        assert choose_backend(probe(videos[key])) == "torchcodec", key
    for key in ("h264_bframes_avi", "mpeg4_bframes_avi"):
        assert choose_backend(probe(videos[key])) == "pyav", key
    assert choose_backend(long_video) == "torchcodec"
    ten_bit = VideoInfo(num_frames=10, fps=25.0, height=64, width=96, codec="hevc", pixel_format="yuv420p10le")
    assert choose_backend(ten_bit) == "pyav"


def test_without_torchcodec_auto_still_reads_and_asking_for_it_is_one_line(videos, monkeypatch):
    import polyspace_core.video.decode as decode

    monkeypatch.setattr(decode, "torchcodec_problem", lambda: "torchcodec cannot find the FFmpeg libraries")
    indices = random_indices(seed=4)
    frames = read_frames(videos["vp9_webm"], indices)
    assert [frame_number(f) for f in frames] == indices
    with pytest.raises(PolySpaceError, match="backend='torchcodec': torchcodec cannot find") as error:
        read_frames(videos["vp9_webm"], [0], backend="torchcodec")
    assert "\n" not in str(error.value)


@needs_torchcodec
@pytest.mark.parametrize("key", ["h264_mp4", "h264_bframes_mp4", "vp9_webm", "mpeg4_avi"])
def test_torchcodec_frames_equal_pyav(videos, key):
    """The check behind `auto` choosing torchcodec: bit-identical frames to PyAV's at random
    indices (unsorted, duplicates, both ends), on every container and codec it is used for."""
    indices = random_indices(seed=5)
    by_torchcodec = read_frames(videos[key], indices, backend="torchcodec")
    np.testing.assert_array_equal(by_torchcodec, read_frames(videos[key], indices, backend="pyav"))
    assert [frame_number(f) for f in by_torchcodec] == indices


def test_index_out_of_range_and_bad_backend(videos):
    with pytest.raises(VideoDecodeError, match=f"frame index {N} is outside"):
        read_frames(videos["h264_mp4"], [0, N])
    with pytest.raises(VideoDecodeError, match="frame index -1"):
        read_frames(videos["h264_mp4"], [-1])
    with pytest.raises(PolySpaceError, match="backend='opencv'"):
        read_frames(videos["h264_mp4"], [0], backend="opencv")


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("key", ["h264_mp4", "vp9_webm", "mpeg4_avi"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_raises(videos, tmp_path, key, keep):
    data = videos[key].read_bytes()
    cut = tmp_path / f"cut{videos[key].suffix}"
    cut.write_bytes(data[:int(len(data) * keep)])
    for backend in BACKENDS:
        with pytest.raises(VideoDecodeError) as error:
            read_frames(cut, [0, 1, 2], backend=backend)
        assert_one_line_naming(error, cut)
    with pytest.raises(VideoDecodeError):
        probe(cut)


@pytest.mark.parametrize("key", ["vp9_webm", "mpeg4_avi"])
def test_corrupt_middle_raises(videos, tmp_path, key):
    data = bytearray(videos[key].read_bytes())
    middle = len(data) // 2
    data[middle:middle + 3000] = np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()
    bad = tmp_path / f"bad{videos[key].suffix}"
    bad.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError) as error:
        read_frames(bad, list(range(N)))
    assert_one_line_naming(error, bad)


def test_empty_missing_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.avi"
    garbage = tmp_path / "garbage.webm"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    for path, reason in ((empty, "empty file"), (missing, "not found"), (garbage, "cannot open")):
        with pytest.raises(VideoDecodeError, match=reason) as error:
            read_frames(path, [0])
        assert_one_line_naming(error, path)
        assert isinstance(error.value, PolySpaceError)


@pytest.mark.parametrize("key", ["h264_bframes_mp4", "vp9_webm"])
def test_pyav_seeks_to_keyframes_instead_of_decoding_everything(videos, key, monkeypatch):
    import polyspace_core.video.decode as decode_module

    decoded = []
    original = decode_module._decoded

    def counting(container, stream, path):
        for frame in original(container, stream, path):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(decode_module, "_decoded", counting)
    frames = read_frames(videos[key], [80, 3], backend="pyav")
    assert [frame_number(f) for f in frames] == [80, 3]
    # frames 0..3, then a seek to the keyframe at 72 and 72..80 (plus a few frames of
    # decoder delay), far fewer than the 81 a front-to-back decode needs
    assert len(decoded) < 30


def test_auto_reads_lossless_444_h264_that_decord_cannot(tmp_path):
    """Lossless H.264 (crf 0) uses the High 4:4:4 Predictive profile, where decord fails a
    buffer-size check at some sizes (48x48 here); "auto" must route it away from decord and return the
    exact frames."""
    from polyspace_core.video.decode import choose_backend, probe, read_frames
    from polyspace_core.video.encode import write_video

    rng = np.random.default_rng(0)
    texture = np.kron(rng.integers(0, 256, (6, 6, 1), dtype=np.uint8), np.ones((8, 8, 3), dtype=np.uint8))
    frames = np.repeat(texture[None], 12, axis=0)
    path = write_video(tmp_path / "lossless.mp4", frames, options={"crf": "0"})
    info = probe(path)
    assert info.profile == "High 4:4:4 Predictive" and choose_backend(info) != "decord"
    got = read_frames(path, [0, 5, 11], backend="auto")
    assert got.shape == (3, 48, 48, 3)
    assert np.abs(got.astype(int) - frames[[0, 5, 11]].astype(int)).max() <= 8


@pytest.mark.parametrize("key", sorted(VIDEOS))
def test_iter_frames_reads_every_frame_once_with_one_decoder(videos, source, key, monkeypatch):
    """Chunks continue one decoder: every container (AVI included, which has no usable
    timestamps) is decoded front to back once, so a streaming read is linear in the length."""
    import polyspace_core.video.decode as decode

    opened, decoded = [], []
    real_open, real_decoded = decode._open, decode._decoded

    def counting_open(path):
        opened.append(path)
        return real_open(path)

    def counting_decoded(container, stream, path):
        for frame in real_decoded(container, stream, path):
            decoded.append(frame)
            yield frame

    monkeypatch.setattr(decode, "_open", counting_open)
    monkeypatch.setattr(decode, "_decoded", counting_decoded)
    firsts, chunks = zip(*decode.iter_frames(videos[key], chunk=16))
    frames = np.concatenate(chunks)
    assert list(firsts) == list(range(0, N, 16)) and [len(c) for c in chunks] == [16] * (N // 16) + [N % 16]
    np.testing.assert_array_equal(frames, sequential_pyav(videos[key]))
    assert [frame_number(f) for f in frames] == list(range(N))
    assert len(decoded) == N and len(opened) == 2  # scan (no decoding) + the one decoder


def test_iter_frames_rejects_a_stream_that_ends_early(videos, monkeypatch):
    import polyspace_core.video.decode as decode

    info, table = decode.scan(videos["mpeg4_avi"])
    longer = VideoInfo(**{**info.__dict__, "num_frames": info.num_frames + 5})
    with pytest.raises(VideoDecodeError, match=f"ended after {N} of {N + 5} frames"):
        list(decode.iter_frames(videos["mpeg4_avi"], 8, info=longer, table=table))
    with pytest.raises(PolySpaceError, match="chunk=0"):
        list(decode.iter_frames(videos["mpeg4_avi"], 0))
