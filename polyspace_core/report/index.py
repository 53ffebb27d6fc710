"""The report's index: reports/<preset>/index.json and index.html, one row per stage with its
status, duration, key figures and provenance.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import PolySpaceError
from ..io import atomic_write_json, atomic_write_text
from ..provenance import provenance
from ..stage_params import STAGES
from ..workspace import load_preset

# what Workspace.write_metrics adds around a stage's own figures
_META_KEYS = {"stage", "preset", "params", "provenance", "elapsed_s"}


def key_figures(metrics: dict[str, Any], limit: int = 12) -> dict[str, Any]:
    """The numbers a stage reports at top level (not its params/provenance), first `limit` of them."""
    figures = {k: v for k, v in metrics.items()
               if k not in _META_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return dict(list(figures.items())[:limit])


def read_index_stages(index_path: Path) -> list[dict[str, Any]]:
    """The stage rows of an existing index.json ([] when there is none). A damaged index (a
    report killed mid-write by an older version, an edit gone wrong) is one line saying what to do;
    it is never silently replaced, since it holds the rows of stages this run does not redo."""
    if not index_path.is_file():
        return []
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        stages = index["stages"]
        if not isinstance(stages, list) or not all(isinstance(s, dict) and "stage" in s for s in stages):
            raise ValueError("'stages' is not a list of stage rows")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise PolySpaceError(f"{index_path}: not a report index ({str(e).splitlines()[0][:120]}); move it away or "
                             f"delete it and run the report again (the stages' own reports stay)") from None
    return stages


def write_index(out_dir: Path, preset: str, root: Path, results: list) -> dict[str, Any]:
    """Merge `results` into index.json / index.html: stages not in `results` keep the entry the
    index holds now (re-read at every write, so two reports of one preset, e.g. `NB=01` and
    `NB=08` in two shells, do not drop each other's rows)."""
    index_path = out_dir / "index.json"
    previous = {s["stage"]: s for s in read_index_stages(index_path)}
    rows = []
    for stage in STAGES:
        fresh = next((r for r in results if r.stage == stage), None)
        if fresh is not None:
            rows.append(asdict(fresh))
        elif stage in previous:
            rows.append(previous[stage])
    index = {
        "preset": preset,
        "generated": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "total_duration_s": round(sum(r["duration_s"] for r in rows), 2),
        "provenance": report_provenance(root, preset),
        "stages": rows,
    }
    atomic_write_json(index_path, index)
    atomic_write_text(out_dir / "index.html", render_index(index))
    return index


def report_provenance(root: Path, preset: str) -> dict[str, Any]:
    """Provenance of the report as a whole: the machine's best device and the preset's values."""
    import torch

    return provenance(root, "cuda" if torch.cuda.is_available() else "cpu", load_preset(preset, root))


def render_index(index: dict[str, Any]) -> str:
    """The report's front page: one row per stage with status, duration, key figures, links."""
    esc = html.escape
    rows = []
    for s in index["stages"]:
        figures = key_figures(s.get("metrics", {}))
        figure_text = "<br>".join(f"<code>{esc(k)}</code> {v:.4g}" if isinstance(v, float)
                                  else f"<code>{esc(k)}</code> {v}"
                                  for k, v in figures.items()) or "&mdash;"
        link = f'<a href="{esc(s["html"])}">{esc(s["stage"])}</a>' if s.get("html") else esc(s["stage"])
        status = s["status"] + (f'<br><small>{esc(s["error"])}</small>' if s.get("error") else "")
        seed = s.get("metrics", {}).get("provenance", {}).get("seed", "")
        rows.append(f'<tr class="{esc(s["status"])}"><td>{link}</td><td>{status}</td>'
                    f'<td>{s["duration_s"]:.1f} s</td><td>{seed}</td><td>{figure_text}</td></tr>')
    prov = index["provenance"]
    git = prov["git"]
    git_text = (git["commit"] or "not a git checkout") + (" (dirty)" if git["dirty"] else "")
    versions = ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v)
    params = "".join(f"<tr><td><code>{esc(str(k))}</code></td><td>{esc(str(v))}</td></tr>"
                     for k, v in prov["params"].items())
    failed = sum(s["status"] != "ok" for s in index["stages"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PolySpace report: {esc(index['preset'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; text-align: left; }}
tr.ok td:nth-child(2) {{ color: #1a7f37; }} tr.failed td:nth-child(2) {{ color: #cf222e; font-weight: bold; }}
</style></head><body>
<h1>PolySpace Workspace report &mdash; preset <code>{esc(index['preset'])}</code></h1>
<p>Generated {esc(index['generated'])}; {len(index['stages'])} stages, {failed} failed;
total notebook time {index['total_duration_s']:.1f} s.</p>
<table><tr><th>stage</th><th>status</th><th>duration</th><th>seed</th><th>key figures</th></tr>
{''.join(rows)}</table>
<h2>Provenance</h2>
<p>git {esc(git_text)}<br>device {esc(prov['device'])}<br><small>{esc(versions)}</small></p>
<h3>Preset parameters</h3><table>{params}</table>
</body></html>
"""
