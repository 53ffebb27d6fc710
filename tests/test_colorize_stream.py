"""`polyspace colorize` on real-size video: the working resolution, L-guided upsampling of ab,
one decoder per video (linear decoding for every container), the reference encoded once per
sequence, chunking that does not change the output, and bad input as one line with nothing left
at the output path."""

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from polyspace_core.cli import main
from polyspace_core.colorize import commands
from polyspace_core.colorize.lab import frames_to_lab, split_lab
from polyspace_core.colorize.stream import (
    DEFAULT_WORKING_SIZE,
    colorize_video,
    joint_bilateral_upsample,
    working_resolution,
)
from polyspace_core.errors import PolySpaceError
from polyspace_core.video.decode import probe, read_frames
from polyspace_core.video.encode import write_video


def _pan(n, h, w, image=None):
    big = cv2.resize(data.coffee() if image is None else image, (w + 2 * n, h), interpolation=cv2.INTER_AREA)
    return np.stack([big[:, 2 * t:2 * t + w] for t in range(n)]), big[:, :w]


def _clip(tmp_path, n, h, w, name="in.mp4", **kwargs):
    frames, ref = _pan(n, h, w)
    video = write_video(tmp_path / name, frames, fps=25, **kwargs)
    ref_path = tmp_path / "ref.png"
    cv2.imwrite(str(ref_path), cv2.cvtColor(ref, cv2.COLOR_RGB2BGR))
    return video, ref_path


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory):
    from polyspace_core.colorize.exemplar import build_exemplar_branch
    from polyspace_core.colorize.system import FusionSystem

    torch.manual_seed(0)
    return FusionSystem(build_exemplar_branch()).save_pretrained(tmp_path_factory.mktemp("ckpt") / "system")


# ----------------------------------------------------------------------------- working size

def test_working_resolution_keeps_aspect_and_never_upscales():
    assert working_resolution(360, 640, 256) == (256, 456)
    assert working_resolution(480, 854, 256) == (256, 456)
    assert working_resolution(640, 360, 256) == (456, 256)
    assert working_resolution(144, 176, 256) == (144, 176)     # smaller than the working size: as it is
    assert working_resolution(61, 81, 256) == (64, 80)         # multiples of 8
    assert DEFAULT_WORKING_SIZE == commands.DEFAULT_WORKING_SIZE == 256
    with pytest.raises(PolySpaceError, match="working_size=4"):
        working_resolution(360, 640, 4)


# ----------------------------------------------------------------------------- L-guided upsampling

@pytest.mark.parametrize("factor", [2, 4])
def test_joint_bilateral_upsampling_beats_bilinear_on_photos(factor):
    """True ab of a photo at 1/factor size, brought back to full size: guided by the full L the
    error is lower than bilinear's (colour stays inside lightness edges)."""
    for image in (data.astronaut(), data.coffee()):
        h, w = image.shape[0] // 8 * 8, image.shape[1] // 8 * 8
        image = image[:h, :w]
        small = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
        l_full, ab_true = split_lab(frames_to_lab(image)[None])
        l_low, ab_low = split_lab(frames_to_lab(small)[None])
        bilinear = F.interpolate(ab_low, size=(h, w), mode="bilinear", align_corners=False)
        guided = joint_bilateral_upsample(ab_low, l_low, l_full)
        assert guided.shape == ab_true.shape
        err_guided = float((guided - ab_true).abs().mean())
        err_bilinear = float((bilinear - ab_true).abs().mean())
        assert err_guided < 0.95 * err_bilinear, (err_guided, err_bilinear)


def test_joint_bilateral_upsampling_keeps_colour_on_its_side_of_an_edge():
    h, w = 32, 64
    l_full = torch.full((1, 1, h, w), -0.6)
    l_full[..., 33:] = 0.6                                  # the edge falls inside a low-res pixel
    ab_full = torch.zeros(1, 2, h, w)
    ab_full[:, 0, :, :33], ab_full[:, 1, :, 33:] = 0.5, -0.5
    l_low, ab_low = F.avg_pool2d(l_full, 4), F.avg_pool2d(ab_full, 4)
    guided = joint_bilateral_upsample(ab_low, l_low, l_full)
    bilinear = F.interpolate(ab_low, size=(h, w), mode="bilinear", align_corners=False)
    # every full pixel takes its colour from the working pixels of its own lightness; only the
    # working pixel the edge cuts carries a mixed colour (1/4 of the other side's), bilinear blurs more
    err_guided, err_bilinear = (guided - ab_full).abs(), (bilinear - ab_full).abs()
    assert float(err_guided.max()) <= 0.125 + 1e-6 < 0.2 < float(err_bilinear.max())
    assert float(err_guided.mean()) < 0.2 * float(err_bilinear.mean())
    same = joint_bilateral_upsample(ab_full, l_full, l_full)
    assert same is ab_full                                   # nothing to upsample


# ----------------------------------------------------------------------------- the command

