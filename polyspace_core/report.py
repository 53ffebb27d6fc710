"""Reports: run notebooks headless with papermill, convert them to HTML, write the index page.

`run_report("smoke")` executes every notebook in order on the preset and writes

    reports/<preset>/<NN_name>.ipynb      the executed notebook
    reports/<preset>/<NN_name>.html       nbconvert, lab template, images embedded (opens offline)
    reports/<preset>/<NN_name>/metrics.json   written by the notebook's last cell
    reports/<preset>/index.json           status, duration, metrics and provenance per stage
    reports/<preset>/index.html           the same, for people

One failing notebook does not stop the others; it is shown as failed and the result says so.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import PolySpaceError
from .io import atomic_write_json, atomic_write_text
from .stage_params import STAGES, stage_spec
from .workspace import git_state, load_preset, package_versions, project_root

KERNEL = "python3"
_META_KEYS = {"stage", "preset", "params", "provenance", "elapsed_s"}


@dataclass
class StageResult:
    stage: str
    status: str                      # ok | failed
    duration_s: float
    notebook: str                    # executed .ipynb, relative to the report dir
    html: str | None                 # its HTML, relative to the report dir
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def notebook_path(stage: str, root: Path) -> Path:
    path = root / "notebooks" / f"{stage}.ipynb"
    if not path.is_file():
        raise PolySpaceError(f"{path}: notebook not found")
    return path


def select_stages(nb: str | None) -> list[str]:
    """`None` -> all stages; "04" or "04_train_fusion" or "01,04" -> those stages, in order."""
    if nb is None or str(nb).strip() in ("", "all"):
        return list(STAGES)
    chosen = []
    for token in str(nb).split(","):
        token = token.strip()
        matches = [s for s in STAGES if s == token or s.split("_")[0] == token.zfill(2)]
        if not matches:
            raise PolySpaceError(f"--nb {token}: no such notebook; use a number 01-08 or a name like {STAGES[3]}")
        chosen.extend(m for m in matches if m not in chosen)
    return [s for s in STAGES if s in chosen]


def stage_parameters(stage: str, preset: str, root: Path) -> dict[str, Any]:
    """The preset's values for the keys this stage declares (what papermill injects)."""
    spec = stage_spec(stage)
    values = {k: v for k, v in load_preset(preset, root).items() if k in spec}
    values["preset"] = preset
    return values


