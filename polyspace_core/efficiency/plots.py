"""Figures for notebook 06. Each returns a matplotlib Figure that pyplot has already let go of
(viz.new_figure: shown once as the cell's result, embedded in the HTML report). `cost_explorer` adds an
ipywidgets toggle between the as-run and real-size pipelines when the notebook is interactive and
renders both statically otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from ..measure import Measurement
from ..viz import FigureList, new_figure  # noqa: F401  (FigureList re-exported: notebooks and tests import it from here)
from .pipeline import CONFIGURATIONS, EVAL_KEYS, PipelineCost

SHORT = {CONFIGURATIONS[0]: "student only", CONFIGURATIONS[1]: "student + conv. + head",
         CONFIGURATIONS[2]: "student + teachers"}
# 05 rows that are not one of the three configurations but still have a top-1 and a cost
OTHER_EVAL_ROWS = {"student": "student linear probe", "teachers_concat": "teachers concat probe"}


def plot_accuracy_vs_cost(cost: PipelineCost, eval_metrics: dict[str, Any] | None) -> Figure:
    """Top-1 (05) against GFLOPs per clip (log scale) for the three configurations of the as-run
    pipeline, plus 05's linear probes and per-teacher probes at the cost 05 recorded for them."""
    fig = new_figure((6.4, 4.4))
    ax = fig.subplots()
    metrics = eval_metrics or {}
    plotted = 0
    for i, row in enumerate(cost.configurations()):
        top1 = metrics.get(f"top1_{EVAL_KEYS[row['configuration']]}")
        if top1 is None:
            continue
        ax.plot(row["gflops"], top1, "o", ms=10, color=f"C{i}", label=SHORT[row["configuration"]])
        plotted += 1
    others = dict(OTHER_EVAL_ROWS)
    others.update({k[len("top1_"):]: k[len("top1_teacher_"):] + " probe" for k in metrics
                   if k.startswith("top1_teacher_")})
    for key, label in others.items():
        top1, gflops = metrics.get(f"top1_{key}"), metrics.get(f"gflops_{key}")
        if top1 is None or gflops is None:
            continue
        ax.plot(gflops, top1, "s", ms=6, color="0.45", alpha=0.8)
        ax.annotate(label, (gflops, top1), textcoords="offset points", xytext=(5, -10), fontsize=8, color="0.3")
        plotted += 1
    if plotted == 0:
        ax.text(0.5, 0.5, "top-1 not available: run notebook 05 first", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.set_xscale("log")
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3, which="both")
    ax.set_xlabel("GFLOPs per clip (log; true FLOPs, backbones included)")
    ax.set_ylabel("top-1 (05, test split)")
    ax.set_title(f"accuracy vs cost · {cost.label or cost.spec.student.name}")
    return fig


def _stack(cost: PipelineCost) -> list[dict[str, float]]:
    """Per configuration: GFLOPs split into student backbone, teacher backbones, converters, heads."""
    out = []
    for c in CONFIGURATIONS:
        parts = {"student backbone": 0.0, "teacher backbones": 0.0, "converters": 0.0, "heads": 0.0}
        for key in cost.parts(c):
            g = cost.components[key].gflops
            group = ("student backbone" if key == "student" else "teacher backbones" if key.startswith("teacher:")
                     else "converters" if key.startswith("converter:") else "heads")
            parts[group] += g
        out.append(parts)
    return out


def plot_cost_breakdown(costs: Sequence[PipelineCost]) -> Figure:
    """GFLOPs per clip of the three configurations, stacked by component group, one panel per
    pipeline (as run, real size). Converters and heads are orders of magnitude below the backbones
    at real size, so their share of the total is printed above each bar."""
    fig = new_figure((5.2 * len(costs), 4.2))
    axes = fig.subplots(1, len(costs), squeeze=False)[0]
    groups = ["student backbone", "teacher backbones", "converters", "heads"]
    for ax, cost in zip(axes, costs):
        stacks = _stack(cost)
        labels = [SHORT[c] for c in CONFIGURATIONS]
        bottom = [0.0] * len(stacks)
        for j, group in enumerate(groups):
            values = [s[group] for s in stacks]
            ax.bar(labels, values, bottom=bottom, color=f"C{j}", label=group)
            bottom = [b + v for b, v in zip(bottom, values)]
        for x, s in enumerate(stacks):
            total = sum(s.values())
            extra = s["converters"] + s["heads"]
            ax.text(x, total, f"{total:.3g} GFLOPs\nconv.+heads {100 * extra / total:.2g}%", ha="center",
                    va="bottom", fontsize=7)
        ax.set_ylabel("GFLOPs per clip")
        ax.set_title(cost.label or cost.spec.student.name)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(0, max(bottom) * 1.25)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8, loc="upper left")
    return fig


def plot_frames_scaling(tsm: dict[str, Measurement]) -> Figure:
    """Left: TSM and FFN GFLOPs per clip against the frame count (linear in frames). Right: what
    FFN's per-stream weight alterations add, in percent of the TSM cost (too small to see left)."""
    fig = new_figure((9.0, 3.6))
    left, right = fig.subplots(1, 2)
    curves = {kind: dict(sorted((m.spec["frames"], m.gflops) for m in tsm.values() if m.spec["ffn"] == (kind == "ffn")))
              for kind in ("tsm", "ffn")}
    for i, (kind, points) in enumerate(curves.items()):
        if points:
            left.plot(list(points), list(points.values()), "o-" if kind == "tsm" else "s--", color=f"C{i}",
                      label=kind.upper())
    left.set_xlabel("frames per clip")
    left.set_ylabel("GFLOPs per clip")
    left.legend()
    frames = sorted(set(curves["tsm"]) & set(curves["ffn"]))
    if frames:
        extra = [100 * (curves["ffn"][f] / curves["tsm"][f] - 1) for f in frames]
        right.bar([str(f) for f in frames], extra, color="C1")
    right.set_xlabel("frames per clip")
    right.set_ylabel("FFN extra FLOPs (% of TSM)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return fig



def cost_explorer(costs: Sequence[PipelineCost], eval_metrics: dict[str, Any] | None, interactive: bool):
    """The breakdown and accuracy-vs-cost figures; with `interactive`, a toggle between the
    pipelines (as run / real size) for the breakdown, otherwise every pipeline shown at once."""
    if not interactive:
        return FigureList([plot_cost_breakdown(costs), plot_accuracy_vs_cost(costs[0], eval_metrics)])

    import ipywidgets as widgets
    from IPython.display import display

    choice = widgets.ToggleButtons(options=[(c.label or c.spec.student.name, i) for i, c in enumerate(costs)],
                                   description="pipeline")
    out = widgets.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            display(plot_cost_breakdown([costs[choice.value]]))
            display(plot_accuracy_vs_cost(costs[0], eval_metrics))

    choice.observe(redraw, names="value")
    redraw()
    return widgets.VBox([choice, out])