def test_colorize_640x360_h264_at_the_default_working_size(tmp_path, demo_checkpoint, capsys):
    video, ref = _clip(tmp_path, 10, 360, 640)
    out = tmp_path / "out.mp4"
    threads = torch.get_num_threads()
    try:
        assert main(["colorize", "--input", str(video), "--reference", str(ref), "--out", str(out),
                     "--checkpoint", str(demo_checkpoint), "--chunk", "4", "--device", "cpu", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    stats = json.loads(capsys.readouterr().out)
    assert stats["torch_threads"] == 1
    assert stats["working_size"] == [256, 456] and stats["size"] == [360, 640]
    assert stats["frames"] == stats["frames_decoded"] == 10 and stats["peak_frames_held"] == 4
    assert stats["peak_rss_mb"] > 0 and set(stats["seconds_by_stage"]) == {"decode", "convert", "predict",
                                                                           "upsample", "encode"}
    info = probe(out)
    assert (info.num_frames, info.height, info.width) == (10, 360, 640)
    # the output keeps the input's lightness (up to H.264's rounding)
    diff = frames_to_lab(read_frames(out, np.arange(10)))[:, 0] - frames_to_lab(read_frames(video, np.arange(10)))[:, 0]
    assert float(diff.abs().median()) < 2.5


def test_colorize_decodes_an_avi_once_whatever_the_chunk(tmp_path, monkeypatch, capsys):
    """An AVI has no usable timestamps: reading it chunk by chunk with read_frames decoded it
    from frame 0 for every chunk (quadratic). One decoder now serves every chunk."""
    import polyspace_core.video.decode as decode

    n = 96
    video, ref = _clip(tmp_path, n, 48, 64, name="long.avi", codec="mpeg4", bframes=2)
    decoded = []
    real = decode._decoded

    def counting(container, stream, path):
        for frame in real(container, stream, path):
            decoded.append(1)
            yield frame

    monkeypatch.setattr(decode, "_decoded", counting)
    assert main(["colorize", "--input", str(video), "--reference", str(ref), "--out", str(tmp_path / "o.mp4"),
                 "--method", "global", "--chunk", "8"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert len(decoded) == n == stats["frames_decoded"] and stats["peak_frames_held"] == 8
    assert probe(tmp_path / "o.mp4").num_frames == n


def test_chunking_does_not_change_the_output_and_the_reference_is_encoded_once(tmp_path, demo_checkpoint,
                                                                               monkeypatch):
    from polyspace_core.colorize.exemplar import ExemplarBranch
    from polyspace_core.colorize.system import FusionSystem

    video, ref = _clip(tmp_path, 9, 48, 64)
    calls = []
    real = ExemplarBranch.encode_reference

    def counting(self, ref_l, ref_ab):
        calls.append(tuple(ref_l.shape))
        return real(self, ref_l, ref_ab)

    monkeypatch.setattr(ExemplarBranch, "encode_reference", counting)
    outputs = []
    for chunk in (9, 2):
        system = FusionSystem.from_pretrained(demo_checkpoint)
        colorize_video(video, ref, tmp_path / f"c{chunk}.mkv", system=system, chunk=chunk, progress=False,
                       codec="h264")
        outputs.append(read_frames(tmp_path / f"c{chunk}.mkv", np.arange(9)))
    assert calls == [(1, 1, 48, 64)] * 2                     # once per video, not per chunk or frame
    np.testing.assert_array_equal(outputs[0], outputs[1])


# ----------------------------------------------------------------------------- bad input

def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_bad_input_is_one_line_and_leaves_nothing_at_the_output(tmp_path, capsys, monkeypatch):
    video, ref = _clip(tmp_path, 6, 32, 48)
    out = tmp_path / "out" / "o.mp4"
    base = ["colorize", "--input", str(video), "--reference", str(ref), "--out", str(out), "--method", "global",
            "--chunk", "16"]

    def run(*changes):
        args = list(base)
        for flag, value in changes:
            args[args.index(flag) + 1] = value
        assert main(args) == 2
        line = _one_line_error(capsys)
        assert not out.exists()
        if out.parent.exists():
            assert list(out.parent.iterdir()) == []          # no temp file either
        return line

    not_an_image = tmp_path / "ref_bad.png"
    not_an_image.write_bytes(b"this is not a PNG")
    assert "ref_bad.png: cannot read the image" in run(("--reference", str(not_an_image)))
    assert "nothing.png" in run(("--reference", str(tmp_path / "nothing.png")))

    not_a_video = tmp_path / "bad.mp4"
    not_a_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    assert "bad.mp4" in run(("--input", str(not_a_video)))
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    assert "cut.mp4" in run(("--input", str(truncated)))

    a_file = tmp_path / "file"
    a_file.write_text("x")
    line = run(("--out", str(a_file / "o.mp4")))
    assert "cannot write there" in line and str(a_file) in line
    assert "is a folder" in run(("--out", str(tmp_path)))

    # a failure half-way through (here: the decoder after the first chunk) removes the temp file
    import polyspace_core.video.decode as decode

    real = decode._rgb
    seen = []

    def failing(frame):
        seen.append(1)
        if len(seen) > 3:
            raise decode.VideoDecodeError(f"{video}: corrupt video data (injected)")
        return real(frame)

    monkeypatch.setattr(decode, "_rgb", failing)
    assert "injected" in run(("--chunk", "2"))
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_lightness_is_frames_to_lab_L():
    from polyspace_core.colorize.stream import lightness

    rng = np.random.default_rng(0)
    every_value = np.broadcast_to(np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1), (1, 16, 16, 3))
    frames = np.concatenate([rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8), every_value])
    torch.testing.assert_close(lightness(frames), frames_to_lab(frames)[:, :1], rtol=0, atol=2e-4)
