"""The notebook 02/03 experiment functions and figures on a small real feature store."""

import json
from types import SimpleNamespace

import pytest
from matplotlib.figure import Figure
from test_align_cli import write_split  # the same store writer as the CLI test

from polyspace_core.align.metrics import similarity_matrix
from polyspace_core.align.plots import (
    FigureList,
    alignment_explorer,
    plot_alignment_bars,
    plot_fidelity,
    plot_learning_curves,
    plot_similarity_heatmap,
    plot_similarity_heatmaps,
)
from polyspace_core.align.study import (
    alignment_table,
    feature_store_summary,
    fidelity_table,
    find_converter_set,
    find_feature_store,
    load_spaces,
    save_selected,
    select_converters,
    stage_metrics,
    train_converter_grid,
)
from polyspace_core.errors import PolySpaceError


def stage_ws(stage, **params):
    """A stand-in workspace for stage_metrics: the stage and its parameters."""
    return SimpleNamespace(stage=stage, p=SimpleNamespace(**params))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("run01") / "features"
    write_split(root, "train", 96, 0, failed=(7,))
    write_split(root, "validation", 40, 1)
    write_split(root, "test", 40, 2)
    return root


@pytest.fixture(scope="module")
def grid(store):
    return train_converter_grid(store, kinds=["ridge", "C", "mlp"], losses=["l2", "l2+cos"], epochs=8, batch=16,
                                lr=1e-2, hidden=16, depth=1, device="cpu")


def test_grid_trains_every_teacher_kind_and_loss(grid):
    table = grid.table()
    # ridge once per teacher (closed form), linear and mlp once per loss
    assert len(table) == 2 * (1 + 2 + 2)
    assert set(table["loss"]) == {"closed form", "l2", "l2+cos"}
    assert set(table["kind"]) == {"ridge", "linear", "mlp"}
    ridge = table[table["kind"] == "ridge"]
    assert (ridge["val_r2"] > 0.95).all()  # the teachers are linear maps of the student
    assert {"val_cosine", "val_cka", "val_mutual_knn", "val_retrieval_top1", "params"} <= set(table.columns)


def test_selection_uses_validation_and_the_table_reports_test(grid, store):
    selected = select_converters(grid, "r2")
    for teacher, run in selected.items():
        assert run.validation["r2"] == max(r.validation["r2"] for r in grid.runs if r.teacher == teacher)
    table = fidelity_table(grid, "test", selected)
    assert len(table) == len(grid.runs)
    assert table.groupby("teacher")["selected"].sum().to_dict() == {"videomae": 1, "timesformer": 1}
    assert (table[table["kind"] == "ridge"]["r2"] > 0.95).all()
    metrics = stage_metrics(stage_ws("02_train_converters", converter_eval_split="test"), table, selected)
    assert metrics["converters_trained"] == len(grid.runs)
    for teacher, run in selected.items():
        assert metrics[f"selected_{teacher}"] == run.label
        row = table[table["selected"] & (table["teacher"] == teacher)]
        assert metrics[f"test_r2_{teacher}"] == pytest.approx(row["r2"].item())
    with pytest.raises(PolySpaceError, match="selection metric"):
        select_converters(grid, "accuracy")
    with pytest.raises(PolySpaceError, match="no feature store here"):
        fidelity_table(grid, "holdout")


