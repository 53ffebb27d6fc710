"""Converters: map student token features (B, T_s, D_s) into one teacher's space (B, T_t, D_t).

Six kinds, all built from one `ConverterConfig` by `build_converter`:

    procrustes  closed form: centred orthogonal map with a scale (semi-orthogonal when D_s != D_t)
    ridge       closed form: ridge least squares with a bias
    mlp         residual MLP with a linear skip path
    attention   (the original's "A") learned latents cross-attend to the student tokens; learned
                queries, one per teacher token, read the latents back out
    resampler   (the original's "B") learned time mixing T_s -> T_t, then residual conv/MLP blocks
    linear      (the original's "C") one linear map per token

Token counts differ between backbones (V-JEPA 2 at 16 frames has 8 temporal tokens, TimeSformer 8,
ViViT 16; with `--tokens full` the patch grids differ too, 16x16 against 14x14). Every kind except
`attention` and `resampler` adapts the length by resampling over the token grid, each side with
its own grid (`resample.resample_grid`: linear over time, bilinear over space, so a token keeps
its place); those two learn it (queries / a mixing matrix that starts as that same resampling).
The grids are in the config (grid_in, grid_out: (T, H, W) from the store's manifest); a config
saved without them is a 1-d layout over time, (t_in, 1, 1) and (t_out, 1, 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PolySpaceError
from .resample import as_grid, grid_matrix, interpolation_matrix, resample_grid, resample_tokens

CONVERTER_KINDS = ("procrustes", "ridge", "mlp", "attention", "resampler", "linear")
CLOSED_FORM_KINDS = ("procrustes", "ridge")
# the original code called its learned converters A, B and C
KIND_ALIASES = {"a": "attention", "b": "resampler", "c": "linear", "residual_mlp": "mlp"}


@dataclass
class ConverterConfig:
    """Everything needed to rebuild a converter; saved as JSON next to its weights."""

    kind: str
    d_in: int                  # student feature dim D_s
    d_out: int                 # teacher feature dim D_t
    t_in: int = 1              # student tokens per clip T_s
    t_out: int = 1             # teacher tokens per clip T_t
    hidden: int = 256          # width of the mlp / attention / resampler trunk
    depth: int = 2             # residual blocks (mlp, resampler) or latent self-attention blocks (attention)
    heads: int = 4             # attention heads (attention)
    latents: int = 16          # learned latent tokens (attention)
    dropout: float = 0.0
    ridge_alpha: float = 1e-3  # ridge penalty, relative to the mean per-dimension energy of the inputs
    procrustes_scale: bool = True  # fit an isotropic scale along with the orthogonal map
    grid_in: list[int] | None = None   # student token grid (T, H, W); None: (t_in, 1, 1)
    grid_out: list[int] | None = None  # teacher token grid (T, H, W); None: (t_out, 1, 1)

    def __post_init__(self) -> None:
        kind = str(self.kind).strip()
        kind = KIND_ALIASES.get(kind.lower(), kind.lower())
        if kind not in CONVERTER_KINDS:
            raise PolySpaceError(
                f"converter kind {self.kind!r} is unknown; use one of {', '.join(CONVERTER_KINDS)} "
                f"(or A/B/C for attention/resampler/linear)")
        self.kind = kind
        for name in ("d_in", "d_out", "t_in", "t_out", "hidden", "depth", "heads", "latents"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "depth" else 1):
                raise PolySpaceError(f"converter {name}={value!r}: must be a positive integer")
        if kind == "attention" and self.hidden % self.heads:
            raise PolySpaceError(f"converter hidden={self.hidden} must be divisible by heads={self.heads}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise PolySpaceError(f"converter dropout={self.dropout!r}: must be in [0, 1)")
        if not float(self.ridge_alpha) >= 0.0:
            raise PolySpaceError(f"converter ridge_alpha={self.ridge_alpha!r}: must be >= 0")
        # explicit from here on (saved with the config); older configs have none: time only
        self.grid_in = list(as_grid(self.grid_in, self.t_in, "converter grid_in"))
        self.grid_out = list(as_grid(self.grid_out, self.t_out, "converter grid_out"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ConverterConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolySpaceError(f"converter config has unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


class Converter(nn.Module):
    """Base: holds the config and checks the input shape, so a wrong feature file fails loudly."""

    def __init__(self, config: ConverterConfig):
        super().__init__()
        self.config = config

    def check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 3 or x.shape[1] != c.t_in or x.shape[2] != c.d_in:
            raise PolySpaceError(
                f"{c.kind} converter expects student features (B, {c.t_in}, {c.d_in}), got {tuple(x.shape)}; "
                f"rebuild it with t_in/d_in of these features")

    @property
    def closed_form(self) -> bool:
        return self.config.kind in CLOSED_FORM_KINDS

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Student tokens (B, T_s, D) on grid_in -> (B, T_t, D) on the teacher's grid_out."""
        return resample_grid(x, self.config.grid_in, self.config.grid_out)


