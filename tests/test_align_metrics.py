"""Similarity metrics against straightforward numpy implementations of the published formulas,
plus the invariances that make CKA useful."""

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from polyspace_core.align.metrics import (
    MinibatchCKA,
    debiased_cka,
    linear_cka,
    mean_cosine,
    minibatch_cka,
    mutual_knn,
    r2_score,
    rbf_cka,
    retrieval_top1,
    similarity_matrix,
)
from polyspace_core.errors import PolySpaceError

# ---- references, written from the papers ---------------------------------------------------


def centering(n):
    return np.eye(n) - np.ones((n, n)) / n


def ref_hsic_biased(k, l):
    h = centering(k.shape[0])
    return np.trace(k @ h @ l @ h)


def ref_cka(k, l):
    return ref_hsic_biased(k, l) / np.sqrt(ref_hsic_biased(k, k) * ref_hsic_biased(l, l))


def ref_rbf(x, frac):
    d2 = np.array([[np.sum((a - b) ** 2) for b in x] for a in x])
    return np.exp(-d2 / (2 * frac ** 2 * np.median(d2)))


def ref_hsic_unbiased(k, l):
    """Song et al. 2012, eq. 5, with explicit loops-free but literal matrix algebra."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ kt @ lt @ one) / (n * (n - 3))


def ref_debiased_cka(x, y):
    k, l = x @ x.T, y @ y.T
    return ref_hsic_unbiased(k, l) / np.sqrt(ref_hsic_unbiased(k, k) * ref_hsic_unbiased(l, l))


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 12))
    y = np.tanh(x @ rng.normal(size=(12, 9))) + 0.3 * rng.normal(size=(60, 9))
    return x, y


# ---- CKA -------------------------------------------------------------------------------------


def test_linear_cka_matches_reference_in_both_forms(xy):
    x, y = xy
    want = ref_cka(x @ x.T, y @ y.T)
    assert linear_cka(x, y) == pytest.approx(want, rel=1e-10)
    # features outnumbering samples takes the Gram-matrix path; same value
    wide = np.concatenate([x] * 6, axis=1)
    assert wide.shape[1] > wide.shape[0]
    assert linear_cka(wide, y) == pytest.approx(ref_cka(wide @ wide.T, y @ y.T), rel=1e-10)
    # torch input of a lower precision gives the same number
    assert linear_cka(torch.tensor(x, dtype=torch.float32), y) == pytest.approx(want, rel=1e-5)


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scale(xy):
    x, y = xy
    q = ortho_group.rvs(12, random_state=1)
    base_lin, base_rbf, base_deb = linear_cka(x, y), rbf_cka(x, y, 0.8), debiased_cka(x, y)
    for xt in (x @ q, 7.5 * x, 0.01 * x @ q):
        assert linear_cka(xt, y) == pytest.approx(base_lin, rel=1e-9)
        assert rbf_cka(xt, y, 0.8) == pytest.approx(base_rbf, rel=1e-9)
        assert debiased_cka(xt, y) == pytest.approx(base_deb, rel=1e-9)
    assert linear_cka(x, 3 * y @ ortho_group.rvs(9, random_state=2)) == pytest.approx(base_lin, rel=1e-9)
    # but not to an anisotropic (non-orthogonal) map
    assert linear_cka(x * np.linspace(0.1, 5, 12), y) != pytest.approx(base_lin, rel=1e-3)


@pytest.mark.parametrize("frac", [0.5, 1.0, 2.0])
def test_rbf_cka_matches_reference(xy, frac):
    x, y = xy
    assert rbf_cka(x, y, frac) == pytest.approx(ref_cka(ref_rbf(x, frac), ref_rbf(y, frac)), rel=1e-9)


def test_rbf_cka_of_identical_inputs_is_one(xy):
    x, _ = xy
    assert rbf_cka(x, x.copy(), 0.7) == pytest.approx(1.0, abs=1e-12)


def test_debiased_cka_matches_reference_and_is_zero_for_independent_noise(xy):
    x, y = xy
    assert debiased_cka(x, y) == pytest.approx(ref_debiased_cka(x, y), rel=1e-9)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(200, 300)), rng.normal(size=(200, 300))
    # biased CKA of independent high-dimensional noise is far from 0; the debiased one is not
    assert linear_cka(a, b) > 0.4
    assert abs(debiased_cka(a, b)) < 0.03


def test_minibatch_cka_matches_averaged_unbiased_hsic(xy):
    x, y = xy
    # one batch holding everything is debiased CKA
    assert minibatch_cka(x, y, batch_size=60, seed=None) == pytest.approx(ref_debiased_cka(x, y), rel=1e-9)
    # several batches: mean of per-batch unbiased HSICs (Nguyen et al. 2021)
    def ref_minibatch(bounds):
        xy_, xx, yy = 0.0, 0.0, 0.0
        for s, e in bounds:
            k, l = x[s:e] @ x[s:e].T, y[s:e] @ y[s:e].T
            xy_ += ref_hsic_unbiased(k, l)
            xx += ref_hsic_unbiased(k, k)
            yy += ref_hsic_unbiased(l, l)
        return xy_ / np.sqrt(xx * yy)

    bounds = [(0, 16), (16, 32), (32, 48), (48, 60)]
    want = ref_minibatch(bounds)
    assert minibatch_cka(x, y, batch_size=16, seed=None) == pytest.approx(want, rel=1e-9)
    # a last batch of 2 rows (too few for unbiased HSIC) joins the one before it
    assert minibatch_cka(x, y, batch_size=29, seed=None) == pytest.approx(ref_minibatch([(0, 29), (29, 60)]), rel=1e-9)
    meter = MinibatchCKA()
    for s, e in bounds:
        meter.update(torch.tensor(x[s:e]), torch.tensor(y[s:e]))
    assert meter.compute() == pytest.approx(want, rel=1e-9)
    # shuffled minibatches estimate the same quantity as the full-data debiased CKA
    rng = np.random.default_rng(5)
    a = rng.normal(size=(800, 16))
    b = a @ rng.normal(size=(16, 10)) + rng.normal(size=(800, 10))
    assert minibatch_cka(a, b, batch_size=100, seed=0) == pytest.approx(debiased_cka(a, b), abs=0.05)


def test_cka_errors_on_bad_input(xy):
    x, y = xy
    with pytest.raises(PolySpaceError, match="samples"):
        linear_cka(x, y[:-1])
    with pytest.raises(PolySpaceError, match="NaN"):
        linear_cka(np.full_like(x, np.nan), y)
    with pytest.raises(PolySpaceError, match="zero variance"):
        linear_cka(np.ones_like(x), y)
    with pytest.raises(PolySpaceError, match="batch_size"):
        minibatch_cka(x, y, batch_size=2)
    with pytest.raises(PolySpaceError, match="unknown"):
        similarity_matrix({"a": x, "b": y}, metric="procrustes_distance")


# ---- mutual kNN, cosine, R², retrieval -------------------------------------------------------


def ref_mutual_knn(x, y, k):
    def knn(z):
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        s = z @ z.T
        np.fill_diagonal(s, -np.inf)
        return [set(np.argsort(-row)[:k]) for row in s]
    nx, ny = knn(x), knn(y)
    return np.mean([len(a & b) / k for a, b in zip(nx, ny)])


def test_mutual_knn_matches_reference(xy):
    x, y = xy
    assert mutual_knn(x, y, k=10) == pytest.approx(ref_mutual_knn(x, y, 10), abs=1e-12)
    assert mutual_knn(x, 3.0 * x, k=5) == pytest.approx(1.0)  # scale does not change neighbours
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    assert mutual_knn(a, b, k=10) < 0.1  # chance is k/(N-1) ~ 0.03
    with pytest.raises(PolySpaceError, match="k=60"):
        mutual_knn(x, y, k=60)


def test_mean_cosine_matches_reference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 3, 7)), rng.normal(size=(5, 3, 7))
    ra, rb = a.reshape(-1, 7), b.reshape(-1, 7)
    want = np.mean(np.sum(ra * rb, 1) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1)))
    assert mean_cosine(a, b) == pytest.approx(want, rel=1e-10)
    assert mean_cosine(torch.tensor(a), torch.tensor(2 * a)) == pytest.approx(1.0)
    with pytest.raises(PolySpaceError, match="shape"):
        mean_cosine(a, b[:, :2])


def test_r2_matches_reference_formula():
    rng = np.random.default_rng(2)
    t = rng.normal(size=(50, 4)) * np.array([1.0, 3.0, 0.5, 2.0])
    p = t + rng.normal(size=(50, 4)) * 0.7
    ss_res = ((t - p) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    assert r2_score(t, p) == pytest.approx(1 - ss_res.sum() / ss_tot.sum(), rel=1e-10)
    assert r2_score(t, p, "uniform_average") == pytest.approx(np.mean(1 - ss_res / ss_tot), rel=1e-10)
    assert r2_score(t, t) == pytest.approx(1.0)
    assert r2_score(t, np.broadcast_to(t.mean(0), t.shape)) == pytest.approx(0.0, abs=1e-12)
    # tokens are samples: (N, T, D) equals its (N*T, D) reshape
    t3, p3 = t.reshape(25, 2, 4), p.reshape(25, 2, 4)
    assert r2_score(t3, p3) == pytest.approx(r2_score(t, p), rel=1e-12)
    with pytest.raises(PolySpaceError, match="constant"):
        r2_score(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(PolySpaceError, match="multioutput"):
        r2_score(t, p, "raw")


def test_retrieval_top1_counts_own_pair_hits():
    rng = np.random.default_rng(6)
    keys = rng.normal(size=(40, 16))
    assert retrieval_top1(keys + 0.01 * rng.normal(size=keys.shape), keys) == 1.0
    # queries pointing at the wrong keys for the first 10 rows -> 30/40 hits
    queries = keys.copy()
    queries[:10] = keys[np.r_[1:10, 0]]
    assert retrieval_top1(queries, keys) == pytest.approx(30 / 40)
    # chunking does not change the answer
    assert retrieval_top1(queries, keys, chunk=7) == pytest.approx(30 / 40)
    with pytest.raises(PolySpaceError, match="features"):
        retrieval_top1(keys[:, :8], keys)


def test_similarity_matrix_is_symmetric_with_unit_diagonal(xy):
    x, y = xy
    df = similarity_matrix({"x": x, "y": y, "x2": 2 * x}, "linear_cka")
    assert list(df.index) == ["x", "y", "x2"]
    assert np.allclose(df.values, df.values.T)
    assert np.allclose(np.diag(df.values), 1.0)
    assert df.loc["x", "x2"] == pytest.approx(1.0)
    assert df.loc["x", "y"] == pytest.approx(linear_cka(x, y))


def test_cka_gain_interval_over_clips():
    from polyspace_core.align.metrics import linear_cka, linear_cka_gain

    g = torch.Generator().manual_seed(0)
    student = torch.randn(120, 16, generator=g, dtype=torch.float64)
    teacher = torch.tanh(student @ torch.randn(16, 12, generator=g, dtype=torch.float64)) + 0.3 * torch.randn(
        120, 12, generator=g, dtype=torch.float64)
    converted = teacher + 0.05 * torch.randn(120, 12, generator=g, dtype=torch.float64)  # a good converter
    gain = linear_cka_gain(student, converted, teacher, resamples=300)
    assert gain.value == pytest.approx(linear_cka(converted, teacher) - linear_cka(student, teacher))
    assert 0 < gain.low < gain.value < gain.high and gain.n == 120
    same = linear_cka_gain(student, student, teacher, resamples=300)  # a converter that changes nothing
    assert same.value == pytest.approx(0.0) and same.low == pytest.approx(0.0) and same.high == pytest.approx(0.0)
