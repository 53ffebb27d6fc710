"""The report runner: notebook selection, a failing stage, the index page."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from polyspace_core.errors import PolySpaceError
from polyspace_core.report import key_figures, render_index, run_report, select_stages
from polyspace_core.report.run import kernel_threads
from polyspace_core.workspace import load_preset

ROOT = Path(__file__).resolve().parent.parent


def test_select_stages():
    assert select_stages(None)[0] == "01_featurize" and len(select_stages(None)) == 8
    assert select_stages("04") == ["04_train_fusion"]
    assert select_stages("07_ffn_tfd,1") == ["01_featurize", "07_ffn_tfd"]
    with pytest.raises(PolySpaceError, match="--nb 9"):
        select_stages("9")


def test_key_figures_skip_meta_and_non_numbers():
    figures = key_figures({"top1": 0.5, "mode": "cached", "ok": True, "params": {}, "elapsed_s": 3.0, "n": 4})
    assert figures == {"top1": 0.5, "n": 4}


def _notebook(stage, body):
    cells = [new_code_cell('preset = "default"\nseed = 0\ndevice = "auto"\ninteractive = "auto"',
                           metadata={"tags": ["parameters"]}),
             new_code_cell(f'from polyspace_core.workspace import open_stage\nws = open_stage("{stage}", globals())'),
             new_code_cell(body)]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}})


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """A project root with the real presets and two notebooks: one fine, one that fails."""
    shutil.copytree(ROOT / "params", tmp_path / "params")
    (tmp_path / "notebooks").mkdir()
    nbformat.write(_notebook("05_eval_downstream", 'import matplotlib.pyplot as plt\nfrom tqdm.auto import tqdm\n'
                                                   'list(tqdm(range(3)))\nplt.plot([1, 2, 3])\nplt.show()\n'
                                                   'ws.write_metrics({"top1_fusion": 0.75})'),
                   tmp_path / "notebooks" / "05_eval_downstream.ipynb")
    nbformat.write(_notebook("06_efficiency", 'raise RuntimeError("boom")'),
                   tmp_path / "notebooks" / "06_efficiency.ipynb")
    monkeypatch.setenv("POLYSPACE_ROOT", str(tmp_path))
    return tmp_path


def test_failing_stage_is_reported_and_others_still_run(tiny_project, capfd):
    results = run_report("smoke", "05,06", root=tiny_project)
    # the kernels' transport warning stays off the terminal
    assert "without encryption" not in "".join(capfd.readouterr())
    status = {r.stage: r.status for r in results}
    assert status == {"05_eval_downstream": "ok", "06_efficiency": "failed"}
    failed = next(r for r in results if r.stage == "06_efficiency")
    assert "RuntimeError: boom" in failed.error

    out = tiny_project / "reports" / "smoke"
    index = json.loads((out / "index.json").read_text())
    assert [s["stage"] for s in index["stages"]] == ["05_eval_downstream", "06_efficiency"]
    assert index["stages"][0]["metrics"]["top1_fusion"] == 0.75
    assert index["stages"][0]["metrics"]["preset"] == "smoke"
    assert "commit" in index["provenance"]["git"] and index["provenance"]["versions"]["torch"]
    page = (out / "index.html").read_text()
    assert 'href="05_eval_downstream.html"' in page and "failed" in page and "top1_fusion" in page
    # HTML reports open offline: the figure is embedded and nothing is fetched from the network
    stage_page = (out / "05_eval_downstream.html").read_text()
    assert "data:image/png;base64" in stage_page
    assert 'src="http' not in stage_page
    # the tqdm bar ran to the end in the kernel; the static page shows no frozen "0%|" widget text
    executed = json.loads((out / "05_eval_downstream.ipynb").read_text())
    assert any("widget-view+json" in json.dumps(o) for c in executed["cells"] for o in c.get("outputs", []))
    assert "%|" not in stage_page

    # re-running one stage keeps the other's row
    run_report("smoke", "05", root=tiny_project)
    index = json.loads((out / "index.json").read_text())
    assert [s["stage"] for s in index["stages"]] == ["05_eval_downstream", "06_efficiency"]


def test_a_report_of_other_parameters_is_never_replaced_silently(tiny_project, capsys):
    from polyspace_core.cli import main

    run_report("smoke", "05", root=tiny_project)
    out = tiny_project / "reports" / "smoke"
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert not list(out.glob(".*.running.ipynb"))  # the executed notebook was renamed into place
    preset = tiny_project / "params" / "smoke.yaml"
    preset.write_text(preset.read_text().replace("eval_probe_epochs: ", "eval_probe_epochs: 1"))  # 5 -> 15, 30 -> 130
    capsys.readouterr()
    assert main(["report", "--preset", "smoke", "--nb", "05"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: holds results made with other parameters: 05_eval_downstream "
                          f"(eval_probe_epochs: ") and err.count("\n") == 1 and "--overwrite" in err, err
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["report", "--preset", "smoke", "--nb", "05", "--overwrite"]) == 0
    assert json.loads((out / "index.json").read_text())["stages"][0]["metrics"]["params"]["eval_probe_epochs"] > 10


def test_report_overrides_reach_the_kernel_and_win_over_the_preset(tiny_project):
    """`polyspace report -p NAME VALUE`: a value equal to default.yaml's still beats the preset's
    (smoke has eval_probe_epochs 5, default 40), and the index records the run's values."""
    assert load_preset("smoke", tiny_project)["eval_probe_epochs"] != load_preset("default", tiny_project)[
        "eval_probe_epochs"] == 40
    explicit_before = os.environ.get("POLYSPACE_EXPLICIT")
    results = run_report("smoke", "05", root=tiny_project, overrides={"eval_probe_epochs": "40"})
    assert results[0].status == "ok", results[0].error
    assert results[0].metrics["params"]["eval_probe_epochs"] == 40
    index = json.loads((tiny_project / "reports" / "smoke" / "index.json").read_text())
    assert index["provenance"]["params"]["eval_probe_epochs"] == "40"
    assert os.environ.get("POLYSPACE_EXPLICIT") == explicit_before  # set for the kernels only


