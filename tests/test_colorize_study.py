"""Notebook 08's glue (colorize/study.py) and figures (colorize/plots.py) on a tiny SynthColor set."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import yaml

from polyspace_core.colorize import plots, study
from polyspace_core.colorize.evaluate import METHODS, summary_table
from polyspace_core.colorize.flow import DISFlow
from polyspace_core.colorize.train import TrainConfig
from polyspace_core.errors import PolySpaceError
from polyspace_core.stage_params import stage_spec

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sc")
    return study.prepare_data(root / "synthcolor", clips=3, frames=4, size=32, seed=0, progress=False)


def _cfg(**kw):
    return TrainConfig(**{"exemplar_epochs": 1, "fusion_epochs": 1, "batch_size": 4, "frames_per_clip": 2,
                          "fusion_batch_size": 1, **kw})


def test_data_card_lists_every_split(tiny):
    card = tiny.card()
    assert list(card.index) == ["train", "validation", "test"] and list(card["clips"]) == [1, 1, 1]
    assert (len(tiny.train), len(tiny.val), len(tiny.test)) == (1, 1, 1)
    assert "SynthColor" in tiny._repr_html_()


def test_train_evaluate_metrics_and_settings_guard(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    run = study.train_run(out, tiny, DISFlow(), _cfg(), "cpu", progress=False)
    assert not run.reused and (run.checkpoint / "system.json").is_file()
    assert list(run.summary().index) == ["exemplar", "fusion"]
    # the same settings: the finished checkpoint is reused
    again = study.train_run(out, tiny, DISFlow(), _cfg(), "cpu", progress=False)
    assert again.reused and again.history == run.history
    # other settings: announced, cleared, trained again (never a stale checkpoint)
    other = study.train_run(out, tiny, DISFlow(), _cfg(lr_fusion=1e-3), "cpu", progress=False)
    assert "other settings" in capsys.readouterr().out and not other.reused

    evaluation = study.evaluate_run(other, tiny.test, keep_outputs=1, progress=False)
    assert list(summary_table(evaluation).index) == list(METHODS)
    assert list(study.summary_table(evaluation).index) == list(METHODS)
    ws = SimpleNamespace(stage="08_colorization", p=SimpleNamespace(color_strip_clips=1))
    # the notebook's call: the test split, keeping color_strip_clips clips' outputs
    assert list(study.evaluate(ws, other, tiny, progress=False)["outputs"]) == list(evaluation["outputs"])
    metrics = study.stage_metrics(ws, evaluation, other)
    for m in METHODS:
        for key in ("psnr", "ssim", "cdc", "warp_error"):
            assert np.isfinite(metrics[f"{key}_{m}"])
    assert metrics["fps_fusion"] > 0 and metrics["test_clips"] == 1 and "val_l1_fusion" in metrics
    assert metrics["claims"] == [] and "need at least 2" in metrics["claims_skipped"]  # said, not faked
    two = study.evaluate_run(other, tiny.test + tiny.val[:1], keep_outputs=0, progress=False)
    claims = {c.id: c for c in study.claims(two)}
    assert set(claims) == {f"fusion_beats_{m}_psnr" for m in METHODS if m != "fusion"}
    psnr = study.clip_psnr(two)
    assert claims["fusion_beats_exemplar_psnr"].value == pytest.approx(psnr["fusion"].mean() - psnr["exemplar"].mean())
    checks = study.result_checks(evaluation)
    assert len(checks) == 4 and checks["holds"].dtype == bool

    clip_id, frames = study.strip_outputs(evaluation, 0)
    assert frames["fusion"].shape == (4, 32, 32, 3)
    with pytest.raises(PolySpaceError, match="kept 1 clips"):
        study.strip_outputs(evaluation, 3)
    assert len(plots.frame_strips(evaluation["outputs"])) == 1
    for fig in (plots.plot_training_history(other.history), plots.plot_per_frame_curves(evaluation),
                plots.frame_browser(evaluation["outputs"], interactive=False)):
        assert fig.axes
    assert type(plots.frame_browser(evaluation["outputs"], interactive=True)).__name__ == "VBox"


def test_ws_parameters_map_onto_the_training_config(tmp_path):
    from pathlib import Path

    values = yaml.safe_load((Path(__file__).resolve().parent.parent / "params" / "default.yaml").read_text())
    params = {k: values[k] for k in stage_spec("08_colorization")}
    ws = SimpleNamespace(p=SimpleNamespace(**params), seed=3, device="cpu")
    cfg = study.train_config(ws)
    assert (cfg.exemplar_epochs, cfg.fusion_epochs, cfg.seed) == (params["color_exemplar_epochs"],
                                                                  params["color_fusion_epochs"], 3)
    assert study.flow_backend(ws).describe()["backend"] == "dis"
    ws.p.color_flow = "raft"
    with pytest.raises(PolySpaceError, match="RAFT weights"):
        study.flow_backend(ws)
