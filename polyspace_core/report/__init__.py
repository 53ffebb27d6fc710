"""Reports: the notebooks run headless on a preset, as HTML, with an index page.

    run.py       run_report / run_stage: papermill, nbconvert HTML (offline), one result per stage
    index.py     index.json and index.html: status, duration, key figures, provenance
    commands.py  `polyspace report`
"""

from .index import key_figures, render_index, write_index
from .run import StageResult, run_report, run_stage, select_stages

__all__ = ["StageResult", "key_figures", "render_index", "run_report", "run_stage", "select_stages", "write_index"]
