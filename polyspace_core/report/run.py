"""Run notebooks headless with papermill, convert them to HTML, and keep the index (index.py) current.

`run_report("smoke")` executes every notebook in order on the preset (or, with `jobs` > 1, that
many at once, each as soon as the stages it reads have finished: `stage_params.UPSTREAM`) and writes

    reports/<preset>/<NN_name>.ipynb      the executed notebook
    reports/<preset>/<NN_name>.html       nbconvert, lab template, images embedded (opens offline)
    reports/<preset>/<NN_name>/metrics.json   written by the notebook's last cell
    reports/<preset>/index.json           status, duration, metrics and provenance per stage
    reports/<preset>/index.html           the same, for people

One failing notebook does not stop the others; it is shown as failed and the result says so.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PolySpaceError
from ..io import atomic_write_text
from ..paths import project_root
from ..stage_params import STAGES, UPSTREAM, all_params, stage_spec
from ..workspace import EXPLICIT_ENV, load_preset, resolve_params
from .index import read_index_stages, write_index

KERNEL = "python3"
# The kernel's own log stays off the terminal: ipykernel warns at every start that a kernel on
# TCP is unencrypted, although papermill's kernel listens on this machine only
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
# a tqdm progress bar's text (what a static page shows of its widget): "desc:  40%|####  | 2/5 ..."
_PROGRESS_TEXT = re.compile(r"^[^\n]*\d+%\|")


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


def stage_parameters(stage: str, preset: str, root: Path,
                     overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The preset's values for the keys this stage declares, then `overrides` (`polyspace report
    -p NAME VALUE`) for those it declares: what papermill injects."""
    spec = stage_spec(stage)
    values = {k: v for k, v in load_preset(preset, root).items() if k in spec}
    values.update({k: v for k, v in (overrides or {}).items() if k in spec})
    values["preset"] = preset
    return values


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """Every `-p NAME VALUE` names a declared parameter other than `preset` (a one-line error)."""
    known = all_params()
    for name in overrides:
        if name == "preset" or name not in known:
            raise PolySpaceError(f"-p {name}: not a parameter" + (" to override; use --preset" if name == "preset"
                                                                  else "; see polyspace_core/stage_params.py"))


def explicit_names(stage: str, overrides: Mapping[str, Any]) -> list[str]:
    """The overrides this stage declares: they win over the preset even where they equal the
    default preset's value (workspace.EXPLICIT_ENV)."""
    spec = stage_spec(stage)
    return [name for name in overrides if name in spec]


@contextmanager
def kernel_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the kernels started inside the block (a kernel copies this
    process's environment when it starts); the previous values come back afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_stage_inputs(preset: str, root: Path, stages: list[str], overrides: Mapping[str, Any]) -> None:
    """Before any notebook runs: every selected stage's parameters resolve (an ill-typed `-p`
    value), and 01's inputs are there (its dataset root and models: features.study.check_inputs).
    A failure is the one-line error naming the parameter, so a preset pointing at data this
    machine lacks stops at once instead of after a notebook per stage has failed."""
    from ..features.study import check_inputs

    for stage in stages:
        params = resolve_params(stage, stage_parameters(stage, preset, root, overrides), root=root,
                                explicit=explicit_names(stage, overrides))
        if stage == "01_featurize":
            check_inputs(params)


def notebook_to_html(ipynb: Path, out: Path) -> Path:
    """nbconvert's lab template with images embedded and no script fetched from the network."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(ipynb, as_version=4)
    # Widget state (tqdm.auto progress bars record some) makes nbconvert link the widget manager
    # from unpkg; headless reports render every figure statically, so the state is dropped.
    notebook.metadata.pop("widgets", None)
    _drop_progress_bars(notebook)
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(notebook)
    body = _strip_remote_scripts(body)
    return atomic_write_text(out, body)


def _drop_progress_bars(notebook) -> int:
    """Remove tqdm's progress-bar widgets from a notebook's outputs; returns how many. Without its
    widget state a bar's static fallback is the text of its first draw ("0%|"), which reads as
    nothing having run; what ran is in the cells' other outputs."""
    dropped = 0
    for cell in notebook.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data and _PROGRESS_TEXT.match(data.get("text/plain", "")):
                dropped += 1
                continue
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return dropped


_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.IGNORECASE)


