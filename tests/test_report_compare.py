"""`polyspace compare`: report folders side by side, differing rows highlighted; a folder that
is not a report is one line and a non-zero exit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from polyspace_core.errors import PolySpaceError
from polyspace_core.report import StageResult, write_index
from polyspace_core.report.compare import compare_reports, read_report

ROOT = Path(__file__).resolve().parent.parent


def _row(page: str, section: str, name: str) -> str:
    """The class of the row `name` in the table after the heading `section`."""
    table = page[page.index(f'<h2 id="{section}">'):]
    match = re.search(rf'<tr class="([^"]*)"><th>{re.escape(name)}</th>', table)
    assert match, f"no row {name} under {section}"
    return match.group(1)


def _report(folder: Path, lr: float, top1: float) -> Path:
    """A small report folder as `polyspace report` writes it: index.json with one 04 row."""
    metrics = {"mode": "cached", "val_top1": top1, "best_epoch": 2, "stage": "04_train_fusion", "preset": "smoke",
               "params": {"preset": "smoke", "fusion_lr": lr, "fusion_rank": 16},
               "provenance": {"git": {"commit": "abc", "dirty": False}, "seed": 0, "device": "cpu", "time": "t"}}
    folder.mkdir(parents=True)
    write_index(folder, "smoke", ROOT, [StageResult("04_train_fusion", "ok", 3.0, "04_train_fusion.ipynb", None,
                                                    metrics)])
    return folder


def test_two_reports_side_by_side_with_the_differences_highlighted(tmp_path):
    a = _report(tmp_path / "a", lr=1e-3, top1=0.5)
    b = _report(tmp_path / "b", lr=3e-4, top1=0.75)
    page = compare_reports([a, b], tmp_path / "out" / "compare.html").read_text()
    assert str(a) in page and str(b) in page
    assert _row(page, "04_train_fusion", "val_top1").startswith("diff")
    assert _row(page, "04_train_fusion", "fusion_lr").startswith("diff")
    assert _row(page, "04_train_fusion", "fusion_rank").startswith("same")
    assert _row(page, "04_train_fusion", "mode").startswith("same")
    assert "0.75" in page and "0.0003" in page
    assert 'id="only-diff"' in page and 'src="http' not in page

    # a stage's own folder (metrics.json only) is a report of that stage
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "metrics.json").write_text(json.dumps({"stage": "04_train_fusion", "preset": "smoke", "val_top1": 0.5,
                                                    "params": {"fusion_lr": 1e-3}}))
    assert list(read_report(stage).stages) == ["04_train_fusion"]
    page = compare_reports([a, stage], tmp_path / "c.html").read_text()
    assert _row(page, "04_train_fusion", "val_top1").startswith("same")


def test_what_is_not_a_report_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolySpaceError, match="not a report folder"):
        read_report(tmp_path / "empty")
    with pytest.raises(PolySpaceError, match="no such folder"):
        read_report(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.json").write_text("{not json")
    with pytest.raises(PolySpaceError, match="not a report index"):
        read_report(tmp_path / "broken")
    with pytest.raises(PolySpaceError, match="two or more"):
        compare_reports([tmp_path / "empty"], tmp_path / "c.html")

    report = _report(tmp_path / "a", lr=1e-3, top1=0.5)
    out = subprocess.run([sys.executable, "-m", "polyspace_core.cli", "compare", str(report), str(tmp_path / "empty"),
                          "--out", str(tmp_path / "c.html")], capture_output=True, text=True)
    assert out.returncode != 0
    assert out.stderr.startswith(f"error: {tmp_path / 'empty'}: not a report folder (no index.json or metrics.json); ")
    assert out.stderr.count("\n") == 1
    assert "Traceback" not in out.stdout + out.stderr and not (tmp_path / "c.html").exists()


@pytest.mark.notebooks
def test_the_smoke_report_against_a_point_of_its_sweep(smoke_sweep, tmp_path):
    point = smoke_sweep["folder"] / smoke_sweep["sweep"]["points"][0]["point"]
    out = subprocess.run([sys.executable, "-m", "polyspace_core.cli", "compare", "reports/smoke", str(point),
                          "--out", str(tmp_path / "compare.html")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "compare.html").read_text()
    assert "reports/smoke/sweeps/04-fusion_lr/" in page and ">reports/smoke<" in page
    preset_lr = json.loads((ROOT / "reports" / "smoke" / "04_train_fusion" / "metrics.json").read_text())["params"]
    assert preset_lr["fusion_lr"] != smoke_sweep["sweep"]["points"][0]["values"]["fusion_lr"]
    assert _row(page, "04_train_fusion", "fusion_lr").startswith("diff")
    assert _row(page, "04_train_fusion", "fusion_rank").startswith("same")
    # the stages the point does not have are shown as missing from it, not left out
    assert _row(page, "01_featurize", "status").startswith("diff")
