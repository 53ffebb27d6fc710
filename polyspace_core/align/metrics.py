"""Representation similarity metrics for any two feature arrays (numpy or torch).

Rows are samples. CKA, mutual kNN and retrieval compare whole rows, so trailing dims are
flattened ((N, T, D) -> (N, T*D)); pool tokens first (e.g. `x.mean(1)`) to compare clip vectors.
`mean_cosine` and `r2_score` compare vectors along the last dim, every leading index a sample.
Everything is computed in float64 and returned as a python float.

    linear_cka     Kornblith et al. 2019, biased HSIC with linear kernels
    rbf_cka        the same with RBF kernels, bandwidth = fraction of the median pairwise distance
    debiased_cka   unbiased HSIC (Song et al. 2012), as in Nguyen et al. 2021
    minibatch_cka  Nguyen et al. 2021: unbiased HSIC averaged over minibatches (N beyond memory)
    mutual_knn     Huh et al. 2024: mean overlap of the k nearest neighbours in the two spaces
    mean_cosine    mean cosine similarity of paired vectors
    r2_score       coefficient of determination, multi-output
    TokenFidelity  mean_cosine and r2_score accumulated a batch at a time
    retrieval_top1 fraction of queries whose most similar key (cosine) is their own pair
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PolySpaceError
from ..stats import Interval, index_bootstrap

ArrayLike = np.ndarray | torch.Tensor


def _tensor(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    elif not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except Exception:
            raise PolySpaceError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}") from None
    x = x.detach().to(torch.float64)
    if x.ndim == 0:
        raise PolySpaceError(f"{name}: expected at least one dimension of samples, got a scalar")
    if not bool(torch.isfinite(x).all()):
        raise PolySpaceError(f"{name}: contains NaN or inf values; check the features that produced it")
    return x


def _matrix_pair(x: ArrayLike, y: ArrayLike, min_rows: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Two arrays -> float64 (N, Dx), (N, Dy) on one device, N checked."""
    x, y = _tensor(x, "x"), _tensor(y, "y")
    x = x.reshape(x.shape[0], -1) if x.ndim != 1 else x[:, None]
    y = y.reshape(y.shape[0], -1) if y.ndim != 1 else y[:, None]
    if x.shape[0] != y.shape[0]:
        raise PolySpaceError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; rows must be paired samples")
    if x.shape[0] < min_rows:
        raise PolySpaceError(f"this metric needs at least {min_rows} samples, got {x.shape[0]}")
    return x, y.to(x.device)