def _strip_remote_scripts(page: str) -> str:
    # The lab template links MathJax and require.js from a CDN; reports must open offline and
    # contain no math, so those tags are dropped rather than left to fail without a network.
    return _REMOTE_SCRIPT.sub("", page)


def run_stage(stage: str, preset: str, root: Path, out_dir: Path, timeout_s: int | None = None,
              parameters: Mapping[str, Any] | None = None) -> StageResult:
    """Execute one notebook with papermill into `out_dir`; never raises for a failing notebook.
    `parameters`: what papermill injects (default: the preset's values, stage_parameters)."""
    import papermill as pm

    source = notebook_path(stage, root)
    executed = out_dir / f"{stage}.ipynb"
    # papermill writes the notebook as it runs: into a hidden name, renamed when the run ends, so a
    # report killed mid-notebook leaves the stage's previous executed notebook as it was
    running = out_dir / f".{stage}.running.ipynb"  # papermill wants the .ipynb suffix
    if parameters is None:
        parameters = stage_parameters(stage, preset, root)
    started = time.time()
    error = None
    try:
        pm.execute_notebook(str(source), str(running), parameters=dict(parameters),
                            cwd=str(root / "notebooks"), kernel_name=KERNEL, progress_bar=False,
                            execution_timeout=timeout_s, extra_arguments=KERNEL_ARGUMENTS)
        status = "ok"
    except pm.PapermillExecutionError as e:
        status, error = "failed", f"{e.ename}: {e.evalue}".splitlines()[0][:500]
    except Exception as e:  # a kernel that died, a timeout: still a failed stage, not a crashed report
        status, error = "failed", f"{type(e).__name__}: {e}".splitlines()[0][:500]
    duration = time.time() - started
    if running.is_file():
        os.replace(running, executed)

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
            if (metrics.get("provenance", {}).get("time", "")
                    < _dt.datetime.fromtimestamp(started, _dt.UTC).isoformat(timespec="seconds")):
                status, error = "failed", f"{metrics_path} is from an earlier run; this run did not write it"
    return StageResult(stage=stage, status=status, duration_s=round(duration, 2), notebook=executed.name,
                       html=html_name, metrics=metrics, error=error)


def replaced_results(out_dir: Path, preset: str, root: Path, stages: list[str],
                     overrides: Mapping[str, Any] | None = None) -> list[str]:
    """Stages of `stages` that the report in `out_dir` holds as finished (status ok) with other
    parameters than this run would use: "<stage> (<name>: <old> -> <new>, ...)"."""
    previous = {s["stage"]: s for s in read_index_stages(out_dir / "index.json")}
    changed = []
    for stage in stages:
        row = previous.get(stage)
        if row is None or row.get("status") != "ok" or "params" not in row.get("metrics", {}):
            continue
        old = row["metrics"]["params"]
        overrides = overrides or {}
        new = json.loads(json.dumps(resolve_params(stage, stage_parameters(stage, preset, root, overrides), root=root,
                                                   explicit=explicit_names(stage, overrides)), default=str))
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)]
        if diff:
            changed.append(f"{stage} ({', '.join(diff[:3])}{', ...' if len(diff) > 3 else ''})")
    return changed