def test_render_index_marks_failures():
    index = {"preset": "smoke", "generated": "now", "total_duration_s": 3.0,
             "provenance": {"git": {"commit": "abc", "dirty": True}, "versions": {"torch": "2"}, "device": "cpu",
                            "params": {"seed": 0}},
             "stages": [{"stage": "01_featurize", "status": "failed", "duration_s": 1.0, "html": "01_featurize.html",
                         "error": "ValueError: x", "metrics": {}}]}
    page = render_index(index)
    assert "1 failed" in page and "ValueError: x" in page and "abc (dirty)" in page


def test_the_index_opens_with_every_claim_and_shows_each_stages_headline():
    claim = {"id": "fusion_beats_student", "statement": "fusion beats the student linear probe", "value": 0.065,
             "ci_low": 0.02, "ci_high": 0.11, "p_value": 0.004, "holds": True, "rule": "interval above 0"}
    weak = {**claim, "id": "fusion_beats_student_matched", "statement": "fusion beats the matched head",
            "ci_low": -0.01, "p_value": 0.2, "holds": False}
    metrics = {"eval_split": "test", **{f"gflops_{i}": float(i) for i in range(20)}, "top1_fusion": 0.42,
               "top1_student": 0.355, "claims": [claim, weak]}
    index = {"preset": "default", "generated": "now", "total_duration_s": 3.0,
             "provenance": {"git": {"commit": "abc", "dirty": False}, "versions": {}, "device": "cpu", "params": {}},
             "stages": [{"stage": "05_eval_downstream", "status": "ok", "duration_s": 1.0,
                         "html": "05_eval_downstream.html", "metrics": metrics}]}
    page = render_index(index)
    findings = page[page.index("<h2>Findings</h2>"):page.index("<h2>Stages</h2>")]
    assert "1 of 2 claims hold" in findings and "fusion beats the student linear probe" in findings
    assert "[0.02, 0.11]" in findings and "0.004" in findings and "does not hold" in findings
    assert 'href="05_eval_downstream.html"' in findings
    stages = page[page.index("<h2>Stages</h2>"):]
    # the stage's declared headline figures, not its first twelve numbers
    assert "top1_fusion" in stages and "top1_student" in stages and "gflops_0" not in stages


