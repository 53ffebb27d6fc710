"""Figures for notebooks 04 and 05. Each function returns a matplotlib Figure that pyplot has
already let go of (shown once, as the cell's result, and embedded in headless HTML reports).
`confusion_explorer` adds an ipywidgets Dropdown when the notebook is interactive and renders the
same figures statically otherwise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..viz import FigureList, new_figure  # noqa: F401  (FigureList re-exported: notebooks and tests import it from here)

KIND_COLORS = {"baseline": "#8c8c8c", "fusion": "#d62728", "upper bound": "#1f77b4"}


def plot_learning_curves(history: Sequence[Mapping[str, Any]], best_epoch: int | None = None,
                         title: str = "fusion head") -> Figure:
    """Training and validation loss (left) and accuracy (right) per epoch, from a history (one dict
    per epoch: epoch, train_loss, val_loss, train_top1, val_top1, val_mean_class_acc); the selected
    (best validation) epoch `best_epoch` is marked when given."""
    fig = new_figure((10, 3.6))
    left, right = fig.subplots(1, 2)

    def column(key: str) -> list[Any]:
        return [row[key] for row in history]

    epochs = column("epoch")
    left.plot(epochs, column("train_loss"), "o-", label="train")
    left.plot(epochs, column("val_loss"), "o-", label="validation")
    left.set_xlabel("epoch")
    left.set_ylabel("cross-entropy")
    right.plot(epochs, column("train_top1"), "o-", label="train top-1")
    right.plot(epochs, column("val_top1"), "o-", label="validation top-1")
    right.plot(epochs, column("val_mean_class_acc"), "s--", ms=4, label="validation mean per-class")
    if best_epoch:
        for ax in (left, right):
            ax.axvline(best_epoch, color="k", ls=":", lw=1)
        right.annotate(f"selected: epoch {best_epoch}", (best_epoch, column("val_top1")[epochs.index(best_epoch)]),
                       textcoords="offset points", xytext=(6, -14), fontsize=8)
    right.set_ylim(0, 1.02)
    right.set_xlabel("epoch")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def plot_gates(gates: Mapping[str, Any], class_names: Sequence[str], title: str = "fusion gates") -> Figure:
    """Per-teacher gate statistics: mean gate with its spread per teacher (left), mean gate per
    class and teacher (middle), and mean gate per student token position (right)."""
    import seaborn as sns

    teachers = gates["teachers"]
    stats = gates["per_teacher"]
    fig = new_figure((13, max(3.2, 0.28 * len(class_names) + 1.2)))
    a, b, c = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.3, 1.2]})
    means = [stats[t]["mean"] for t in teachers]
    stds = [stats[t]["std"] for t in teachers]
    # the spread, clipped to the [0, 1] a gate lives in
    spread = [[m - max(0.0, m - s) for m, s in zip(means, stds)], [min(1.0, m + s) - m for m, s in zip(means, stds)]]
    a.bar(range(len(teachers)), means, yerr=spread, color=[f"C{i}" for i in range(len(teachers))], capsize=4)
    for i, t in enumerate(teachers):
        a.text(i, 0.02, f"{100 * stats[t]['open_share']:.0f}% open", ha="center", fontsize=8, color="white")
    a.set_xticks(range(len(teachers)), teachers, rotation=20, ha="right")
    a.set_ylim(0, 1)
    a.set_ylabel("gate (mean ± std over tokens and clips)")
    a.set_title("per teacher")
    per_class = np.asarray(gates["per_class"], dtype=float)
    sns.heatmap(per_class, ax=b, vmin=0, vmax=1, cmap="viridis", annot=len(class_names) * len(teachers) <= 80,
                fmt=".2f", xticklabels=teachers, yticklabels=class_names, cbar_kws={"label": "mean gate"})
    b.set_title("per class")
    for t in teachers:
        c.plot(range(len(stats[t]["per_token"])), stats[t]["per_token"], "o-", label=t)
    c.set_xlabel("student token (time)")
    c.set_ylim(0, 1)
    c.set_title("per token position")
    c.grid(alpha=0.3)
    c.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def plot_method_accuracy(rows: Sequence[Mapping[str, Any]], title: str = "test split") -> Figure:
    """Top-1 and mean per-class accuracy per method, coloured by kind (baseline / fusion / upper bound)."""
    fig = new_figure((10, 0.45 * len(rows) + 1.4))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    top1 = [r["top1"] for r in rows]
    mca = [r["mean_class_acc"] for r in rows]
    ax.barh(y + 0.2, top1, height=0.4, color=[KIND_COLORS.get(r["kind"], "C0") for r in rows], label="top-1")
    ax.barh(y - 0.2, mca, height=0.4, color=[KIND_COLORS.get(r["kind"], "C0") for r in rows], alpha=0.45,
            label="mean per-class")
    for yi, v in zip(y, top1):
        ax.text(v + 0.01, yi + 0.2, f"{v:.3f}", va="center", fontsize=8)
    ax.set_yticks(y, [r["method"] for r in rows])
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("accuracy")
    ax.grid(axis="x", alpha=0.3)
    handles = [ax.bar(0, 0, color=c, label=k) for k, c in KIND_COLORS.items()]
    ax.legend(handles=handles, fontsize=8, loc="lower right", title="solid: top-1, light: mean per-class",
              title_fontsize=7)
    ax.set_title(title)
    return fig


def plot_accuracy_vs_cost(rows: Sequence[Mapping[str, Any]], title: str = "accuracy vs cost per clip") -> Figure:
    """Top-1 against GFLOPs per clip (backbones included), one point per method, log-scaled x."""
    fig = new_figure((7.5, 4.6))
    ax = fig.subplots()
    placed: list[tuple[float, float]] = []
    span = max(1e-9, max(r["top1"] for r in rows) - min(r["top1"] for r in rows))
    for r in rows:
        if r.get("gflops") is None:
            continue
        x, y = float(np.log10(r["gflops"])), r["top1"]
        # methods at (almost) the same point get their labels stacked instead of printed over each other
        near = sum(abs(x - px) < 0.04 and abs(y - py) < 0.03 * span for px, py in placed)
        placed.append((x, y))
        ax.scatter(r["gflops"], r["top1"], s=60, color=KIND_COLORS.get(r["kind"], "C0"), zorder=3)
        ax.annotate(r["method"], (r["gflops"], r["top1"]), textcoords="offset points", xytext=(6, 4 - 11 * near),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per clip (true FLOPs, backbones included)")
    ax.set_ylabel("top-1")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title)
    return fig


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """Row-normalised confusion matrix (rows: true class), counts annotated where it stays legible."""
    import seaborn as sns

    matrix = np.asarray(matrix, dtype=float)
    support = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, support, out=np.zeros_like(matrix), where=support > 0)
    n = len(class_names)
    fig = new_figure((0.45 * n + 3, 0.4 * n + 2))
    ax = fig.subplots()
    sns.heatmap(norm, ax=ax, vmin=0, vmax=1, cmap="Blues", annot=matrix.astype(int) if n <= 16 else False, fmt="d",
                xticklabels=class_names, yticklabels=class_names, cbar_kws={"label": "share of the true class"})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig



def confusion_explorer(report, interactive: bool, default: Sequence[str] = ("student", "fusion")):
    """Confusion matrices of the evaluation split. Interactive: a Dropdown over every method.
    Otherwise: the figures of `default` (student probe and fusion) as a FigureList."""
    names = {r["key"]: r["method"] for r in report.rows}

    def figure(key: str) -> Figure:
        return plot_confusion(report.confusion[key], report.class_names, f"{names[key]} · {report.split} split")

    if not interactive:
        return FigureList(figure(k) for k in default)

    import ipywidgets as widgets
    from IPython.display import display

    choice = widgets.Dropdown(options=[(v, k) for k, v in names.items()], value="fusion", description="method")
    out = widgets.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            display(figure(choice.value))

    choice.observe(redraw, names="value")
    redraw()
    return widgets.VBox([choice, out])
