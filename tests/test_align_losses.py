"""Alignment losses against numpy versions of the published formulas, and the weight parser."""

import numpy as np
import pytest
import torch

from polyspace_core.align.losses import (
    LOSS_NAMES,
    AlignmentLoss,
    barlow_twins_loss,
    cosine_loss,
    format_loss_weights,
    infonce_loss,
    l1_loss,
    l2_loss,
    parse_loss_weights,
    vicreg_loss,
)
from polyspace_core.errors import PolySpaceError


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(6, 3, 5, generator=g, dtype=torch.float64)
    pred = target + 0.5 * torch.randn(6, 3, 5, generator=g, dtype=torch.float64)
    return pred, target


def test_pointwise_losses_match_numpy(pair):
    pred, target = pair
    p, t = pred.numpy(), target.numpy()
    assert float(l2_loss(pred, target)) == pytest.approx(np.mean((p - t) ** 2))
    assert float(l1_loss(pred, target)) == pytest.approx(np.mean(np.abs(p - t)))
    cos = np.sum(p * t, -1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(t, axis=-1))
    assert float(cosine_loss(pred, target)) == pytest.approx(np.mean(1 - cos))


def test_infonce_matches_reference(pair):
    pred, target = pair
    tau = 0.1
    p, t = pred.numpy().mean(1), target.numpy().mean(1)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    logits = p @ t.T / tau

    def ce(lg):
        return np.mean(np.log(np.exp(lg).sum(1)) - np.diag(lg))

    assert float(infonce_loss(pred, target, tau)) == pytest.approx(0.5 * (ce(logits) + ce(logits.T)))
    # a matched batch scores far lower than a shuffled one
    assert infonce_loss(target, target, tau) < infonce_loss(target[torch.tensor([1, 2, 3, 4, 5, 0])], target, tau)


def test_vicreg_matches_reference(pair):
    pred, target = pair
    p, t = pred.numpy().reshape(-1, 5), target.numpy().reshape(-1, 5)

    def var(z):
        return np.mean(np.maximum(0, 1 - np.sqrt(z.var(0, ddof=1) + 1e-4)))

    def cov(z):
        c = np.cov(z.T)
        return (np.sum(c ** 2) - np.sum(np.diag(c) ** 2)) / z.shape[1]

    want = 25 * np.mean((p - t) ** 2) + 25 * (var(p) + var(t)) + (cov(p) + cov(t))
    assert float(vicreg_loss(pred, target)) == pytest.approx(want, rel=1e-10)


def test_barlow_twins_matches_reference(pair):
    pred, target = pair
    p, t = pred.numpy().reshape(-1, 5), target.numpy().reshape(-1, 5)
    ps = (p - p.mean(0)) / (p.std(0, ddof=1) + 1e-5)
    ts = (t - t.mean(0)) / (t.std(0, ddof=1) + 1e-5)
    c = ps.T @ ts / p.shape[0]
    want = np.sum((1 - np.diag(c)) ** 2) + 5e-3 * (np.sum(c ** 2) - np.sum(np.diag(c) ** 2))
    assert float(barlow_twins_loss(pred, target)) == pytest.approx(want, rel=1e-10)


def test_parse_loss_weights_accepts_every_documented_form():
    vec = {"l2": 1.0, "cos": 1.0, "nce": 0.0, "vic": 0.0, "bar": 0.0, "l1": 0.0}
    assert parse_loss_weights([1, 1, 0, 0, 0, 0]) == vec
    assert parse_loss_weights("1,1,0,0,0,0") == vec
    assert parse_loss_weights("l2+cos") == vec
    assert parse_loss_weights({"mse": 1, "cosine": 1}) == vec
    assert parse_loss_weights("l2+0.1*nce+bar=0.5") == {**dict.fromkeys(LOSS_NAMES, 0.0), "l2": 1.0, "nce": 0.1,
                                                         "bar": 0.5}
    assert format_loss_weights(parse_loss_weights("l2+0.1*nce")) == "l2+0.1*nce"


@pytest.mark.parametrize("bad,match", [
    ("l2+huber", "unknown"), ({"kl": 1}, "unknown"), ("l2=-1", ">= 0"), ("0,0,0,0,0,0", "all zero"),
    ([1, 1], "has 2 entries; give 6"), ("", "empty"), ("l2=abc", "not 'name'"),
])
def test_parse_loss_weights_rejects_bad_specs(bad, match):
    with pytest.raises(PolySpaceError, match=match):
        parse_loss_weights(bad)


def test_alignment_loss_is_the_weighted_sum_of_its_parts(pair):
    pred, target = pair
    loss = AlignmentLoss([2, 0.5, 0.1, 0, 0.01, 1], temperature=0.2)
    total, parts = loss(pred, target)
    assert set(parts) == {"l2", "cos", "nce", "bar", "l1"}
    want = (2 * l2_loss(pred, target) + 0.5 * cosine_loss(pred, target) + 0.1 * infonce_loss(pred, target, 0.2)
            + 0.01 * barlow_twins_loss(pred, target) + l1_loss(pred, target))
    assert float(total) == pytest.approx(float(want), rel=1e-10)
    with pytest.raises(PolySpaceError, match="teacher shape"):
        loss(pred[:, :2], target)


def test_every_loss_decreases_when_optimised_towards_the_target():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(16, 2, 8, generator=g)
    for name in LOSS_NAMES:
        pred = torch.randn(16, 2, 8, generator=g).requires_grad_(True)
        loss = AlignmentLoss({name: 1.0})
        opt = torch.optim.Adam([pred], lr=0.05)
        first = float(loss(pred, target)[0].detach())
        for _ in range(60):
            opt.zero_grad()
            loss(pred, target)[0].backward()
            opt.step()
        assert float(loss(pred, target)[0].detach()) < 0.7 * first, name
