"""`polyspace sweep`: the grid is parsed and checked before anything runs; points run through
papermill into folders of their own, failures are recorded per point, reruns resume; the smoke
sweep of the issue (04 over fusion_lr) end to end."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from polyspace_core import cli
from polyspace_core.errors import PolySpaceError
from polyspace_core.report.sweep import (
    Point,
    parse_grid,
    plan_points,
    point_name,
    run_sweep,
    split_values,
    why_not_done,
)
from polyspace_core.workspace import load_preset

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- the grid, before anything runs

def test_values_split_on_commas_outside_brackets():
    assert split_values("1e-3,3e-4") == ["1e-3", "3e-4"]
    assert split_values("[4,8],[4, 8, 16]") == ["[4,8]", "[4, 8, 16]"]
    assert split_values("a") == ["a"]


def test_grid_is_typed_and_in_the_notebooks_order():
    grid = parse_grid("04_train_fusion", [("fusion_rank", "16,32"), ("fusion_lr", "1e-3,3e-4"), ("cached", "true")])
    assert grid == {"cached": [True], "fusion_lr": [1e-3, 3e-4], "fusion_rank": [16, 32]}
    assert list(grid) == ["cached", "fusion_lr", "fusion_rank"]
    assert parse_grid("07_ffn_tfd", [("ffn_train_frames", "[4,8],[4,8,16]")]) == {"ffn_train_frames": [[4, 8],
                                                                                                       [4, 8, 16]]}


@pytest.mark.parametrize("pairs, message", [
    ([("fusion_lrr", "1e-3")], "unknown parameter 'fusion_lrr' for stage 04_train_fusion; it accepts"),
    ([("fusion_rank", "16,abc")], "parameter fusion_rank: expected an integer, got 'abc'"),
    ([("fusion_lr", "1e-3,fast")], "parameter fusion_lr: expected a number, got 'fast'"),
    ([("cached", "true,maybe")], "parameter cached: expected true or false, got 'maybe'"),
    ([("fusion_pooling", "mean,max")], "parameter fusion_pooling: expected one of mean, attention, got 'max'"),
    ([("preset", "smoke,default")], "the preset is not swept"),
    ([("fusion_lr", "1e-3"), ("fusion_lr", "3e-4")], "given twice"),
    ([("fusion_lr", "1e-3,,3e-4")], "an empty value"),
    ([("fusion_lr", "1e-3,0.001")], "listed twice"),
    ([], "at least one -p"),
])
def test_bad_grids_are_one_line_errors(pairs, message):
    with pytest.raises(PolySpaceError, match=re.escape(message)) as error:
        parse_grid("04_train_fusion", pairs)
    assert "\n" not in str(error.value)


def test_a_list_parameter_takes_one_bracketed_list_per_point():
    with pytest.raises(PolySpaceError, match=re.escape("ffn_train_frames takes a list per point")):
        parse_grid("07_ffn_tfd", [("ffn_train_frames", "4,8")])


def test_the_cli_stops_before_running_anything(capsys, tmp_path, monkeypatch):
    """A value of the wrong type: `error: <the parameter's line>`, exit 2, nothing written."""
    shutil.copytree(ROOT / "params", tmp_path / "params")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    monkeypatch.setenv("POLYSPACE_ROOT", str(tmp_path))
    rc = cli.main(["sweep", "--nb", "04", "-p", "fusion_rank", "16,abc", "--preset", "smoke"])
    err = capsys.readouterr().err
    assert rc == 2 and err == "error: parameter fusion_rank: expected an integer, got 'abc'\n"
    for argv, message in ((["--nb", "01,04", "-p", "seed", "0"], "a sweep runs one notebook"),
                          (["--nb", "04", "-p", "seed", "0", "--jobs", "0"], "--jobs 0"),
                          (["--nb", "04", "-p", "seed", "0", "--name", "../x"], "--name '../x'"),
                          (["--nb", "04", "-p", "seed", "0", "--preset", "nope"], "preset 'nope'")):
        assert cli.main(["sweep", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks", "params"]


def test_points_are_the_product_with_their_values_in_their_names():
    points = plan_points("04_train_fusion", "smoke", {"fusion_lr": [1e-3, 3e-4], "fusion_rank": [16, 32]}, "s", ROOT)
    assert [p.name for p in points] == ["01_fusion_lr=0.001,fusion_rank=16", "02_fusion_lr=0.001,fusion_rank=32",
                                        "03_fusion_lr=0.0003,fusion_rank=16", "04_fusion_lr=0.0003,fusion_rank=32"]
    smoke = load_preset("smoke")
    for p in points:
        assert p.explicit == ["fusion_lr", "fusion_rank"]
        # everything else is the preset's value, as `polyspace report --preset smoke` injects it
        assert {k: v for k, v in p.parameters.items() if k not in p.values} == \
               {k: smoke[k] for k in p.parameters if k not in p.values and k != "preset"} | {"preset": "smoke"}
    assert point_name(3, 3, {"ffn_train_frames": [4, 8], "color_root": "data/a b"}) == \
        "003_ffn_train_frames=4+8,color_root=data-a-b"


def test_a_point_that_changes_generated_data_gets_its_own_folder():
    """07 generates SynthMotion into ffn_root, which the preset's run shares: a point with other
    video sizes must neither replace nor be refused by it."""
    points = plan_points("07_ffn_tfd", "smoke", {"ffn_video_size": [32, 48]}, "sizes", ROOT)
    roots = [p.parameters["ffn_root"] for p in points]
    assert roots == [f"data/sweeps/smoke/sizes/{p.name}/ffn_root" for p in points]
    assert all("ffn_root" in p.explicit for p in points)
    # a sweep that leaves the data alone reads the preset's
    same = plan_points("07_ffn_tfd", "smoke", {"ffn_lr": [0.1, 0.01]}, "lr", ROOT)
    assert {p.parameters["ffn_root"] for p in same} == {load_preset("smoke")["ffn_root"]}
    with pytest.raises(PolySpaceError, match="not both"):
        plan_points("07_ffn_tfd", "smoke", {"ffn_root": ["data/a", "data/b"], "ffn_video_size": [32, 48]}, "x", ROOT)


def test_a_point_is_reused_only_when_done_with_the_same_parameters_and_upstream(tmp_path):
    point = Point("01_fusion_lr=0.001", {"fusion_lr": 0.001}, {"preset": "smoke", "fusion_lr": 0.001}, ["fusion_lr"])
    upstream = {"01_featurize": "t1", "02_train_converters": "t2"}
    (tmp_path / "04_train_fusion").mkdir()
    (tmp_path / "04_train_fusion" / "metrics.json").write_text("{}")
    done = {"status": "ok", "parameters": dict(point.parameters), "upstream": dict(upstream)}

    def why(record, now=upstream):
        return why_not_done(record, point, now, tmp_path, "04_train_fusion")

    assert why(done) == (None, False)
    assert why(None) == ("not run yet", False)
    # failed or interrupted: runs again where it stopped (its trainer resumes)
    assert why({**done, "status": "failed"}) == ("failed before", False)
    assert why({**done, "status": "pending"}) == ("not finished before", False)
    # made with other parameters or on another upstream run: runs again from nothing
    reason, stale = why({**done, "parameters": {"preset": "smoke", "fusion_lr": 0.1}})
    assert "fusion_lr" in reason and stale
    reason, stale = why(done, {**upstream, "02_train_converters": "t3"})
    assert "02_train_converters" in reason and stale
    (tmp_path / "04_train_fusion" / "metrics.json").unlink()
    assert "is gone" in why(done)[0]


# ----------------------------------------------------------------------------- running points (a tiny notebook)

def _fake_ffn_notebook() -> nbformat.NotebookNode:
    """A stand-in for 07: takes ffn_epochs, fails at 0, records where its outputs went."""
    body = ('if ws.p.ffn_epochs == 0:\n    raise ValueError("no epochs to train")\n'
            'ws.write_metrics({"epochs": ws.p.ffn_epochs, "score": 1.0 / ws.p.ffn_epochs, '
            '"run_dir": str(ws.run_dir), "report_dir": str(ws.report_dir)})')
    cells = [new_code_cell('preset = "default"\nseed = 0\ndevice = "auto"\ninteractive = "auto"',
                           metadata={"tags": ["parameters"]}),
             new_code_cell('from polyspace_core.workspace import open_stage\nws = open_stage("07_ffn_tfd", globals())'),
             new_code_cell(body)]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}})


def test_points_run_at_once_fail_alone_resume_and_refuse_another_grid(tmp_path, monkeypatch):
    shutil.copytree(ROOT / "params", tmp_path / "params")
    (tmp_path / "notebooks").mkdir()
    nbformat.write(_fake_ffn_notebook(), tmp_path / "notebooks" / "07_ffn_tfd.ipynb")
    monkeypatch.setenv("POLYSPACE_ROOT", str(tmp_path))
    default, smoke = load_preset("default", ROOT)["ffn_epochs"], load_preset("smoke", ROOT)["ffn_epochs"]
    assert default != smoke
    lines: list[str] = []

    sweep = run_sweep("07", [("ffn_epochs", f"{default},{smoke},0")], preset="smoke", name="epochs", jobs=2,
                      root=tmp_path, log=lines.append)
    points = sweep["points"]
    assert [p["status"] for p in points] == ["ok", "ok", "failed"]
    # the default preset's value is a point of its own, not taken for "no override" (POLYSPACE_EXPLICIT)
    assert [p["metrics"].get("epochs") for p in points[:2]] == [default, smoke]
    assert points[2]["error"] == "ValueError: no epochs to train" and points[2]["html"]
    folder = tmp_path / "reports" / "smoke" / "sweeps" / "epochs"
    for p in points[:2]:
        # the point's own outputs, not the preset's (POLYSPACE_OUTPUTS)
        assert p["metrics"]["run_dir"] == str(tmp_path / "runs" / "smoke" / "sweeps" / "epochs" / p["point"]
                                              / "07_ffn_tfd")
        assert p["metrics"]["report_dir"] == str(folder / p["point"] / "07_ffn_tfd")
        index = json.loads((folder / p["point"] / "index.json").read_text())
        assert index["stages"][0]["stage"] == "07_ffn_tfd"
        assert index["provenance"]["params"]["ffn_epochs"] == p["values"]["ffn_epochs"]
    assert not (tmp_path / "reports" / "smoke" / "07_ffn_tfd").exists()
    assert not (tmp_path / "runs" / "smoke" / "07_ffn_tfd").exists()
    assert json.loads((folder / "sweep.json").read_text()) == sweep
    assert sweep["metric"] is None  # the fake writes none of 07's headline figures
    page = (folder / "index.html").read_text()
    assert page.count("<tr class=") == 3 and "ValueError: no epochs to train" in page and "--metric" in page
    assert 'href="sweeps/epochs/index.html"' in (tmp_path / "reports" / "smoke" / "index.html").read_text()

    # the rerun skips the points done and runs the failed one again
    lines.clear()
    again = run_sweep("07", [("ffn_epochs", f"{default},{smoke},0")], preset="smoke", name="epochs",
                      metric="score", root=tmp_path, log=lines.append)
    assert [p["reused"] for p in again["points"]] == [True, True, False]
    assert [p["status"] for p in again["points"]] == ["ok", "ok", "failed"]
    assert sum("skipped" in line for line in lines) == 2
    assert again["metric"] == "score" and "data:image/png;base64," in (folder / "index.html").read_text()

    # the same name with another grid: refused before anything runs, unless --overwrite
    with pytest.raises(PolySpaceError, match=r"sweep epochs .* holds another grid .*--overwrite"):
        run_sweep("07", [("ffn_epochs", f"{smoke}")], preset="smoke", name="epochs", root=tmp_path)
    assert json.loads((folder / "sweep.json").read_text())["grid"] == {"ffn_epochs": [default, smoke, 0]}
    with pytest.raises(PolySpaceError, match="--metric nothing: no finished point has that figure"):
        run_sweep("07", [("ffn_epochs", f"{default},{smoke},0")], preset="smoke", name="epochs",
                  metric="nothing", root=tmp_path, log=lines.append)
    replaced = run_sweep("07", [("ffn_epochs", f"{smoke}")], preset="smoke", name="epochs", overwrite=True,
                         root=tmp_path, log=lines.append)
    assert [p["point"] for p in replaced["points"]] == [f"01_ffn_epochs={smoke}"]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [f"01_ffn_epochs={smoke}"]


# ----------------------------------------------------------------------------- the sweep on the smoke preset

@pytest.mark.notebooks
def test_smoke_sweep_writes_two_points_a_page_and_resumes(smoke_sweep):
    first, second = smoke_sweep["first"], smoke_sweep["second"]
    assert first.returncode == 0, first.stderr[-2000:]
    folder = smoke_sweep["folder"]
    sweep = smoke_sweep["sweep"]
    assert sweep["stage"] == "04_train_fusion" and sweep["grid"] == {"fusion_lr": [1e-3, 3e-4]}
    assert [p["status"] for p in sweep["points"]] == ["ok", "ok"]
    preset_04 = json.loads((ROOT / "reports" / "smoke" / "04_train_fusion" / "metrics.json").read_text())
    for p in sweep["points"]:
        metrics = json.loads((folder / p["point"] / "04_train_fusion" / "metrics.json").read_text())
        assert metrics["params"]["fusion_lr"] == p["values"]["fusion_lr"]
        assert metrics["val_top1"] == p["metrics"]["val_top1"]
        assert (ROOT / "runs" / "smoke" / "sweeps" / "04-fusion_lr" / p["point"] / "04_train_fusion"
                / "latest.json").is_file()
        assert (folder / p["html"]).is_file()
        # built on the preset's 01 and 02 as the smoke report left them
        assert p["upstream"] == smoke_sweep["upstream_before"]
    # and neither run of the sweep ran them again
    assert smoke_sweep["upstream_after"] == smoke_sweep["upstream_before"]
    # the preset's own 04 is not a point's
    assert preset_04["params"]["fusion_lr"] == load_preset("smoke")["fusion_lr"]
    assert sweep["metric"] == "val_top1"

    page = (folder / "index.html").read_text()
    assert page.count('<tr class="ok">') == 2 and "data:image/png;base64," in page and 'src="http' not in page
    index = (ROOT / "reports" / "smoke" / "index.html").read_text()
    assert 'href="sweeps/04-fusion_lr/index.html"' in index

    # the rerun of the same command: both points done, nothing run
    assert second.returncode == 0, second.stderr[-2000:]
    assert "2 points, 0 run now, 2 done earlier, 0 failed" in second.stdout
    resumed = smoke_sweep["resumed"]
    assert [p["reused"] for p in resumed["points"]] == [True, True]
    assert [p["metrics"] for p in resumed["points"]] == [p["metrics"] for p in sweep["points"]]
