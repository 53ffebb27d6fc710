"""Student features -> converters -> fusion head, as one module, and its checkpoint format.

`FusionPipeline(batch)` reads the student's token features from the batch (cached mode: the
store; video mode: `StudentFeatures` put them there), converts them into every teacher's space and
runs the head. With `teacher_inputs=True` it reads each teacher's own features from the batch
instead of converting; `oracle_pipeline` builds that copy for 05's oracle row, with the teacher
inputs standardised by the teachers' own training-split statistics (what fusion would give with
perfect converters).

Converters are frozen (weights fixed, always in eval mode) or fine-tuned with the head.

A checkpoint is a folder: `fusion.safetensors` (head and converter weights, prefixed `head.` and
`converters.<i>.`) and `fusion.json` (format, FusionConfig, each converter's ConverterConfig, class
names, feature info, training summary), written atomically, fusion.json last.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import load_state_dict_strict
from ..errors import PolySpaceError
from ..io import atomic_write_json, load_safetensors, read_json, save_safetensors_atomic, verify_recorded
from .head import FusionConfig, FusionHead, Moments

CHECKPOINT_FORMAT = "polyspace-fusion/1"
# batch key of a teacher's converted features computed ahead of training (frozen converters)
CONVERTED = "converted:"


class FusionPipeline(nn.Module):
    """converters (one per teacher, config.teachers order) + FusionHead.

    forward(batch {student: (B, T_s, D_s), [teacher: (B, T_t, D_t)] ...}) -> head output
    {"logits", "gates", "aux_loss"}.
    """

    def __init__(self, head: FusionHead, converters: Sequence[nn.Module], finetune_converters: bool = False):
        super().__init__()
        self.head = head
        self.config = head.config
        if len(converters) != len(self.config.teachers):
            raise PolySpaceError(f"fusion: {len(converters)} converters for {len(self.config.teachers)} teachers")
        for name, grid, conv in zip(self.config.teachers, self.config.teacher_grids, converters):
            cc = getattr(conv, "config", None)
            if cc is not None and (cc.grid_in, cc.grid_out) != (self.config.student_grid, grid):
                raise PolySpaceError(
                    f"converter for {name!r} maps token grid {cc.grid_in} -> {cc.grid_out} but the fusion head "
                    f"expects {self.config.student_grid} -> {grid}; train converters on these features")
            if cc is not None and (cc.d_in, cc.t_in, cc.d_out, cc.t_out) != (
                    self.config.student_dim, self.config.student_tokens,
                    self.config.teacher_dims[self.config.teachers.index(name)],
                    self.config.teacher_tokens[self.config.teachers.index(name)]):
                raise PolySpaceError(
                    f"converter for {name!r} maps (T={cc.t_in}, D={cc.d_in}) -> (T={cc.t_out}, D={cc.d_out}) but the "
                    f"features are student (T={self.config.student_tokens}, D={self.config.student_dim}) -> teacher "
                    f"(T={self.config.teacher_tokens[self.config.teachers.index(name)]}, "
                    f"D={self.config.teacher_dims[self.config.teachers.index(name)]}); "
                    f"train converters on these features")
        self.converters = nn.ModuleList(converters)
        self.finetune_converters = bool(finetune_converters)
        for p in self.converters.parameters():
            p.requires_grad_(self.finetune_converters)
        self.teacher_inputs = False

    def train(self, mode: bool = True) -> FusionPipeline:
        super().train(mode)
        if not self.finetune_converters:
            self.converters.eval()  # frozen converters keep inference behaviour (no dropout)
        return self

    def convert(self, z0: torch.Tensor) -> list[torch.Tensor]:
        """Student features -> [converted features per teacher], in float32 whatever autocast
        the caller runs under: cached mode applies frozen converters once, outside training's
        autocast (`precompute_converted`), so both modes convert in the same precision."""
        with torch.autocast(device_type=z0.device.type, enabled=False):
            if self.finetune_converters:
                return [conv(z0.float()) for conv in self.converters]
            with torch.no_grad():
                return [conv(z0.float()) for conv in self.converters]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        if c.student not in batch:
            raise PolySpaceError(f"fusion: the batch has no features of the student {c.student!r} "
                                 f"(it has {', '.join(k for k in batch if k not in ('label', 'index'))})")
        z0 = batch[c.student]
        ready = [CONVERTED + t in batch for t in c.teachers]
        if any(ready) and not self.teacher_inputs:
            if not all(ready) or self.finetune_converters:
                raise PolySpaceError("fusion: precomputed converted features are only valid for all teachers at once "
                                     "and with frozen converters")
            return self.head(z0, [batch[CONVERTED + t] for t in c.teachers])
        if self.teacher_inputs:
            missing = [t for t in c.teachers if t not in batch]
            if missing:
                raise PolySpaceError(f"fusion oracle needs the teachers' own features; {missing} are not in the batch")
            converted = [batch[t] for t in c.teachers]
        else:
            converted = self.convert(z0)
        return self.head(z0, converted)


    @torch.no_grad()
    def fit_input_statistics(self, batches) -> FusionPipeline:
        """Standardisation statistics of the head's inputs (the student's tokens and each
        converted feature) from an iterable of training batches that hold the student's
        features (and, with frozen converters, possibly their precomputed outputs). Call it once
        on the whole training split before training; returns self."""
        c = self.config

        def pairs():
            for batch in batches:
                z0 = batch[c.student]
                if all(CONVERTED + t in batch for t in c.teachers):
                    yield z0, [batch[CONVERTED + t] for t in c.teachers]
                else:
                    yield z0, [conv(z0) for conv in self.converters]

        was_training = self.training
        self.eval()
        self.head.fit_input_statistics(pairs())
        self.train(was_training)
        return self


@torch.no_grad()
def oracle_pipeline(pipeline: FusionPipeline, train_batches: Iterable[Mapping[str, torch.Tensor]]) -> FusionPipeline:
    """The fusion oracle: a copy of the trained `pipeline` fed each teacher's OWN features in place
    of the converted ones, every teacher input standardised with that teacher's own statistics
    (per-dimension mean/std over every token of `train_batches`, the whole training split holding
    each teacher's features), as the head's normalisation does for the converted features. The
    head was fitted on converted features, whose statistics differ from the teachers' (a ridge map
    shrinks the variance, for one); with those statistics the oracle would read the teachers'
    features off-scale and not be the upper bound it stands for. `pipeline` is left unchanged;
    the copy is in eval mode."""
    c = pipeline.config
    moments = [Moments() for _ in c.teachers]
    for batch in train_batches:
        missing = [t for t in c.teachers if t not in batch]
        if missing:
            raise PolySpaceError(f"fusion oracle needs the teachers' own features; {missing} are not in the batch")
        for m, t in zip(moments, c.teachers):
            m.add(batch[t])
    oracle = copy.deepcopy(pipeline).eval()
    for branch, m in zip(oracle.head.branches, moments):
        branch.standardize.set_statistics(m)
    oracle.teacher_inputs = True
    return oracle


@torch.no_grad()
def precompute_converted(pipeline: FusionPipeline, features: torch.Tensor, device: torch.device | str = "cpu",
                         chunk: int = 1024) -> dict[str, torch.Tensor]:
    """Frozen converters are a fixed function of the stored student features, so cached mode can
    apply them once: student features (N, T_s, D_s) -> {CONVERTED + teacher: (N, T_t, D_t) float32},
    in eval mode, `chunk` clips at a time (failed samples' NaN rows stay NaN and are never served)."""
    if pipeline.finetune_converters:
        raise PolySpaceError("fusion: converters that are fine-tuned change during training; "
                             "they cannot be precomputed")
    n = features.shape[0]
    c = pipeline.config
    out = {CONVERTED + t: torch.empty(n, tokens, dim)
           for t, tokens, dim in zip(c.teachers, c.teacher_tokens, c.teacher_dims)}
    converters = [conv.to(device).eval() for conv in pipeline.converters]
    for start in range(0, n, chunk):
        z = features[start:start + chunk].to(device, torch.float32)
        for t, conv in zip(c.teachers, converters):
            out[CONVERTED + t][start:start + chunk] = conv(z).float().cpu()
    return out


def student_grid(converters: Mapping[str, nn.Module]) -> list[int]:
    """The student's token grid (T, H, W) that every converter of a set reads (one-line error if
    they disagree: they were trained on different features)."""
    grids = {tuple(conv.config.grid_in) for conv in converters.values()}
    if len(grids) != 1:
        raise PolySpaceError(f"converters read student features on different token grids {sorted(grids)}; "
                             f"train them on the same feature store")
    return list(grids.pop())


def build_pipeline(student: str, student_shape: tuple[int, int], converters: Mapping[str, nn.Module],
                   num_classes: int, *, rank: int = 64, gate_hidden: int = 64, pooling: str = "mean",
                   dropout: float = 0.1, gate_l1: float = 0.0, finetune_converters: bool = False) -> FusionPipeline:
    """A fresh fusion pipeline for a student whose features are (T, D) = student_shape and
    trained converters {teacher: converter} (their configs give each teacher's (T, D))."""
    teachers = list(converters)
    for t in teachers:
        if not hasattr(converters[t], "config"):
            raise PolySpaceError(f"converter for {t!r} has no config; load it with align.load_converter_set")
    grid = student_grid(converters)
    if grid[0] * grid[1] * grid[2] != int(student_shape[0]):
        grid = None  # converters for other features: FusionPipeline names the mismatch
    config = FusionConfig(
        student=student, student_dim=int(student_shape[1]), student_tokens=int(student_shape[0]), teachers=teachers,
        teacher_dims=[converters[t].config.d_out for t in teachers],
        teacher_tokens=[converters[t].config.t_out for t in teachers],
        student_grid=grid, teacher_grids=[converters[t].config.grid_out for t in teachers],
        num_classes=num_classes, rank=rank, gate_hidden=gate_hidden, pooling=pooling, dropout=dropout,
        gate_l1=gate_l1)
    return FusionPipeline(FusionHead(config), [converters[t] for t in teachers], finetune_converters)


def load_converters(directory: str | Path, student: str, teachers: Sequence[str] | None = None,
                    device: str | torch.device = "cpu") -> dict[str, nn.Module]:
    """Converters trained by 02 / `polyspace train-converter` for `teachers` (default: all),
    checked to come from the same student."""
    from ..align.train import load_converter_set

    directory = Path(directory)
    if not (directory / "converters.json").is_file():
        raise PolySpaceError(f"{directory}: no converters.json; train converters first "
                             f"(notebook 02 or `polyspace train-converter --save_dir {directory}`)")
    trained_on, converters = load_converter_set(directory, device=device, teachers=teachers)
    if trained_on != student:
        raise PolySpaceError(f"{directory}: converters were trained from student {trained_on!r}, not {student!r}; "
                             f"use the same --student or retrain the converters")
    return converters


# ---------------------------------------------------------------------------------------------
# checkpoints


def save_fusion(directory: str | Path, pipeline: FusionPipeline, info: Mapping[str, Any] | None = None) -> Path:
    """Write fusion.safetensors + fusion.json into `directory` (atomic; fusion.json last)."""
    directory = Path(directory)
    state = {k: v.detach().cpu() for k, v in pipeline.state_dict().items()}
    weights = save_safetensors_atomic(state, directory / "fusion.safetensors", metadata={"format": CHECKPOINT_FORMAT})
    meta = {"format": CHECKPOINT_FORMAT, "config": pipeline.config.to_dict(),
            "converters": [conv.config.to_dict() for conv in pipeline.converters],
            "finetune_converters": pipeline.finetune_converters, **dict(info or {}),
            "checksums": {"fusion.safetensors": weights}}
    atomic_write_json(directory / "fusion.json", meta)
    return directory


def read_fusion_meta(directory: str | Path) -> dict[str, Any]:
    """The fusion.json of a checkpoint folder, checked."""
    directory = Path(directory)
    path = directory / "fusion.json"
    if not path.is_file():
        raise PolySpaceError(f"{path}: no fusion checkpoint here; train one with notebook 04 or "
                             f"`polyspace train-fusion --save_dir {directory.parent}`")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise PolySpaceError(f"{path}: not a fusion checkpoint ({CHECKPOINT_FORMAT})")
    return meta


def load_fusion(directory: str | Path, device: str | torch.device = "cpu") -> FusionPipeline:
    """Rebuild a FusionPipeline saved by save_fusion, in eval mode; its fusion.json is `.info`."""
    from ..align.converters import build_converter

    directory = Path(directory)
    meta = read_fusion_meta(directory)
    weights = directory / "fusion.safetensors"
    if not weights.is_file():
        raise PolySpaceError(f"{weights}: file not found; the checkpoint is incomplete, train it again")
    config = FusionConfig.from_dict(meta["config"])
    converters = [build_converter(c) for c in meta["converters"]]
    pipeline = FusionPipeline(FusionHead(config), converters, meta.get("finetune_converters", False))
    verify_recorded(weights, meta.get("checksums"), fix="train the fusion head again")
    load_state_dict_strict(pipeline, load_safetensors(weights, fix="train the fusion head again"), weights,
                           against="fusion.json")
    pipeline.info = meta
    return pipeline.to(device).eval()
