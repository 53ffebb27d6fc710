"""The residual-gated fusion head and the heads it is compared against.

Fusion (DESIGN.md, Models):

    z = z0 + Σ_i g_i · P_i(ẑ_i) / √N        g_i = σ(MLP([ẑ_i; z0]))  per token

z0 (B, T_s, D_s) are the student's token features, ẑ_i (B, T_i, D_i) the student features converted
into teacher i's space. Each ẑ_i is first brought onto the student's token grid by resampling
over (T, H, W), each side with its own grid (`resample_grid`, the converters' own rule; length
adaptation: teachers see 8, 16 or 32 frames and, with full tokens, other patch grids than the
student), then P_i — a low-rank projection
D_i -> rank -> D_s — maps it into the student space, and a per-token scalar gate decides how much
of it to add. The up-projection starts at zero, so an
untrained head *is* the student-only classifier and every teacher contribution has to earn its way
in. z0 and every ẑ_i are first standardised per dimension with training-set statistics
(`Standardize`, fitted by `fit_input_statistics`). The fused tokens are normalised, pooled (mean,
or attention pooling with a learned query) and classified. The gates are returned for inspection;
`gate_l1` adds their mean as a sparsity penalty.

The baselines in this file:
- `StudentHead`: the same token -> pool -> classify structure on the student features alone, with a
  residual MLP whose width is chosen by `matched_student_head` so that it has as many trainable
  parameters as the fusion pipeline (a fusion gain is then not just a bigger head);
- `AttentiveProbe`: how V-JEPA 2 reads a frozen encoder (learned queries cross-attending over the
  tokens, a residual MLP, then a linear classifier), over the student's tokens, its width chosen by
  `matched_attentive_probe` for the fusion pipeline's trainable size: the strongest way here to
  read the student alone;
- `LinearProbe`: standardised, mean-pooled features of one or more models (concatenated) -> linear.

Every model here takes a batch dict {model name: (B, T, D) tensor, ...} and returns a dict with
`logits` (B, C) (and `gates` (B, N, T_s) for fusion), so one training loop serves them all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..align.resample import as_grid, resample_grid
from ..errors import PolySpaceError

POOLINGS = ("mean", "attention")


@dataclass
class FusionConfig:
    """Everything needed to rebuild a fusion head; saved as JSON next to its weights.

    teachers / teacher_dims / teacher_tokens: one entry per teacher, in the order the head sums
    them (the converted features arrive in that order). student_grid / teacher_grids: each
    side's token grid (T, H, W) (None in a config saved before grids were recorded: (T, 1, 1),
    a 1-d layout over time). rank: width of each low-rank projection.
    gate_hidden: width of each gate MLP. pooling: "mean" or "attention". gate_l1: weight of the
    gate sparsity penalty (0 = off).
    """

    student: str
    student_dim: int
    student_tokens: int
    teachers: list[str]
    teacher_dims: list[int]
    teacher_tokens: list[int]
    num_classes: int
    rank: int = 64
    gate_hidden: int = 64
    pooling: str = "mean"
    dropout: float = 0.1
    gate_l1: float = 0.0
    student_grid: list[int] | None = None
    teacher_grids: list[list[int]] | None = None

    def __post_init__(self) -> None:
        self.teachers = list(self.teachers)
        self.teacher_dims = [int(d) for d in self.teacher_dims]
        self.teacher_tokens = [int(t) for t in self.teacher_tokens]
        if not self.teachers:
            raise PolySpaceError("fusion head: no teachers given; pass at least one --teachers name")
        if not len(self.teachers) == len(self.teacher_dims) == len(self.teacher_tokens):
            raise PolySpaceError("fusion head: teachers, teacher_dims and teacher_tokens differ in length")
        if len(set(self.teachers)) != len(self.teachers) or self.student in self.teachers:
            raise PolySpaceError(f"fusion head: teacher names {self.teachers} must be unique and differ "
                                 f"from the student {self.student!r}")
        for name in ("student_dim", "student_tokens", "num_classes", "rank", "gate_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PolySpaceError(f"fusion head {name}={value!r}: must be a positive integer")
        if self.num_classes < 2:
            raise PolySpaceError(f"fusion head num_classes={self.num_classes}: a classifier needs at least 2 classes")
        if min(self.teacher_dims + self.teacher_tokens) < 1:
            raise PolySpaceError("fusion head: teacher dims and token counts must be positive")
        if self.pooling not in POOLINGS:
            raise PolySpaceError(f"fusion head pooling={self.pooling!r}: use one of {', '.join(POOLINGS)}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise PolySpaceError(f"fusion head dropout={self.dropout!r}: must be in [0, 1)")
        if not float(self.gate_l1) >= 0.0:
            raise PolySpaceError(f"fusion head gate_l1={self.gate_l1!r}: must be >= 0")
        # explicit from here on (saved with the config); older configs have none: time only
        self.student_grid = list(as_grid(self.student_grid, self.student_tokens, "fusion head student_grid"))
        grids = self.teacher_grids if self.teacher_grids is not None else [None] * len(self.teachers)
        if len(grids) != len(self.teachers):
            raise PolySpaceError("fusion head: teachers and teacher_grids differ in length")
        self.teacher_grids = [list(as_grid(g, t, f"fusion head grid of {name!r}"))
                              for g, t, name in zip(grids, self.teacher_tokens, self.teachers)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> FusionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolySpaceError(f"fusion config has unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


class Pooling(nn.Module):
    """(B, T, D) -> (B, D): the token mean, or attention pooling (softmax over a learned score per
    token, so the head can weight the informative moments of a clip)."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        if kind not in POOLINGS:
            raise PolySpaceError(f"pooling={kind!r}: use one of {', '.join(POOLINGS)}")
        self.kind = kind
        self.score = nn.Linear(dim, 1) if kind == "attention" else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.score is None:
            return z.mean(dim=1)
        weights = torch.softmax(self.score(z).squeeze(-1), dim=1)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, z)


