"""Lab conversions against scikit-image, gradients, normalisation, errors."""

import numpy as np
import pytest
import torch
from skimage import color, data

from polyspace_core.colorize.lab import (
    AB_SCALE,
    denormalize_ab,
    denormalize_l,
    frames_to_gray,
    frames_to_lab,
    lab_to_frames,
    lab_to_rgb,
    merge_lab,
    normalize_ab,
    normalize_l,
    rgb_to_lab,
    split_lab,
)
from polyspace_core.errors import PolySpaceError


def test_rgb_to_lab_matches_skimage():
    img = data.astronaut()[::4, ::4]
    ours = frames_to_lab(img).permute(1, 2, 0).double().numpy()
    np.testing.assert_allclose(ours, color.rgb2lab(img), atol=2e-3)


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    rng = np.random.default_rng(0)
    lab = np.dstack([rng.uniform(0, 100, (24, 24)), rng.uniform(-110, 110, (24, 24, 2))])
    with pytest.warns(UserWarning):  # skimage warns about the negative Z it clips; so do we (silently)
        ref = color.lab2rgb(lab)
    ours = lab_to_rgb(torch.tensor(lab).permute(2, 0, 1)).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_round_trip_uint8_is_exact_and_batched():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)  # (B, T, H, W, 3)
    lab = frames_to_lab(frames)
    assert lab.shape == (2, 3, 3, 16, 16)
    assert float(lab[:, :, 0].min()) >= 0 and float(lab[:, :, 0].max()) <= 100
    assert float(lab[:, :, 1:].abs().max()) <= AB_SCALE
    np.testing.assert_array_equal(lab_to_frames(lab), frames)


def test_normalisation_ranges_and_inverse():
    lab = torch.tensor([[[[0.0]], [[-110.0]], [[110.0]]], [[[100.0]], [[0.0]], [[55.0]]]])  # (2, 3, 1, 1)
    l, ab = split_lab(lab)
    assert torch.allclose(l.flatten(), torch.tensor([-1.0, 1.0]))
    assert torch.allclose(ab[0].flatten(), torch.tensor([-1.0, 1.0]))
    assert torch.allclose(merge_lab(l, ab), lab)
    assert torch.allclose(denormalize_l(normalize_l(lab[:, :1])), lab[:, :1])
    assert torch.allclose(denormalize_ab(normalize_ab(lab[:, 1:])), lab[:, 1:])


def test_gradients_are_finite_at_black_and_white():
    rgb = torch.rand(1, 3, 4, 4)
    rgb[..., 0, 0] = 0.0
    rgb[..., 0, 1] = 1.0
    rgb.requires_grad_(True)
    rgb_to_lab(rgb).sum().backward()
    assert torch.isfinite(rgb.grad).all()
    lab = torch.tensor([[[[0.0, 50.0]], [[0.0, 20.0]], [[0.0, -30.0]]]], requires_grad=True)
    lab_to_rgb(lab).sum().backward()
    assert torch.isfinite(lab.grad).all()


def test_gray_is_lightness():
    img = data.chelsea()[::8, ::8]
    grey = frames_to_gray(img)
    expected = np.round(color.rgb2lab(img)[..., 0] * 2.55)
    assert np.abs(grey.astype(float) - expected).max() <= 1


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(PolySpaceError, match="3, H, W"):
        rgb_to_lab(torch.rand(4, 4))
    with pytest.raises(PolySpaceError, match="uint8"):
        frames_to_lab(np.zeros((4, 4, 3), np.float32))
