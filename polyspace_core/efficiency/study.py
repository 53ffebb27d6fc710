"""What notebook 06 calls, one function per cell, each taking the workspace first and returning
what the cell shows (a table, a `Costs`, a pipeline's cost):

    backbones = backbones(ws)                    # every backbone at its real configuration + tiny presets
    as_run = as_run(ws, backbones.runs)          # the pipeline stages 01-05 trained (04's checkpoint)
    real = real_size(ws, as_run, backbones.runs) # its settings over the real-size backbones (+ make bench)
    eval_metrics(ws)                             # 05's metrics.json (top-1 beside each configuration)
    tsm(ws), colorization(ws)                    # TSM/FFN at 4/8/16 frames; the colorization system per frame
    storage(ws, as_run, real)                    # feature store size per model, token rule and dtype
    throughput(ws), bench_latencies(ws)          # the fusion and efficiency benchmarks' results
    stage_metrics(ws, backbones, as_run, real, tsm, colorization)   # the flat figures of metrics.json

Below them, the measurements they run, with explicit arguments (what tests call): backbone_costs,
as_run_pipeline, real_size_pipeline, pipeline_table, full_cost_table, component_table, tsm_costs,
colorization_costs, storage_tables, throughput_table, bench_table.

Latency is measured only for what costs at most `latency_max_gflops` per call on the device (the
big models on a CPU would take minutes per clip; FLOPs and parameters are counted for everything).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..backbones.catalog import BackboneSpec, backbone_cost, resolve_backbone, tiny_specs
from ..measure import ATTENTION_OPS, Measurement
from .components import colorization_cost, tsm_cost
from .pipeline import (
    CONFIGURATIONS,
    EVAL_KEYS,
    PipelineCost,
    PipelineSpec,
    accuracy_from_eval,
    pipeline_cost,
    pipeline_spec,
    spec_from_fusion_checkpoint,
)

TSM_SIZE = 224  # TSM/FFN are costed at the paper's crop, whatever the preset


@dataclass
class Costs:
    """A cost table (a DataFrame, one row per model) and the measurements behind its rows
    (`runs`: {name: Measurement}). A notebook cell shows it as the table rounded to `digits`."""

    table: Any
    runs: dict[str, Measurement]
    digits: int = 3

    @classmethod
    def of(cls, runs: Mapping[str, Measurement], digits: int = 3) -> Costs:
        """Costs of measurements taken elsewhere, with the table measurement_rows makes of them."""
        return cls(_frame(measurement_rows(list(runs.values())), "model"), dict(runs), digits)

    def _repr_html_(self) -> str:
        return self.table.round(self.digits)._repr_html_()

    def __repr__(self) -> str:
        return repr(self.table.round(self.digits))


# ----------------------------------------------------------------------------- notebook 06's cells

def _timing(ws) -> dict[str, Any]:
    """The latency settings every measurement of the stage shares."""
    return {"latency_max_gflops": ws.p.latency_max_gflops, "repeats": ws.p.latency_repeats}


def backbones(ws) -> Costs:
    """Every backbone of ws.p.cost_backbones at its real configuration, plus the tiny presets."""
    table, runs = backbone_costs(ws.p.cost_backbones, ws.device, **_timing(ws))
    return Costs(table, runs)


def as_run(ws, measured: Mapping[str, Measurement] | None = None) -> PipelineCost:
    """The pipeline stages 01-05 trained, measured on ws.device: 04's fusion checkpoint when it
    exists (its store under 01's run dir), else ws.p.cost_student / cost_teachers with
    ws.p.cost_converter converters. `measured`: backbone measurements to reuse (backbones(ws).runs).
    Prints where the converter/head settings came from."""
    spec = as_run_pipeline(ws.stage_run_dir("04_train_fusion"), ws.p.cost_student, ws.p.cost_teachers,
                           converter_kind=ws.p.cost_converter, num_classes=ws.p.cost_num_classes,
                           stores_root=ws.stage_run_dir("01_featurize"))
    cost = pipeline_cost(spec, ws.device, label="as run", measured=dict(measured or {}), **_timing(ws))
    print("settings from:", spec.settings_from)
    return cost


def bench(ws) -> dict[str, Any] | None:
    """benchmarks/results/efficiency.json (`make bench`), or None when it has not been run."""
    return read_bench(ws.root / "benchmarks" / "results" / "efficiency.json")


def real_size(ws, as_run: PipelineCost, measured: Mapping[str, Measurement] | None = None) -> PipelineCost:
    """`as_run`'s converter/head settings over ws.p.cost_real_student / cost_real_teachers, measured
    on ws.device; backbones too big to time here take `make bench`'s latency when it matches."""
    spec = real_size_pipeline(as_run.spec, ws.p.cost_real_student, ws.p.cost_real_teachers)
    real = pipeline_cost(spec, ws.device, label="real size", measured=dict(measured or {}), **_timing(ws))
    return attach_bench_latency(real, bench(ws))


def eval_metrics(ws) -> dict[str, Any] | None:
    """05's metrics.json for this preset, or None when 05 has not run."""
    return read_eval_metrics(ws.root / "reports" / ws.preset / "05_eval_downstream" / "metrics.json")


def tsm(ws) -> Costs:
    """TSM and FFN (ws.p.cost_tsm_arch) at each of ws.p.cost_tsm_frames, per clip at 224 px."""
    table, runs = tsm_costs(ws.p.cost_tsm_arch, ws.p.cost_tsm_frames, TSM_SIZE, ws.device, **_timing(ws))
    return Costs(table, runs)


def colorization(ws) -> Costs:
    """The colorization system per frame at ws.p.cost_colorize_size."""
    table, run = colorization_costs(ws.p.cost_colorize_size, device=ws.device, **_timing(ws))
    return Costs(table, {run.name: run})


def storage(ws, as_run: PipelineCost, real: PipelineCost) -> dict[str, Any]:
    """storage_tables for the backbones of both pipelines and the stores under 01's run dir."""
    specs = [as_run.spec.student, *as_run.spec.teachers, real.spec.student, *real.spec.teachers]
    return storage_tables(specs, ws.stage_run_dir("01_featurize"))


def run_store_table(storage: dict[str, Any]):
    """The stores 01 wrote (storage(ws, ...)["runs"], rounded), or a line saying there are none."""
    runs = storage["runs"]
    return runs.round(3) if len(runs) else "01_featurize has written no feature store for this preset yet"


def throughput(ws):
    """Cached vs video fusion training throughput from benchmarks/results/fusion_modes.json."""
    return throughput_table(ws.root / "benchmarks" / "results" / "fusion_modes.json")


def bench_latencies(ws):
    """The per-model latencies `make bench` measured, or a line saying it has not been run."""
    return bench_table(bench(ws))


def stage_metrics(ws, backbones: Costs, as_run: PipelineCost, real: PipelineCost, tsm: Costs,
                  colorization: Costs | None = None) -> dict[str, Any]:
    """The flat figures of 06's metrics.json from the cells' results: gflops_/params_/latency_ms_<model>
    for every backbone, TSM/FFN model and pipeline part, `flops_config` (the clip each was counted
    at, and that FLOPs are true FLOPs), the configuration totals, and the cost ratios of the
    real-size pipeline (`cost_fusion_over_student`, `cost_teachers_over_fusion`; `_as_run` for the
    as-run one). `ws` is the stage's workspace (the figures need nothing else from it)."""
    system = next(iter(colorization.runs.values())) if colorization is not None and colorization.runs else None
    return _cost_metrics(backbones.runs, as_run, real, tsm.runs, system)


# ----------------------------------------------------------------------------- the measurements

def _frame(rows: list[dict[str, Any]], index: str | None = None):
    import pandas as pd

    frame = pd.DataFrame(rows)
    return frame.set_index(index) if index and not frame.empty else frame


def measurement_rows(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """Table rows: name, GFLOPs, attention GFLOPs, params (M), latency (ms), peak memory (MB), clip."""
    rows = []
    for m in measurements:
        attention = sum(v for k, v in m.flops_by_op.items() if k in ATTENTION_OPS)
        rows.append({"model": m.name, "gflops": m.gflops, "attention_gflops": attention / 1e9,
                     "params_m": m.params / 1e6, "latency_ms": m.latency_ms, "peak_memory_mb": m.peak_memory_mb,
                     "frames": m.spec.get("frames"), "size": m.spec.get("size"), "source": m.spec.get("source", "")})
    return rows


def backbone_costs(names: Sequence[str], device: torch.device | str = "cpu", *, include_tiny: bool = True,
                   latency_max_gflops: float = 20.0, warmup: int = 1, repeats: int = 3,
                   progress: bool = True) -> tuple[Any, dict[str, Measurement]]:
    """(table, {name: Measurement}) for each named backbone plus, with `include_tiny`, every tiny
    preset. One clip each, at the backbone's own frame count and size."""
    specs = [resolve_backbone(n) for n in names]
    if include_tiny:
        specs += [s for s in tiny_specs().values() if s.name not in {x.name for x in specs}]
    results: dict[str, Measurement] = {}
    for spec in tqdm(specs, desc="backbones", disable=not progress, leave=False):
        results[spec.name] = backbone_cost(spec, device, latency_max_gflops=latency_max_gflops,
                                           warmup=warmup, repeats=repeats)
    return _frame(measurement_rows(list(results.values())), "model"), results


def find_fusion_checkpoint(fusion_run_dir: str | Path) -> Path | None:
    """The fusion checkpoint notebook 04 saved under its run dir (a folder with fusion.json; the
    `best` one when there are several), or None when 04 has not run."""
    found = sorted(Path(fusion_run_dir).rglob("fusion.json"))
    if not found:
        return None
    best = [p for p in found if p.parent.name == "best"]
    return (best or found)[0].parent


def as_run_pipeline(fusion_run_dir: str | Path, student: str, teachers: Sequence[str], *, converter_kind: str,
                    num_classes: int, stores_root: str | Path | None = None) -> PipelineSpec:
    """The pipeline 04 trained when its checkpoint exists (backbones from its feature store — or,
    for a video-mode checkpoint, a store under `stores_root` — converter and head settings from
    fusion.json), else `student`/`teachers` with default head settings and converters of
    `converter_kind`; `settings_from` says which."""
    checkpoint = find_fusion_checkpoint(fusion_run_dir)
    if checkpoint is not None:
        return spec_from_fusion_checkpoint(checkpoint, stores_root)
    spec = pipeline_spec(student, teachers, converter={"kind": converter_kind}, num_classes=num_classes)
    spec.settings_from = f"defaults (no fusion checkpoint under {fusion_run_dir})"
    return spec


def real_size_pipeline(as_run: PipelineSpec, student: str, teachers: Sequence[str]) -> PipelineSpec:
    """The as-run converter/head settings over real-size backbones."""
    return as_run.with_backbones(resolve_backbone(student), [resolve_backbone(t) for t in teachers])


def read_eval_metrics(path: str | Path) -> dict[str, Any] | None:
    """05's metrics.json, or None when 05 has not run."""
    from ..io import read_json

    path = Path(path)
    return read_json(path) if path.is_file() else None


def pipeline_table(cost: PipelineCost, eval_metrics: dict[str, Any] | None = None):
    """The three configurations: GFLOPs, params (M), latency (ms), and 05's top-1 of the matching
    row (student matched head / fusion / fusion oracle) — NaN where 05 has not run."""
    accuracy = accuracy_from_eval(eval_metrics)
    rows = []
    for row in cost.configurations():
        c = row["configuration"]
        top1 = accuracy[c]
        rows.append({**row, "top1": math.nan if top1 is None else top1, "top1_from": f"05 top1_{EVAL_KEYS[c]}"})
    return _frame(rows, "configuration")


def read_bench(path: str | Path) -> dict[str, Any] | None:
    """benchmarks/results/efficiency.json (written by `make bench`), or None when absent."""
    from ..io import read_json

    path = Path(path)
    return read_json(path) if path.is_file() else None


def attach_bench_latency(cost: PipelineCost, bench: dict[str, Any] | None) -> PipelineCost:
    """A copy of `cost` whose backbones without a latency of their own take the one `make bench`
    measured for the same model, clip and FLOPs (recorded with the bench's device in
    `latency.device`); everything else is unchanged."""
    from dataclasses import replace as dc_replace

    from ..measure import Latency

    models = (bench or {}).get("models", {})
    components = dict(cost.components)
    for key, m in cost.components.items():
        b = models.get(m.name)
        if m.latency is not None or m.spec.get("kind") != "backbone" or not b or b.get("latency_ms") is None:
            continue
        if (b.get("frames"), b.get("size")) != (m.spec.get("frames"), m.spec.get("size")) or \
                not math.isclose(b["gflops"] * 1e9, m.flops, rel_tol=1e-6):
            continue  # measured at another clip: not this model's latency
        latency = Latency(b["latency_ms"], b.get("latency_min_ms") or b["latency_ms"],
                          b.get("latency_max_ms") or b["latency_ms"], int(b.get("repeats") or 0), 1,
                          f"bench: {bench.get('device', '?')}")
        components[key] = dc_replace(m, latency=latency)
    return PipelineCost(cost.spec, components, cost.label)


def full_cost_table(as_run: PipelineCost, real: PipelineCost, eval_metrics: dict[str, Any] | None = None):
    """The table a PolySpace user needs: per configuration, GFLOPs / params / latency of the
    pipeline as run and at real size, with 05's top-1 (measured on the as-run models) beside them.
    Latency is None where a component was not timed (see `latency_max_gflops` and make bench)."""
    accuracy = accuracy_from_eval(eval_metrics)
    rows = []
    for a, r in zip(as_run.configurations(), real.configurations()):
        c = a["configuration"]
        sources = sorted({m.latency.device for k in real.parts(c) for m in [real.components[k]] if m.latency})
        rows.append({"configuration": c,
                     "top1 (05)": math.nan if accuracy[c] is None else accuracy[c],
                     "GFLOPs as run": a["gflops"], "params M as run": a["params_m"],
                     "latency ms as run": a["latency_ms"],
                     "GFLOPs real size": r["gflops"], "params M real size": r["params_m"],
                     "latency ms real size": r["latency_ms"],
                     "real-size latency from": ", ".join(sources) if r["latency_ms"] is not None else
                     "not measured — run make bench"})
    return _frame(rows, "configuration")


def throughput_table(path: str | Path):
    """Cached vs video fusion training throughput from the fusion benchmark, or a one-row table
    saying it was not measured."""
    from .storage import fusion_mode_throughput

    found = fusion_mode_throughput(path)
    if not found["measured"]:
        return _frame([{"mode": "cached / video", "train_samples_per_s": found["note"]}], "mode")
    keep = ("mode", "train_samples_per_s", "epochs", "train_samples")
    rows = [{k: r.get(k) for k in keep} for r in found["rows"]]
    for r in rows:
        r["speedup vs video"] = found["speedup"] if r["mode"] == "cached" else 1.0
        r["setup"] = ", ".join(f"{k}={found['setup'][k]}" for k in ("student", "feature_dtype", "batch")
                               if k in found["setup"])
        r["machine"] = found["machine"].get("device", "")
    return _frame(rows, "mode")


def bench_table(bench: dict[str, Any] | None):
    """The per-model latencies `make bench` measured (benchmarks/results/efficiency.json)."""
    if not bench:
        return _frame([{"model": "real-size models", "latency_ms": "not measured — run make bench"}], "model")
    rows = [{"model": name, **{k: v.get(k) for k in ("gflops", "params", "latency_ms", "peak_memory_mb",
                                                     "frames", "size")}, "device": bench.get("device")}
            for name, v in bench.get("models", {}).items()]
    return _frame(rows, "model")


def component_table(cost: PipelineCost):
    """Every component of a pipeline with its own measurements."""
    rows = [{"component": key, **{k: v for k, v in m.row().items() if k != "name"}, "name": m.name}
            for key, m in cost.components.items()]
    frame = _frame(rows, "component")
    keep = ["name", "gflops", "params_m", "latency_ms", "peak_memory_mb"]
    return frame[[c for c in keep if c in frame.columns]]


def tsm_costs(arch: str = "resnet50", frame_counts: Sequence[int] = (4, 8, 16), size: int = 224,
              device: torch.device | str = "cpu", *, num_classes: int = 174, latency_max_gflops: float = 20.0,
              warmup: int = 1, repeats: int = 3) -> tuple[Any, dict[str, Measurement]]:
    """Vanilla TSM and FFN at each frame count: GFLOPs grow linearly with frames, parameters are
    one model for FFN (shared convolutions, private BatchNorms and adaconvs per stream)."""
    results: dict[str, Measurement] = {}
    for ffn in (False, True):
        for frames in frame_counts:
            counted = tsm_cost(arch, frames, size, ffn=ffn, frame_counts=frame_counts, num_classes=num_classes)
            if counted.gflops <= latency_max_gflops:
                counted = tsm_cost(arch, frames, size, ffn=ffn, frame_counts=frame_counts, num_classes=num_classes,
                                   device=device, latency=True, warmup=warmup, repeats=repeats)
            results[counted.name] = counted
    return _frame(measurement_rows(list(results.values())), "model"), results


def colorization_costs(size: int = 128, chunk: int = 4, device: torch.device | str = "cpu", *,
                       checkpoint: str | Path | None = None, latency_max_gflops: float = 20.0,
                       warmup: int = 1, repeats: int = 3) -> tuple[Any, Measurement]:
    """The colorization system per frame (FLOPs without the OpenCV flow; latency with it)."""
    counted = colorization_cost(size, chunk, device, checkpoint=str(checkpoint) if checkpoint else None,
                                latency=False)
    if counted.gflops <= latency_max_gflops:  # per frame, like every other threshold here (per clip)
        counted = colorization_cost(size, chunk, device, checkpoint=str(checkpoint) if checkpoint else None,
                                    latency=True, warmup=warmup, repeats=repeats)
    row = {**measurement_rows([counted])[0], "per": "frame", "flow": counted.spec["flow"],
           "flow_in_flops": counted.spec["flow_in_flops"]}
    return _frame([row], "model"), counted


def storage_tables(specs: Sequence[BackboneSpec], runs_dir: str | Path, *, clips: int = 1000,
                   check_clips: int = 8) -> dict[str, Any]:
    """{"computed": MB per `clips` clips per model, token rule and dtype; "written": a real store
    written per model and dtype (temporal tokens) and measured on disk; "runs": the stores under
    `runs_dir` as written by 01 (empty when 01 has not run)}."""
    from .storage import DTYPE_BYTES, storage_table, store_sizes, written_store_bytes

    written = []
    for spec in specs:
        for dtype in DTYPE_BYTES:
            w = written_store_bytes(spec, "temporal", dtype, clips=check_clips)
            written.append({"model": spec.name, "dtype": dtype, "T": spec.tokens("temporal"), "D": spec.width,
                            f"mb_per_{clips}_on_disk": w["bytes_per_clip"] * clips / 2**20,
                            f"mb_per_{clips}_features": w["feature_bytes_per_clip"] * clips / 2**20,
                            "header_bytes": w["header_bytes"]})
    runs_dir = Path(runs_dir)
    return {"computed": _frame(storage_table(specs, clips=clips), None),
            "written": _frame(written, None),
            "runs": _frame(store_sizes(runs_dir, clips) if runs_dir.is_dir() else [], None)}


def _key(name: str) -> str:
    return name.replace("-", "_").replace(" ", "_").replace(">", "").replace(".", "_")


def _cost_metrics(backbones: Mapping[str, Measurement], as_run: PipelineCost, real: PipelineCost,
                  tsm: Mapping[str, Measurement], colorization: Measurement | None = None) -> dict[str, Any]:
    """stage_metrics from the measurements themselves (see there)."""
    out: dict[str, Any] = {}
    config: dict[str, Any] = {"flop_convention": "true FLOPs: 2 per multiply-add (matmul, conv, attention)",
                              "batch": 1, "models": {}}

    def put(name: str, m: Measurement, clip: dict[str, Any]) -> None:
        key = _key(name)
        out[f"gflops_{key}"] = m.gflops
        out[f"params_{key}"] = m.params
        out[f"latency_ms_{key}"] = m.latency_ms
        config["models"][key] = clip

    measured = dict(backbones)
    for cost in (as_run, real):  # the pipelines' backbones, when not in the backbone table
        for key, m in cost.components.items():
            if key == "student" or key.startswith("teacher:"):
                measured.setdefault(m.name, m)
    for name, m in measured.items():
        put(name, m, {"per": "clip", "frames": m.spec.get("frames"), "size": m.spec.get("size"),
                      "source": m.spec.get("source")})
    for name, m in tsm.items():
        put(name, m, {"per": "clip", "frames": m.spec["frames"], "size": m.spec["size"], "arch": m.spec["arch"],
                      "ffn": m.spec["ffn"]})
    for label, cost in (("", real), ("_as_run", as_run)):
        student = cost.spec.student
        for key, m in cost.components.items():
            if key.startswith(("converter:", "fusion_head", "student_head")):
                part = _key(key.replace("converter:", "converter_"))
                put(f"{part}{label}", m, {"per": "clip", "input": f"{student.name} features "
                                                                  f"{list(cost.spec.shape(student))}"})
        for row in cost.configurations():
            short = {CONFIGURATIONS[0]: "student_only", CONFIGURATIONS[1]: "fusion_pipeline",
                     CONFIGURATIONS[2]: "student_plus_teachers"}[row["configuration"]]
            out[f"gflops_{short}{label}"] = row["gflops"]
            out[f"params_{short}{label}"] = round(row["params_m"] * 1e6)
            out[f"latency_ms_{short}{label}"] = row["latency_ms"]
        ratios = cost.ratios()
        out[f"cost_fusion_over_student{label}"] = ratios["cost_fusion_over_student"]
        out[f"cost_teachers_over_fusion{label}"] = ratios["cost_teachers_over_fusion"]
        config[f"pipeline{label or '_real'}"] = cost.spec.describe()
    if colorization is not None:
        put("colorization_system_per_frame", colorization,
            {"per": "frame", "size": colorization.spec["size"], "flow_in_flops": False})
    out["flops_config"] = config
    return out