def notebook_to_html(ipynb: Path, out: Path) -> Path:
    """nbconvert's lab template with images embedded and no script fetched from the network."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(ipynb, as_version=4)
    # Widget state (tqdm.auto progress bars record some) makes nbconvert link the widget manager
    # from unpkg; headless reports render every figure statically, so the state is dropped.
    notebook.metadata.pop("widgets", None)
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(notebook)
    body = _strip_remote_scripts(body)
    return atomic_write_text(out, body)


_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.IGNORECASE)


def _strip_remote_scripts(page: str) -> str:
    # The lab template links MathJax and require.js from a CDN; reports must open offline and
    # contain no math, so those tags are dropped rather than left to fail without a network.
    return _REMOTE_SCRIPT.sub("", page)


def run_stage(stage: str, preset: str, root: Path, out_dir: Path, timeout_s: int | None = None) -> StageResult:
    """Execute one notebook with papermill; never raises for a failing notebook."""
    import papermill as pm

    source = notebook_path(stage, root)
    executed = out_dir / f"{stage}.ipynb"
    started = time.time()
    error = None
    try:
        pm.execute_notebook(str(source), str(executed), parameters=stage_parameters(stage, preset, root),
                            cwd=str(root / "notebooks"), kernel_name=KERNEL, progress_bar=False,
                            execution_timeout=timeout_s)
        status = "ok"
    except pm.PapermillExecutionError as e:
        status, error = "failed", f"{e.ename}: {e.evalue}".splitlines()[0][:500]
    except Exception as e:  # a kernel that died, a timeout: still a failed stage, not a crashed report
        status, error = "failed", f"{type(e).__name__}: {e}".splitlines()[0][:500]
    duration = time.time() - started

    html_name = None
    if executed.is_file():
        notebook_to_html(executed, out_dir / f"{stage}.html")
        html_name = f"{stage}.html"
    metrics: dict[str, Any] = {}
    metrics_path = out_dir / stage / "metrics.json"
    if status == "ok":
        if not metrics_path.is_file():
            status, error = "failed", f"{metrics_path} not written; the notebook must end with ws.write_metrics(...)"
        else:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
            if metrics.get("provenance", {}).get("time", "") < _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"):
                status, error = "failed", f"{metrics_path} is from an earlier run; this run did not write it"
    return StageResult(stage=stage, status=status, duration_s=round(duration, 2), notebook=executed.name,
                       html=html_name, metrics=metrics, error=error)


def key_figures(metrics: dict[str, Any], limit: int = 12) -> dict[str, Any]:
    """The numbers a stage reports at top level (not its params/provenance), first `limit` of them."""
    figures = {k: v for k, v in metrics.items()
               if k not in _META_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return dict(list(figures.items())[:limit])


def run_report(preset: str = "default", nb: str | None = None, root: Path | None = None,
               timeout_s: int | None = None) -> list[StageResult]:
    """Run the selected notebooks on `preset` and write the report; returns one result per stage.
    Stages not selected keep their earlier entry in the index (so `NB=04` updates one row)."""
    from tqdm.auto import tqdm

    root = root or project_root()
    load_preset(preset, root)  # a bad preset name fails before anything runs
    out_dir = root / "reports" / preset
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = select_stages(nb)
    results = []
    for stage in tqdm(stages, desc=f"report {preset}", unit="notebook"):
        result = run_stage(stage, preset, root, out_dir, timeout_s)
        print(f"{stage}: {result.status} in {result.duration_s:.1f}s" + (f" -- {result.error}" if result.error else ""), flush=True)
        results.append(result)
        # after every stage, so an interrupted report still lists what finished
        write_index(out_dir, preset, root, results)
    return results


def write_index(out_dir: Path, preset: str, root: Path, results: list[StageResult]) -> dict[str, Any]:
    """Merge `results` into index.json / index.html: stages not in `results` keep the entry the
    index holds now (re-read at every write, so two reports of one preset, e.g. `NB=01` and
    `NB=08` in two shells, do not drop each other's rows)."""
    index_path = out_dir / "index.json"
    previous = {}
    if index_path.is_file():
        previous = {s["stage"]: s for s in json.loads(index_path.read_text(encoding="utf-8")).get("stages", [])}
    rows = []
    for stage in STAGES:
        fresh = next((r for r in results if r.stage == stage), None)
        if fresh is not None:
            rows.append(asdict(fresh))
        elif stage in previous:
            rows.append(previous[stage])
    index = {
        "preset": preset,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "total_duration_s": round(sum(r["duration_s"] for r in rows), 2),
        "provenance": report_provenance(root, preset),
        "stages": rows,
    }
    atomic_write_json(index_path, index)
    atomic_write_text(out_dir / "index.html", render_index(index))
    return index


def report_provenance(root: Path, preset: str) -> dict[str, Any]:
    import platform

    import torch

    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {"git": git_state(root), "versions": {"python": platform.python_version(), **package_versions()},
            "device": device, "params": load_preset(preset, root)}


def render_index(index: dict[str, Any]) -> str:
    """The report's front page: one row per stage with status, duration, key figures, links."""
    esc = html.escape
    rows = []
    for s in index["stages"]:
        figures = key_figures(s.get("metrics", {}))
        figure_text = "<br>".join(f"<code>{esc(k)}</code> {v:.4g}" if isinstance(v, float) else f"<code>{esc(k)}</code> {v}"
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
    params = "".join(f"<tr><td><code>{esc(str(k))}</code></td><td>{esc(str(v))}</td></tr>" for k, v in prov["params"].items())
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
