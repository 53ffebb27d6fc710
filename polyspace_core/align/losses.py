"""Alignment losses between converted student features and teacher features.

All take `pred` and `target` of the same shape, (B, T, D) token features or (B, D) vectors, and
return a scalar. `AlignmentLoss` sums them with weights given as the original code's vector
`[l2, cos, nce, vic, bar, l1]`, a dict, or a string such as "l2+cos", "l2+0.1*nce" or
"1,1,0,0,0,0" (see `parse_loss_weights`).

    l2   mean squared error over every element
    cos  1 - cosine similarity per token (feature direction, scale-free)
    nce  InfoNCE over the batch on clip vectors (mean over tokens): each converted clip must pick
         out its own teacher clip among the batch; symmetric, with a temperature
    vic  VICReg (Bardes et al. 2022): invariance (MSE) + variance hinge + covariance decorrelation
    bar  Barlow Twins (Zbontar et al. 2021): cross-correlation of standardised features -> identity
    l1   mean absolute error
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PolySpaceError

LOSS_NAMES = ("l2", "cos", "nce", "vic", "bar", "l1")
LOSS_ALIASES = {"mse": "l2", "cosine": "cos", "infonce": "nce", "vicreg": "vic", "barlow": "bar",
                "barlow_twins": "bar", "mae": "l1"}


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(B, T, D) or (B, D) -> (B*T, D): every token is one sample for the batch statistics."""
    return x.reshape(-1, x.shape[-1])


