"""Figures for notebook 07. Each returns a matplotlib Figure that pyplot has already let go of
(viz.new_figure: shown once as the cell's result and embedded in the HTML report). `accuracy_explorer` adds
ipywidgets controls when the notebook is interactive and renders the same figure statically otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from ..viz import new_figure
from .study import PAPER_SSV2_TSM_R50, tfd_gap

COLORS = {"TSM": "#d62728", "FFN": "#1f77b4", "TSM per frame count": "#ff9896"}


def _color(name: str) -> str | None:
    """A model's colour: its own entry, else its family's (the first word: TSM, FFN)."""
    return COLORS.get(name, COLORS.get(name.split()[0]))


PAPER_COLORS = {"TSM, trained at 16F": "#d62728", "TSM, trained per frame count": "#ff9896", "FFN": "#1f77b4"}


def _frame_axis(ax, counts: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(counts))
    ax.set_xticklabels([str(t) for t in counts])
    ax.minorticks_off()
    ax.set_xlabel("frames at test time")
    ax.grid(alpha=0.3)


def plot_accuracy_vs_frames(results: dict[str, dict[int, float]], train_frames: Sequence[int],
                            paper: dict[str, dict[int, float]] | None = PAPER_SSV2_TSM_R50,
                            show: Sequence[str] | None = None) -> Figure:
    """Left: our top-1 per frame count for each model (filled markers: frame counts the FFN trained
    on; hollow: never trained). Right: the paper's TSM-R50 numbers on SSv2, for comparison."""
    panels = 2 if paper else 1
    fig = new_figure((5.2 * panels, 3.8))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    for name, accs in results.items():
        if show is not None and name not in show:
            continue
        counts = sorted(accs)
        color = _color(name)
        ax.plot(counts, [accs[t] for t in counts], "-", color=color, label=name)
        for t in counts:
            trained = t in train_frames
            ax.plot([t], [accs[t]], "o", color=color, markerfacecolor=color if trained else "white", markersize=7)
    _frame_axis(ax, sorted({t for accs in results.values() for t in accs}))
    ax.set_ylabel("top-1 (%)")
    ax.set_title("ours: SynthMotion (hollow = frame count never trained)", fontsize=10)
    ax.legend(fontsize=8)
    if paper:
        ax = axes[1]
        for name, accs in paper.items():
            counts = sorted(accs)
            ax.plot(counts, [accs[t] for t in counts], "o-", color=PAPER_COLORS.get(name), label=name)
        _frame_axis(ax, sorted({t for accs in paper.values() for t in accs}))
        ax.set_title("paper: TSM-R50 on Something-Something V2", fontsize=10)
        ax.legend(fontsize=8)
    return fig


def plot_tfd_gaps(ours: dict[str, float], paper: dict[str, dict[int, float]] | None = PAPER_SSV2_TSM_R50) -> Figure:
    """TFD gap (accuracy at the highest minus the lowest frame count) per model: ours and the paper's."""
    fig = new_figure((7.5, 3.4))
    ax = fig.subplots()
    labels, values, colors = [], [], []
    for name, gap in ours.items():
        labels.append("ours\n" + name.replace(" per frame count", " per\nframe count"))
        values.append(gap)
        colors.append(_color(name) or "gray")
    if paper:
        short = {"TSM, trained at 16F": "TSM", "TSM, trained per frame count": "TSM per\nframe count"}
        for name, accs in paper.items():
            labels.append("paper\n" + short.get(name, name))
            values.append(tfd_gap(accs, list(accs)))
            colors.append(PAPER_COLORS[name])
    bars = ax.bar(range(len(values)), values, color=colors, alpha=0.85)
    for i, (bar, v) in enumerate(zip(bars, values)):
        ax.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=9)
        if labels[i].startswith("paper"):
            bar.set_hatch("//")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("TFD gap: high − low frames (points)")
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_training_curves(runs: dict[str, Any]) -> Figure:
    """Left: training CE (and FFN's KL) every logged step. Right: validation top-1 per epoch and
    frame count. `runs` maps a name to a TrainedModel."""
    fig = new_figure((11, 3.8))
    left, right = fig.subplots(1, 2)
    for name, run in runs.items():
        color = _color(name)
        steps = [c["epoch"] for c in run.curve]
        left.plot(steps, [c["ce"] for c in run.curve], "-", color=color, label=f"{name} CE")
        if run.kind == "ffn":
            left.plot(steps, [c["kl"] for c in run.curve], "--", color=color, label=f"{name} KL(16F‖lower)")
        counts = sorted(int(k[len("val_acc_"):-1]) for k in run.history[0] if k.startswith("val_acc_"))
        styles = dict(zip(counts, ["o:", "s--", "^-"][-len(counts):] if len(counts) <= 3 else ["o-"] * len(counts)))
        for t in counts:
            epochs = [r["epoch"] for r in run.history if f"val_acc_{t}f" in r]
            right.plot(epochs, [r[f"val_acc_{t}f"] for r in run.history if f"val_acc_{t}f" in r], styles[t],
                       color=color, label=f"{name} {t}F")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.set_title("training loss terms", fontsize=10)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    right.set_xlabel("epoch")
    right.set_ylabel("validation top-1 (%)")
    right.set_title("validation accuracy per frame count", fontsize=10)
    right.grid(alpha=0.3)
    right.legend(fontsize=7, ncol=2)
    return fig


def plot_flops(flops: Any) -> Figure:
    """GFLOPs per clip (rows: models, columns: frame counts) of a flops_table, as grouped bars."""
    fig = new_figure((6.0, 3.4))
    ax = fig.subplots()
    columns = list(flops.columns)
    width = 0.8 / len(flops.index)
    for i, name in enumerate(flops.index):
        xs = [j + (i - (len(flops.index) - 1) / 2) * width for j in range(len(columns))]
        ax.bar(xs, flops.loc[name].values, width=width, color=_color(name), label=name)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns)
    ax.set_ylabel("GFLOPs per clip")
    ax.set_xlabel("frames")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def accuracy_explorer(results: dict[str, dict[int, float]], train_frames: Sequence[int], interactive: bool):
    """plot_accuracy_vs_frames; with `interactive`, checkboxes choose the models and whether the
    paper's panel is shown. Headless, the full figure is returned."""
    if not interactive:
        return plot_accuracy_vs_frames(results, train_frames)

    import ipywidgets as widgets
    from IPython.display import display

    boxes = [widgets.Checkbox(value=True, description=name, indent=False) for name in results]
    with_paper = widgets.Checkbox(value=True, description="paper panel", indent=False)
    out = widgets.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            shown = [b.description for b in boxes if b.value]
            display(plot_accuracy_vs_frames(results, train_frames, PAPER_SSV2_TSM_R50 if with_paper.value else None,
                                            show=shown))

    for box in (*boxes, with_paper):
        box.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([*boxes, with_paper]), out])
