"""Pieces the sweep and comparison pages share: their style, a sortable table (a few lines of
inline script, nothing fetched, so a page opens offline like the reports), value formatting and
a figure embedded as a PNG data URI.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 90em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable thead th { cursor: pointer; background: #f4f4f4; }
table.sortable thead th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable thead th[aria-sort=descending]::after { content: " \\25BC"; }
tr.ok td.status { color: #1a7f37; } tr.failed td.status { color: #cf222e; font-weight: bold; }
tr.pending td.status { color: #9a6700; }
tr.diff td { background: #fff3bf; } tr.diff th { background: #ffe58f; }
tr.group th { background: #eef; text-align: left; }
body.only-diff tr.same { display: none; }
small.error { color: #cf222e; }
"""

# Click a header to sort by that column, again to reverse. A cell sorts by its data-sort value
# (the full number, not the rounded text); numbers sort as numbers and come before text and blanks.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      function key(row) {
        var cell = row.cells[col], text = cell.getAttribute("data-sort");
        if (text === null) { text = cell.textContent.trim(); }
        var number = Number(text);
        return (text === "" || isNaN(number)) ? [1, text] : [0, number];
      }
      var body = table.tBodies[0], rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x[0] !== y[0]) { return x[0] - y[0]; }
        var order = x[1] < y[1] ? -1 : (x[1] > y[1] ? 1 : 0);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

# The comparison page's "only differences" box hides the rows whose values agree.
DIFF_SCRIPT = """
document.getElementById("only-diff").addEventListener("change", function (e) {
  document.body.classList.toggle("only-diff", e.target.checked);
});
"""


def fmt(value: Any) -> str:
    """A value as a page shows it: floats to 6 significant digits, lists joined, None as a dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def cell(value: Any, css: str = "") -> str:
    """One <td>: numbers right-aligned and sorted by their full value, the exact value on hover."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    classes = " ".join(c for c in (css, "num" if number else "") if c)
    attrs = f' class="{classes}"' if classes else ""
    if number:
        attrs += f' data-sort="{value!r}" title="{value!r}"'
    return f"<td{attrs}>{html.escape(fmt(value))}</td>"


def figure_data_uri(fig: Figure, dpi: int = 110) -> str:
    """The figure as a PNG data URI for an <img>, so the page carries its own picture."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def page(title: str, body: str, scripts: str = SORT_SCRIPT) -> str:
    """A complete offline HTML page: the shared style, `body`, and the inline `scripts`."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
{body}
<script>{scripts}</script>
</body></html>
"""