class Standardize(nn.Module):
    """Per-dimension standardisation with training-set statistics, (x - mean) / std over the last
    dim. Backbone tokens share a large common component (cosine ~0.99 between any two clips of
    the tiny zoo) that per-token LayerNorm keeps, so the heads, like the linear probes, first
    centre and scale every feature. Buffers (saved with the weights); the identity until
    `set_statistics` is called with the training features (see `fit_input_statistics`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def set_statistics(self, moments: Moments) -> None:
        mean, std = moments.mean_std()
        if mean.shape != self.mean.shape:
            raise PolySpaceError(f"standardisation: statistics of {mean.shape[0]}-dim features for a "
                                 f"{self.mean.shape[0]}-dim input")
        self.mean.copy_(mean.to(self.mean))
        self.std.copy_(std.to(self.std))


class Moments:
    """Running per-dimension sums over every token of (..., D) batches, in float64."""

    def __init__(self):
        self.total, self.total_sq, self.count = None, None, 0

    def add(self, x: torch.Tensor) -> None:
        flat = x.detach().double().reshape(-1, x.shape[-1])
        s, sq = flat.sum(0), (flat * flat).sum(0)
        self.total = s if self.total is None else self.total + s
        self.total_sq = sq if self.total_sq is None else self.total_sq + sq
        self.count += flat.shape[0]

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.count < 2:
            raise PolySpaceError("standardisation: need at least 2 training tokens")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean * mean).clamp_min(0)
        return mean.float().cpu(), var.sqrt().clamp_min(1e-6).float().cpu()


class TeacherBranch(nn.Module):
    """One teacher's contribution: g · P(ẑ) on the student's token grid, and the gate g."""

    def __init__(self, teacher_dim: int, student_dim: int, teacher_grid: Sequence[int], student_grid: Sequence[int],
                 rank: int, gate_hidden: int):
        super().__init__()
        self.teacher_grid, self.student_grid = tuple(teacher_grid), tuple(student_grid)
        self.standardize = Standardize(teacher_dim)
        self.norm = nn.LayerNorm(teacher_dim)
        self.down = nn.Linear(teacher_dim, rank, bias=False)
        self.up = nn.Linear(rank, student_dim)
        self.gate = nn.Sequential(nn.Linear(teacher_dim + student_dim, gate_hidden), nn.GELU(),
                                  nn.Linear(gate_hidden, 1))
        # zero up-projection: the untrained head equals the student-only head (LoRA-style start)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, z_hat: torch.Tensor, z0_normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_hat (B, T_i, D_i), z0_normed (B, T_s, D_s) -> (contribution (B, T_s, D_s), gate (B, T_s))."""
        z_hat = self.norm(resample_grid(self.standardize(z_hat), self.teacher_grid, self.student_grid))
        gate = torch.sigmoid(self.gate(torch.cat([z_hat, z0_normed], dim=-1))).squeeze(-1)
        return gate.unsqueeze(-1) * self.up(self.down(z_hat)), gate


