"""The real-data presets (params/hmdb51.yaml, hmdb51_csv, ucf101, diving48, ssv2; issue 17).

Each names the four default checkpoints by hub id, a placeholder dataset root and no zoo. So that
they cannot rot, each runs notebooks 01-05 here as written, with two kinds of change only: the
dataset root points at a generated SynthMotion set in that dataset's own layout (parsed by the
official-format parser the preset names), and the HF cache the hub ids are read from is an
offline one holding tiny models at exactly those ids. Sizes (epochs, batch, converter kinds) are
overridden to tiny values; every other key is the preset's. The notebooks' cells execute in this
process with what `polyspace report` would inject (stage_parameters), as papermill would run them
in a kernel, without a kernel start per notebook; papermill itself runs in the smoke report tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import nbformat
import pytest

from polyspace_core.backbones import ARCHS
from polyspace_core.cli import main
from polyspace_core.report.run import explicit_names, stage_parameters
from polyspace_core.stage_params import STAGES
from polyspace_core.workspace import EXPLICIT_ENV, load_preset, resolve_params

ROOT = Path(__file__).resolve().parent.parent
# preset -> the parser its featurize_dataset names (= the SynthMotion layout generated for it)
PRESETS = {"hmdb51": "hmdb51", "hmdb51_csv": "hmdb51-csv", "ucf101": "ucf101", "diving48": "diving48",
           "ssv2": "ssv2"}
HUB_IDS = [ARCHS[key].hub_id for key in ("vjepa2", "videomae", "timesformer", "vivit")]
POLYSPACE = STAGES[:6]
# tiny sizes for a run on generated data; the keys a preset sets otherwise stay its own
TINY = {"featurize_batch": "8", "featurize_workers": "0", "featurize_shard_size": "16",
        "converter_kinds": "ridge,mlp", "converter_losses": "l2+cos", "converter_epochs": "2",
        "converter_hidden": "32", "converter_depth": "1", "converter_batch": "16", "seeds": "0",
        "alignment_layer_clips": "4", "fusion_epochs": "2", "fusion_batch": "8", "fusion_rank": "8",
        "eval_probe_epochs": "2"}


def test_each_real_preset_names_the_default_checkpoints_a_placeholder_root_and_no_zoo():
    for preset, dataset in PRESETS.items():
        values = load_preset(preset, ROOT)
        assert values["preset"] == preset
        assert values["featurize_dataset"] == dataset
        assert [values["featurize_student"], *values["featurize_teachers"]] == HUB_IDS
        assert [values["cost_student"], *values["cost_teachers"]] == HUB_IDS
        assert values["featurize_zoo"] is False and values["featurize_dtype"] == "float16"
        assert values["featurize_splits"] == ["train", "validation", "test"]
        assert not (ROOT / values["featurize_root"]).exists(), f"{preset}: the root must be a placeholder"
        for stage in POLYSPACE:  # every value has its declared type in the stage that reads it
            resolve_params(stage, {"preset": preset}, root=ROOT)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root of its own (params and notebooks copied), so runs and reports go there."""
    shutil.copytree(ROOT / "params", tmp_path / "params")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    monkeypatch.setenv("POLYSPACE_ROOT", str(tmp_path))
    return tmp_path