def _center_gram(k: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11ᵀ/n."""
    k = k - k.mean(dim=0, keepdim=True)
    return k - k.mean(dim=1, keepdim=True)


def _cka_from_grams(k: torch.Tensor, l: torch.Tensor) -> float:
    kc, lc = _center_gram(k), _center_gram(l)
    denom = torch.linalg.norm(kc) * torch.linalg.norm(lc)
    if denom <= 0:
        raise PolySpaceError("CKA is undefined: one input has zero variance across samples (all rows equal)")
    return float((kc * lc).sum() / denom)


def linear_cka(x: ArrayLike, y: ArrayLike) -> float:
    """Linear CKA = ||Ycᵀ Xc||_F² / (||Xcᵀ Xc||_F ||Ycᵀ Yc||_F) with column-centred X, Y. In [0, 1];
    unchanged by orthogonal transforms and isotropic scaling of either input."""
    x, y = _matrix_pair(x, y)
    x = x - x.mean(0)
    y = y - y.mean(0)
    n = x.shape[0]
    if max(x.shape[1], y.shape[1]) > n:  # (N, N) Gram matrices are the smaller objects here
        return _cka_from_grams(x @ x.T, y @ y.T)
    cross = torch.linalg.norm(y.T @ x) ** 2
    denom = torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)
    if denom <= 0:
        raise PolySpaceError("CKA is undefined: one input has zero variance across samples (all rows equal)")
    return float(cross / denom)


def linear_cka_gain(student: ArrayLike, converted: ArrayLike, teacher: ArrayLike, resamples: int = 1000,
                    seed: int = 0) -> Interval:
    """linear CKA(converted, teacher) - linear CKA(student, teacher) over the same clips, with a
    paired bootstrap interval over clips (a stats.Interval). The Gram matrices are computed once;
    each resample indexes them (duplicated clips included), which is CKA on the resampled rows."""
    s, t = _matrix_pair(student, teacher)
    c, _ = _matrix_pair(converted, teacher)
    grams = [m @ m.T for m in (s, c, t)]

    def gain(idx: np.ndarray) -> float:
        i = torch.as_tensor(idx)
        ks, kc, kt = (g[i][:, i] for g in grams)
        return _cka_from_grams(kc, kt) - _cka_from_grams(ks, kt)

    return index_bootstrap(s.shape[0], gain, resamples=resamples, seed=seed)


def _squared_distances(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)


def rbf_gram(x: torch.Tensor, sigma_frac: float) -> torch.Tensor:
    """exp(-d²_ij / (2 σ²)) with σ² = sigma_frac² · median(d²) over all pairs (diagonal included),
    the convention of Kornblith et al.'s reference code."""
    d2 = _squared_distances(x)
    # numpy's median (mean of the two middle values), as the reference code; torch.median takes the lower one
    median = float(np.median(d2.cpu().numpy()))
    if median <= 0:
        raise PolySpaceError("RBF CKA: the median pairwise distance is 0 (most rows are identical); use linear_cka")
    return torch.exp(-d2 / (2.0 * sigma_frac ** 2 * median))


def rbf_cka(x: ArrayLike, y: ArrayLike, sigma_frac: float = 1.0) -> float:
    """CKA with RBF kernels; the bandwidth of each input is `sigma_frac` times its median pairwise
    distance. Identical inputs give 1."""
    if not sigma_frac > 0:
        raise PolySpaceError(f"rbf_cka sigma_frac must be > 0, got {sigma_frac!r}")
    x, y = _matrix_pair(x, y)
    return _cka_from_grams(rbf_gram(x, sigma_frac), rbf_gram(y, sigma_frac))


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator of Song et al. (2012) for (n, n) kernel matrices, n >= 4:

        [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3)),  K̃ = K with zero diagonal.
    """
    n = k.shape[0]
    k = k - torch.diag(torch.diagonal(k))
    l = l - torch.diag(torch.diagonal(l))
    trace_kl = (k * l).sum()  # tr(K̃ L̃) for symmetric matrices
    sum_k, sum_l = k.sum(), l.sum()
    cross = k.sum(0) @ l.sum(0)  # 1ᵀ K̃ L̃ 1
    return (trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def _ratio(hsic_xy: torch.Tensor, hsic_xx: torch.Tensor, hsic_yy: torch.Tensor) -> float:
    denom_sq = hsic_xx * hsic_yy
    if denom_sq <= 0:
        raise PolySpaceError("debiased CKA is undefined: an input's self-HSIC estimate is <= 0 "
                             "(too few samples or constant features); use more samples")
    return float(hsic_xy / torch.sqrt(denom_sq))


def debiased_cka(x: ArrayLike, y: ArrayLike) -> float:
    """Linear CKA from unbiased HSIC estimates. Unlike `linear_cka` it is ~0 for independent
    inputs even when features outnumber samples; it can be slightly negative."""
    x, y = _matrix_pair(x, y, min_rows=4)
    k, l = x @ x.T, y @ y.T
    return _ratio(hsic_unbiased(k, l), hsic_unbiased(k, k), hsic_unbiased(l, l))


class MinibatchCKA:
    """Streaming linear CKA (Nguyen et al. 2021): the unbiased HSIC of each minibatch's Gram
    matrices is accumulated, and CKA = mean HSIC(K,L) / sqrt(mean HSIC(K,K) · mean HSIC(L,L)).
    Memory is O(batch²), independent of N. Minibatches should be random samples of the data."""

    def __init__(self) -> None:
        self.hsic_xy = 0.0
        self.hsic_xx = 0.0
        self.hsic_yy = 0.0
        self.batches = 0

    def update(self, x: ArrayLike, y: ArrayLike) -> None:
        """Add one minibatch of paired rows (at least 4)."""
        x, y = _matrix_pair(x, y, min_rows=4)
        k, l = x @ x.T, y @ y.T
        self.hsic_xy += float(hsic_unbiased(k, l))
        self.hsic_xx += float(hsic_unbiased(k, k))
        self.hsic_yy += float(hsic_unbiased(l, l))
        self.batches += 1

    def compute(self) -> float:
        if self.batches == 0:
            raise PolySpaceError("MinibatchCKA.compute() before any update(); add minibatches first")
        b = self.batches
        mean = [torch.tensor(v / b, dtype=torch.float64) for v in (self.hsic_xy, self.hsic_xx, self.hsic_yy)]
        return _ratio(*mean)


def minibatch_cka(x: ArrayLike, y: ArrayLike, batch_size: int = 256, seed: int | None = 0) -> float:
    """Minibatch CKA over all rows of x and y. Rows are shuffled with `seed` first (None keeps the
    order) so batches are random samples even when the data is sorted by class; a last batch of
    fewer than 4 rows joins the one before it."""
    x, y = _matrix_pair(x, y, min_rows=4)
    if batch_size < 4:
        raise PolySpaceError(f"minibatch_cka batch_size must be >= 4 (unbiased HSIC), got {batch_size}")
    n = x.shape[0]
    order = torch.arange(n) if seed is None else torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 4:
        starts.pop()
    meter = MinibatchCKA()
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else n
        idx = order[start:stop].to(x.device)
        meter.update(x[idx], y[idx])
    return meter.compute()


def _knn_indices(z: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """(N, D) L2-normalised rows -> (N, k) indices of the k most cosine-similar other rows."""
    out = []
    for start in range(0, z.shape[0], chunk):
        sim = z[start:start + chunk] @ z.T
        rows = torch.arange(sim.shape[0], device=z.device)
        sim[rows, rows + start] = -float("inf")  # a sample is not its own neighbour
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out)


def mutual_knn(x: ArrayLike, y: ArrayLike, k: int = 10) -> float:
    """Mean over samples of |kNN_x(i) ∩ kNN_y(i)| / k, neighbours by cosine on L2-normalised rows
    (Huh et al. 2024). 1 = identical neighbourhoods; about k/(N-1) for unrelated spaces."""
    x, y = _matrix_pair(x, y)
    n = x.shape[0]
    if not 1 <= k < n:
        raise PolySpaceError(f"mutual_knn k={k} must be between 1 and N-1={n - 1}")
    nx = _knn_indices(F.normalize(x, dim=1), k)
    ny = _knn_indices(F.normalize(y, dim=1), k)
    overlap = (nx[:, :, None] == ny[:, None, :]).any(dim=2).sum(dim=1)
    return float(overlap.double().mean() / k)


def _same_shape(x: ArrayLike, y: ArrayLike, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _tensor(x, names[0]), _tensor(y, names[1])
    if a.shape != b.shape:
        raise PolySpaceError(f"{names[0]} has shape {tuple(a.shape)} but {names[1]} has {tuple(b.shape)}; "
                             f"they must be paired features of one space")
    return a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]).to(a.device)


def mean_cosine(x: ArrayLike, y: ArrayLike) -> float:
    """Mean cosine similarity of paired vectors along the last dim (per token for (N, T, D))."""
    a, b = _same_shape(x, y, ("x", "y"))
    return float(F.cosine_similarity(a, b, dim=1, eps=1e-12).mean())


def r2_score(y_true: ArrayLike, y_pred: ArrayLike, multioutput: str = "variance_weighted") -> float:
    """Coefficient of determination of y_pred for y_true (sklearn's argument order), last dim =
    outputs. "variance_weighted": 1 - Σ SS_res / Σ SS_tot, i.e. the fraction of the teacher's total
    variance explained (robust to near-constant dims). "uniform_average": mean of per-output R²
    (an output with zero variance scores 1 if predicted exactly, else 0, as sklearn does)."""
    t, p = _same_shape(y_true, y_pred, ("y_true", "y_pred"))
    if t.shape[0] < 2:
        raise PolySpaceError("r2_score needs at least 2 samples")
    ss_res = (t - p).pow(2).sum(0)
    ss_tot = (t - t.mean(0)).pow(2).sum(0)
    if multioutput == "variance_weighted":
        if ss_tot.sum() <= 0:
            raise PolySpaceError("r2_score: y_true is constant across samples, R² is undefined")
        return float(1.0 - ss_res.sum() / ss_tot.sum())
    if multioutput == "uniform_average":
        varying = ss_tot > 0
        per_output = torch.where(varying, 1.0 - ss_res / ss_tot.clamp_min(1e-300),
                                 (ss_res == 0).to(ss_res.dtype))
        return float(per_output.mean())
    raise PolySpaceError(f"r2_score multioutput={multioutput!r}; use 'variance_weighted' or 'uniform_average'")


class TokenFidelity:
    """`mean_cosine` and `r2_score` (variance_weighted) of prediction/target token pairs added a
    batch at a time, for splits not held in memory at once: add(pred, target) with (B, T, D) or
    (B, D) each, then result() -> {"cosine", "r2"} (the same values, to float64 rounding, as the
    two functions on the concatenated split). Sums are taken around the first batch's target
    mean, so the total variance does not cancel against a large common component."""

    def __init__(self):
        self.n, self.cos_sum, self.ss_res = 0, 0.0, 0.0

    def add(self, pred: ArrayLike, target: ArrayLike) -> TokenFidelity:
        p, t = _same_shape(pred, target, ("prediction", "target"))
        if self.n == 0:
            self.shift = t.mean(0)
            self.s1 = torch.zeros_like(self.shift)
            self.s2 = torch.zeros_like(self.shift)
        self.cos_sum += float(F.cosine_similarity(p, t, dim=1, eps=1e-12).sum())
        self.ss_res += float((t - p).pow(2).sum())
        c = t - self.shift
        self.s1 += c.sum(0)
        self.s2 += c.pow(2).sum(0)
        self.n += t.shape[0]
        return self

    def result(self) -> dict[str, float]:
        if self.n < 2:
            raise PolySpaceError("r2_score needs at least 2 samples")
        ss_tot = float((self.s2 - self.s1.pow(2) / self.n).sum())
        if ss_tot <= 0:
            raise PolySpaceError("r2_score: y_true is constant across samples, R² is undefined")
        return {"cosine": self.cos_sum / self.n, "r2": 1.0 - self.ss_res / ss_tot}


def retrieval_top1(queries: ArrayLike, keys: ArrayLike, chunk: int = 1024) -> float:
    """Fraction of rows i for which keys[i] is the most cosine-similar key to queries[i] among all
    N keys (e.g. converted features retrieving their own teacher features). Chance is 1/N."""
    q, k = _matrix_pair(queries, keys)
    if q.shape[1] != k.shape[1]:
        raise PolySpaceError(f"retrieval_top1: queries have {q.shape[1]} features but keys {k.shape[1]}; "
                             f"compare within one space")
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    hits = 0
    for start in range(0, q.shape[0], chunk):
        best = (q[start:start + chunk] @ k.T).argmax(dim=1)
        hits += int((best == torch.arange(start, start + best.shape[0], device=q.device)).sum())
    return hits / q.shape[0]


SIMILARITY_METRICS = {
    "linear_cka": linear_cka,
    "rbf_cka": rbf_cka,
    "debiased_cka": debiased_cka,
    "minibatch_cka": minibatch_cka,
    "mutual_knn": mutual_knn,
}


def similarity_matrix(features: Mapping[str, ArrayLike], metric: str = "linear_cka"):
    """All pairs of named feature arrays (same N) -> a symmetric pandas DataFrame of `metric`."""
    import pandas as pd

    if metric not in SIMILARITY_METRICS:
        raise PolySpaceError(f"similarity metric {metric!r} is unknown; use one of {', '.join(SIMILARITY_METRICS)}")
    fn = SIMILARITY_METRICS[metric]
    names = list(features)
    values = np.eye(len(names))
    for i, a in enumerate(names):
        for j in range(i, len(names)):
            values[i, j] = values[j, i] = fn(features[a], features[names[j]])
    return pd.DataFrame(values, index=names, columns=names)
