"""`polyspace sweep`: one notebook over a grid of parameter values, each point a report of its own.

    polyspace sweep --nb 04 -p fusion_lr 1e-3,3e-4 -p fusion_rank 16,32 --preset smoke

runs 04_train_fusion once per point of the grid (the cartesian product) with papermill, through
the report's run_stage, and writes

    reports/<preset>/sweeps/<name>/sweep.json      the grid and, per point, its parameters, status,
                                                   one-line error, metrics, provenance, upstream
    reports/<preset>/sweeps/<name>/index.html      the comparison page (sweep_page.py)
    reports/<preset>/sweeps/<name>/<point>/        a one-stage report per point: the executed
                                                   notebook, its HTML, <NN_name>/metrics.json and
                                                   index.json (so `polyspace compare` reads a point)
    runs/<preset>/sweeps/<name>/<point>/<NN_name>/ the point's run folder (checkpoints, curves)

and lists the sweep on reports/<preset>/index.html. Values: `-p NAME a,b,c`; a list-typed
parameter takes one bracketed list per point, `-p ffn_train_frames [4,8],[4,8,16]`. Every value
is checked against its declared type (stage_params.py) before anything runs.

Upstream. A point's notebook reads what the stages before it left for the preset
(runs/<preset>/<stage>/), as `polyspace report --nb 04` does; only the swept notebook's own
outputs move (POLYSPACE_OUTPUTS, workspace.py), so no point retrains or replaces an upstream
output. A sweep sets only the swept notebook's own parameters (seed and device included), which
no upstream stage reads: to sweep an upstream setting, sweep that notebook (its points then
stand alone; the stages after it keep reading the preset's run). Each point records the
upstream runs it was built on (their metrics.json time in the preset's report); when an upstream
stage has run again since, a rerun of the sweep runs the point again.

Generated data. 01, 07 and 08 generate their datasets into a folder named by a parameter
(featurize_root, ffn_root, color_root) that the preset's other stages share. When a sweep
varies what that data is made from (say ffn_video_size), each point gets its own folder,
data/sweeps/<preset>/<name>/<point>/<root parameter>, rather than replacing the preset's data
(01 would regenerate it in place) or being refused by it (07, 08).

Resume. Rerunning the same command skips every point already done with the same parameters and
upstream, runs again the failed ones, and runs the rest. A name that holds another grid is
refused unless --overwrite, which first removes that sweep's reports, runs and generated data.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PolySpaceError
from ..io import atomic_write_json, atomic_write_text, read_json
from ..paths import project_root
from ..provenance import git_state
from ..stage_params import STAGES, UPSTREAM, stage_spec
from ..workspace import EXPLICIT_ENV, OUTPUTS_ENV, coerce_value, load_preset, resolve_params
from .index import headline_keys, is_figure, read_index_stages, refresh_sweeps, write_index
from .run import kernel_env, notebook_path, run_stage, select_stages, stage_parameters

SWEEPS = "sweeps"
FORMAT = "polyspace-sweep"
VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=,-]*$")


@dataclass(frozen=True)
class GeneratedData:
    """A dataset a notebook generates into the folder parameter `root`, made from `made_from`
    (only when parameter when[0] has the value when[1], e.g. 01's synthetic set)."""
    root: str
    made_from: tuple[str, ...]
    when: tuple[str, Any] | None = None


GENERATED_DATA: dict[str, GeneratedData] = {
    "01_featurize": GeneratedData("featurize_root", (
        "featurize_synth_layout", "featurize_synth_classes", "featurize_synth_clips_per_class",
        "featurize_synth_frames", "featurize_synth_size", "featurize_synth_seed",
        "featurize_synth_test_fraction"),
        when=("featurize_dataset", "synthmotion")),
    # 07 seeds its SynthMotion set with the notebook's seed
    "07_ffn_tfd": GeneratedData("ffn_root", ("seed", "ffn_classes", "ffn_clips_per_class", "ffn_video_frames",
                                             "ffn_video_size")),
    "08_colorization": GeneratedData("color_root", ("color_clips", "color_frames", "color_size", "color_synth_seed")),
}


@dataclass
class Point:
    """One point of a sweep: its folder name, the swept values, everything papermill injects
    (the preset's values, the swept ones, an own data folder) and the names that must win over
    the preset (POLYSPACE_EXPLICIT)."""
    name: str
    values: dict[str, Any]
    parameters: dict[str, Any]
    explicit: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- the grid

def split_values(text: str) -> list[str]:
    """'1e-3,3e-4' -> ['1e-3', '3e-4']; '[4,8],[16]' -> ['[4,8]', '[16]'] (commas in brackets stay)."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


def parse_grid(stage: str, pairs: Sequence[tuple[str, str]]) -> dict[str, list[Any]]:
    """`-p NAME VALUES` pairs -> {name: [typed values]} in the stage's declared order, or the
    one-line error of the first bad name or value. Nothing runs before this has passed."""
    spec = stage_spec(stage)
    if not pairs:
        raise PolySpaceError("sweep: give at least one -p NAME VALUES, e.g. -p fusion_lr 1e-3,3e-4")
    grid: dict[str, list[Any]] = {}
    for name, text in pairs:
        if name not in spec:
            raise PolySpaceError(f"unknown parameter {name!r} for stage {stage}; it accepts {', '.join(spec)}")
        if name == "preset":
            raise PolySpaceError("sweep -p preset: the preset is not swept (it says whose upstream outputs a "
                                 "point reads); run one sweep per preset with --preset")
        if name in grid:
            raise PolySpaceError(f"sweep -p {name}: given twice; list all its values once, comma-separated")
        items = split_values(text)
        if any(item == "" for item in items):
            raise PolySpaceError(f"sweep -p {name} {text!r}: an empty value; separate values with single commas")
        if spec[name].startswith("list[") and not all(i.startswith("[") and i.endswith("]") for i in items):
            raise PolySpaceError(f"sweep -p {name} {text!r}: {name} takes a list per point; write each in "
                                 f"brackets, e.g. -p {name} '[a,b],[c]'")
        values = [_plain(coerce_value(name, item, spec[name])) for item in items]
        if len({repr(v) for v in values}) != len(values):
            raise PolySpaceError(f"sweep -p {name} {text!r}: a value is listed twice; list each once")
        grid[name] = values
    return {name: grid[name] for name in spec if name in grid}


def _plain(value: Any) -> Any:
    # paths stay as the user wrote them (the notebook resolves them against the project root)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def default_name(stage: str, grid: Mapping[str, Sequence[Any]]) -> str:
    """'04-fusion_lr-fusion_rank': the notebook's number and the swept names."""
    return "-".join([stage.split("_")[0], *grid])


def point_name(index: int, width: int, values: Mapping[str, Any]) -> str:
    """'01_fusion_lr=0.001,fusion_rank=16': the point's number (unique) and its values, readable
    in a file browser (characters a path or URL would need escaped become '-')."""
    def text(value: Any) -> str:
        if isinstance(value, list):
            return "+".join(text(v) for v in value) or "empty"
        return re.sub(r"[^A-Za-z0-9._+-]", "-", str(value))[:24]

    return f"{index:0{width}d}_" + ",".join(f"{k}={text(v)}" for k, v in values.items())


def plan_points(stage: str, preset: str, grid: Mapping[str, list[Any]], name: str, root: Path) -> list[Point]:
    """Every point of the grid with what papermill will inject, each checked as the notebook
    will check it (resolve_params), so a bad combination stops the sweep before any point runs."""
    base = stage_parameters(stage, preset, root)
    data = GENERATED_DATA.get(stage)
    own_data = data is not None and any(k in grid for k in data.made_from)
    if own_data and data.root in grid:
        raise PolySpaceError(f"sweep -p {data.root}: sweep {data.root} or what its data is made from "
                             f"({', '.join(k for k in data.made_from if k in grid)}), not both; each point that "
                             f"changes the data already gets its own {data.root}")
    combos = list(itertools.product(*grid.values()))
    width = max(2, len(str(len(combos))))
    points = []
    for i, combo in enumerate(combos, start=1):
        values = dict(zip(grid, combo))
        point = Point(point_name(i, width, values), values, {**base, **values}, list(values))
        if own_data and (data.when is None or point.parameters[data.when[0]] == data.when[1]):
            point.parameters[data.root] = f"data/{SWEEPS}/{preset}/{name}/{point.name}/{data.root}"
            point.explicit.append(data.root)
        resolve_params(stage, point.parameters, root=root, explicit=point.explicit)
        points.append(point)
    return points


# ----------------------------------------------------------------------------- the record

def sweep_dir(root: Path, preset: str, name: str) -> Path:
    """reports/<preset>/sweeps/<name>/: sweep.json, the page, a report folder per point."""
    return root / "reports" / preset / SWEEPS / name


def sweep_runs_dir(root: Path, preset: str, name: str) -> Path:
    """runs/<preset>/sweeps/<name>/: a run folder per point (POLYSPACE_OUTPUTS points there)."""
    return root / "runs" / preset / SWEEPS / name


def upstream_record(stage: str, preset: str, root: Path) -> dict[str, str | None]:
    """When each stage `stage` reads from last ran for the preset (its metrics.json time in the
    preset's report; None where the report has none)."""
    record = {}
    for upstream in UPSTREAM[stage]:
        path = root / "reports" / preset / upstream / "metrics.json"
        record[upstream] = read_json(path).get("provenance", {}).get("time") if path.is_file() else None
    return record


def read_sweep(path: Path) -> dict[str, Any] | None:
    """An existing sweep.json, None when there is none; a damaged one is one line."""
    if not path.is_file():
        return None
    sweep = read_json(path)
    if not isinstance(sweep, dict) or sweep.get("format") != FORMAT or not isinstance(sweep.get("points"), list):
        raise PolySpaceError(f"{path}: not a sweep record; move it away or rerun with --overwrite")
    return sweep


def why_not_done(record: Mapping[str, Any] | None, point: Point, upstream: Mapping[str, Any],
                 folder: Path, stage: str) -> tuple[str | None, bool]:
    """(None, False) when the earlier record of `point` is a finished run with the same parameters
    on the same upstream runs (it is reused); else (why it runs, whether what the earlier run
    left is stale: made with other parameters or upstream, so it must not be resumed from)."""
    if record is None:
        return "not run yet", False
    if record.get("status") == "pending":
        return "not finished before", False
    if record.get("parameters") != point.parameters:
        before = record.get("parameters") or {}
        changed = sorted(k for k in set(point.parameters) | set(before) if before.get(k) != point.parameters.get(k))
        return f"parameters changed since it ran: {', '.join(changed)}", True
    if record.get("upstream") != upstream:
        changed = sorted(k for k in upstream if (record.get("upstream") or {}).get(k) != upstream[k])
        return f"upstream ran again since: {', '.join(changed)}", True
    if record.get("status") != "ok":
        return f"{record.get('status')} before", False
    if not (folder / stage / "metrics.json").is_file():
        return f"{folder / stage / 'metrics.json'} is gone", False
    return None, False


def point_record(point: Point, result, upstream: Mapping[str, Any], point_dir: Path) -> dict[str, Any]:
    """What sweep.json keeps of a point that ran: its StageResult, figures and provenance."""
    metrics = dict(result.metrics)
    provenance = metrics.pop("provenance", None)
    metrics.pop("params", None)
    html = f"{point.name}/{result.html}" if result.html else None
    return {"point": point.name, "values": point.values, "parameters": point.parameters,
            "explicit": point.explicit, "status": result.status, "error": result.error,
            "duration_s": result.duration_s, "html": html, "report": f"{point.name}/index.json",
            "metrics": metrics, "upstream": dict(upstream), "reused": False,
            "provenance": {k: provenance[k] for k in ("git", "device", "time", "seed") if k in provenance}
            if provenance else None}


def pending_record(point: Point, upstream: Mapping[str, Any]) -> dict[str, Any]:
    return {"point": point.name, "values": point.values, "parameters": point.parameters,
            "explicit": point.explicit, "status": "pending", "error": None, "duration_s": None, "html": None,
            "report": None, "metrics": {}, "upstream": dict(upstream), "reused": False, "provenance": None}


def failed_record(point: Point, upstream: Mapping[str, Any], error: BaseException) -> dict[str, Any]:
    record = pending_record(point, upstream)
    message = str(error).splitlines()[0] if str(error) else ""
    record.update(status="failed", error=f"{type(error).__name__}: {message}"[:500])
    return record


def choose_metric(stage: str, points: Sequence[Mapping[str, Any]], metric: str | None) -> str | None:
    """The figure the page plots: `metric` when given (an error if no finished point has it as a
    number), else the stage's first headline figure a finished point has; None when none has."""
    finished = [p["metrics"] for p in points if p["status"] == "ok"]
    if metric is not None:
        if finished and not any(is_figure(m.get(metric)) for m in finished):
            keys = sorted({k for m in finished for k, v in m.items() if is_figure(v)})
            raise PolySpaceError(f"--metric {metric}: no finished point has that figure; they have "
                                 f"{', '.join(keys)}")
        return metric
    for m in finished:
        keys = headline_keys(stage, m)
        if keys:
            return keys[0]
    return None


# ----------------------------------------------------------------------------- running points

def run_point(stage: str, preset: str, root: Path, name: str, point: Point, upstream: Mapping[str, Any],
              timeout_s: int | None = None) -> dict[str, Any]:
    """Run one point's notebook into reports/<preset>/sweeps/<name>/<point>/ (its own outputs
    under runs/<preset>/sweeps/<name>/<point>/) and return its sweep.json record."""
    point_dir = sweep_dir(root, preset, name) / point.name
    point_dir.mkdir(parents=True, exist_ok=True)
    env = {OUTPUTS_ENV: f"{SWEEPS}/{name}/{point.name}", EXPLICIT_ENV: ",".join(point.explicit)}
    with kernel_env(env):
        result = run_stage(stage, preset, root, point_dir, timeout_s, parameters=point.parameters)
    write_index(point_dir, preset, root, [result], params=point.parameters)
    return point_record(point, result, upstream, point_dir)


def _run_point_guarded(stage: str, preset: str, root: Path, name: str, point: Point, upstream: Mapping[str, Any],
                       timeout_s: int | None = None) -> dict[str, Any]:
    """run_point whose own failure (not the notebook's: run_stage records that) is recorded as
    the point's failure, so one point never stops the others."""
    try:
        return run_point(stage, preset, root, name, point, upstream, timeout_s)
    except Exception as e:
        return failed_record(point, upstream, e)


def _clear_point(root: Path, preset: str, name: str, point: Point) -> None:
    for folder in (sweep_dir(root, preset, name) / point.name, sweep_runs_dir(root, preset, name) / point.name):
        if folder.exists():
            shutil.rmtree(folder)


def remove_sweep(root: Path, preset: str, name: str) -> None:
    """--overwrite: the sweep's reports, run folders and generated data."""
    for folder in (sweep_dir(root, preset, name), sweep_runs_dir(root, preset, name),
                   root / "data" / SWEEPS / preset / name):
        if folder.exists():
            shutil.rmtree(folder)


# ----------------------------------------------------------------------------- the sweep

def run_sweep(nb: str, pairs: Sequence[tuple[str, str]], preset: str = "default", name: str | None = None,
              jobs: int = 1, metric: str | None = None, overwrite: bool = False, root: Path | None = None,
              timeout_s: int | None = None, log=print) -> dict[str, Any]:
    """Run notebook `nb` over the grid `pairs` ([(name, "v1,v2"), ...]) on `preset`; returns the
    sweep record (what sweep.json holds). Points run one after another, or `jobs` at once.
    Every check (notebook, names, values, the grid against an earlier sweep of this name)
    comes before the first point runs."""
    from tqdm.auto import tqdm

    root = root or project_root()
    load_preset(preset, root)
    stages = select_stages(nb)
    if len(stages) != 1:
        raise PolySpaceError(f"--nb {nb}: a sweep runs one notebook; name one, e.g. --nb 04")
    stage = stages[0]
    notebook_path(stage, root)
    grid = parse_grid(stage, pairs)
    name = name or default_name(stage, grid)
    if not _NAME.match(name) or name in STAGES:
        raise PolySpaceError(f"--name {name!r}: use letters, digits and . _ - + = , (not a notebook's name)")
    if jobs < 1:
        raise PolySpaceError(f"--jobs {jobs}: expected 1 or more points at once")
    points = plan_points(stage, preset, grid, name, root)
    folder = sweep_dir(root, preset, name)
    read_index_stages(root / "reports" / preset / "index.json")  # the index is updated at the end
    earlier = None if overwrite else read_sweep(folder / "sweep.json")
    if earlier is not None and (earlier.get("stage"), earlier.get("grid")) != (stage, grid):
        raise PolySpaceError(f"sweep {name} ({folder}) holds another grid ({earlier.get('stage')}: "
                             f"{_grid_text(earlier.get('grid') or {})}); choose another --name or pass --overwrite "
                             f"to replace it")
    if overwrite:
        remove_sweep(root, preset, name)
    upstream = upstream_record(stage, preset, root)

    records_before = {r["point"]: r for r in (earlier or {}).get("points", [])}
    records: dict[str, dict[str, Any]] = {}
    todo: list[Point] = []
    for point in points:
        why, stale = why_not_done(records_before.get(point.name), point, upstream, folder / point.name, stage)
        if why is None:
            records[point.name] = {**records_before[point.name], "reused": True}
            log(f"{point.name}: done earlier with the same parameters; skipped")
        else:
            if point.name in records_before:
                log(f"{point.name}: runs again ({why})")
            if stale:
                # nothing the earlier run left may be taken for this one's (a checkpoint reused as
                # "same settings"); a failed or interrupted point keeps its folders, so its
                # trainer resumes from what it saved
                _clear_point(root, preset, name, point)
            records[point.name] = pending_record(point, upstream)
            todo.append(point)

    sweep = {"format": FORMAT, "version": VERSION, "name": name, "stage": stage, "preset": preset, "grid": grid,
             "created": (earlier or {}).get("created") or _now(), "updated": _now(), "metric": metric,
             "upstream": upstream, "generated_data": _generated_data_note(stage, points),
             "provenance": {"git": git_state(root)}, "points": [records[p.name] for p in points]}
    _write(sweep, folder, root)
    refresh_sweeps(root / "reports" / preset, preset, root)

    def finished(record: dict[str, Any]) -> None:
        records[record["point"]] = record
        sweep["points"] = [records[p.name] for p in points]
        sweep["updated"] = _now()
        _write(sweep, folder, root)  # after every point, so an interrupted sweep shows what finished
        took = f" in {record['duration_s']:.1f}s" if record["duration_s"] is not None else ""
        log(f"{record['point']}: {record['status']}{took}" + (f" -- {record['error']}" if record["error"] else ""))

    started = time.time()
    if jobs == 1 or len(todo) <= 1:
        for point in tqdm(todo, desc=f"sweep {name}", unit="point", disable=not todo):
            finished(_run_point_guarded(stage, preset, root, name, point, upstream, timeout_s))
    else:
        _run_at_once(todo, jobs, finished, stage, preset, root, name, upstream, timeout_s)
    sweep["seconds"] = round(time.time() - started, 2)
    try:
        sweep["metric"] = choose_metric(stage, sweep["points"], metric)
    finally:  # a --metric no point has is an error, after the points and their table are written
        _write(sweep, folder, root, done=True)
        refresh_sweeps(root / "reports" / preset, preset, root)
    return sweep


def _run_at_once(todo: list[Point], jobs: int, finished, *args: Any) -> None:
    """`jobs` points at once, each in a process of its own (a kernel takes the environment of
    the process that starts it, and each point's kernel needs its own output folder)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    stage, preset, root, name, upstream, timeout_s = args
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(_run_point_guarded, stage, preset, root, name, point, upstream, timeout_s): point
                   for point in todo}
        for future in as_completed(futures):
            try:
                record = future.result()
            except Exception as e:  # the worker process itself died (killed, out of memory)
                record = failed_record(futures[future], upstream, e)
            finished(record)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _write(sweep: dict[str, Any], folder: Path, root: Path, done: bool = False) -> None:
    """sweep.json and the comparison page (its figure once the points are `done`)."""
    from .sweep_page import render_sweep_page

    atomic_write_json(folder / "sweep.json", sweep)
    atomic_write_text(folder / "index.html", render_sweep_page(sweep, done))


def _generated_data_note(stage: str, points: Sequence[Point]) -> dict[str, Any] | None:
    data = GENERATED_DATA.get(stage)
    if data is None or not any(data.root in p.explicit for p in points):
        return None
    return {"parameter": data.root, "made_from": list(data.made_from),
            "folders": {p.name: p.parameters[data.root] for p in points if data.root in p.explicit}}


def _grid_text(grid: Mapping[str, Sequence[Any]]) -> str:
    return "; ".join(f"{k} {', '.join(str(v) for v in values)}" for k, values in grid.items())


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