class FusionHead(nn.Module):
    """Residual-gated fusion of the student tokens with N converted teacher features.

    forward(z0 (B, T_s, D_s), converted: sequence of N tensors (B, T_i, D_i) in config.teachers
    order) -> {"logits": (B, num_classes), "gates": (B, N, T_s) in [0, 1], "aux_loss": scalar
    (gate_l1 · mean gate; 0 when gate_l1 = 0)}.
    """

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.config = c = config
        self.standardize = Standardize(c.student_dim)
        self.student_norm = nn.LayerNorm(c.student_dim)
        self.branches = nn.ModuleList(
            TeacherBranch(d, c.student_dim, g, c.student_grid, c.rank, c.gate_hidden)
            for d, g in zip(c.teacher_dims, c.teacher_grids))
        self.out_norm = nn.LayerNorm(c.student_dim)
        self.pool = Pooling(c.student_dim, c.pooling)
        self.drop = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.student_dim, c.num_classes)

    def check_inputs(self, z0: torch.Tensor, converted: Sequence[torch.Tensor]) -> None:
        c = self.config
        if z0.ndim != 3 or z0.shape[1] != c.student_tokens or z0.shape[2] != c.student_dim:
            raise PolySpaceError(f"fusion head expects student features {c.student!r} of shape "
                                 f"(B, {c.student_tokens}, {c.student_dim}), got {tuple(z0.shape)}; "
                                 f"the features come from another student or token rule")
        if len(converted) != len(c.teachers):
            raise PolySpaceError(f"fusion head expects {len(c.teachers)} teacher inputs ({', '.join(c.teachers)}), "
                                 f"got {len(converted)}")
        for name, d, t, x in zip(c.teachers, c.teacher_dims, c.teacher_tokens, converted):
            if x.ndim != 3 or x.shape[0] != z0.shape[0] or x.shape[2] != d or x.shape[1] != t:
                raise PolySpaceError(f"fusion head expects {name!r} features (B, {t}, {d}), got {tuple(x.shape)}")

    def forward(self, z0: torch.Tensor, converted: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_inputs(z0, converted)
        z0 = self.standardize(z0)
        z0_normed = self.student_norm(z0)
        fused = z0
        gates = []
        scale = 1.0 / math.sqrt(len(self.branches))
        for branch, z_hat in zip(self.branches, converted):
            contribution, gate = branch(z_hat, z0_normed)
            fused = fused + scale * contribution
            gates.append(gate)
        gates_t = torch.stack(gates, dim=1)  # (B, N, T_s)
        pooled = self.pool(self.out_norm(fused))
        logits = self.classifier(self.drop(pooled))
        aux = self.config.gate_l1 * gates_t.mean() if self.config.gate_l1 > 0 else logits.new_zeros(())
        return {"logits": logits, "gates": gates_t, "aux_loss": aux}

    @torch.no_grad()
    def fit_input_statistics(self, pairs) -> FusionHead:
        """Set the standardisation of z0 and of every ẑ_i from an iterable of (z0, [ẑ_1, ...])
        over the whole training split; returns self."""
        student, teachers = Moments(), [Moments() for _ in self.branches]
        for z0, converted in pairs:
            student.add(z0)
            for m, z_hat in zip(teachers, converted):
                m.add(z_hat)
        self.standardize.set_statistics(student)
        for branch, m in zip(self.branches, teachers):
            branch.standardize.set_statistics(m)
        return self


# ---------------------------------------------------------------------------------------------
# baselines


@dataclass
class StudentHeadConfig:
    """A student-only head: per-token residual MLP of width `hidden`, norm, pooling, classifier."""

    student: str
    student_dim: int
    student_tokens: int
    num_classes: int
    hidden: int = 64
    pooling: str = "mean"
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> StudentHeadConfig:
        return cls(**data)


class StudentStatistics:
    """For heads over the student's tokens alone: `fit_input_statistics` sets `self.standardize`
    from the training batches' `self.config.student` features."""

    @torch.no_grad()
    def fit_input_statistics(self, batches):
        """Set the standardisation of z0 from an iterable of training batches; returns self."""
        moments = Moments()
        for batch in batches:
            moments.add(batch[self.config.student])
        self.standardize.set_statistics(moments)
        return self


class StudentHead(StudentStatistics, nn.Module):
    """Student features only: z = z0 + MLP(LN(z0)) per token, then the fusion head's read-out
    (norm, pooling, dropout, linear). batch -> {"logits", "aux_loss"}."""

    def __init__(self, config: StudentHeadConfig):
        super().__init__()
        self.config = c = config
        if c.hidden < 1:
            raise PolySpaceError(f"student head hidden={c.hidden}: must be a positive integer")
        self.standardize = Standardize(c.student_dim)
        self.norm = nn.LayerNorm(c.student_dim)
        self.fc1 = nn.Linear(c.student_dim, c.hidden)
        self.fc2 = nn.Linear(c.hidden, c.student_dim)
        nn.init.zeros_(self.fc2.weight)  # same start as the fusion head: the plain pooled classifier
        nn.init.zeros_(self.fc2.bias)
        self.out_norm = nn.LayerNorm(c.student_dim)
        self.pool = Pooling(c.student_dim, c.pooling)
        self.drop = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.student_dim, c.num_classes)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        z0 = batch[self.config.student]
        if z0.ndim != 3 or tuple(z0.shape[1:]) != (self.config.student_tokens, self.config.student_dim):
            raise PolySpaceError(f"student head expects {self.config.student!r} features (B, "
                                 f"{self.config.student_tokens}, {self.config.student_dim}), got {tuple(z0.shape)}")
        z0 = self.standardize(z0)
        z = z0 + self.fc2(F.gelu(self.fc1(self.norm(z0))))
        logits = self.classifier(self.drop(self.pool(self.out_norm(z))))
        return {"logits": logits, "aux_loss": logits.new_zeros(())}