def test_a_preset_without_its_data_or_models_stops_before_any_notebook_with_one_line(project, offline_hf_cache,
                                                                                    capsys):
    def report(*extra: str) -> str:
        capsys.readouterr()
        assert main(["report", "--preset", "hmdb51", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return err

    assert report().startswith(f"error: featurize_root: {project / 'data' / 'hmdb51'} not found; set featurize_root")
    # the root is there, the hub ids are not in the (offline) cache
    err = report("-p", "featurize_root", str(project))
    assert err.startswith("error: featurize_student: model 'vjepa2-vitl-fpc64-256': cannot read the config of "
                          "the hub id 'facebook/vjepa2-vitl-fpc64-256'"), err
    # a local folder that is absent
    err = report("-p", "featurize_root", str(project), "-p", "featurize_student", "vjepa2-tiny",
                 "-p", "featurize_teachers", f"videomae-tiny,{project / 'no_such_model'}")
    assert err.startswith("error: featurize_teachers: model 'no_such_model':"), err
    assert not (project / "reports" / "hmdb51").exists() and not (project / "runs").exists()
    assert report("-p", "featurize_rot", "x") == "error: -p featurize_rot: not a parameter; see " \
                                                "polyspace_core/stage_params.py\n"


# ------------------------------------------------------------------------------------------------
# 01-05 of every preset on generated data and tiny models at the preset's hub ids


@pytest.fixture(scope="module")
def hub(module_offline_hf_cache, tmp_path_factory, save_models_at_hub_ids):
    save_models_at_hub_ids(module_offline_hf_cache, tmp_path_factory.mktemp("models"))
    return module_offline_hf_cache


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """sets(layout, clips) -> a SynthMotion set in that layout (made once): 3 classes, 16 frames of
    32 px, `clips` a class (40% in test)."""
    from polyspace_core.datasets import generate_synthmotion

    root = tmp_path_factory.mktemp("sets")

    def make(layout: str, clips: int) -> Path:
        folder = root / f"{layout}-{clips}"
        if not folder.is_dir():
            generate_synthmotion(folder, layout=layout, classes=3, clips_per_class=clips, frames=16, size=32,
                                 seed=0, test_fraction=0.4, progress=False)
        return folder

    return make


def run_in_process(stage: str, preset: str, root: Path, overrides: dict[str, str], monkeypatch) -> None:
    """Execute a notebook's code cells here, as papermill would in a kernel: its parameters cell,
    then what `polyspace report` injects (stage_parameters), then every other cell in order."""
    import matplotlib.pyplot as plt

    notebook = nbformat.read(root / "notebooks" / f"{stage}.ipynb", as_version=4)
    monkeypatch.setenv(EXPLICIT_ENV, ",".join(explicit_names(stage, overrides)))
    namespace: dict = {}
    for i, cell in enumerate(c for c in notebook.cells if c.cell_type == "code"):
        exec(compile(cell.source, f"{stage}.ipynb[{i}]", "exec"), namespace)
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(stage_parameters(stage, preset, root, overrides))
    plt.close("all")


def stages_to_run(preset: str, overrides: dict[str, str], root: Path) -> list[str]:
    """hmdb51 runs 01-05. Another preset runs 01 (its own dataset and parser) and on up to the last
    of 02-05 whose parameters differ from the ones hmdb51 runs with: the presets share their 02-05
    recipe, and running the same stage on the same parameters five times would test nothing new."""
    def resolved(stage: str, name: str) -> dict:
        params = resolve_params(stage, stage_parameters(stage, name, root, overrides), root=root,
                                explicit=explicit_names(stage, overrides))
        return {k: v for k, v in params.items() if k != "preset"}

    if preset == "hmdb51":
        return POLYSPACE[:5]
    differing = [i for i, stage in enumerate(POLYSPACE[1:5], 1) if resolved(stage, preset) != resolved(stage, "hmdb51")]
    return POLYSPACE[:max(differing, default=0) + 1]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_01_to_05_on_its_layout(preset, project, hub, sets, monkeypatch):
    import json

    from polyspace_core.features.store import FeatureStore

    matplotlib.use("Agg")
    # layer-wise CKA re-runs the backbones 01 ran; the FLOPs column is checked by 05's own tests
    overrides = {**TINY, "alignment_layerwise": "false", "eval_costs": "false"}
    stages = stages_to_run(preset, overrides, project)
    # 03's mutual kNN takes k = 10 neighbours: 12 test clips where it runs, else 6 (every split still
    # has every class)
    root = sets(PRESETS[preset], 10 if "03_alignment" in stages else 5)
    overrides["featurize_root"] = str(root)
    for stage in stages:
        run_in_process(stage, preset, project, overrides, monkeypatch)

    reports = project / "reports" / preset
    featurized = json.loads((reports / "01_featurize" / "metrics.json").read_text())
    assert featurized["params"]["featurize_dataset"] == PRESETS[preset]  # the preset's parser read the layout
    assert featurized["params"]["featurize_root"] == str(root)
    for split in ("train", "validation", "test"):
        store = FeatureStore.open(project / "runs" / preset / "01_featurize" / "features" / split)
        assert [m["source"] for m in store.manifest["models"]] == HUB_IDS  # loaded from the preset's hub ids
        assert store.manifest["dtype"] == "float16" and store.ok.all() and len(store.class_names) == 3
    if "05_eval_downstream" in stages:
        evaluated = json.loads((reports / "05_eval_downstream" / "metrics.json").read_text())
        assert evaluated["preset"] == preset and 0.0 <= evaluated["top1_fusion"] <= 1.0


def test_only_hmdb51_runs_02_to_05_while_the_presets_share_that_recipe(project):
    overrides = {**TINY, "featurize_root": str(project)}
    assert stages_to_run("hmdb51", overrides, project) == POLYSPACE[:5]
    assert stages_to_run("ucf101", overrides, project) == POLYSPACE[:1]
    # a recipe of its own in 04 makes that preset run 01-04
    (project / "params" / "ucf101.yaml").write_text(
        (project / "params" / "ucf101.yaml").read_text().replace("fusion_pooling: mean", "")
        + "fusion_pooling: attention\n")
    assert stages_to_run("ucf101", overrides, project) == POLYSPACE[:4]
