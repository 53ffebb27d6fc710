"""How sure a report can be: paired bootstrap intervals, the exact McNemar test, and claims with
a verdict decided by a rule written next to them.

Every study keeps per-sample results (a classifier's correct/incorrect per clip, a colorization
metric per clip), so each figure can be resampled:

    ci = bootstrap_interval(correct_fusion)                                   # an accuracy
    diff = paired_difference(correct_fusion, correct_probe)                   # fusion - probe
    p = mcnemar_exact(correct_fusion, correct_probe)                          # paired classifiers
    claim = Claim.difference("fusion_beats_student", "fusion > student probe (top-1)", diff, p)

The intervals are scipy's (`scipy.stats.bootstrap`, percentile method, a fixed number of
resamples from a recorded seed); the test is an exact binomial test on the discordant pairs
(`scipy.stats.binomtest`). Nothing here hand-rolls a distribution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import PolySpaceError

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A statistic over per-sample values with its bootstrap interval."""

    value: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    seed: int = SEED

    def excludes(self, point: float = 0.0) -> bool:
        return self.low > point or self.high < point

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _as_samples(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size < 2:
        raise PolySpaceError(f"{name}: {array.size} sample(s); an interval needs at least 2")
    if not np.isfinite(array).all():
        raise PolySpaceError(f"{name}: holds NaN/inf; per-sample values must be finite")
    return array


def _bootstrap(samples: Sequence[np.ndarray], statistic: Callable, resamples: int, seed: int,
               confidence: float) -> tuple[float, float]:
    from scipy.stats import bootstrap

    if all(np.all(s == s[0]) for s in samples):  # no spread to resample: the interval is the point
        value = float(statistic(*samples, axis=-1))
        return value, value
    result = bootstrap(tuple(samples), statistic, paired=len(samples) > 1, vectorized=True, n_resamples=resamples,
                       confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_interval(values: Any, statistic: Callable = np.mean, *, resamples: int = RESAMPLES, seed: int = SEED,
                       confidence: float = CONFIDENCE, name: str = "values") -> Interval:
    """`statistic` (vectorised over the last axis, default the mean) of per-sample `values`, with
    its percentile bootstrap interval (clips resampled with replacement)."""
    x = _as_samples(values, name)
    low, high = _bootstrap([x], statistic, resamples, seed, confidence)
    return Interval(float(statistic(x, axis=-1)), low, high, x.size, confidence, resamples, seed)


def paired_difference(a: Any, b: Any, statistic: Callable = np.mean, *, resamples: int = RESAMPLES,
                      seed: int = SEED, confidence: float = CONFIDENCE, name: str = "difference") -> Interval:
    """statistic(a) - statistic(b) over the same samples (clip i of a and of b are the same clip),
    with a paired bootstrap interval: each resample draws clips, and both methods are scored on
    the drawn clips."""
    x, y = _as_samples(a, f"{name} (first)"), _as_samples(b, f"{name} (second)")
    if x.size != y.size:
        raise PolySpaceError(f"{name}: {x.size} and {y.size} samples; a paired comparison needs the same clips")

    def diff(u, v, axis=-1):
        return statistic(u, axis=axis) - statistic(v, axis=axis)

    low, high = _bootstrap([x, y], diff, resamples, seed, confidence)
    return Interval(float(diff(x, y)), low, high, x.size, confidence, resamples, seed)


def paired_statistic(samples: Sequence[Any], statistic: Callable, *, resamples: int = RESAMPLES, seed: int = SEED,
                     confidence: float = CONFIDENCE, name: str = "statistic") -> Interval:
    """statistic(*samples, axis=-1) of several per-sample arrays over the same clips (e.g. the
    difference of two models' accuracy drops), with a paired bootstrap interval."""
    arrays = [_as_samples(s, f"{name} ({i + 1})") for i, s in enumerate(samples)]
    if len({a.size for a in arrays}) != 1:
        raise PolySpaceError(f"{name}: {[a.size for a in arrays]} samples; a paired statistic needs the same clips")
    low, high = _bootstrap(arrays, statistic, resamples, seed, confidence)
    return Interval(float(statistic(*arrays, axis=-1)), low, high, arrays[0].size, confidence, resamples, seed)


def index_bootstrap(n: int, statistic: Callable[[np.ndarray], float], *, resamples: int = 1000, seed: int = SEED,
                    confidence: float = CONFIDENCE) -> Interval:
    """statistic(indices) of a set of n samples, with a bootstrap interval from resampling the
    indices: for figures that are not means of per-sample values (CKA between two feature sets
    of the same clips)."""
    from scipy.stats import bootstrap

    if n < 3:
        raise PolySpaceError(f"{n} samples; a bootstrap interval needs at least 3")
    result = bootstrap((np.arange(n),), lambda i: statistic(np.asarray(i, dtype=np.int64)), vectorized=False,
                       n_resamples=resamples, confidence_level=confidence, method="percentile",
                       rng=np.random.default_rng(seed))
    return Interval(float(statistic(np.arange(n))), float(result.confidence_interval.low),
                    float(result.confidence_interval.high), n, confidence, resamples, seed)


def seed_spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; None for one seed) of one figure over seeds."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise PolySpaceError("seed_spread: no values")
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else None, "n_seeds": int(x.size)}


def mcnemar_exact(correct_a: Any, correct_b: Any) -> float:
    """Two-sided exact McNemar p-value of two classifiers scored on the same clips: a binomial test
    of the discordant pairs (a right & b wrong vs a wrong & b right) against p = 1/2. 1.0 when
    they never disagree."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=bool).reshape(-1), np.asarray(correct_b, dtype=bool).reshape(-1)
    if a.size != b.size:
        raise PolySpaceError(f"McNemar: {a.size} and {b.size} clips; the classifiers must be scored on the same clips")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class Claim:
    """One statement a report makes, the figure behind it and whether it holds by its rule."""

    id: str
    statement: str
    value: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    holds: bool
    rule: str

    @classmethod
    def difference(cls, id: str, statement: str, diff: Interval, p_value: float | None = None,
                   alpha: float = 0.05, seeds: int = 1) -> Claim:
        """"A beats B": holds when the paired interval of A - B lies above 0 (and, with a test,
        its p-value is below `alpha`). seeds > 1: the difference is of per-clip means over the
        seeds' runs and `p_value` the largest of the seeds' McNemar p-values (every seed's test
        must pass)."""
        holds = diff.low > 0 and (p_value is None or p_value < alpha)
        over = f" (per-clip mean over {seeds} seeds)" if seeds > 1 else ""
        test = "the largest McNemar p over the seeds" if seeds > 1 else "McNemar p"
        rule = f"{int(100 * diff.confidence)}% paired-bootstrap interval of the difference{over} above 0" + (
            f" and {test} < {alpha}" if p_value is not None else "")
        return cls(id, statement, diff.value, diff.low, diff.high, p_value, bool(holds), rule)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def claims_table(claims: Sequence[Claim]):
    """Claims as a pandas DataFrame (one row each: statement, value, interval, p-value, verdict)."""
    import pandas as pd

    return pd.DataFrame([{"claim": c.statement, "value": round(c.value, 4),
                          "95% interval": (f"[{c.ci_low:.4f}, {c.ci_high:.4f}]" if c.ci_low is not None else ""),
                          "McNemar p": (f"{c.p_value:.2g}" if c.p_value is not None else ""),
                          "holds": "yes" if c.holds else "no", "rule": c.rule} for c in claims])