def l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target)


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, target)


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of 1 - cos(pred_token, target_token)."""
    return (1.0 - F.cosine_similarity(pred, target, dim=-1, eps=1e-8)).mean()


def infonce_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE on clip vectors: logits_ij = cos(pred_i, target_j) / temperature and the
    positive of clip i is clip i. Tokens are mean-pooled first, because tokens of one clip are
    near-duplicates and would otherwise act as false negatives."""
    if pred.ndim == 3:
        pred, target = pred.mean(1), target.mean(1)
    p = F.normalize(pred, dim=-1)
    t = F.normalize(target, dim=-1)
    logits = p @ t.T / temperature
    labels = torch.arange(p.shape[0], device=p.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def _variance_term(z: torch.Tensor, eps: float) -> torch.Tensor:
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(1.0 - std).mean()


def _covariance_term(z: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    z = z - z.mean(0)
    cov = (z.T @ z) / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / d


def vicreg_loss(pred: torch.Tensor, target: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg with the paper's weights (25, 25, 1), every token a sample. The variance and
    covariance terms are applied to both branches as published; with a fixed teacher the target's
    terms are constants (no gradient). The hinge at std 1 assumes roughly unit-scale features."""
    p, t = _rows(pred), _rows(target)
    if p.shape[0] < 2:
        raise PolySpaceError("vic loss needs at least 2 tokens in a batch to estimate variances; raise the batch size")
    invariance = F.mse_loss(p, t)
    variance = _variance_term(p, eps) + _variance_term(t, eps)
    covariance = _covariance_term(p) + _covariance_term(t)
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance


def barlow_twins_loss(pred: torch.Tensor, target: torch.Tensor, lambda_offdiag: float = 5e-3,
                      eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins: C = standardised(pred)ᵀ standardised(target) / N over tokens;
    loss = Σ_i (1 - C_ii)² + λ Σ_{i≠j} C_ij² (the published, unnormalised sum). Needs D_pred == D_target."""
    p, t = _rows(pred), _rows(target)
    n = p.shape[0]
    if n < 2:
        raise PolySpaceError("bar loss needs at least 2 tokens in a batch to standardise features; "
                             "raise the batch size")
    p = (p - p.mean(0)) / (p.std(0) + eps)
    t = (t - t.mean(0)) / (t.std(0) + eps)
    c = p.T @ t / n
    on_diagonal = (1.0 - torch.diagonal(c)).pow(2).sum()
    off_diagonal = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
    return on_diagonal + lambda_offdiag * off_diagonal


LOSS_FUNCTIONS = {"l2": l2_loss, "cos": cosine_loss, "nce": infonce_loss, "vic": vicreg_loss,
                  "bar": barlow_twins_loss, "l1": l1_loss}

# one term of a weight spec: "name", "w*name" or "name=w" (also "name:w")
_TERM = re.compile(r"^\s*(?:(?P<w1>[0-9.eE+-]+)\s*\*\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                   r"\s*(?:[=:]\s*(?P<w2>[0-9.eE+-]+))?\s*$")


def _loss_name(name: str) -> str:
    key = str(name).strip().lower()
    key = LOSS_ALIASES.get(key, key)
    if key not in LOSS_NAMES:
        raise PolySpaceError(f"loss {name!r} is unknown; losses are {', '.join(LOSS_NAMES)}")
    return key


def _weight(name: str, value) -> float:
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise PolySpaceError(f"loss weight for {name!r} must be a number, got {value!r}") from None
    if not w >= 0.0 or w == float("inf"):
        raise PolySpaceError(f"loss weight for {name!r} must be a finite number >= 0, got {value!r}")
    return w


def parse_loss_weights(spec: str | Sequence[float] | Mapping[str, float]) -> dict[str, float]:
    """Loss weights in any accepted form -> {name: weight} over all of LOSS_NAMES.

    Accepted: a 6-vector `[l2, cos, nce, vic, bar, l1]` (list or "1,1,0,0,0,0"), a dict
    `{"l2": 1, "nce": 0.1}`, or a string of terms joined by '+' or ',' where a term is
    `name`, `w*name` or `name=w` ("l2+cos", "l2+0.1*nce", "l2=1,cos=0.5").
    Unknown names, negative weights and all-zero weights are errors.
    """
    weights = dict.fromkeys(LOSS_NAMES, 0.0)
    if isinstance(spec, str):
        parts = [p for p in re.split(r"[,+]", spec) if p.strip()]
        if not parts:
            raise PolySpaceError("loss_weights is empty; give e.g. 'l2+cos' or '1,1,0,0,0,0'")
        try:
            spec = [float(p) for p in parts]  # the numeric vector form
        except ValueError:
            for part in parts:
                m = _TERM.match(part)
                if m is None:
                    raise PolySpaceError(f"loss_weights term {part.strip()!r} is not 'name', 'w*name' "
                                         f"or 'name=w'") from None
                name = _loss_name(m["name"])
                w = m["w1"] or m["w2"] or "1"
                weights[name] += _weight(name, w)
            spec = None
    if isinstance(spec, Mapping):
        for name, w in spec.items():
            key = _loss_name(name)
            weights[key] += _weight(key, w)
    elif spec is not None:
        values = list(spec)
        if len(values) != len(LOSS_NAMES):
            raise PolySpaceError(
                f"loss_weights vector has {len(values)} entries; give {len(LOSS_NAMES)} in the order "
                f"{','.join(LOSS_NAMES)}")
        for name, w in zip(LOSS_NAMES, values):
            weights[name] = _weight(name, w)
    if not any(w > 0 for w in weights.values()):
        raise PolySpaceError("loss_weights are all zero; give at least one positive weight, e.g. 'l2'")
    return weights


def format_loss_weights(weights: Mapping[str, float]) -> str:
    """{name: weight} -> the short label used in tables: "l2+cos", "l2+0.1*nce"."""
    terms = []
    for name in LOSS_NAMES:
        w = float(weights.get(name, 0.0))
        if w > 0:
            terms.append(name if w == 1.0 else f"{w:g}*{name}")
    return "+".join(terms)


class AlignmentLoss(nn.Module):
    """Weighted sum of the alignment losses. Returns (total, {name: value}) for the terms in use."""

    def __init__(self, weights: str | Sequence[float] | Mapping[str, float] = "l2", temperature: float = 0.07):
        super().__init__()
        self.weights = parse_loss_weights(weights)
        if not temperature > 0:
            raise PolySpaceError(f"InfoNCE temperature must be > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if pred.shape != target.shape:
            raise PolySpaceError(f"alignment loss: converted shape {tuple(pred.shape)} != teacher shape "
                                 f"{tuple(target.shape)}; the converter's d_out/t_out must match the teacher")
        total = pred.new_zeros(())
        parts: dict[str, float] = {}
        for name, w in self.weights.items():
            if w == 0:
                continue
            if name == "nce":
                value = infonce_loss(pred, target, self.temperature)
            else:
                value = LOSS_FUNCTIONS[name](pred, target)
            total = total + w * value
            parts[name] = float(value.detach())
        return total, parts

    def extra_repr(self) -> str:
        return f"weights={format_loss_weights(self.weights)!r}, temperature={self.temperature}"
