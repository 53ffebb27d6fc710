"""What a PolySpace prediction costs, end to end, in the three configurations a user weighs:

    student only                           student backbone -> student head (parameter-matched, as in 05)
    student + converters + fusion head     student backbone -> one converter per teacher -> fusion head
    student + all teachers                 student and every teacher backbone -> fusion head on the
                                           teachers' own features (05's oracle: what fusion replaces)

Each configuration's FLOPs and parameters are the sums over the components it runs; its latency is
the sum of the components' median latencies (one clip, run one after another on one device), given
only when every component's latency was measured. A `PipelineSpec` holds the backbones plus the
converter and head settings; `spec_from_fusion_checkpoint` reads those settings from a trained
fusion checkpoint (04), and `PipelineSpec.with_backbones` keeps the settings while swapping in the
real-size backbones, so the as-run pipeline and its real-size counterpart are costed alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..backbones.catalog import BackboneSpec, backbone_cost, resolve_backbone, stored_model_spec
from ..errors import PolySpaceError
from ..measure import Measurement
from .components import converter_cost, fusion_head_config, fusion_head_cost, student_head_cost

STUDENT_ONLY = "student only"
FUSION = "student + converters + fusion head"
TEACHERS = "student + all teachers"
CONFIGURATIONS = (STUDENT_ONLY, FUSION, TEACHERS)
# the 05 (evaluate_downstream) row whose top-1 belongs to each configuration
EVAL_KEYS = {STUDENT_ONLY: "student_matched", FUSION: "fusion", TEACHERS: "fusion_oracle"}


@dataclass
class PipelineSpec:
    """Backbones and head settings of one PolySpace pipeline."""

    student: BackboneSpec
    teachers: list[BackboneSpec]
    converter: dict[str, Any] = field(default_factory=lambda: {"kind": "mlp"})  # ConverterConfig fields but shapes
    head: dict[str, Any] = field(default_factory=dict)  # FusionConfig extras: rank, gate_hidden, pooling, dropout
    num_classes: int = 51
    tokens: str = "temporal"
    settings_from: str = "defaults"  # where converter/head settings came from (a checkpoint path or 'defaults')

    def __post_init__(self) -> None:
        if not self.teachers:
            raise PolySpaceError("pipeline: no teachers; the fusion configuration needs at least one teacher")
        names = [self.student.name, *(t.name for t in self.teachers)]
        if len(set(names)) != len(names):
            raise PolySpaceError(f"pipeline: model names {names} must be unique; name them as NAME=SOURCE")

    def with_backbones(self, student: BackboneSpec, teachers: Sequence[BackboneSpec]) -> PipelineSpec:
        """The same converter/head settings over other backbones (e.g. the real-size checkpoints)."""
        if len(teachers) != len(self.teachers):
            raise PolySpaceError(f"pipeline: {len(teachers)} real-size teachers for {len(self.teachers)} as-run "
                                 f"teachers; give one per teacher")
        return replace(self, student=student, teachers=list(teachers))

    def shape(self, spec: BackboneSpec) -> tuple[int, int]:
        """(T, D) of one clip's stored features for a backbone under this pipeline's token rule."""
        return spec.tokens(self.tokens), spec.width

    def describe(self) -> dict[str, Any]:
        return {"student": self.student.clip() | {"name": self.student.name},
                "teachers": [t.clip() | {"name": t.name} for t in self.teachers],
                "tokens": self.tokens, "converter": dict(self.converter), "head": dict(self.head),
                "num_classes": self.num_classes, "settings_from": self.settings_from}


def pipeline_spec(student: str, teachers: Sequence[str], *, converter: dict[str, Any] | None = None,
                  head: dict[str, Any] | None = None, num_classes: int = 51, tokens: str = "temporal",
                  frames: int | None = None) -> PipelineSpec:
    """A PipelineSpec from backbone names (anything `resolve_backbone` accepts). `frames` applies to
    the student when its architecture takes any frame count (V-JEPA 2)."""
    s = resolve_backbone(student)
    if frames is not None and s.arch == "vjepa2":
        s = resolve_backbone(student, frames=frames)
    return PipelineSpec(s, [resolve_backbone(t) for t in teachers], dict(converter or {"kind": "mlp"}),
                        dict(head or {}), int(num_classes), tokens)


def _find_store(root: Path, names: Sequence[str]):
    """The first feature-store split under `root` whose manifest has every model in `names`."""
    from ..features.store import FeatureStore

    for manifest in sorted(root.rglob("manifest.json")):
        try:
            store = FeatureStore.open(manifest.parent)
        except PolySpaceError:
            continue  # not a feature store (or a damaged one): look further
        if all(n in store.models for n in names):
            return store
    return None


def spec_from_fusion_checkpoint(fusion_dir: str | Path, stores_root: str | Path | None = None) -> PipelineSpec:
    """The pipeline a trained fusion checkpoint (fusion.json of 04) runs: converter and head
    settings from the checkpoint; backbones (source and clip of every model) from the feature
    store it was trained on (cached mode records it) or, for a checkpoint trained in video mode,
    from a store under `stores_root` (01's run dir) holding the same student and teachers."""
    from ..fusion.pipeline import read_fusion_meta

    fusion_dir = Path(fusion_dir)
    meta = read_fusion_meta(fusion_dir)
    config = meta["config"]
    data = meta.get("data", {})
    converters = meta.get("converters") or []
    if not converters:
        raise PolySpaceError(f"{fusion_dir / 'fusion.json'}: lists no converters; "
                             "it is not a fusion pipeline checkpoint")
    converter = {k: v for k, v in converters[0].items() if k not in ("d_in", "d_out", "t_in", "t_out")}
    head = {k: config[k] for k in ("rank", "gate_hidden", "pooling", "dropout", "gate_l1") if k in config}
    names = [config["student"], *config["teachers"]]
    where = data.get("features") or stores_root
    store = _find_store(Path(where), names) if where else None
    if store is None:
        raise PolySpaceError(f"{fusion_dir / 'fusion.json'}: no feature store with the models {names} "
                             f"{'under ' + str(where) if where else '(trained in video mode)'}; run 01_featurize for "
                             f"them or cost the pipeline with pipeline_spec(student, teachers, ...)")

    def spec_of(name: str) -> BackboneSpec:
        info = store.model_info(name)
        found = stored_model_spec(name, info)
        if found.tokens(store.tokens) != int(info["T"]) or found.width != int(info["dim"]):
            raise PolySpaceError(f"model {name!r}: the store has features (T={info['T']}, D={info['dim']}) but "
                                 f"{info['source']} gives (T={found.tokens(store.tokens)}, D={found.width})")
        return found

    return PipelineSpec(spec_of(config["student"]), [spec_of(t) for t in config["teachers"]], converter, head,
                        int(config["num_classes"]), store.tokens, settings_from=str(fusion_dir))


@dataclass
class PipelineCost:
    """Per-component measurements of a pipeline and the three configurations built from them."""

    spec: PipelineSpec
    components: dict[str, Measurement]
    label: str = ""

    def parts(self, configuration: str) -> list[str]:
        """Component keys a configuration runs."""
        teachers = [t.name for t in self.spec.teachers]
        if configuration == STUDENT_ONLY:
            return ["student", "student_head"]
        if configuration == FUSION:
            return ["student", *(f"converter:{t}" for t in teachers), "fusion_head"]
        if configuration == TEACHERS:
            return ["student", *(f"teacher:{t}" for t in teachers), "fusion_head"]
        raise PolySpaceError(f"configuration {configuration!r}: use one of {', '.join(CONFIGURATIONS)}")

    def total(self, configuration: str) -> dict[str, Any]:
        """FLOPs, parameters and latency of one configuration (latency None unless all measured)."""
        parts = [self.components[k] for k in self.parts(configuration)]
        latencies = [m.latency_ms for m in parts]
        return {"configuration": configuration,
                "gflops": sum(m.flops for m in parts) / 1e9,
                "params_m": sum(m.params for m in parts) / 1e6,
                "latency_ms": sum(latencies) if all(x is not None for x in latencies) else None,
                "components": " + ".join(m.name for m in parts)}

    def configurations(self) -> list[dict[str, Any]]:
        return [self.total(c) for c in CONFIGURATIONS]

    def ratios(self) -> dict[str, float]:
        """cost_fusion_over_student and cost_teachers_over_fusion, in FLOPs."""
        flops = {c: self.total(c)["gflops"] for c in CONFIGURATIONS}
        return {"cost_fusion_over_student": flops[FUSION] / flops[STUDENT_ONLY],
                "cost_teachers_over_fusion": flops[TEACHERS] / flops[FUSION]}


def _same_backbone(spec: BackboneSpec, m: Measurement) -> bool:
    s = m.spec
    return (s.get("kind") == "backbone" and s.get("arch") == spec.arch and s.get("source") == spec.source
            and s.get("frames") == spec.frames and s.get("size") == spec.size)


def pipeline_cost(spec: PipelineSpec, device: torch.device | str = "cpu", *, latency_max_gflops: float = math.inf,
                  warmup: int = 1, repeats: int = 5, label: str = "", progress: bool = True,
                  measured: dict[str, Measurement] | None = None) -> PipelineCost:
    """Measure every component of `spec` on `device`. Latency (and peak memory) is measured for the
    components with at most `latency_max_gflops` GFLOPs per clip; bigger ones get FLOPs and
    parameters only (use 0 for FLOPs only, math.inf for everything). `measured`: backbone
    measurements already taken (same architecture, source and clip) are reused, not repeated."""
    from tqdm.auto import tqdm

    device = torch.device(device)
    todo = [("student", spec.student), *((f"teacher:{t.name}", t) for t in spec.teachers)]
    components: dict[str, Measurement] = {}
    bar = tqdm(total=len(todo) + len(spec.teachers) + 2, desc=f"cost {label or spec.student.name}",
               disable=not progress, leave=False)
    for key, backbone in todo:
        known = [m for m in (measured or {}).values() if _same_backbone(backbone, m)]
        if known:
            components[key] = replace(known[0], name=backbone.name)
        else:
            components[key] = backbone_cost(backbone, device, latency_max_gflops=latency_max_gflops,
                                            warmup=warmup, repeats=repeats)
        bar.update()
    small = {"device": device, "warmup": max(warmup, 1), "repeats": max(repeats, 5)}
    student_shape = spec.shape(spec.student)
    for teacher in spec.teachers:
        m = converter_cost(f"converter {spec.student.name}->{teacher.name}", spec.converter, student_shape,
                           spec.shape(teacher), latency=latency_max_gflops > 0, **small)
        components[f"converter:{teacher.name}"] = m
        bar.update()
    config = fusion_head_config(spec.student.name, student_shape, [t.name for t in spec.teachers],
                                [spec.shape(t) for t in spec.teachers], spec.num_classes, spec.head)
    components["fusion_head"] = fusion_head_cost("fusion head", config, latency=latency_max_gflops > 0, **small)
    bar.update()
    # 05 matches the student head's trainable parameters to the fusion pipeline's (frozen converters: the head)
    components["student_head"] = student_head_cost("student matched head", config, components["fusion_head"].params,
                                                   latency=latency_max_gflops > 0, **small)
    bar.update()
    bar.close()
    return PipelineCost(spec, components, label)


def accuracy_from_eval(metrics: dict[str, Any] | None) -> dict[str, float | None]:
    """Top-1 of each configuration from 05's metrics.json (None where 05 has no such row)."""
    metrics = metrics or {}
    return {c: metrics.get(f"top1_{key}") for c, key in EVAL_KEYS.items()}
