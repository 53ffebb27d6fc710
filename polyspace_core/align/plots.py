"""Figures for notebooks 02 and 03. Each function returns a matplotlib Figure that pyplot has
already let go of, so a notebook shows it exactly once (as the cell's result) and a headless run
embeds it in the HTML report. `alignment_explorer` adds ipywidgets dropdowns when the notebook
is interactive and renders the same figures statically otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..viz import FigureList, new_figure
from .layerwise import layerwise_similarity
from .study import CLOSED_FORM_LOSS, FIDELITY_METRICS, AlignmentSpaces, ConverterGrid, alignment_table, load_spaces

ARROW = "\u2192"


def plot_learning_curves(grid: ConverterGrid) -> Figure:
    """Per teacher: validation R² per epoch (top) and validation loss relative to the untrained
    converter (bottom, log scale; losses of different weightings share one axis this way). The
    selected (best validation) epoch of each run is marked; closed-form fits are dashed lines."""
    n = len(grid.teachers)
    fig = new_figure((4.6 * n, 6.4))
    axes = fig.subplots(2, n, squeeze=False, sharex="col")
    for j, teacher in enumerate(grid.teachers):
        top, bottom = axes[0, j], axes[1, j]
        for i, run in enumerate(r for r in grid.runs if r.teacher == teacher):
            color = f"C{i % 10}"
            val_r2 = [row["val_r2"] for row in run.history]
            if run.loss == CLOSED_FORM_LOSS:
                top.axhline(val_r2[0], color=color, ls="--", lw=1.2, label=run.label)
                continue
            epochs = [row["epoch"] for row in run.history]
            val_loss = [row["val_loss"] for row in run.history]
            best, initial = run.fit.best_epoch, run.fit.initial_val["loss"]
            top.plot(epochs, val_r2, color=color, lw=1.5, label=run.label)
            top.plot(best, val_r2[best - 1], "o", color=color, ms=5)
            rel = [v / initial for v in val_loss] if initial > 0 else val_loss
            bottom.plot(epochs, rel, color=color, lw=1.5)
            bottom.plot(best, rel[best - 1], "o", color=color, ms=5)
        top.set_title(f"{grid.student} {ARROW} {teacher}")
        top.set_ylabel("validation R\u00b2")
        top.grid(alpha=0.3)
        bottom.set_yscale("log")
        bottom.set_ylabel("val loss / untrained")
        bottom.set_xlabel("epoch")
        bottom.grid(alpha=0.3, which="both")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    return fig


def plot_fidelity(table, metrics: Sequence[str] = FIDELITY_METRICS, title: str = "held-out fidelity") -> Figure:
    """Grouped bars: one panel per metric, teachers on x, one bar per (kind · loss)."""
    import seaborn as sns

    data = table.assign(converter=table["kind"] + " \u00b7 " + table["loss"])
    fig = new_figure((3.3 * len(metrics), 3.8))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        sns.barplot(data=data, x="teacher", y=metric, hue="converter", ax=ax, legend=ax is axes[-1])
        ax.set_title(metric)
        ax.set_ylabel("")
        ax.set_ylim(min(0.0, float(data[metric].min()) - 0.05), 1.0)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    return fig


def plot_similarity_heatmap(matrix, title: str = "linear CKA") -> Figure:
    """Annotated heatmap of a square similarity DataFrame (e.g. from `similarity_matrix`)."""
    import seaborn as sns

    size = 1.0 + 0.75 * len(matrix)
    fig = new_figure((size + 1.5, size))
    ax = fig.subplots()
    sns.heatmap(matrix, annot=True, fmt=".2f", vmin=0.0, vmax=1.0, cmap="viridis", square=True, ax=ax,
                cbar_kws={"shrink": 0.8}, annot_kws={"fontsize": 8})
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    return fig


def plot_similarity_heatmaps(spaces: AlignmentSpaces, metrics: Sequence[str]) -> Figure:
    """One annotated heatmap per similarity metric over all spaces of one split."""
    import seaborn as sns

    from .metrics import similarity_matrix

    n = len(spaces.clip)
    size = 1.0 + 0.75 * n
    fig = new_figure(((size + 0.6) * len(metrics), size + 0.4))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        matrix = similarity_matrix(spaces.clip, metric)
        sns.heatmap(matrix, annot=True, fmt=".2f", vmin=0.0, vmax=1.0, cmap="viridis", square=True, ax=ax,
                    cbar=ax is axes[-1], annot_kws={"fontsize": 7}, yticklabels=ax is axes[0])
        ax.set_title(f"{metric} · {spaces.split} split")
        ax.tick_params(axis="x", rotation=45)
    return fig


def plot_alignment_bars(table, metric: str = "linear_cka", teachers: Sequence[str] | None = None,
                        split_note: str = "") -> Figure:
    """Per teacher, `metric` of student->teacher next to converted->teacher."""
    import pandas as pd
    import seaborn as sns

    rows = table if teachers is None else table[table["teacher"].isin(teachers)]
    long = pd.concat([
        pd.DataFrame({"teacher": rows["teacher"], "comparison": f"student{ARROW}teacher",
                      "value": rows[f"{metric}_student_teacher"]}),
        pd.DataFrame({"teacher": rows["teacher"], "comparison": f"converted{ARROW}teacher",
                      "value": rows[f"{metric}_converted_teacher"]}),
    ])
    fig = new_figure((1.6 + 1.5 * len(rows), 3.6))
    ax = fig.subplots()
    sns.barplot(data=long, x="teacher", y="value", hue="comparison", ax=ax, palette=["#9e9e9e", "#1f77b4"])
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=8)
    ax.set_ylim(min(0.0, float(long["value"].min()) - 0.05), 1.08)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}, {split_note}" if split_note else metric)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def alignment_explorer(features: str | Path, converters: str | Path, splits: Sequence[str], metrics: Sequence[str],
                       interactive: bool):
    """Similarity heatmap for a (metric, split) and the student-vs-converted bars for a teacher.

    Spaces of a split are read (`load_spaces`) once and cached. Interactive: a widget with
    Dropdowns for metric, split and teacher. Otherwise: the figures for the first metric and
    split, all teachers, as a FigureList (shown statically in reports)."""
    from .metrics import similarity_matrix

    cache: dict = {}

    def spaces_for(split: str) -> AlignmentSpaces:
        if split not in cache:
            cache[split] = load_spaces(features, converters, split)
        return cache[split]

    def figures(metric: str, split: str, teacher: str | None) -> FigureList:
        spaces = spaces_for(split)
        key = (split, metric)
        if key not in cache:
            cache[key] = (similarity_matrix(spaces.clip, metric), alignment_table(spaces, [metric]))
        matrix, table = cache[key]
        heat = plot_similarity_heatmap(matrix, f"{metric} · {split} split")
        bars = plot_alignment_bars(table, metric, None if teacher in (None, "all") else [teacher], f"{split} split")
        return FigureList([heat, bars])

    if not interactive:
        return figures(metrics[0], splits[0], None)

    import ipywidgets as widgets
    from IPython.display import display

    teachers = spaces_for(splits[0]).teachers
    metric_w = widgets.Dropdown(options=list(metrics), value=metrics[0], description="metric")
    split_w = widgets.Dropdown(options=list(splits), value=splits[0], description="split")
    teacher_w = widgets.Dropdown(options=["all", *teachers], value="all", description="teacher")
    out = widgets.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            for fig in figures(metric_w.value, split_w.value, teacher_w.value):
                display(fig)

    for w in (metric_w, split_w, teacher_w):
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([metric_w, split_w, teacher_w]), out])


def plot_layerwise(features: dict[str, list[np.ndarray]], student: str, others: Sequence[str],
                   metric: str = "debiased_cka") -> Figure:
    """One heatmap per other model: student layers (rows) x that model's layers (columns).

    Debiased CKA by default: with a few dozen clips and hundreds of feature dims, biased (plain
    linear) CKA is inflated towards 1 for any pair of layers and hides the structure."""
    import seaborn as sns

    fig = new_figure((3.6 * len(others) + 0.8, 3.4))
    axes = fig.subplots(1, len(others), squeeze=False)[0]
    for ax, other in zip(axes, others):
        matrix = layerwise_similarity(features[student], features[other], metric)
        labels_r = [str(i + 1) for i in range(matrix.shape[0])]
        labels_c = [str(j + 1) for j in range(matrix.shape[1])]
        sns.heatmap(matrix, vmin=min(0.0, float(matrix.min())), vmax=1, cmap="viridis", annot=True, fmt=".2f", ax=ax,
                    square=True, xticklabels=labels_c, yticklabels=labels_r, cbar=ax is axes[-1],
                    annot_kws={"fontsize": 7})
        ax.invert_yaxis()
        ax.set_xlabel(f"{other} layer")
        ax.set_ylabel(f"{student} layer")
        ax.set_title(f"{metric}: {student} vs {other}")
    return fig
