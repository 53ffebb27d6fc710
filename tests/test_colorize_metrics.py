"""Metrics against scikit-image and hand-computed values; the global-transfer baseline."""

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from polyspace_core.colorize.baselines import colorize_global, luminance_transfer, reinhard_transfer
from polyspace_core.colorize.flow import DISFlow, FarnebackFlow
from polyspace_core.colorize.lab import frames_to_lab
from polyspace_core.colorize.metrics import (
    cdc,
    colorfulness,
    non_occlusion_mask,
    psnr,
    ssim,
    ssim_gaussian,
    warp_error,
    warp_error_pair,
)
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


def test_ssim_is_skimage_default_window_and_gaussian_is_kept_under_its_name():
    for seed in (0, 1):
        pred, gt = _pair(seed)
        # the published tables' call: skimage's defaults (7x7 uniform window, sample covariance)
        assert ssim(pred, gt) == pytest.approx(structural_similarity(gt, pred, data_range=255, channel_axis=-1),
                                               abs=1e-12)
        ref = structural_similarity(gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255, channel_axis=-1)
        assert ssim_gaussian(pred, gt) == pytest.approx(ref, abs=1e-6)
        assert ssim(pred, gt) != pytest.approx(ssim_gaussian(pred, gt), abs=1e-4)  # two different windows
    assert ssim(gt, gt) == pytest.approx(1.0)
    assert ssim_gaussian(gt, gt) == pytest.approx(1.0)
    with pytest.raises(PolySpaceError, match="7x7"):
        ssim(gt[:6, :6], gt[:6, :6])


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
    for backend in (FarnebackFlow(), DISFlow()):
        assert warp_error(gt, gt, backend)[0] < 2e-3
        flicker = gt.copy()
        flicker[1::2] = 255 - flicker[1::2]
        mean, per_pair = warp_error(flicker, gt, backend)
        assert len(per_pair) == 3 and mean > 0.1
    with pytest.raises(PolySpaceError, match="flow backend"):
        warp_error(gt, gt)  # the caller must choose the estimator (one the methods do not use)


def test_warp_error_on_lai_scale_closed_form():
    """Lai et al.'s E_warp: squared [0, 1] RGB difference MEANED over the channels and the
    non-occluded pixels (their N counts the mask over 3 channels), not summed over channels."""
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[..., 0] = 255  # one channel differs by 1.0: per-channel mean 1/3 (a channel sum would give 1)
    zero = np.zeros((8, 8, 2), np.float32)
    everywhere = np.ones((8, 8), bool)
    assert warp_error_pair(a, b, zero, everywhere) == pytest.approx(1 / 3)
    half = everywhere.copy()
    half[:, 4:] = False
    c = a.copy()
    c[:, :4] = 51  # 0.2 in all channels on the kept half only -> 0.04
    c[:, 4:] = 255  # ignored: occluded
    assert warp_error_pair(a, c, zero, half) == pytest.approx(0.04)
    assert warp_error_pair(a, c, zero, np.zeros((8, 8), bool)) == 0.0  # no valid pixel: Lai's N = H W 3
    # the flow moves content: frame t+1 is frame t shifted right by 2 px; warping t+1 along
    # the forward flow (+2, 0) brings it back (border columns clamp, like Resample2d)
    rng = np.random.default_rng(0)
    t0 = rng.integers(0, 255, (8, 12, 3)).astype(np.uint8)
    t1 = np.roll(t0, 2, axis=1)
    fw = np.zeros((8, 12, 2), np.float32)
    fw[..., 0] = 2
    mask = np.ones((8, 12), bool)
    mask[:, 10:] = False  # these pixels leave the frame
    assert warp_error_pair(t0, t1, fw, mask) == pytest.approx(0.0, abs=1e-12)


