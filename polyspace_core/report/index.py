"""The report's index: reports/<preset>/index.json and index.html, one row per stage with its
status, duration, key figures and provenance, and a link to every sweep under sweeps/ (sweep.py).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import html
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import PolySpaceError
from ..io import atomic_write_json, atomic_write_text
from ..provenance import provenance
from ..stage_params import STAGES
from ..workspace import load_preset

# what Workspace.write_metrics adds around a stage's own figures
META_KEYS = {"stage", "preset", "params", "provenance", "elapsed_s"}

# The figures a sweep's table and a comparison put first, per stage, as name patterns (several
# stages name theirs per teacher or per frame count). The first one a run has is what a sweep
# plots unless --metric names another. 04 selects on validation, so its headline is validation's.
HEADLINE: dict[str, list[str]] = {
    "01_featurize": ["train_ok", "train_failed", "*_store_mb"],
    "02_train_converters": ["test_r2_*", "test_cka_*"],
    "03_alignment": ["cka_converted_teacher_*", "cka_student_teacher_*", "cka_gain_*"],
    "04_train_fusion": ["val_top1", "val_top5", "val_mean_class_acc", "best_epoch", "val_top1_seed_mean",
                        "val_top1_seed_std", "train_samples_per_s"],
    "05_eval_downstream": ["top1_fusion", "top1_student", "top1_student_matched", "top1_student_attentive",
                           "top1_teachers_concat", "top1_fusion_oracle", "fusion_gain_over_student",
                           "fusion_gain_over_student_matched"],
    "06_efficiency": ["gflops_fusion_pipeline", "params_fusion_pipeline", "cost_fusion_over_student",
                      "cost_teachers_over_fusion"],
    "07_ffn_tfd": ["tfd_gap_ffn", "tfd_gap_tsm", "acc_ffn_*", "acc_tsm_*"],
    "08_colorization": ["psnr_fusion", "psnr_exemplar", "psnr_temporal", "ssim_fusion", "cdc_fusion",
                        "warp_error_fusion"],
}


def key_figures(metrics: dict[str, Any], limit: int = 12) -> dict[str, Any]:
    """The numbers a stage reports at top level (not its params/provenance), first `limit` of them."""
    figures = {k: v for k, v in metrics.items()
               if k not in META_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return dict(list(figures.items())[:limit])


def is_figure(value: Any) -> bool:
    """A number a page can show and sort (bools are verdicts, not figures)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def headline_keys(stage: str, metrics: Mapping[str, Any]) -> list[str]:
    """The keys of `metrics` that HEADLINE names for `stage`, in its order (numbers only)."""
    keys: list[str] = []
    for pattern in HEADLINE.get(stage, []):
        keys += [k for k, v in metrics.items() if k not in keys and is_figure(v) and fnmatch.fnmatchcase(k, pattern)]
    return keys


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


def write_index(out_dir: Path, preset: str, root: Path, results: list,
                params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge `results` into index.json / index.html: stages not in `results` keep the entry the
    index holds now (re-read at every write, so two reports of one preset, e.g. `NB=01` and
    `NB=08` in two shells, do not drop each other's rows). `params`: the parameters the report
    ran with when they are not the preset's (a sweep point's)."""
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
        "provenance": report_provenance(root, preset, params),
        "stages": rows,
        "sweeps": list_sweeps(out_dir),
    }
    atomic_write_json(index_path, index)
    atomic_write_text(out_dir / "index.html", render_index(index))
    return index


def refresh_sweeps(out_dir: Path, preset: str, root: Path) -> dict[str, Any]:
    """Bring the index's list of sweeps up to date after a sweep wrote sweeps/<name>/; the stage
    rows and the report's provenance stay as the last report wrote them (an index is made, with
    no stages, when the preset has none yet)."""
    index_path = out_dir / "index.json"
    if not index_path.is_file():
        return write_index(out_dir, preset, root, [])
    read_index_stages(index_path)  # a damaged index is one line, never silently replaced
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["sweeps"] = list_sweeps(out_dir)
    atomic_write_json(index_path, index)
    atomic_write_text(out_dir / "index.html", render_index(index))
    return index


def list_sweeps(out_dir: Path) -> list[dict[str, Any]]:
    """One summary per sweeps/<name>/sweep.json (sweep.py writes them): name, stage, grid, point
    counts by status, its page. A sweep.json that cannot be read is listed with the reason."""
    summaries = []
    for path in sorted((out_dir / "sweeps").glob("*/sweep.json")):
        name = path.parent.name
        try:
            sweep = json.loads(path.read_text(encoding="utf-8"))
            counts: dict[str, int] = {}
            for point in sweep["points"]:
                counts[point["status"]] = counts.get(point["status"], 0) + 1
            summaries.append({"name": name, "stage": sweep["stage"], "grid": sweep["grid"], "counts": counts,
                              "updated": sweep.get("updated"), "page": f"sweeps/{name}/index.html"})
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            summaries.append({"name": name, "error": f"{path}: not readable ({type(e).__name__}: "
                                                     f"{str(e).splitlines()[0][:120] if str(e) else ''})"})
    return summaries


def report_provenance(root: Path, preset: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Provenance of the report as a whole: the machine's best device and the preset's values
    (or `params`, where the report ran with others)."""
    import torch

    return provenance(root, "cuda" if torch.cuda.is_available() else "cpu",
                      load_preset(preset, root) if params is None else params)


