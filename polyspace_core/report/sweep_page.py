"""A sweep's comparison page, reports/<preset>/sweeps/<name>/index.html: a table of every point
(status, swept values, headline figures, time; sorted by clicking a header) and a figure of one
metric against each swept parameter. Everything it shows comes from sweep.json (sweep.py).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .index import headline_keys, is_figure
from .page import cell, figure_data_uri, fmt, page

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def table_metrics(stage: str, points: Sequence[Mapping[str, Any]], metric: str | None) -> list[str]:
    """The figure columns: the plotted metric, then the stage's headline figures any point has."""
    keys = [metric] if metric else []
    for point in points:
        keys += [k for k in headline_keys(stage, point["metrics"]) if k not in keys]
    return keys


def plot_metric(sweep: Mapping[str, Any], metric: str) -> Figure | None:
    """`metric` of the finished points against each swept parameter, one panel per parameter;
    within a panel one line per combination of the other swept values. Numeric values are an
    axis (logarithmic when they span a factor of 10 or more); others are categories in grid
    order. None when no finished point has the metric as a number."""
    from ..viz import new_figure

    grid: dict[str, list[Any]] = sweep["grid"]
    done = [p for p in sweep["points"] if p["status"] == "ok" and is_figure(p["metrics"].get(metric))]
    if not done:
        return None
    fig = new_figure((4.2 * len(grid) + 0.6, 3.4))
    axes = fig.subplots(1, len(grid), squeeze=False)[0]
    for ax, (name, values) in zip(axes, grid.items()):
        numeric = all(is_figure(v) for v in values)
        position = {repr(v): (v if numeric else i) for i, v in enumerate(values)}
        others = [k for k in grid if k != name]
        groups: dict[str, list[tuple[float, float]]] = {}
        for p in done:
            label = ", ".join(f"{k}={fmt(p['values'][k])}" for k in others)
            groups.setdefault(label, []).append((position[repr(p["values"][name])], p["metrics"][metric]))
        for label, xy in groups.items():
            xy.sort()
            ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=label or None)
        if numeric and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
            ax.minorticks_off()
        # a tick at each swept value, labelled as the table writes it
        ax.set_xticks([position[repr(v)] for v in values], [fmt(v) for v in values],
                      rotation=20 if not numeric or len(values) > 4 else 0)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} against {name}", fontsize=10)
        if others and len(groups) > 1:
            ax.legend(fontsize=7)
    return fig


def render_sweep_page(sweep: Mapping[str, Any], done: bool = True) -> str:
    """The whole page; until the points are `done` it has no figure yet."""
    esc = html.escape
    stage, points, grid, metric = sweep["stage"], sweep["points"], sweep["grid"], sweep.get("metric")
    counts: dict[str, int] = {}
    for p in points:
        counts[p["status"]] = counts.get(p["status"], 0) + 1
    figures = table_metrics(stage, points, metric)

    head = ["point", "status", *grid, *figures, "time (s)", "commit"]
    rows = []
    for p in points:
        link = (f'<a href="{esc(p["html"])}">{esc(p["point"])}</a>' if p.get("html") else esc(p["point"]))
        status = esc(p["status"]) + (" (earlier)" if p.get("reused") else "")
        if p.get("error"):
            status += f'<br><small class="error">{esc(p["error"])}</small>'
        git = (p.get("provenance") or {}).get("git") or {}
        commit = (git.get("commit") or "")[:10] + (" (dirty)" if git.get("dirty") else "")
        rows.append(f'<tr class="{esc(p["status"])}"><td>{link}</td><td class="status" data-sort="{esc(p["status"])}">'
                    f'{status}</td>' + "".join(cell(p["values"][k]) for k in grid)
                    + "".join(cell(p["metrics"].get(k)) for k in figures)
                    + cell(p.get("duration_s")) + f"<td>{esc(commit)}</td></tr>")
    table = (f'<table class="sortable" id="points"><thead><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr>'
             f'</thead><tbody>\n' + "\n".join(rows) + "\n</tbody></table>")

    if not done:
        figure = "<p>The figure is drawn when every point has run.</p>"
    elif metric is None:
        figure = (f"<p>No finished point has a headline figure of {esc(stage)} to plot; name one with "
                  f"<code>--metric KEY</code> (sweep.json lists every point's figures).</p>")
    else:
        fig = plot_metric(sweep, metric)
        figure = (f'<img alt="{esc(metric)} against each swept parameter" src="{figure_data_uri(fig)}">'
                  if fig is not None else f"<p>No finished point has <code>{esc(metric)}</code> to plot.</p>")
        not_plotted = sum(p["status"] != "ok" for p in points)
        if fig is not None and not_plotted:
            figure += f"<p><small>{not_plotted} point(s) without a result are not plotted.</small></p>"

    upstream = "".join(f"<li><code>{esc(k)}</code> as it ran at {esc(str(v or 'an unrecorded time'))}</li>"
                       for k, v in sweep["upstream"].items()) or "<li>none: the notebook reads no other stage</li>"
    data_note = ""
    if sweep.get("generated_data"):
        g = sweep["generated_data"]
        data_note = (f"<p>The sweep varies what <code>{esc(g['parameter'])}</code>'s data is made from, so each "
                     f"point generates its own under <code>data/sweeps/{esc(sweep['preset'])}/{esc(sweep['name'])}/"
                     f"</code> (see sweep.json).</p>")
    grid_text = "".join(f"<li><code>{esc(k)}</code>: {esc(', '.join(fmt(v) for v in values))}</li>"
                        for k, values in grid.items())
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    git = sweep.get("provenance", {}).get("git") or {}
    title = f"<code>{esc(sweep['name'])}</code> &mdash; {esc(stage)}, preset <code>{esc(sweep['preset'])}</code>"
    body = f"""<h1>Sweep {title}</h1>
<p>{len(points)} points ({esc(summary)}); updated {esc(sweep['updated'])}; git {esc(git.get('commit') or 'unknown')}
{'(dirty)' if git.get('dirty') else ''}. <a href="sweep.json">sweep.json</a> holds every figure of every point;
<a href="../../index.html">the preset's report</a>.</p>
<h2>Grid</h2><ul>{grid_text}</ul>
<h2>{esc(metric or 'Figure')}</h2>
{figure}
<h2>Points</h2>
<p>Click a column header to sort by it. A point's name opens its executed notebook.</p>
{table}
<h2>Upstream</h2>
<p>Every point read the preset's outputs of:</p><ul>{upstream}</ul>
{data_note}"""
    return page(f"Sweep {sweep['name']} ({stage}, {sweep['preset']})", body)
