"""`polyspace compare REPORT_DIR REPORT_DIR ...`: reports side by side on one page.

A report folder is what `polyspace report` writes (reports/<preset>/, index.json inside), a sweep
point's folder (reports/<preset>/sweeps/<name>/<point>/, the same format), or one stage's folder
holding its metrics.json (reports/<preset>/04_train_fusion/). The page has one column per
report and, per stage, rows for its status, headline figures, its other figures, its parameters
and its provenance (git commit, seed, device, time); a row whose values differ is highlighted,
and a box hides the rows that agree. E.g. the default preset against hmdb51, two commits of one
preset (copy reports/<preset>/ aside between them), or two points of a sweep.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PolySpaceError
from ..io import atomic_write_text, output_folder, read_json
from ..stage_params import STAGES
from .index import META_KEYS, headline_keys, read_index_stages
from .page import DIFF_SCRIPT, fmt, page

_MISSING = object()  # a key one report has and another has not: shown as a dash, counted as a difference


@dataclass
class Report:
    """One report folder as the page needs it: where, which preset, its provenance, its stages."""
    path: Path
    label: str
    preset: str | None
    generated: str | None
    provenance: dict[str, Any]
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> index row


def read_report(path: str | os.PathLike, label: str | None = None) -> Report:
    """A report folder (see the module docstring), or one line saying it is not one."""
    path = Path(path)
    what = "give reports/<preset>/, a sweep point's folder or a stage's report folder (with metrics.json)"
    if not path.is_dir():
        raise PolySpaceError(f"{path}: no such folder; {what}")
    label = label or str(path)
    if (path / "index.json").is_file():
        rows = read_index_stages(path / "index.json")
        index = read_json(path / "index.json")
        return Report(path, label, index.get("preset"), index.get("generated"), index.get("provenance") or {},
                      {row["stage"]: row for row in rows})
    if (path / "metrics.json").is_file():
        metrics = read_json(path / "metrics.json")
        if not isinstance(metrics, dict) or metrics.get("stage") not in STAGES:
            raise PolySpaceError(f"{path / 'metrics.json'}: names no stage; not a stage's metrics.json ({what})")
        row = {"stage": metrics["stage"], "status": "ok", "duration_s": metrics.get("elapsed_s"), "metrics": metrics,
               "html": None, "error": None}
        provenance = metrics.get("provenance") or {}
        return Report(path, label, metrics.get("preset"), provenance.get("time"), provenance, {metrics["stage"]: row})
    raise PolySpaceError(f"{path}: not a report folder (no index.json or metrics.json); {what}")


def labels_for(paths: Sequence[Path], root: Path | None) -> list[str]:
    """Each folder as the page names it: relative to the project root when inside it."""
    labels = []
    for p in paths:
        resolved = p.resolve()
        if root is not None and resolved.is_relative_to(root.resolve()):
            labels.append(resolved.relative_to(root.resolve()).as_posix() or ".")
        else:
            labels.append(str(p))
    return labels


def compare_reports(paths: Sequence[str | os.PathLike], out: str | os.PathLike | None = None,
                    root: Path | None = None) -> Path:
    """Read every report folder (all before writing anything), write the comparison page to
    `out` (default reports/compare.html under the project root) and return its path."""
    from ..paths import project_root

    if len(paths) < 2:
        raise PolySpaceError("compare: give two or more report folders, e.g. reports/default reports/hmdb51")
    paths = [Path(p) for p in paths]
    try:
        root = root or project_root()
    except PolySpaceError:
        root = None  # outside a checkout: folders are named as given and --out is needed
    if out is None:
        if root is None:
            raise PolySpaceError("compare: not inside the project checkout; name the page with --out FILE")
        out = root / "reports" / "compare.html"
    out = Path(out)
    reports = [read_report(p, label) for p, label in zip(paths, labels_for(paths, root))]
    output_folder(out)
    atomic_write_text(out, render_comparison(reports, out.parent))
    return out


# ----------------------------------------------------------------------------- the page

def _same(values: Sequence[Any]) -> bool:
    return all(v is not _MISSING for v in values) and all(v == values[0] for v in values[1:])


def _row(name: str, values: Sequence[Any], css: str = "") -> tuple[str, bool]:
    """One table row and whether its values differ."""
    differ = not _same(values)
    cells = "".join("<td>&mdash;</td>" if v is _MISSING else
                    f'<td title="{html.escape(repr(v))}">{html.escape(fmt(v))}</td>' for v in values)
    classes = " ".join(c for c in ("diff" if differ else "same", css) if c)
    return f'<tr class="{classes}"><th>{html.escape(name)}</th>{cells}</tr>', differ


def _group(title: str, names: Sequence[str], columns: Sequence[Mapping[str, Any]], width: int) -> tuple[list[str], int]:
    """A titled group of rows, one per name, each with every report's value; and how many differ."""
    if not names:
        return [], 0
    rows, differing = [f'<tr class="group"><th colspan="{width}">{html.escape(title)}</th></tr>'], 0
    for name in names:
        row, differ = _row(name, [c.get(name, _MISSING) for c in columns])
        rows.append(row)
        differing += differ
    return rows, differing