def test_alignment_spaces_table_and_metrics(grid, store, tmp_path):
    selected = select_converters(grid, "r2")
    save_selected(tmp_path / "run02" / "converters", grid, selected)
    assert find_converter_set(None, tmp_path / "run02") == tmp_path / "run02" / "converters"
    with pytest.raises(PolySpaceError, match="no converters.json"):
        find_converter_set(tmp_path, tmp_path / "run02")
    converters = tmp_path / "run02" / "converters"
    spaces = load_spaces(store, converters, "test")
    assert list(spaces.clip) == ["student:vjepa2", "teacher:videomae", "teacher:timesformer",
                                 "converted:videomae", "converted:timesformer"]
    assert spaces.clip["teacher:videomae"].shape == (40, 10)
    assert spaces.tokens["converted:videomae"].shape == (40, 2, 10)
    table = alignment_table(spaces, ["mutual_knn"])  # linear CKA is always included
    for _, row in table.iterrows():
        assert row["linear_cka_converted_teacher"] > 0.95
        assert row["linear_cka_converted_teacher"] > row["linear_cka_student_teacher"]
        assert row["retrieval_top1"] > 0.9
    metrics = stage_metrics(stage_ws("03_alignment"), table)
    assert metrics["cka_converted_teacher_videomae"] == pytest.approx(table.loc[0, "linear_cka_converted_teacher"])
    assert {"cka_student_teacher_timesformer", "cosine_timesformer", "retrieval_top1_timesformer",
            "mutual_knn_converted_teacher_videomae"} <= set(metrics)
    json.dumps(metrics)
    # the figures
    assert isinstance(plot_learning_curves(grid), Figure)
    assert isinstance(plot_fidelity(fidelity_table(grid, "validation", selected)), Figure)
    heat = plot_similarity_heatmap(similarity_matrix(spaces.clip, "linear_cka"))
    assert len(heat.axes[0].texts) == 25  # every cell annotated
    heats = plot_similarity_heatmaps(spaces, ["linear_cka", "mutual_knn"])
    assert len([ax for ax in heats.axes if ax.get_title()]) == 2
    bars = plot_alignment_bars(table, "linear_cka")
    assert len(bars.axes[0].patches) >= 4
    static = alignment_explorer(store, converters, ["test", "validation"], ["linear_cka", "rbf_cka"],
                                interactive=False)
    assert isinstance(static, FigureList) and len(static) == 2
    widget = alignment_explorer(store, converters, ["test", "validation"], ["linear_cka", "rbf_cka"],
                                interactive=True)
    metric_w, split_w, teacher_w = widget.children[0].children
    split_w.value, metric_w.value, teacher_w.value = "validation", "rbf_cka", "videomae"  # redraws without error


def test_find_feature_store(store, tmp_path):
    assert find_feature_store(None, store.parent) == store
    assert find_feature_store(store, tmp_path) == store
    with pytest.raises(PolySpaceError, match="no feature store"):
        find_feature_store(None, tmp_path)
    with pytest.raises(PolySpaceError, match="no feature store split"):
        find_feature_store(tmp_path, tmp_path)
    summary = feature_store_summary(store)
    assert set(summary["split"]) == {"train", "validation", "test"}
    assert summary[(summary["split"] == "train") & (summary["model"] == "vjepa2")]["ok"].item() == 95


def test_converters_from_another_student_are_refused(grid, store, tmp_path):
    selected = select_converters(grid, "r2")
    grid.student, real = "other", grid.student
    try:
        save_selected(tmp_path / "c", grid, selected)
    finally:
        grid.student = real
    with pytest.raises(PolySpaceError, match="trained from student 'other'"):
        load_spaces(store, tmp_path / "c", "test")


def test_selected_converters_over_seeds(grid, store):
    """02 over seeds: the first seed's row is the grid's converter itself; a learned kind retrained
    under another seed differs; a closed-form kind is the same fit under every seed; the metrics
    carry each figure's std over seeds."""
    from polyspace_core.align.study import seed_fidelity, seed_spread_table

    selected = {t: next(r for r in grid.runs if r.teacher == t and r.kind == kind)
                for t, kind in zip(grid.teachers, ("mlp", "ridge"))}
    table = seed_fidelity(grid, selected, [0, 5], "test")
    assert len(table) == 4 and list(table["seed"]) == [0, 5, 0, 5]
    held_out = fidelity_table(grid, "test", selected)
    for teacher, run in selected.items():
        rows = table[table["teacher"] == teacher].set_index("seed")
        grid_row = held_out[held_out["selected"] & (held_out["teacher"] == teacher)]
        assert rows.loc[0, "r2"] == pytest.approx(grid_row["r2"].item())
        if run.kind == "ridge":
            assert rows.loc[5, "r2"] == rows.loc[0, "r2"]
        else:
            assert rows.loc[5, "r2"] != rows.loc[0, "r2"]
    spread = seed_spread_table(table)
    assert spread.loc[(grid.teachers[1], selected[grid.teachers[1]].label), ("r2", "std")] == 0
    metrics = stage_metrics(stage_ws("02_train_converters", converter_eval_split="test"), held_out, selected, table)
    assert metrics["seeds"] == [0, 5]
    assert metrics[f"test_r2_{grid.teachers[0]}_seed_std"] == pytest.approx(
        table[table["teacher"] == grid.teachers[0]]["r2"].std(ddof=1))