# ---------------------------------------------------------------------------------------------
# closed-form kinds


def _flatten_pairs(converter: Converter, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Student (N, T_s, D_s) and teacher (N, T_t, D_t) -> token pairs (N*T_t, D_s), (N*T_t, D_t)
    in float64, the student's tokens resampled onto the teacher's grid."""
    if x.ndim != 3 or y.ndim != 3 or x.shape[0] != y.shape[0]:
        raise PolySpaceError(
            f"fit needs student (N, T_s, D_s) and teacher (N, T_t, D_t) with the same N, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}")
    x = converter.adapt(x.double())
    return x.reshape(-1, x.shape[-1]), y.double().reshape(-1, y.shape[-1])


class TokenMoments:
    """Sums over token rows in float64, added a batch at a time: what the closed forms and the
    learned kinds' standardisation need, without the split's tokens in memory at once.

    add(xs, ys): xs (m, D_x) and optionally ys (m, D_y) paired rows. Sums are taken around the
    first batch's mean (a shift), so a large common component of the tokens does not cancel
    catastrophically when the centred products are formed. `full=True` keeps Xcᵀ Xc (D_x, D_x)
    and Xcᵀ Yc; otherwise per-dimension sums of squares only."""

    def __init__(self, full: bool = True):
        self.full, self.n = full, 0

    @torch.no_grad()
    def add(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> TokenMoments:
        xs = xs.double()
        ys = ys.double() if ys is not None else None
        if self.n == 0:
            self.kx = xs.mean(0)
            self.sx, self.sxx = torch.zeros_like(self.kx), 0.0
            if ys is not None:
                self.ky = ys.mean(0)
                self.sy, self.syy, self.sxy = torch.zeros_like(self.ky), 0.0, 0.0
        a = xs - self.kx
        self.sx = self.sx + a.sum(0)
        self.sxx = self.sxx + (a.T @ a if self.full else a.pow(2).sum(0))
        if ys is not None:
            b = ys - self.ky
            self.sy = self.sy + b.sum(0)
            self.syy = self.syy + b.pow(2).sum(0)
            if self.full:
                self.sxy = self.sxy + a.T @ b
        self.n += xs.shape[0]
        return self

    def mean_x(self) -> torch.Tensor:
        return self.kx + self.sx / self.n

    def mean_y(self) -> torch.Tensor:
        return self.ky + self.sy / self.n

    def gram_xx(self) -> torch.Tensor:
        """Σ (x - mean)(x - mean)ᵀ over rows (full) or its diagonal."""
        mx = self.sx / self.n
        return self.sxx - self.n * (torch.outer(mx, mx) if self.full else mx.pow(2))

    def cross_xy(self) -> torch.Tensor:
        """Σ (x - mean_x)(y - mean_y)ᵀ over rows."""
        return self.sxy - self.n * torch.outer(self.sx / self.n, self.sy / self.n)

    def std(self, side: str = "x") -> torch.Tensor:
        """Per-dimension standard deviation (n - 1 in the denominator, as torch.std)."""
        if side == "x":
            ss = self.gram_xx().diagonal() if self.full else self.gram_xx()
        else:
            ss = self.syy - self.n * (self.sy / self.n).pow(2)
        return (ss.clamp_min(0) / max(self.n - 1, 1)).sqrt()


def pair_moments(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], converter: Converter) -> TokenMoments:
    """TokenMoments of the closed forms' token pairs over batches of student (B, T_s, D_s) and
    teacher (B, T_t, D_t) features (the student's tokens resampled onto the teacher's grid by the
    converter's length adaptation)."""
    moments = TokenMoments(full=True)
    for x, y in pairs:
        moments.add(*_flatten_pairs(converter, x, y))
    if moments.n == 0:
        raise PolySpaceError("fit: no training samples")
    return moments


class ProcrustesConverter(Converter):
    """y = s · (x - mu_x) R + mu_y with R = U Vᵀ from the SVD of the cross-covariance Xcᵀ Yc.

    When D_s != D_t, R is (D_s, D_t) semi-orthogonal: the exact orthogonal Procrustes solution of
    the problem with the smaller side zero-padded (D_s < D_t embeds the student in a D_s-dim
    subspace of the teacher space; D_s > D_t keeps the D_t directions that best match). The scale
    s is the least-squares optimum for that R.
    """

    def __init__(self, config: ConverterConfig):
        super().__init__(config)
        self.register_buffer("mean_in", torch.zeros(config.d_in))
        self.register_buffer("mean_out", torch.zeros(config.d_out))
        self.register_buffer("rotation", torch.eye(config.d_in, config.d_out))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> ProcrustesConverter:
        """Fit on student (N, T_s, D_s) and teacher (N, T_t, D_t) features; returns self."""
        self.check_input(x)
        return self.fit_moments(pair_moments([(x, y)], self))

    @torch.no_grad()
    def fit_moments(self, moments: TokenMoments) -> ProcrustesConverter:
        """Fit from the token pairs' sums (`pair_moments`, accumulated batch by batch); returns self."""
        mean_in, mean_out = moments.mean_x(), moments.mean_y()
        u, s, vh = torch.linalg.svd(moments.cross_xy(), full_matrices=False)
        rotation = u @ vh
        # Σ ||(x - mu) R||² = tr(Rᵀ Xcᵀ Xc R)
        energy = (rotation * (moments.gram_xx() @ rotation)).sum()
        scale = s.sum() / energy.clamp_min(1e-12) if self.config.procrustes_scale \
            else torch.ones((), dtype=torch.float64)
        for name, value in (("mean_in", mean_in), ("mean_out", mean_out), ("rotation", rotation), ("scale", scale)):
            getattr(self, name).copy_(value.to(getattr(self, name).dtype))
        self.fitted.fill_(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if not bool(self.fitted):
            raise PolySpaceError("procrustes converter is not fitted; call .fit(student, teacher) or load a fitted one")
        x = self.adapt(x)
        return self.scale * ((x - self.mean_in) @ self.rotation) + self.mean_out


class RidgeConverter(Converter):
    """y = x W + b, W = (Xcᵀ Xc + λ I)⁻¹ Xcᵀ Yc, b = mu_y - mu_x W (intercept not penalised).

    λ = ridge_alpha · tr(Xcᵀ Xc) / D_s, i.e. relative to the mean per-dimension energy of the
    centred inputs, so the same ridge_alpha means the same thing at any feature scale or N.
    """

    def __init__(self, config: ConverterConfig):
        super().__init__(config)
        self.register_buffer("weight", torch.zeros(config.d_in, config.d_out))
        self.register_buffer("bias", torch.zeros(config.d_out))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> RidgeConverter:
        """Fit on student (N, T_s, D_s) and teacher (N, T_t, D_t) features; returns self."""
        self.check_input(x)
        return self.fit_moments(pair_moments([(x, y)], self))

    @torch.no_grad()
    def fit_moments(self, moments: TokenMoments) -> RidgeConverter:
        """Fit from the token pairs' sums (`pair_moments`, accumulated batch by batch); returns self."""
        mean_in, mean_out = moments.mean_x(), moments.mean_y()
        gram = moments.gram_xx()
        lam = float(self.config.ridge_alpha) * gram.trace() / gram.shape[0]
        gram = gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype)
        # lstsq rather than solve: stays defined when ridge_alpha=0 and the inputs are rank deficient
        weight = torch.linalg.lstsq(gram, moments.cross_xy()).solution
        self.weight.copy_(weight.to(self.weight.dtype))
        self.bias.copy_((mean_out - mean_in @ weight).to(self.bias.dtype))
        self.fitted.fill_(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if not bool(self.fitted):
            raise PolySpaceError("ridge converter is not fitted; call .fit(student, teacher) or load a fitted one")
        return self.adapt(x) @ self.weight + self.bias


# ---------------------------------------------------------------------------------------------
# learned kinds


def token_statistics(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[TokenMoments, TokenMoments]:
    """Per-dimension sums of every student and every teacher token over batches of
    (student (B, T_s, D_s), teacher (B, T_t, D_t)): the learned kinds' standardisation."""
    student, teacher = TokenMoments(full=False), TokenMoments(full=False)
    for x, y in pairs:
        student.add(x.reshape(-1, x.shape[-1]))
        teacher.add(y.reshape(-1, y.shape[-1]))
    if student.n == 0:
        raise PolySpaceError("set_statistics: no training samples")
    return student, teacher


class LearnedConverter(Converter):
    """Base of the learned kinds: the network works on standardised features,

        y = net((x - mu_x) / sd_x) * sd_y + mu_y

    with per-dimension means and standard deviations of the student (x) and teacher (y) tokens
    of the training split (`set_statistics`, called by train_converter before training; saved as
    buffers). Video backbones' tokens share a large common component (cosine ~0.99 between any
    two clips of the tiny zoo), so in raw units a loss is dominated by that mean and the
    variation that tells clips apart is learned slowly, if at all; the closed-form kinds centre
    their inputs for the same reason. Losses are computed in the standardised teacher units
    (`to_unit`). Until statistics are set the standardisation is the identity.
    """

    def __init__(self, config: ConverterConfig):
        super().__init__(config)
        self.register_buffer("in_mean", torch.zeros(config.d_in))
        self.register_buffer("in_std", torch.ones(config.d_in))
        self.register_buffer("out_mean", torch.zeros(config.d_out))
        self.register_buffer("out_std", torch.ones(config.d_out))

    @torch.no_grad()
    def set_statistics(self, x: torch.Tensor, y: torch.Tensor) -> LearnedConverter:
        """Per-dimension mean/std over every token of student (N, T_s, D_s) and teacher (N, T_t, D_t)."""
        self.check_input(x)
        return self.set_statistics_from(*token_statistics([(x, y)]))

    @torch.no_grad()
    def set_statistics_from(self, student: TokenMoments, teacher: TokenMoments) -> LearnedConverter:
        """The same from per-dimension sums over batches (`token_statistics`)."""
        for (mean, std), m in (((self.in_mean, self.in_std), student), ((self.out_mean, self.out_std), teacher)):
            if m.kx.shape[0] != mean.shape[0]:
                raise PolySpaceError(f"{self.config.kind} converter: statistics of {m.kx.shape[0]}-dim features "
                                     f"for a {mean.shape[0]}-dim side")
            mean.copy_(m.mean_x().to(mean.dtype))
            std.copy_(m.std().clamp_min(1e-6).to(std.dtype))
        return self

    def to_unit(self, y: torch.Tensor) -> torch.Tensor:
        """Teacher features in the standardised units the network predicts."""
        return (y - self.out_mean) / self.out_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net((x - self.in_mean) / self.in_std) * self.out_std + self.out_mean

    def net(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised student tokens (B, T_s, D_s) -> standardised teacher tokens (B, T_t, D_t)."""
        raise NotImplementedError


class MLPBlock(nn.Module):
    """Pre-norm residual MLP: h + W2 · GELU(W1 · LN(h))."""

    def __init__(self, width: int, expansion: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width * expansion)
        self.fc2 = nn.Linear(width * expansion, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.norm(h))))))


class TemporalConvBlock(nn.Module):
    """Pre-norm residual depthwise conv over tokens (kernel 3), then a pointwise mix: local temporal context."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel_size=3, padding=1, groups=width)
        self.pointwise = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, T, W)
        mixed = self.conv(self.norm(h).transpose(1, 2)).transpose(1, 2)
        return h + self.drop(self.pointwise(F.gelu(mixed)))


class AttentionBlock(nn.Module):
    """Pre-norm attention + MLP: cross-attention to a context when `cross`, else self-attention."""

    def __init__(self, width: int, heads: int, dropout: float, cross: bool):
        super().__init__()
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width) if cross else None
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp = MLPBlock(width, 4, dropout)

    def forward(self, q: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        qn = self.norm_q(q)
        kv = qn if self.norm_kv is None else self.norm_kv(context)
        q = q + self.attn(qn, kv, kv, need_weights=False)[0]
        return self.mlp(q)


class ResidualMLPConverter(LearnedConverter):
    """Resample tokens onto the teacher's grid, then y = Linear(x) + Head(MLPBlocks(Linear(x))).

    The head starts at zero, so training begins from the linear map and the MLP learns what the
    linear map misses.
    """

    def __init__(self, config: ConverterConfig):
        super().__init__(config)
        c = config
        self.skip = nn.Linear(c.d_in, c.d_out)
        self.stem = nn.Linear(c.d_in, c.hidden)
        self.blocks = nn.ModuleList(MLPBlock(c.hidden, 2, c.dropout) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.hidden)
        self.head = nn.Linear(c.hidden, c.d_out)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def net(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapt(x)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.skip(x) + self.head(self.norm(h))


class AttentionResamplerConverter(LearnedConverter):
    """The original's "A": a Perceiver-style resampler.

    Student tokens (plus a learned position embedding) are read by `latents` learned latent tokens
    through cross-attention, refined by `depth` self-attention blocks, and decoded by T_t learned
    queries (one per teacher token) that cross-attend to the latents. A linear path over the
    grid-resampled tokens runs alongside, so the attention trunk learns the residual.
    """

    def __init__(self, config: ConverterConfig):
        super().__init__(config)
        c = config
        self.skip = nn.Linear(c.d_in, c.d_out)
        self.in_proj = nn.Linear(c.d_in, c.hidden)
        self.pos_in = nn.Parameter(torch.randn(1, c.t_in, c.hidden) * 0.02)
        self.latents = nn.Parameter(torch.randn(1, c.latents, c.hidden) * 0.02)
        self.queries = nn.Parameter(torch.randn(1, c.t_out, c.hidden) * 0.02)
        self.read = AttentionBlock(c.hidden, c.heads, c.dropout, cross=True)
        self.process = nn.ModuleList(AttentionBlock(c.hidden, c.heads, c.dropout, cross=False) for _ in range(c.depth))
        self.write = AttentionBlock(c.hidden, c.heads, c.dropout, cross=True)
        self.norm = nn.LayerNorm(c.hidden)
        self.out_proj = nn.Linear(c.hidden, c.d_out)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def net(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        tokens = self.in_proj(x) + self.pos_in
        z = self.read(self.latents.expand(b, -1, -1), tokens)
        for block in self.process:
            z = block(z)
        out = self.write(self.queries.expand(b, -1, -1), z)
        return self.skip(self.adapt(x)) + self.out_proj(self.norm(out))


class LinearResamplerConverter(LearnedConverter):
    """The original's "B": a learned linear token mixing T_s -> T_t (initialised to the grid
    resampling, `grid_matrix`), a linear stem, residual temporal-conv + MLP blocks, and a linear head."""

    def __init__(self, config: ConverterConfig):
        super().__init__(config)
        c = config
        self.time_mix = nn.Parameter(grid_matrix(c.grid_in, c.grid_out))
        self.stem = nn.Linear(c.d_in, c.hidden)
        self.blocks = nn.ModuleList()
        for _ in range(c.depth):
            self.blocks.append(TemporalConvBlock(c.hidden, c.dropout))
            self.blocks.append(MLPBlock(c.hidden, 2, c.dropout))
        self.norm = nn.LayerNorm(c.hidden)
        self.head = nn.Linear(c.hidden, c.d_out)

    def net(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(torch.einsum("ot,btd->bod", self.time_mix, x))
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


class LinearConverter(LearnedConverter):
    """The original's "C": resample tokens onto the teacher's grid, then one linear map per token."""

    def __init__(self, config: ConverterConfig):
        super().__init__(config)
        self.proj = nn.Linear(config.d_in, config.d_out)

    def net(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.adapt(x))


_CLASSES = {
    "procrustes": ProcrustesConverter,
    "ridge": RidgeConverter,
    "mlp": ResidualMLPConverter,
    "attention": AttentionResamplerConverter,
    "resampler": LinearResamplerConverter,
    "linear": LinearConverter,
}


def build_converter(config: ConverterConfig | dict) -> Converter:
    """A fresh converter of `config.kind` (closed-form kinds still need `.fit(x, y)`)."""
    if isinstance(config, dict):
        config = ConverterConfig.from_dict(config)
    return _CLASSES[config.kind](config)


__all__ = [
    "CONVERTER_KINDS", "CLOSED_FORM_KINDS", "ConverterConfig", "Converter", "LearnedConverter", "build_converter",
    "resample_tokens", "interpolation_matrix", "resample_grid", "grid_matrix",
    "ProcrustesConverter", "RidgeConverter", "ResidualMLPConverter", "AttentionResamplerConverter",
    "LinearResamplerConverter", "LinearConverter",
]
