"""Pipeline configurations, components (converters, heads, TSM/FFN, colorization), storage, the
metrics of notebook 06 and `polyspace flops`."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from polyspace_core.backbones.catalog import resolve_backbone
from polyspace_core.efficiency.components import (
    colorization_cost,
    converter_cost,
    fusion_head_config,
    fusion_head_cost,
    tsm_cost,
)
from polyspace_core.efficiency.pipeline import (
    CONFIGURATIONS,
    FUSION,
    STUDENT_ONLY,
    TEACHERS,
    accuracy_from_eval,
    pipeline_cost,
    pipeline_spec,
    spec_from_fusion_checkpoint,
)
from polyspace_core.efficiency.storage import (
    feature_bytes,
    fusion_mode_throughput,
    storage_table,
    store_sizes,
    written_store_bytes,
)
from polyspace_core.errors import PolySpaceError
from polyspace_core.measure import count_flops

TEACHERS_TINY = ["videomae-tiny", "timesformer-tiny", "vivit-tiny"]


@pytest.fixture(scope="module")
def tiny_cost():
    spec = pipeline_spec("vjepa2-tiny", TEACHERS_TINY, converter={"kind": "mlp", "hidden": 32}, num_classes=5)
    return pipeline_cost(spec, "cpu", latency_max_gflops=0.0, progress=False)  # FLOPs and params only


def test_configurations_sum_their_components(tiny_cost):
    c = tiny_cost.components
    teachers = [t.name for t in tiny_cost.spec.teachers]
    totals = {row["configuration"]: row for row in tiny_cost.configurations()}
    assert list(totals) == list(CONFIGURATIONS)
    assert totals[STUDENT_ONLY]["gflops"] * 1e9 == pytest.approx(c["student"].flops + c["student_head"].flops)
    assert totals[FUSION]["gflops"] * 1e9 == pytest.approx(
        c["student"].flops + sum(c[f"converter:{t}"].flops for t in teachers) + c["fusion_head"].flops)
    assert totals[TEACHERS]["gflops"] * 1e9 == pytest.approx(
        c["student"].flops + sum(c[f"teacher:{t}"].flops for t in teachers) + c["fusion_head"].flops)
    assert totals[TEACHERS]["params_m"] * 1e6 == pytest.approx(
        c["student"].params + sum(c[f"teacher:{t}"].params for t in teachers) + c["fusion_head"].params)
    assert all(row["latency_ms"] is None for row in totals.values())  # nothing was timed
    ratios = tiny_cost.ratios()
    assert ratios["cost_fusion_over_student"] == pytest.approx(totals[FUSION]["gflops"]
                                                               / totals[STUDENT_ONLY]["gflops"])
    assert ratios["cost_fusion_over_student"] > 1 and ratios["cost_teachers_over_fusion"] > 1
    # the student-only head is matched in parameters to the fusion head, as 05 trains it
    assert abs(c["student_head"].params - c["fusion_head"].params) < 0.01 * c["fusion_head"].params


def test_real_size_pipeline_keeps_the_settings():
    as_run = pipeline_spec("vjepa2-tiny", TEACHERS_TINY, converter={"kind": "linear"}, num_classes=5)
    real = as_run.with_backbones(resolve_backbone("vjepa2_vitl"),
                                 [resolve_backbone(n) for n in ("videomae_base", "timesformer_base", "vivit_base")])
    assert real.converter == {"kind": "linear"} and real.num_classes == 5
    assert real.shape(real.student) == (8, 1024)
    assert [real.shape(t) for t in real.teachers] == [(8, 768)] * 2 + [(16, 768)]
    with pytest.raises(PolySpaceError, match="one per teacher"):
        as_run.with_backbones(real.student, real.teachers[:2])


def test_converter_flops_against_the_formula():
    """A linear converter is one (T_t, D_s) @ (D_s, D_t) matmul after interpolation; Procrustes the
    same with centring; params include fitted buffers (Procrustes' map, learned kinds' statistics)."""
    lin = converter_cost("lin", {"kind": "linear"}, (8, 96), (16, 64), latency=False)
    assert lin.flops == 2 * 16 * 96 * 64
    assert lin.params == 96 * 64 + 64 + 2 * 96 + 2 * 64  # weight, bias, the standardisation statistics
    # the settings of an as-run converter (its saved grids) over the real-size shapes: the grids follow the shapes
    as_run = {"kind": "linear", "grid_in": [4, 1, 1], "grid_out": [8, 1, 1]}
    assert converter_cost("lin", as_run, (8, 96), (16, 64), latency=False).flops == lin.flops
    pro = converter_cost("pro", {"kind": "procrustes"}, (8, 96), (16, 64), latency=False)
    assert pro.flops == 2 * 16 * 96 * 64
    assert pro.params == 96 * 64 + 96 + 64 + 1  # rotation, two means, scale
    att = converter_cost("att", {"kind": "attention", "hidden": 32, "heads": 4}, (8, 96), (16, 64), latency=True,
                         repeats=2, warmup=1)
    assert "aten._native_multi_head_attention" in att.flops_by_op  # its attention blocks are counted
    assert att.flops > lin.flops and att.latency_ms > 0 and att.memory.peak_bytes > 0


def test_fusion_head_cost_is_the_head_forward():
    from polyspace_core.fusion.head import FusionHead

    config = fusion_head_config("s", (8, 96), ["a", "b"], [(8, 128), (16, 64)], 7, {"rank": 16})
    m = fusion_head_cost("head", config, latency=False)
    head = FusionHead(config).eval()
    direct = count_flops(head, torch.randn(1, 8, 96), [torch.randn(1, 8, 128), torch.randn(1, 16, 64)])
    assert m.flops == direct.total > 0
    assert m.params == sum(p.numel() for p in head.parameters())


def test_tsm_flops_are_linear_in_frames_and_ffn_adds_adaconvs():
    t4, t8 = tsm_cost("small", 4, 64), tsm_cost("small", 8, 64)
    assert t8.flops == 2 * t4.flops
    assert t4.params == t8.params
    f8 = tsm_cost("small", 8, 64, ffn=True)
    assert f8.flops > t8.flops and f8.params > t8.params
    assert (t8.name, f8.name) == ("tsm_small_8f", "ffn_small_8f")
    r50 = tsm_cost("resnet50", 8, 224)
    assert r50.gflops / 2 == pytest.approx(33.0, rel=0.02)  # TSM ResNet-50 8F: 33 GMACs (TSM paper)


def test_colorization_cost_per_frame():
    two = colorization_cost(32, chunk=2, latency=False)
    four = colorization_cost(32, chunk=4, latency=False)
    assert two.flops > 0 and two.spec["per"] == "frame" and not two.spec["flow_in_flops"]
    # per-frame cost is the same whatever the chunk, up to the amortised reference encoding
    assert four.flops == pytest.approx(two.flops, rel=0.1) and four.flops <= two.flops
    timed = colorization_cost(32, chunk=2, latency=True, repeats=1)
    assert timed.latency_ms > 0


def _tiny_store_and_checkpoint(root, teacher_t=None, video_mode=False):
    """A cached-mode fusion checkpoint over a real (tiny) feature store."""
    from polyspace_core.align.converters import ConverterConfig, build_converter
    from polyspace_core.features.store import FeatureStoreWriter
    from polyspace_core.fusion.pipeline import build_pipeline, save_fusion

    names = {"student": "vjepa2-tiny", "mae": "videomae-tiny", "tsf": "timesformer-tiny"}
    models = []
    for name, source in names.items():
        spec = resolve_backbone(source)
        t = spec.tokens("temporal") if teacher_t is None or name == "student" else teacher_t
        models.append({"name": name, "role": "student" if name == "student" else "teacher", "source": source,
                       "clip": {"frames": spec.frames}, "T": t, "dim": spec.width})
    n = 4
    writer = FeatureStoreWriter(root / "features" / "train", models=models, dtype="float16", tokens="temporal",
                                shard_size=n, paths=[f"v{i}.mp4" for i in range(n)], labels=[0, 1, 0, 1],
                                class_names=["a", "b"])
    writer.write_shard(0, {m["name"]: torch.randn(n, m["T"], m["dim"]) for m in models}, ["ok"] * n, n, n * 16)
    writer.finalize()
    student = models[0]
    converters = {m["name"]: build_converter(ConverterConfig("resampler", student["dim"], m["dim"], student["T"],
                                                             m["T"], hidden=24)) for m in models[1:]}
    pipeline = build_pipeline("student", (student["T"], student["dim"]), converters, 2, rank=8, gate_hidden=16)
    data = {"student_source": "vjepa2-tiny", "frames": 16} if video_mode else {"features": str(root / "features")}
    save_fusion(root / "fusion" / "best", pipeline, {"data": data})
    return root / "fusion" / "best"


def test_spec_from_fusion_checkpoint(tmp_path):
    spec = spec_from_fusion_checkpoint(_tiny_store_and_checkpoint(tmp_path))
    assert spec.student.name == "student" and spec.student.arch == "vjepa2"
    assert [t.name for t in spec.teachers] == ["mae", "tsf"]
    assert spec.converter["kind"] == "resampler" and spec.converter["hidden"] == 24
    assert spec.head["rank"] == 8 and spec.num_classes == 2
    assert spec.settings_from.endswith("best")
    cost = pipeline_cost(spec, latency_max_gflops=0.0, progress=False)
    assert cost.components["converter:mae"].spec["converter"] == "resampler"


def test_spec_from_a_video_mode_checkpoint_needs_a_store(tmp_path):
    checkpoint = _tiny_store_and_checkpoint(tmp_path, video_mode=True)
    with pytest.raises(PolySpaceError, match="trained in video mode"):
        spec_from_fusion_checkpoint(checkpoint)
    spec = spec_from_fusion_checkpoint(checkpoint, stores_root=tmp_path / "features")
    assert [t.name for t in spec.teachers] == ["mae", "tsf"] and spec.student.arch == "vjepa2"
    with pytest.raises(PolySpaceError, match="no feature store with the models"):
        spec_from_fusion_checkpoint(checkpoint, stores_root=tmp_path / "fusion")


def test_spec_from_fusion_checkpoint_rejects_a_mismatched_store(tmp_path):
    with pytest.raises(PolySpaceError, match="the store has features"):
        spec_from_fusion_checkpoint(_tiny_store_and_checkpoint(tmp_path, teacher_t=3))


def test_storage_formula_matches_a_written_store(tmp_path):
    spec = resolve_backbone("vivit_base")  # T=16 temporal tokens of width 768
    for dtype, size in (("float32", 4), ("float16", 2), ("bfloat16", 2)):
        w = written_store_bytes(spec, "temporal", dtype, clips=4)
        assert w["feature_bytes_per_clip"] == feature_bytes(spec, "temporal", dtype) == 16 * 768 * size
        assert w["shard_bytes"] == 4 * (feature_bytes(spec, "temporal", dtype) + 8) + w["header_bytes"]
    rows = storage_table([spec], clips=1000)
    full = next(r for r in rows if r["tokens"] == "full")
    assert full["mb_per_1000_float16"] == pytest.approx(1000 * 16 * 196 * 768 * 2 / 2**20)
    assert full["mb_per_1000_float32"] == 2 * full["mb_per_1000_bfloat16"]


def test_store_sizes_of_a_run(tmp_path):
    _tiny_store_and_checkpoint(tmp_path)
    rows = store_sizes(tmp_path, clips=1000)
    by_model = {r["model"]: r for r in rows}
    assert set(by_model) == {"student", "mae", "tsf"}
    student = by_model["student"]
    assert student["dtype"] == "float16" and student["samples"] == 4
    assert student["mb_per_1000"] == pytest.approx(1000 * 8 * 96 * 2 / 2**20)
    assert student["store_mb_per_1000"] > sum(r["mb_per_1000"] for r in rows)  # + index and header


def test_fusion_mode_throughput(tmp_path):
    missing = fusion_mode_throughput(tmp_path / "fusion_modes.json")
    assert missing == {"measured": False, "note": "not measured — run make bench",
                       "source": str(tmp_path / "fusion_modes.json")}
    path = tmp_path / "fusion_modes.json"
    path.write_text(json.dumps({"cached": {"train_samples_per_s": 900.0, "epochs": 6},
                                "video": {"train_samples_per_s": 30.0, "epochs": 1}, "setup": {"student": "s"}}))
    found = fusion_mode_throughput(path)
    assert found["measured"] and [r["mode"] for r in found["rows"]] == ["cached", "video"]
    assert found["speedup"] == pytest.approx(30.0) and found["setup"] == {"student": "s"}
    path.write_text("[1, 2]")
    with pytest.raises(PolySpaceError, match="train_samples_per_s"):
        fusion_mode_throughput(path)


def test_accuracy_from_eval_rows():
    acc = accuracy_from_eval({"top1_student_matched": 0.5, "top1_fusion": 0.6})
    assert acc == {STUDENT_ONLY: 0.5, FUSION: 0.6, TEACHERS: None}
    assert accuracy_from_eval(None) == dict.fromkeys(CONFIGURATIONS)


def test_stage_metrics_keys(tiny_cost):
    from polyspace_core.efficiency.study import Costs, stage_metrics

    ws = SimpleNamespace(stage="06_efficiency")
    tsm = Costs.of({m.name: m for m in (tsm_cost("small", 4, 64), tsm_cost("small", 4, 64, ffn=True))})
    backbones = Costs.of({"vivit_tiny": tiny_cost.components["teacher:vivit_tiny"]})
    metrics = stage_metrics(ws, backbones, tiny_cost, tiny_cost, tsm)
    for key in ("gflops_vivit_tiny", "params_vivit_tiny", "latency_ms_vivit_tiny", "gflops_vjepa2_tiny",
                "gflops_tsm_small_4f", "gflops_ffn_small_4f", "gflops_fusion_head", "gflops_converter_videomae_tiny",
                "cost_fusion_over_student", "cost_teachers_over_fusion", "cost_fusion_over_student_as_run",
                "gflops_student_only", "gflops_fusion_pipeline", "gflops_student_plus_teachers"):
        assert key in metrics, key
    assert metrics["flops_config"]["models"]["vivit_tiny"]["frames"] == 16
    assert "2 per multiply-add" in metrics["flops_config"]["flop_convention"]
    json.dumps(metrics)  # plain JSON


def test_cli_flops(capsys):
    from polyspace_core.backbones.catalog import backbone_cost
    from polyspace_core.cli import main

    assert main(["flops", "--model", "vivit-tiny", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["gflops"] * 1e9 == pytest.approx(backbone_cost(resolve_backbone("vivit-tiny")).flops)
    assert record["attention_gflops"] > 0 and record["latency_ms"] is None
    assert main(["flops", "--model", "tsm_small", "--frames", "4", "--size", "64"]) == 0
    assert "tsm_small_4f" in capsys.readouterr().out
    assert main(["flops", "--model", "resnet9000"]) == 2
    assert "not a known backbone" in capsys.readouterr().err
    assert main(["flops", "--model", "videomae_base", "--frames", "0"]) == 2


def test_bench_latency_fills_only_matching_backbones(tiny_cost):
    from polyspace_core.efficiency.study import attach_bench_latency, full_cost_table

    student = tiny_cost.components["student"]
    vivit = tiny_cost.components["teacher:vivit_tiny"]
    bench = {"device": "cuda (test gpu)", "models": {
        student.name: {"gflops": student.gflops, "latency_ms": 7.0, "frames": student.spec["frames"],
                       "size": student.spec["size"], "repeats": 3},
        vivit.name: {"gflops": vivit.gflops, "latency_ms": 9.0, "frames": 99, "size": vivit.spec["size"]},  # other clip
    }}
    with_bench = attach_bench_latency(tiny_cost, bench)
    assert with_bench.components["student"].latency_ms == 7.0
    assert with_bench.components["student"].latency.device == "bench: cuda (test gpu)"
    assert with_bench.components["teacher:vivit_tiny"].latency is None
    assert tiny_cost.components["student"].latency is None  # the original is untouched
    table = full_cost_table(tiny_cost, with_bench, {"top1_fusion": 0.75})
    assert table.loc[FUSION, "top1 (05)"] == 0.75
    assert table.loc[STUDENT_ONLY, "latency ms real size"] is None  # the head was not timed
    assert table.loc[TEACHERS, "real-size latency from"] == "not measured — run make bench"


def test_figures_static_and_interactive(tiny_cost):
    import ipywidgets
    from matplotlib.figure import Figure

    from polyspace_core.efficiency import plots

    static = plots.cost_explorer([tiny_cost, tiny_cost], None, interactive=False)
    assert len(static) == 2 and all(isinstance(f, Figure) for f in static)
    assert "run notebook 05" in static[1].axes[0].texts[0].get_text()
    widget = plots.cost_explorer([tiny_cost, tiny_cost], {"top1_fusion": 0.6}, interactive=True)
    assert isinstance(widget, ipywidgets.VBox)
    tsm = {m.name: m for m in (tsm_cost("small", 4, 64), tsm_cost("small", 8, 64))}
    assert len(plots.plot_frames_scaling(tsm).axes[0].lines) == 1


def test_relative_checkpoint_folders_resolve_against_the_project_root(tmp_path, monkeypatch):
    from polyspace_core.backbones import load_backbone
    from polyspace_core.paths import project_root

    root = project_root()
    folder = root / "runs" / "test_efficiency_tmp" / "vivit-zoo"
    try:
        load_backbone("vivit-tiny").save_pretrained(folder)
        monkeypatch.chdir(tmp_path)
        spec = resolve_backbone(str(folder.relative_to(root)))
        assert spec.name == "vivit_zoo" and spec.arch == "vivit" and spec.width == 64
    finally:
        import shutil

        shutil.rmtree(root / "runs" / "test_efficiency_tmp", ignore_errors=True)


def test_as_run_pipeline_prefers_the_fusion_checkpoint(tmp_path):
    from polyspace_core.efficiency.study import as_run_pipeline, find_fusion_checkpoint

    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_fusion_checkpoint(empty) is None
    spec = as_run_pipeline(empty, "vjepa2-tiny", TEACHERS_TINY, converter_kind="ridge", num_classes=7)
    assert spec.settings_from.startswith("defaults (no fusion checkpoint under")
    assert spec.converter == {"kind": "ridge"} and spec.num_classes == 7 and len(spec.teachers) == 3
    checkpoint = _tiny_store_and_checkpoint(tmp_path / "run")
    assert find_fusion_checkpoint(tmp_path / "run") == checkpoint
    spec = as_run_pipeline(tmp_path / "run", "vjepa2-tiny", TEACHERS_TINY, converter_kind="ridge", num_classes=7)
    assert spec.settings_from == str(checkpoint) and spec.converter["kind"] == "resampler" and spec.num_classes == 2