def test_non_occlusion_mask_follows_lai_thresholds():
    fw = np.zeros((6, 10, 2), np.float32)
    fw[..., 0] = 2.0
    bw = -fw
    assert non_occlusion_mask(fw, bw).all()  # consistent, no motion boundary
    # inconsistent: |2 + 2|^2 = 16 > 0.01 (4 + 4) + 0.5
    assert not non_occlusion_mask(fw, fw).any()
    # a step in the forward flow: the column before it is a motion boundary (forward differences)
    step = fw.copy()
    step[:, 5:, 0] = 3.0
    back = -step
    mask = non_occlusion_mask(step, np.roll(back, 0, axis=1))
    assert not mask[:, 4].any()
    assert mask[:, :3].all()


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


def _no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_lpips_and_fid_are_skipped_in_one_line_without_local_weights(tmp_path, monkeypatch):
    from polyspace_core.colorize.metrics import perceptual_scorers

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _no_downloads(monkeypatch)
    scorers, skipped = perceptual_scorers("cpu")
    assert scorers == {} and set(skipped) == {"lpips", "fid"}
    for why in skipped.values():
        assert "\n" not in why and "nothing is downloaded" in why and str(tmp_path / "torch") in why
    with pytest.raises(PolySpaceError, match="color_fid_weights"):
        perceptual_scorers("cpu", fid_weights_path=tmp_path / "missing.pth")


def test_lpips_reads_the_local_alexnet_file_and_matches_torchmetrics(tmp_path, monkeypatch):
    """torchvision's AlexNet file at the hub cache path torchmetrics reads (random weights here:
    this checks the wiring and that nothing is fetched, not the published LPIPS values)."""
    import torchvision
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    from polyspace_core.colorize.metrics import lpips_weights, perceptual_scorers

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _no_downloads(monkeypatch)
    torch.manual_seed(0)
    path = lpips_weights()[0] or (tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    assert lpips_weights() == (path, "")
    scorers, skipped = perceptual_scorers("cpu")
    assert "lpips" in scorers and "lpips" not in skipped
    pred, gt = _pair()
    clip_p, clip_g = np.stack([pred, gt]), np.stack([gt, gt])
    values = scorers["lpips"].frames(clip_p, clip_g)
    assert values[1] == pytest.approx(0.0, abs=1e-7) and values[0] > 0
    ref = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    to = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    assert values[0] == pytest.approx(float(ref(to(pred[None]), to(gt[None]))), rel=1e-5)


def test_fid_reads_a_local_inception_file(tmp_path, monkeypatch):
    """FID through torchmetrics from a local Inception file (random weights written here in
    torch-fidelity's layout): identical sets score ~0, a shifted set more; a file holding Python
    objects is refused before torch-fidelity's full unpickler sees it."""
    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    from polyspace_core.colorize.metrics import FID

    _no_downloads(monkeypatch)
    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    with monkeypatch.context() as m:  # build the network without weights to get its state-dict layout
        m.setattr(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None)
        net = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["64"],
                                                   feature_extractor_weights_path=str(empty))
    torch.manual_seed(0)
    state = {}
    for key, value in net.state_dict().items():  # random but well-scaled: He init, unit batch-norm statistics
        if key.endswith("running_var") or (value.dim() == 1 and key.endswith("weight")):
            value = torch.ones_like(value)
        elif value.is_floating_point() and value.dim() > 1:
            value = torch.randn_like(value) * (2.0 / value[0].numel()) ** 0.5
        elif value.is_floating_point():
            value = torch.zeros_like(value)
        state[key] = value
    weights = tmp_path / "inception.pth"
    torch.save(state, weights)
    fid = FID(weights, "cpu", features=64)  # the 64-d tap: same network and file, a small covariance
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    fid.add_real(real)
    fid.add_fake("same", real[:2])
    fid.add_fake("shifted", np.clip(real.astype(int) + 80, 0, 255).astype(np.uint8))
    fid.add_fake("same", real[2:])  # sets accumulate clip by clip, interleaved
    assert fid.score("same") == pytest.approx(0.0, abs=1e-2)
    assert fid.score("shifted") > 1e-2
    with pytest.raises(PolySpaceError, match="'other'"):
        fid.score("other")
    bad = tmp_path / "bad.pth"
    torch.save({"x": PolySpaceError("not a tensor")}, bad)
    with pytest.raises(PolySpaceError, match="bad.pth"):
        FID(bad, "cpu")
