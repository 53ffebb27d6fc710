"""Parameter handling: coercion, presets, precedence, and the notebooks' parameters cells."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from polyspace_core.errors import PolySpaceError
from polyspace_core.stage_params import STAGES, all_params, stage_spec
from polyspace_core.workspace import coerce_value, load_preset, open_stage, resolve_params

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("value,expected", [(True, True), ("true", True), ("True", True), ("false", False),
                                            ("no", False), ("1", True)])
def test_bool_coercion(value, expected):
    assert coerce_value("cached", value, "bool") is expected


@pytest.mark.parametrize("spec,value,expected", [
    ("int", "3", 3), ("int", 3.0, 3), ("int", "1e3", 1000),
    ("float", "1e-3", 1e-3), ("float", 2, 2.0),
    ("list[str]", "videomae, vivit", ["videomae", "vivit"]),
    ("list[str]", "[videomae, vivit]", ["videomae", "vivit"]),
    ("list[int]", "[4, 8, 16]", [4, 8, 16]), ("list[int]", "4,8", [4, 8]),
    ("optional[int]", "none", None), ("optional[int]", "5", 5),
    ("choice:a|b", "b", "b"), ("auto_bool", "auto", "auto"), ("auto_bool", "false", False),
])
def test_value_coercion(spec, value, expected):
    assert coerce_value("x", value, spec) == expected


def test_paths_resolve_against_root(tmp_path):
    assert coerce_value("out", "data/x", "path", root=tmp_path) == tmp_path / "data/x"
    assert coerce_value("out", "/abs/y", "path", root=tmp_path) == Path("/abs/y")


@pytest.mark.parametrize("spec,value", [("bool", "maybe"), ("bool", 1.5), ("int", "3.5"), ("int", True),
                                        ("float", "fast"), ("list[int]", "a,b"), ("choice:a|b", "c"),
                                        ("str", 3), ("path", "")])
def test_bad_values_are_one_line_errors_naming_the_parameter(spec, value):
    with pytest.raises(PolySpaceError) as e:
        coerce_value("cached", value, spec)
    message = str(e.value)
    assert "\n" not in message and message.startswith("parameter cached:") and repr(value) in message


def test_unknown_parameter_is_an_error():
    with pytest.raises(PolySpaceError, match="unknown parameter 'cachd'"):
        resolve_params("04_train_fusion", {"preset": "default", "cachd": True}, root=ROOT)


def test_keys_of_other_stages_are_ignored():
    # papermill -f params/smoke.yaml passes every key of the flat preset to every notebook
    given = load_preset("smoke", ROOT)
    params = resolve_params("01_featurize", given, root=ROOT)
    assert set(params) == set(stage_spec("01_featurize"))


def test_unknown_preset_is_an_error():
    with pytest.raises(PolySpaceError, match="preset 'nope'"):
        resolve_params("04_train_fusion", {"preset": "nope"}, root=ROOT)


def _write_presets(tmp_path, default, other):
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "default.yaml").write_text(yaml.safe_dump(default))
    (tmp_path / "params" / "other.yaml").write_text(yaml.safe_dump(other))


def test_precedence_defaults_preset_override(tmp_path):
    base = load_preset("default", ROOT)
    _write_presets(tmp_path, base, {**base, "preset": "other", "seed": 7, "cached": not base["cached"]})
    notebook = {"preset": "default", "seed": base["seed"], "device": "auto", "interactive": "auto",
                "cached": base["cached"]}
    # no preset named: the defaults
    assert resolve_params("04_train_fusion", notebook, root=tmp_path)["seed"] == base["seed"]
    # preset from the environment (make lab PRESET=other, nbval) applies where nothing was overridden
    p = resolve_params("04_train_fusion", notebook, env_preset="other", root=tmp_path)
    assert p["preset"] == "other" and p["seed"] == 7 and p["cached"] is (not base["cached"])
    # papermill -p preset other -p seed 3: the explicit seed wins over the preset
    p = resolve_params("04_train_fusion", {**notebook, "preset": "other", "seed": "3"}, root=tmp_path)
    assert p["preset"] == "other" and p["seed"] == 3 and p["cached"] is (not base["cached"])
    # a preset named in the notebook beats the environment
    p = resolve_params("04_train_fusion", {**notebook, "preset": "default"}, env_preset=None, root=tmp_path)
    assert p["preset"] == "default"


def test_every_declared_parameter_has_a_value_in_every_preset():
    for preset in ("default", "smoke"):
        values = load_preset(preset, ROOT)
        assert values["preset"] == preset, f"params/{preset}.yaml must name itself"
        assert set(values) == set(all_params()), f"params/{preset}.yaml keys differ from stage_params.py"


def _parameters_cell(stage):
    nb = nbformat.read(ROOT / "notebooks" / f"{stage}.ipynb", as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{stage}: exactly one cell tagged 'parameters'"
    namespace: dict = {}
    exec(cells[0].source, namespace)
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


@pytest.mark.parametrize("stage", STAGES)
def test_notebook_parameters_cell_equals_default_preset(stage):
    cell = _parameters_cell(stage)
    default = load_preset("default", ROOT)
    assert set(cell) == set(stage_spec(stage)), f"{stage}: parameters cell keys differ from stage_params.py"
    for name, value in cell.items():
        assert value == default[name], (f"{stage}: {name} = {value!r} in the notebook "
                                        f"but {default[name]!r} in default.yaml")


@pytest.mark.parametrize("stage", STAGES)
def test_notebooks_are_stored_without_outputs_and_open_the_workspace(stage):
    nb = nbformat.read(ROOT / "notebooks" / f"{stage}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{stage}: strip outputs before committing"
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    assert f'open_stage("{stage}", globals())' in sources[1], f"{stage}: second code cell opens the workspace"
    assert "ws.write_metrics(" in sources[-1], f"{stage}: last cell writes metrics.json"


def test_open_stage_from_another_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POLYSPACE_PRESET", raising=False)
    ws = open_stage("04_train_fusion", {"preset": "smoke", "seed": 0, "device": "cpu", "interactive": "auto",
                                        "cached": "false"})
    assert ws.root == ROOT and ws.run_dir == ROOT / "runs" / "smoke" / "04_train_fusion"
    assert ws.p.cached is False and ws.interactive is False
    assert ws.provenance["seed"] == 0 and "torch" in ws.provenance["versions"]
    assert "04_train_fusion" in ws._repr_html_()


def test_explicit_names_win_even_at_the_default_presets_value(tmp_path):
    """A sweep point whose value equals default.yaml's (POLYSPACE_EXPLICIT) still overrides the preset."""
    base = load_preset("default", ROOT)
    _write_presets(tmp_path, base, {**base, "preset": "other", "seed": base["seed"] + 1})
    given = {"preset": "other", "seed": base["seed"]}
    assert resolve_params("04_train_fusion", given, root=tmp_path)["seed"] == base["seed"] + 1
    assert resolve_params("04_train_fusion", given, root=tmp_path, explicit=["seed"])["seed"] == base["seed"]
    with pytest.raises(PolySpaceError, match="POLYSPACE_EXPLICIT: 'fusion_lr' is not a parameter given"):
        resolve_params("04_train_fusion", given, root=tmp_path, explicit=["fusion_lr"])


