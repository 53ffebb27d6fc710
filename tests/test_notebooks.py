"""Every notebook runs on the smoke preset: via the report runner (papermill, what `make report
PRESET=smoke` does) and via nbval (the preset taken from POLYSPACE_PRESET, as in `make lab`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyspace_core.stage_params import STAGES

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.notebooks




def test_smoke_report_runs_every_stage(smoke_report):
    failed = {r.stage: r.error for r in smoke_report if r.status != "ok"}
    assert not failed, f"failed stages: {failed}"
    index = json.loads((ROOT / "reports" / "smoke" / "index.json").read_text())
    assert [s["stage"] for s in index["stages"]] == STAGES
    page = (ROOT / "reports" / "smoke" / "index.html").read_text()
    for stage in STAGES:
        assert f'href="{stage}.html"' in page
        metrics = json.loads((ROOT / "reports" / "smoke" / stage / "metrics.json").read_text())
        assert metrics["preset"] == "smoke" and metrics["stage"] == stage


def test_smoke_report_shows_every_figure_as_an_image(smoke_report):
    """A matplotlib Figure the kernel cannot render as PNG shows as the text "<Figure size ...>"
    and the HTML report has no picture; every figure output must carry an image."""
    as_text = {}
    for stage in STAGES:
        nb = json.loads((ROOT / "reports" / "smoke" / f"{stage}.ipynb").read_text())
        images = 0
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                images += "image/png" in data
                if "image/png" not in data and "<Figure size" in "".join(data.get("text/plain", "")):
                    as_text.setdefault(stage, []).append("".join(cell["source"])[:60])
        assert images, f"{stage}: no figure in the report"
    assert not as_text, f"figures shown as text, not images: {as_text}"


def test_smoke_report_pages_show_no_frozen_progress_bar(smoke_report):
    """Without widget state a tqdm bar's static text is its first draw ("0%|"); the pages leave
    the bars out instead of showing every loop as not started."""
    frozen = [stage for stage in STAGES if "%|" in (ROOT / "reports" / "smoke" / f"{stage}.html").read_text()]
    assert not frozen, f"progress-bar text in the HTML of {frozen}"


# a tag each training stage's curves must hold (converters; fusion with its gates; the baselines;
# FFN and TSM per frame count; both colorization phases)
TRAINING_CURVES = {"02_train_converters": ["val/loss", "val/r2", "lr"],
                   "04_train_fusion": ["train/loss", "val/top1", "gate/"],
                   "05_eval_downstream": ["student/val/top1", "student_matched/val/top1", "teachers_concat/train/loss"],
                   "07_ffn_tfd": ["ffn/tensorboard/val/acc_4f", "tsm/tensorboard/val/acc_16f", "train/kl"],
                   "08_colorization": ["exemplar/val/l1", "fusion/val/l1", "fusion/train/loss"]}


def test_every_training_stage_writes_tensorboard_curves(smoke_report):
    """What `make tensorboard PRESET=smoke` serves, read back with TensorBoard's event reader."""
    from polyspace_core.scalar_log import read_scalars

    for stage, wanted in TRAINING_CURVES.items():
        scalars = read_scalars(ROOT / "runs" / "smoke" / stage)
        for part in wanted:
            found = [tag for tag in scalars if part in tag]
            assert found, f"{stage}: no curve with {part!r} among {sorted(scalars)[:20]}"
            assert all(len(scalars[tag]) >= 1 for tag in found)
    # one point per epoch, never two: a stage rerun on the same folder replaces its curves
    fusion = read_scalars(ROOT / "runs" / "smoke" / "04_train_fusion")
    steps = [step for step, _ in next(v for k, v in fusion.items() if k.endswith("val/top1"))]
    assert steps == sorted(set(steps)), steps


def test_papermill_cached_flag_from_notebooks_dir(tmp_path):
    """`cd notebooks && papermill 04_train_fusion.ipynb out.ipynb -p cached true|false|maybe`."""
    papermill = str(Path(sys.executable).parent / "papermill")
    env = {**os.environ, "POLYSPACE_PRESET": "smoke"}
    for value, mode in (("true", "cached"), ("false", "video")):
        out = subprocess.run([papermill, "04_train_fusion.ipynb", str(tmp_path / f"{value}.ipynb"),
                              "-p", "cached", value, "-p", "preset", "smoke"],
                             cwd=ROOT / "notebooks", env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        metrics = json.loads((ROOT / "reports" / "smoke" / "04_train_fusion" / "metrics.json").read_text())
        assert metrics["mode"] == mode
    out = subprocess.run([papermill, "04_train_fusion.ipynb", str(tmp_path / "bad.ipynb"), "-p", "cached", "maybe"],
                         cwd=ROOT / "notebooks", env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "PolySpaceError: parameter cached: expected true or false, got 'maybe'" in out.stderr


def test_nbval_runs_the_notebooks_top_to_bottom(smoke_report):
    """nbval executes each notebook as JupyterLab would (no papermill injection)."""
    env = {**os.environ, "POLYSPACE_PRESET": "smoke"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider", "notebooks/"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
