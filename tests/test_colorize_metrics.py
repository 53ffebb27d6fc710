"""Metrics against scikit-image and hand-computed values; the global-transfer baseline."""

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from polyspace_core.colorize.baselines import colorize_global, luminance_transfer, reinhard_transfer
from polyspace_core.colorize.lab import frames_to_lab
from polyspace_core.colorize.metrics import cdc, colorfulness, psnr, ssim, warp_error
from polyspace_core.errors import PolySpaceError


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    gt = data.astronaut()[::6, ::6].copy()
    pred = np.clip(gt.astype(int) + rng.integers(-40, 40, gt.shape), 0, 255).astype(np.uint8)
    return pred, gt


def test_psnr_matches_skimage_and_has_no_uint8_wraparound():
    pred, gt = _pair()
    assert psnr(pred, gt) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=255), abs=1e-9)
    dark, light = np.full((8, 8, 3), 3, np.uint8), np.full((8, 8, 3), 5, np.uint8)
    # |3 - 5| = 2 everywhere; uint8 arithmetic would see 254
    assert psnr(dark, light) == pytest.approx(10 * math.log10(255 ** 2 / 4))
    assert psnr(gt, gt) == math.inf


def test_ssim_matches_skimage_gaussian():
    for seed in (0, 1):
        pred, gt = _pair(seed)
        ref = structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=-1)
        assert ssim(pred, gt) == pytest.approx(ref, abs=1e-6)
    assert ssim(gt, gt) == pytest.approx(1.0)


def test_cdc_hand_computed():
    black, white = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)
    steady = np.stack([black] * 6)
    assert cdc(steady) == 0.0
    # alternating frames: distance 1 pairs are disjoint histograms (JS = ln 2), distances 2 and 4 identical
    flicker = np.stack([black, white] * 3)
    assert cdc(flicker) == pytest.approx(math.log(2) / 3)
    # half the pixels change: p = (1, 0), q = (1/2, 1/2) -> JS = 0.5 KL(p||m) + 0.5 KL(q||m), m = (3/4, 1/4)
    half = white.copy()
    half[:2] = 0
    js = 0.5 * math.log(1 / 0.75) + 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    assert cdc(np.stack([black, half]), distances=(1,)) == pytest.approx(js)


def test_warp_error_zero_for_consistent_motion_large_for_flicker():
    big = data.coffee()[::4, ::4]
    gt = np.stack([big[20:84, 10 + 2 * t:74 + 2 * t] for t in range(4)])
    assert warp_error(gt, gt)[0] < 1e-3
    flicker = gt.copy()
    flicker[1::2] = 255 - flicker[1::2]
    mean, per_pair = warp_error(flicker, gt)
    assert len(per_pair) == 3 and mean > 0.3


def test_colorfulness_hand_computed():
    grey = np.full((6, 6, 3), 90, np.uint8)
    assert colorfulness(grey) == 0.0
    red = np.zeros((6, 6, 3), np.uint8)
    red[..., 0] = 200
    # rg = 200, yb = 100 everywhere: sigma = 0, mu = sqrt(200^2 + 100^2)
    assert colorfulness(red) == pytest.approx(0.3 * math.hypot(200, 100))
    half = red.copy()
    half[:3] = 0
    # rg in {0, 200}, yb in {0, 100}: std 100 and 50, means 100 and 50
    assert colorfulness(half) == pytest.approx(math.hypot(100, 50) + 0.3 * math.hypot(100, 50))


def test_metric_input_errors():
    pred, gt = _pair()
    with pytest.raises(PolySpaceError, match="differ in shape"):
        psnr(pred[:-1], gt)
    with pytest.raises(PolySpaceError, match="uint8"):
        ssim(pred.astype(np.float32), gt)
    with pytest.raises(PolySpaceError, match="no frame pairs"):
        cdc(gt[None])


def test_luminance_transfer_recovers_a_lightness_to_colour_mapping():
    """A reference whose colour is a function of lightness: the baseline must reproduce it on a
    frame with other content but the same tones."""
    rng = np.random.default_rng(0)
    L = torch.tensor(rng.uniform(10, 90, (32, 32)), dtype=torch.float32)
    ab = torch.stack([0.8 * (L - 50), -0.5 * (L - 50)])
    ref = torch.cat([L[None], ab])
    target_l = torch.roll(L, 7, dims=1)[None]
    out = luminance_transfer(target_l, ref, bins=32)
    expected = torch.stack([0.8 * (target_l[0] - 50), -0.5 * (target_l[0] - 50)])
    assert (out - expected).abs().mean() < 1.5
    clip = colorize_global(target_l[None].repeat(3, 1, 1, 1), ref)
    assert clip.shape == (3, 2, 32, 32)


def test_reinhard_matches_reference_statistics():
    target = frames_to_lab(data.coffee()[::8, ::8])
    ref = frames_to_lab(data.astronaut()[::8, ::8])
    out = reinhard_transfer(target, ref)
    torch.testing.assert_close(out.mean((1, 2)), ref.mean((1, 2)), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.std((1, 2)), ref.std((1, 2)), atol=1e-3, rtol=1e-4)