def test_outputs_env_moves_only_the_stages_own_folders(tmp_path, monkeypatch):
    """POLYSPACE_OUTPUTS (a sweep point): this stage's run and report folders move under it; the
    stages it reads stay the preset's."""
    import shutil

    shutil.copytree(ROOT / "params", tmp_path / "params")
    monkeypatch.setenv("POLYSPACE_ROOT", str(tmp_path))
    monkeypatch.setenv("POLYSPACE_OUTPUTS", "sweeps/lr/01_fusion_lr=0.001")
    ws = open_stage("04_train_fusion", {"preset": "smoke", "device": "cpu"})
    assert ws.run_dir == tmp_path / "runs" / "smoke" / "sweeps" / "lr" / "01_fusion_lr=0.001" / "04_train_fusion"
    assert ws.stage_run_dir("04_train_fusion") == ws.run_dir
    assert ws.report_dir == tmp_path / "reports" / "smoke" / "sweeps" / "lr" / "01_fusion_lr=0.001" / "04_train_fusion"
    assert ws.stage_run_dir("01_featurize") == tmp_path / "runs" / "smoke" / "01_featurize"
    for bad in ("/tmp/x", "../x", "sweeps/../../x", "04_train_fusion"):
        monkeypatch.setenv("POLYSPACE_OUTPUTS", bad)
        with pytest.raises(PolySpaceError, match="POLYSPACE_OUTPUTS"):
            open_stage("04_train_fusion", {"preset": "smoke", "device": "cpu"})
