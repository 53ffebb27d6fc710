"""Converters: closed forms against scipy / numpy, shapes and length adaptation for every kind,
and clear errors on bad configs and inputs."""

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group

from polyspace_core.align.converters import (
    CONVERTER_KINDS,
    ConverterConfig,
    build_converter,
    interpolation_matrix,
    resample_tokens,
)
from polyspace_core.errors import PolySpaceError


def centred(a):
    return a - a.mean(0)


def token_rows(t):
    return t.reshape(-1, t.shape[-1]).double().numpy()


def test_resample_tokens_is_linear_interpolation_over_time():
    x = torch.randn(2, 5, 3)
    y = resample_tokens(x, 9)
    grid_in, grid_out = np.linspace(0, 1, 5), np.linspace(0, 1, 9)
    for b in range(2):
        for d in range(3):
            assert np.allclose(y[b, :, d].numpy(), np.interp(grid_out, grid_in, x[b, :, d].numpy()), atol=1e-6)
    assert resample_tokens(x, 5) is x
    assert torch.equal(resample_tokens(x[:, :1], 4), x[:, :1].expand(-1, 4, -1))
    assert torch.allclose(resample_tokens(x, 1), x.mean(1, keepdim=True))
    m = interpolation_matrix(5, 9)
    assert torch.allclose(torch.einsum("ot,btd->bod", m, x), y, atol=1e-6)


def test_procrustes_matches_scipy_and_recovers_a_planted_map():
    rng = np.random.default_rng(0)
    q = ortho_group.rvs(16, random_state=0)
    x = torch.tensor(rng.normal(size=(40, 3, 16)), dtype=torch.float32)
    y = 2.5 * x @ torch.tensor(q, dtype=torch.float32) + torch.tensor(rng.normal(size=16), dtype=torch.float32)
    y_noisy = y + 0.1 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    conv = build_converter(ConverterConfig("procrustes", 16, 16, t_in=3, t_out=3)).fit(x, y_noisy)
    xs, ys = centred(token_rows(x)), centred(token_rows(y_noisy))
    r_ref, s_ref = orthogonal_procrustes(xs, ys)
    assert np.allclose(conv.rotation.numpy(), r_ref, atol=1e-5)
    assert float(conv.scale) == pytest.approx(s_ref / (xs ** 2).sum(), rel=1e-5)
    # the noiseless map is recovered exactly
    exact = build_converter(ConverterConfig("procrustes", 16, 16, t_in=3, t_out=3)).fit(x, y)
    assert float(exact.scale) == pytest.approx(2.5, rel=1e-5)
    assert torch.allclose(exact(x), y, atol=1e-4)


@pytest.mark.parametrize("d_in,d_out", [(6, 10), (10, 6)])
def test_procrustes_with_unequal_dims_is_the_zero_padded_solution(d_in, d_out):
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(80, 1, d_in)), dtype=torch.float32)
    y = torch.tensor(rng.normal(size=(80, 1, d_out)), dtype=torch.float32) + x[..., :1]
    conv = build_converter(ConverterConfig("procrustes", d_in, d_out)).fit(x, y)
    xs, ys = centred(token_rows(x)), centred(token_rows(y))
    d = max(d_in, d_out)
    pad = lambda a: np.pad(a, ((0, 0), (0, d - a.shape[1])))  # noqa: E731
    r_ref, _ = orthogonal_procrustes(pad(xs), pad(ys))
    assert np.allclose(conv.rotation.numpy(), r_ref[:d_in, :d_out], atol=1e-5)
    r = conv.rotation.double()
    small = min(d_in, d_out)
    gram = r.T @ r if d_in > d_out else r @ r.T  # semi-orthogonal: orthonormal columns or rows
    assert torch.allclose(gram, torch.eye(small, dtype=torch.float64), atol=1e-5)
    assert conv(x).shape == (80, 1, d_out)


def test_ridge_matches_numpy_closed_form():
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(size=(60, 4, 7)), dtype=torch.float32)
    y = torch.tensor(rng.normal(size=(60, 2, 5)), dtype=torch.float32)
    alpha = 0.1
    conv = build_converter(ConverterConfig("ridge", 7, 5, t_in=4, t_out=2, ridge_alpha=alpha)).fit(x, y)
    xr = token_rows(resample_tokens(x.double(), 2))
    yr = token_rows(y)
    mx, my = xr.mean(0), yr.mean(0)
    g = (xr - mx).T @ (xr - mx)
    lam = alpha * np.trace(g) / 7
    w = np.linalg.solve(g + lam * np.eye(7), (xr - mx).T @ (yr - my))
    assert np.allclose(conv.weight.numpy(), w, atol=1e-5)
    assert np.allclose(conv.bias.numpy(), my - mx @ w, atol=1e-5)
    pred = conv(x)
    assert np.allclose(token_rows(pred), xr @ w + (my - mx @ w), atol=1e-4)


@pytest.mark.parametrize("kind", CONVERTER_KINDS)
@pytest.mark.parametrize("t_in,t_out,d_in,d_out", [(8, 4, 12, 20), (1, 3, 20, 12), (5, 5, 12, 12), (4, 1, 12, 6)])
def test_every_kind_maps_student_tokens_to_teacher_shape(kind, t_in, t_out, d_in, d_out):
    cfg = ConverterConfig(kind, d_in, d_out, t_in, t_out, hidden=16, depth=1, heads=2, latents=4)
    conv = build_converter(cfg)
    x = torch.randn(3, t_in, d_in)
    if conv.closed_form:
        conv.fit(torch.randn(30, t_in, d_in), torch.randn(30, t_out, d_out))
    y = conv(x)
    assert y.shape == (3, t_out, d_out)
    assert torch.isfinite(y).all()
    if not conv.closed_form:  # every learned kind gets gradients to its parameters
        y.pow(2).mean().backward()
        grads = [p.grad for p in conv.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_resampler_starts_as_interpolation_and_aliases_name_original_kinds():
    assert ConverterConfig("A", 4, 4).kind == "attention"
    assert ConverterConfig("b", 4, 4).kind == "resampler"
    assert ConverterConfig("C", 4, 4).kind == "linear"
    conv = build_converter(ConverterConfig("B", 4, 4, t_in=6, t_out=3))
    assert torch.allclose(conv.time_mix.detach(), interpolation_matrix(6, 3))


def test_config_roundtrip_and_errors():
    cfg = ConverterConfig("mlp", 8, 4, 2, 3, hidden=32)
    assert ConverterConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(PolySpaceError, match="unknown; use one of"):
        ConverterConfig("transformer", 8, 4)
    with pytest.raises(PolySpaceError, match="unknown keys"):
        ConverterConfig.from_dict({**cfg.to_dict(), "width": 3})
    with pytest.raises(PolySpaceError, match="d_out"):
        ConverterConfig("linear", 8, 0)
    with pytest.raises(PolySpaceError, match="divisible"):
        ConverterConfig("attention", 8, 4, hidden=30, heads=4)


def test_bad_inputs_are_errors_not_silent_results():
    conv = build_converter(ConverterConfig("linear", 8, 4, t_in=2, t_out=2))
    with pytest.raises(PolySpaceError, match=r"expects student features \(B, 2, 8\)"):
        conv(torch.randn(3, 2, 9))
    proc = build_converter(ConverterConfig("procrustes", 8, 4))
    with pytest.raises(PolySpaceError, match="not fitted"):
        proc(torch.randn(3, 1, 8))
    with pytest.raises(PolySpaceError, match="same N"):
        proc.fit(torch.randn(5, 1, 8), torch.randn(4, 1, 4))