def count_trainable(module: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def matched_student_head(target_params: int, student: str, student_dim: int, student_tokens: int,
                         num_classes: int, pooling: str = "mean", dropout: float = 0.1) -> StudentHead:
    """A StudentHead whose MLP width makes its parameter count as close as possible to
    `target_params` (the fusion pipeline's trainable parameters)."""
    def size(hidden: int) -> int:
        return count_trainable(StudentHead(StudentHeadConfig(student, student_dim, student_tokens, num_classes,
                                                             hidden, pooling, dropout)))

    base = size(1)
    per_unit = size(2) - base  # parameters are affine in the width
    hidden = max(1, round(1 + (target_params - base) / per_unit))
    return StudentHead(StudentHeadConfig(student, student_dim, student_tokens, num_classes, hidden, pooling, dropout))


@dataclass
class AttentiveProbeConfig:
    """Attentive probe over the student's tokens: project to `width`, `queries` learned queries
    cross-attend (`heads` heads), residual MLP (4x), classifier on the concatenated queries."""

    student: str
    student_dim: int
    student_tokens: int
    num_classes: int
    width: int = 64
    heads: int = 4
    queries: int = 1
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class AttentiveProbe(StudentStatistics, nn.Module):
    """batch -> {"logits", "aux_loss"}: standardise z0 (training statistics), project the tokens to
    `width`, let learned queries attend over them (pre-norm cross-attention, residual), a residual
    MLP, then LayerNorm + linear on the queries."""

    def __init__(self, config: AttentiveProbeConfig):
        super().__init__()
        self.config = c = config
        if c.width < c.heads or c.width % c.heads or c.queries < 1:
            raise PolySpaceError(f"attentive probe width={c.width}, heads={c.heads}, queries={c.queries}: the width "
                                 f"must be a positive multiple of the heads and there must be a query")
        self.standardize = Standardize(c.student_dim)
        self.project = nn.Linear(c.student_dim, c.width)
        self.query = nn.Parameter(torch.randn(c.queries, c.width) * 0.02)
        self.norm_kv = nn.LayerNorm(c.width)
        self.norm_q = nn.LayerNorm(c.width)
        self.attention = nn.MultiheadAttention(c.width, c.heads, dropout=c.dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(c.width)
        self.mlp = nn.Sequential(nn.Linear(c.width, 4 * c.width), nn.GELU(), nn.Linear(4 * c.width, c.width))
        self.out_norm = nn.LayerNorm(c.width)
        self.drop = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.queries * c.width, c.num_classes)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        z0 = batch[c.student]
        if z0.ndim != 3 or z0.shape[2] != c.student_dim:
            raise PolySpaceError(f"attentive probe expects {c.student!r} features (B, T, {c.student_dim}), "
                                 f"got {tuple(z0.shape)}")
        tokens = self.norm_kv(self.project(self.standardize(z0.float())))
        q = self.query.expand(z0.shape[0], -1, -1)
        q = q + self.attention(self.norm_q(q), tokens, tokens, need_weights=False)[0]
        q = q + self.mlp(self.norm_mlp(q))
        logits = self.classifier(self.drop(self.out_norm(q)).flatten(1))
        return {"logits": logits, "aux_loss": logits.new_zeros(())}


def matched_attentive_probe(target_params: int, student: str, student_dim: int, student_tokens: int,
                            num_classes: int, heads: int = 4, dropout: float = 0.1) -> AttentiveProbe:
    """An AttentiveProbe whose width (a multiple of `heads`) brings its trainable parameters
    closest to `target_params` (the fusion pipeline's)."""
    def build(width: int) -> AttentiveProbe:
        return AttentiveProbe(AttentiveProbeConfig(student, student_dim, student_tokens, num_classes, width, heads,
                                                   dropout=dropout))

    widths = range(heads, 4096 + heads, heads)
    best, best_gap = heads, math.inf
    for width in widths:  # parameters grow with the width: stop once past the target
        gap = count_trainable(build(width)) - target_params
        if abs(gap) < best_gap:
            best, best_gap = width, abs(gap)
        if gap > 0:
            break
    return build(best)


class LinearProbe(nn.Module):
    """Mean-pool each model's tokens, concatenate, standardise with the training set's statistics
    (`fit_standardizer`), then one linear layer. batch -> {"logits", "aux_loss"}."""

    def __init__(self, models: Sequence[str], dims: Sequence[int], num_classes: int):
        super().__init__()
        self.models = list(models)
        self.dims = [int(d) for d in dims]
        if not self.models or len(self.models) != len(self.dims):
            raise PolySpaceError("linear probe: give one dim per model and at least one model")
        width = sum(self.dims)
        self.standardize = Standardize(width)
        self.linear = nn.Linear(width, num_classes)

    def pooled(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for name, dim in zip(self.models, self.dims):
            x = batch[name]
            if x.ndim != 3 or x.shape[2] != dim:
                raise PolySpaceError(f"linear probe expects {name!r} features (B, T, {dim}), got {tuple(x.shape)}")
            parts.append(x.float().mean(dim=1))
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def fit_standardizer(self, batches) -> LinearProbe:
        """Set the standardisation from an iterable of training batches (float64 accumulation)."""
        moments = Moments()
        for batch in batches:
            moments.add(self.pooled(batch))
        self.standardize.set_statistics(moments)
        return self

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.linear(self.standardize(self.pooled(batch)))
        return {"logits": logits, "aux_loss": logits.new_zeros(())}