def test_index_writes_merge_with_what_another_report_wrote_meanwhile(tmp_path):
    """Two reports of one preset (NB=01 in one shell, NB=08 in another) keep each other's rows."""
    from polyspace_core.report import StageResult, write_index

    out = tmp_path / "reports" / "default"
    out.mkdir(parents=True)
    first = StageResult("01_featurize", "ok", 3.0, "01_featurize.ipynb", "01_featurize.html", {"a": 1})
    other = StageResult("08_colorization", "failed", 2.0, "08_colorization.ipynb", None, {}, "boom")
    write_index(out, "default", ROOT, [first])
    write_index(out, "default", ROOT, [other])   # the other shell, started before the first write
    index = json.loads((out / "index.json").read_text())
    assert [s["stage"] for s in index["stages"]] == ["01_featurize", "08_colorization"]
    assert index["total_duration_s"] == 5.0
    rerun = StageResult("01_featurize", "ok", 4.0, "01_featurize.ipynb", "01_featurize.html", {"a": 2})
    write_index(out, "default", ROOT, [rerun])
    index = json.loads((out / "index.json").read_text())
    assert index["stages"][0]["metrics"] == {"a": 2} and index["stages"][1]["error"] == "boom"
    assert "08_colorization" in (out / "index.html").read_text()


def test_jobs_run_independent_stages_at_once_and_dependent_ones_after(tiny_project, monkeypatch):
    """--jobs 2: 01 and 07 (independent) run side by side, each kernel with its share of the
    cores; 02 (reads 01) starts only after 01 has ended; the index lists the stages in order."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    marks = tiny_project / "marks"
    marks.mkdir()

    def body(stage, wait_for=None):
        wait = (f'deadline = time.time() + 120\n'
                f'while not (marks / "{wait_for}.start").exists():\n'
                f'    assert time.time() < deadline, "{wait_for} never ran beside this stage"\n'
                f'    time.sleep(0.05)\n') if wait_for else ""
        return (f'import os, time, pathlib, torch\nmarks = pathlib.Path(r"{marks}")\n'
                f'(marks / "{stage}.start").write_text(str(time.time()))\n{wait}'
                f'(marks / "{stage}.end").write_text(str(time.time()))\n'
                f'ws.write_metrics({{"threads": torch.get_num_threads(), "seed": ws.p.seed, '
                f'"omp": int(os.environ["OMP_NUM_THREADS"])}})')

    for stage, wait_for in (("01_featurize", "07_ffn_tfd"), ("02_train_converters", None), ("07_ffn_tfd", None)):
        nbformat.write(_notebook(stage, body(stage, wait_for)), tiny_project / "notebooks" / f"{stage}.ipynb")
    results = run_report("smoke", "01,02,07", root=tiny_project, jobs=2, overrides={"seed": 7})
    assert [(r.stage, r.status) for r in results] == [("01_featurize", "ok"), ("02_train_converters", "ok"),
                                                       ("07_ffn_tfd", "ok")], [r.error for r in results]
    at = {p.name: float(p.read_text()) for p in marks.iterdir()}
    assert at["02_train_converters.start"] >= at["01_featurize.end"]
    threads = kernel_threads(2)
    assert all(r.metrics["threads"] == threads and r.metrics["omp"] == threads for r in results)
    assert all(r.metrics["seed"] == 7 for r in results)  # -p values reach the kernels run side by side
    index = json.loads((tiny_project / "reports" / "smoke" / "index.json").read_text())
    assert [s["stage"] for s in index["stages"]] == ["01_featurize", "02_train_converters", "07_ffn_tfd"]
    with pytest.raises(PolySpaceError, match="--jobs 0"):
        run_report("smoke", "01", root=tiny_project, jobs=0)


def test_a_preset_names_the_notebooks_its_report_runs(tiny_project):
    """report_notebooks: `make report PRESET=x` without NB runs those; --nb still chooses; a bad
    value is one line when the preset is read."""
    preset = tiny_project / "params" / "only05.yaml"
    preset.write_text('preset: only05\nreport_notebooks: "05"\n')
    results = run_report("only05", root=tiny_project)
    assert [(r.stage, r.status) for r in results] == [("05_eval_downstream", "ok")]
    assert [r.stage for r in run_report("only05", "06", root=tiny_project)] == ["06_efficiency"]
    preset.write_text("preset: only05\nreport_notebooks: []\n")
    with pytest.raises(PolySpaceError, match="report_notebooks"):
        run_report("only05", root=tiny_project)