def run_report(preset: str = "default", nb: str | None = None, root: Path | None = None,
               timeout_s: int | None = None, overwrite: bool = False,
               overrides: Mapping[str, Any] | None = None, jobs: int = 1) -> list[StageResult]:
    """Run the selected notebooks on `preset` and write the report; returns one result per stage.
    `overrides` ({name: value}, `-p NAME VALUE`) set parameters over the preset for this run, in
    every selected stage that declares them. Stages not selected keep their earlier entry in the
    index (so `NB=04` updates one row). A stage the report holds as finished with other parameters
    (the preset was edited) is never replaced silently: that is a one-line error before anything
    runs, unless `overwrite`. So are bad overrides and missing inputs (check_stage_inputs).
    nb None: the preset's `report_notebooks` if it names them, else every notebook.
    jobs: notebooks run at once (see run_stages_at_once)."""
    root = root or project_root()
    overrides = dict(overrides or {})
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise PolySpaceError(f"--jobs {jobs!r}: expected 1 or more notebooks at once")
    chosen = load_preset(preset, root).get("report_notebooks")  # a bad preset name fails before anything runs
    check_overrides(overrides)
    # no --nb: the notebooks the preset names (a real-data preset: 01-06), else all of them
    stages = select_stages(nb if nb is not None else chosen)
    check_stage_inputs(preset, root, stages, overrides)
    out_dir = root / "reports" / preset
    out_dir.mkdir(parents=True, exist_ok=True)
    read_index_stages(out_dir / "index.json")  # a damaged index fails here, before any notebook runs
    changed = replaced_results(out_dir, preset, root, stages, overrides)
    if changed and not overwrite:
        raise PolySpaceError(f"{out_dir}: holds results made with other parameters: {'; '.join(changed)}; pass "
                             f"--overwrite (make report OVERWRITE=1) to replace them, or keep both with "
                             f"`polyspace sweep` or another preset")
    results: list[StageResult] = []

    def finished(result: StageResult) -> None:
        print(f"{result.stage}: {result.status} in {result.duration_s:.1f}s"
              + (f" -- {result.error}" if result.error else ""), flush=True)
        results.append(result)
        # after every stage, so an interrupted report still lists what finished
        write_index(out_dir, preset, root, sorted(results, key=lambda r: STAGES.index(r.stage)),
                    params={**load_preset(preset, root), **overrides} if overrides else None)

    if jobs == 1 or len(stages) == 1:
        from tqdm.auto import tqdm

        for stage in tqdm(stages, desc=f"report {preset}", unit="notebook"):
            finished(run_with_overrides(stage, preset, root, out_dir, timeout_s, overrides))
    else:
        run_stages_at_once(stages, jobs, finished, preset, root, out_dir, timeout_s, overrides)
    return sorted(results, key=lambda r: STAGES.index(r.stage))


def run_with_overrides(stage: str, preset: str, root: Path, out_dir: Path, timeout_s: int | None,
                       overrides: Mapping[str, Any]) -> StageResult:
    """run_stage with the preset's values and the `-p` overrides this stage declares."""
    with kernel_env({EXPLICIT_ENV: ",".join(explicit_names(stage, overrides))}):
        return run_stage(stage, preset, root, out_dir, timeout_s,
                         parameters=stage_parameters(stage, preset, root, overrides))


def kernel_threads(jobs: int) -> int:
    """Torch threads of each kernel when `jobs` notebooks run at once: the cores shared out."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def _run_stage_in_worker(threads: int, *args: Any) -> StageResult:
    # a kernel takes this process's environment: each gets its share of the cores (unless the
    # user fixed OMP_NUM_THREADS), so `jobs` kernels do not each start one thread per core
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    return run_with_overrides(*args)


def run_stages_at_once(stages: list[str], jobs: int, finished, preset: str, root: Path, out_dir: Path,
                       timeout_s: int | None = None, overrides: Mapping[str, Any] | None = None) -> None:
    """Run `stages` with up to `jobs` notebooks at once, each in a process of its own, calling
    `finished(result)` as each ends. A stage starts once the stages it reads (UPSTREAM) that are
    part of this run have ended, ok or not (as in a sequential run, a stage after a failed one
    still runs and reports its own error); ready stages start in notebook order. Why: the studies
    are independent (01-06, 07, 08), and tiny CPU models use a second core poorly within one
    process, so on 2 cores two notebooks of one thread each finish sooner than one after another."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = kernel_threads(jobs)
    overrides = dict(overrides or {})
    pending, ended, running = list(stages), set(), {}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        while pending or running:
            for stage in list(pending):
                ready = all(up in ended or up not in stages for up in UPSTREAM[stage])
                if ready and len(running) < jobs:
                    print(f"{stage}: started", flush=True)
                    future = pool.submit(_run_stage_in_worker, threads, stage, preset, root, out_dir, timeout_s,
                                         overrides)
                    running[future] = (stage, time.time())
                    pending.remove(stage)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                stage, started = running.pop(future)
                try:
                    result = future.result()
                except Exception as e:  # the worker process itself died (killed, out of memory)
                    result = StageResult(stage=stage, status="failed", duration_s=round(time.time() - started, 2),
                                         notebook=f"{stage}.ipynb", html=None,
                                         error=f"{type(e).__name__}: {e}".splitlines()[0][:500])
                ended.add(stage)
                finished(result)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
