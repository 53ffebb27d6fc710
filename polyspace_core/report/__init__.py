"""Reports: the notebooks run headless on a preset, as HTML, with an index page; sweeps and comparisons.

    run.py         run_report / run_stage: papermill, nbconvert HTML (offline), one result per stage
    index.py       index.json and index.html: status, duration, key figures, provenance, the sweeps
    sweep.py       run_sweep: one notebook over a grid of parameter values, resumable, sweep.json
    sweep_page.py  a sweep's comparison page: the sortable table of points and the metric's figure
    compare.py     compare_reports: report folders side by side, differences highlighted
    page.py        what those pages share: style, the sortable table's script, formatting
    commands.py    `polyspace report`, `polyspace sweep`, `polyspace compare`
"""

from .index import key_figures, render_index, write_index
from .run import StageResult, run_report, run_stage, select_stages

__all__ = ["StageResult", "key_figures", "render_index", "run_report", "run_stage", "select_stages", "write_index"]