def _union(dicts: Sequence[Mapping[str, Any]], skip: set[str] | frozenset = frozenset()) -> list[str]:
    keys: list[str] = []
    for d in dicts:
        keys += [k for k in d if k not in keys and k not in skip]
    return keys


def render_stage(stage: str, reports: Sequence[Report], here: Path) -> tuple[str, int]:
    """One stage's table (status, headline figures, other figures, parameters, provenance) and
    how many of its rows differ."""
    esc = html.escape
    rows_of = [r.stages.get(stage) for r in reports]
    metrics = [(row or {}).get("metrics") or {} for row in rows_of]
    width = len(reports) + 1
    links = []
    for report, row in zip(reports, rows_of):
        if row and row.get("html") and (report.path / row["html"]).is_file():
            href = os.path.relpath(report.path / row["html"], here)
            links.append(f'<th><a href="{esc(Path(href).as_posix())}">{esc(report.label)}</a></th>')
        else:
            links.append(f"<th>{esc(report.label)}</th>")
    status = [{"status": row["status"] if row else "not in this report",
               "duration (s)": row.get("duration_s") if row else _MISSING,
               "error": (row.get("error") or None) if row else _MISSING} for row in rows_of]
    headline = _union([dict.fromkeys(headline_keys(stage, m)) for m in metrics])
    others = [k for k in _union(metrics, META_KEYS) if k not in headline]
    params = [m.get("params") or {} for m in metrics]
    provenance = [{"git commit": ((m.get("provenance") or {}).get("git") or {}).get("commit", _MISSING),
                   "git dirty": ((m.get("provenance") or {}).get("git") or {}).get("dirty", _MISSING),
                   "seed": (m.get("provenance") or {}).get("seed", _MISSING),
                   "device": (m.get("provenance") or {}).get("device", _MISSING),
                   "time": (m.get("provenance") or {}).get("time", _MISSING)} if m else {} for m in metrics]
    body, differing = [], 0
    for title, names, columns in (("run", ["status", "duration (s)", "error"], status),
                                  ("headline figures", headline, metrics),
                                  ("other figures", others, metrics),
                                  ("parameters", _union(params), params),
                                  ("provenance", _union(provenance), provenance)):
        rows, n = _group(title, names, columns, width)
        body += rows
        differing += n
    table = (f'<table class="compare"><thead><tr><th></th>{"".join(links)}</tr></thead><tbody>'
             + "\n".join(body) + "</tbody></table>")
    return f'<h2 id="{esc(stage)}">{esc(stage)} <small>({differing} rows differ)</small></h2>\n{table}', differing


def render_comparison(reports: Sequence[Report], here: Path) -> str:
    """The page: the reports' own provenance, then one table per stage any of them has."""
    esc = html.escape
    overview = [{"preset": r.preset, "generated": r.generated,
                 "git commit": (r.provenance.get("git") or {}).get("commit"),
                 "git dirty": (r.provenance.get("git") or {}).get("dirty"),
                 "device": r.provenance.get("device"),
                 "stages": ", ".join(f"{s} {row['status']}" for s, row in r.stages.items()) or "none"}
                for r in reports]
    head = "".join(f"<th>{esc(r.label)}</th>" for r in reports)
    rows, _ = _group("reports", _union(overview), overview, len(reports) + 1)
    sections, stage_differing = [], []
    for stage in [s for s in STAGES if any(s in r.stages for r in reports)]:
        section, n = render_stage(stage, reports, here)
        sections.append(section)
        stage_differing.append(f'<a href="#{esc(stage)}">{esc(stage)}</a> {n}')
    body = f"""<h1>PolySpace reports compared</h1>
<p>{len(reports)} reports. Rows whose values differ are highlighted; a dash is a value one report
does not have. Rows that differ per stage: {', '.join(stage_differing) or 'no stage in any report'}.</p>
<p><label><input type="checkbox" id="only-diff"> show only the rows that differ</label></p>
<table class="compare"><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>
{chr(10).join(sections)}"""
    return page("PolySpace reports compared", body, scripts=DIFF_SCRIPT)