def stage_figures(stage: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What the index shows for a stage: its HEADLINE figures (all of them), else its first numbers."""
    keys = headline_keys(stage, metrics)
    return {k: metrics[k] for k in keys} if keys else key_figures(dict(metrics))


def findings(index: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every claim of every finished stage ({stage, html, claim fields}), in stage order."""
    rows = []
    for s in index["stages"]:
        for claim in s.get("metrics", {}).get("claims", []) or []:
            rows.append({"stage": s["stage"], "html": s.get("html"), **claim})
    return rows


def render_findings(rows: list[dict[str, Any]]) -> str:
    """The index's findings panel: one row per claim (statement, value, 95% interval, McNemar p
    where there is one, the verdict its rule gives, a link to the stage)."""
    if not rows:
        return "<h2>Findings</h2><p>No stage has recorded a claim yet.</p>"
    esc = html.escape
    body = []
    for r in rows:
        interval = (f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]" if r.get("ci_low") is not None else "&mdash;")
        p = f"{r['p_value']:.2g}" if r.get("p_value") is not None else "&mdash;"
        verdict = "holds" if r["holds"] else "does not hold"
        link = f'<a href="{esc(r["html"])}">{esc(r["stage"])}</a>' if r.get("html") else esc(r["stage"])
        body.append(f'<tr class="{"holds" if r["holds"] else "fails"}"><td>{link}</td><td>{esc(r["statement"])}</td>'
                    f'<td>{r["value"]:.4g}</td><td>{interval}</td><td>{p}</td>'
                    f'<td title="{esc(r.get("rule", ""))}">{verdict}</td></tr>')
    held = sum(r["holds"] for r in rows)
    return (f"<h2>Findings</h2><p>{held} of {len(rows)} claims hold by their rule (hover a verdict for it).</p>"
            '<table class="findings"><tr><th>stage</th><th>claim</th><th>value</th><th>95% interval</th>'
            f"<th>McNemar p</th><th>verdict</th></tr>{''.join(body)}</table>")


def render_index(index: dict[str, Any]) -> str:
    """The report's front page: the findings panel (every stage's claims with their verdicts), then
    one row per stage with status, duration, headline figures, links."""
    esc = html.escape
    rows = []
    for s in index["stages"]:
        figures = stage_figures(s["stage"], s.get("metrics", {}))
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
    sweeps = render_sweep_list(index.get("sweeps", []))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PolySpace report: {esc(index['preset'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; text-align: left; }}
tr.ok td:nth-child(2) {{ color: #1a7f37; }} tr.failed td:nth-child(2) {{ color: #cf222e; font-weight: bold; }}
tr.holds td:last-child {{ color: #1a7f37; }} tr.fails td:last-child {{ color: #cf222e; font-weight: bold; }}
</style></head><body>
<h1>PolySpace Workspace report &mdash; preset <code>{esc(index['preset'])}</code></h1>
<p>Generated {esc(index['generated'])}; {len(index['stages'])} stages, {failed} failed;
total notebook time {index['total_duration_s']:.1f} s.</p>
{render_findings(findings(index))}
<h2>Stages</h2>
<table class="stages"><tr><th>stage</th><th>status</th><th>duration</th><th>seed</th><th>headline figures</th></tr>
{''.join(rows)}</table>
{sweeps}
<h2>Provenance</h2>
<p>git {esc(git_text)}<br>device {esc(prov['device'])}<br><small>{esc(versions)}</small></p>
<h3>Preset parameters</h3><table>{params}</table>
</body></html>
"""


def render_sweep_list(sweeps: list[dict[str, Any]]) -> str:
    """The index's "Sweeps" section: one row per sweep with its grid, point counts and page."""
    if not sweeps:
        return ""
    esc = html.escape
    rows = []
    for s in sweeps:
        if "error" in s:
            rows.append(f'<tr class="failed"><td>{esc(s["name"])}</td><td colspan="4">{esc(s["error"])}</td></tr>')
            continue
        grid = "<br>".join(f"<code>{esc(k)}</code> {esc(', '.join(str(v) for v in values))}"
                           for k, values in s["grid"].items())
        counts = ", ".join(f"{n} {status}" for status, n in sorted(s["counts"].items()))
        rows.append(f'<tr><td><a class="sweep" href="{esc(s["page"])}">{esc(s["name"])}</a></td>'
                    f'<td>{esc(s["stage"])}</td><td>{grid}</td><td>{esc(counts)}</td>'
                    f'<td>{esc(str(s.get("updated") or ""))}</td></tr>')
    return ("<h2>Sweeps</h2>\n<table class=\"sweeps\"><tr><th>sweep</th><th>notebook</th><th>grid</th>"
            f"<th>points</th><th>updated</th></tr>\n{''.join(rows)}</table>")
