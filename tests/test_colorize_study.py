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


def _defaults() -> dict:
    from pathlib import Path

    values = yaml.safe_load((Path(__file__).resolve().parent.parent / "params" / "default.yaml").read_text())
    return {k: values[k] for k in stage_spec("08_colorization")}


def _ws(root=None, **kw):
    """A stand-in for notebook 08's workspace with the default preset's parameters (+ overrides)."""
    from pathlib import Path

    return SimpleNamespace(stage="08_colorization", p=SimpleNamespace(**{**_defaults(), **kw}), seed=0, device="cpu",
                           path=lambda x: Path(x) if root is None else Path(root) / x)


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
    ws = _ws(color_strip_clips=1)
    # the notebook's call: the test split, keeping color_strip_clips clips' outputs
    assert list(study.evaluate(ws, other, tiny, progress=False)["outputs"]) == list(evaluation["outputs"])
    metrics = study.stage_metrics(ws, evaluation, other)
    assert metrics["metric_flow"]["backend"] == "farneback"  # the system uses DIS: never measured with it
    for m in METHODS:
        for key in ("psnr", "ssim", "ssim_gaussian", "cdc", "warp_error"):
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
    params = {**_defaults(), "seeds": []}
    ws = SimpleNamespace(p=SimpleNamespace(**params), seed=3, device="cpu")
    cfg = study.train_config(ws)
    assert (cfg.exemplar_epochs, cfg.fusion_epochs, cfg.seed) == (params["color_exemplar_epochs"],
                                                                  params["color_fusion_epochs"], 3)
    ws.p.seeds = [5, 6]  # the first of `seeds` trains the run the figures show
    assert study.train_config(ws).seed == 5 and study.train_config(ws, 6).seed == 6
    assert study.flow_backend(ws).describe()["backend"] == "dis"
    ws.p.color_flow = "raft"
    with pytest.raises(PolySpaceError, match="RAFT weights"):
        study.flow_backend(ws)


def test_interval_table_is_the_stats_modules_figures(tiny, tmp_path):
    from polyspace_core.stats import bootstrap_interval, paired_difference

    run = study.train_run(tmp_path / "run", tiny, DISFlow(), _cfg(), "cpu", progress=False)
    evaluation = study.evaluate_run(run, tiny.test + tiny.val + tiny.train, keep_outputs=0, progress=False)
    table = study.interval_table(evaluation)
    psnr = study.clip_psnr(evaluation)
    ci = bootstrap_interval(psnr["exemplar"])
    assert table.loc["exemplar", "psnr"] == pytest.approx(round(ci.value, 4))
    assert table.loc["exemplar", "psnr 95% CI"] == f"[{ci.low:.4f}, {ci.high:.4f}]"
    d = paired_difference(psnr["fusion"], psnr["exemplar"])
    assert table.loc["exemplar", "fusion - method (psnr)"] == pytest.approx(round(d.value, 4))
    assert table.loc["exemplar", "fusion - method 95% CI (psnr)"] == f"[{d.low:.4f}, {d.high:.4f}]"
    assert table.loc["fusion", "fusion - method 95% CI (ssim)"] == "—"
    fig = plots.plot_paired_differences(evaluation)
    assert len(fig.axes[0].collections) >= len(METHODS) - 1  # one scatter of clips per compared method
    metrics = study.stage_metrics(_ws(), evaluation, run)
    assert metrics["psnr_fusion_minus"]["exemplar"]["low"] == pytest.approx(d.low)
    assert set(metrics["ssim_intervals"]) == set(METHODS)
    with pytest.raises(PolySpaceError, match="at least 2"):
        study.interval_table(study.evaluate_run(run, tiny.test, keep_outputs=0, progress=False))


def _write_davis(root, sequences=("bear", "car-turn"), frames=5):
    """A DAVIS-layout tree: JPEGImages/480p/<seq>/00000.jpg ... (a panning window over a photo)
    and ImageSets/2017/val.txt."""
    import cv2
    from skimage import data

    photo = {"bear": data.chelsea(), "car-turn": data.coffee(), "dog": data.astronaut()}
    for name in sequences:
        folder = root / "JPEGImages" / "480p" / name
        folder.mkdir(parents=True)
        for t in range(frames):
            frame = photo[name][20:110, 10 + 3 * t:170 + 3 * t]  # 90x160, moving right
            cv2.imwrite(str(folder / f"{t:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(sequences) + "\n")


def test_davis_path_first_frame_reference_evaluation(tiny, tmp_path):
    root = tmp_path / "DAVIS"
    _write_davis(root)
    ws = _ws(color_eval_dataset="davis", color_eval_root=str(root), color_eval_split="2017/val",
             color_eval_size=48, color_eval_frames=4, color_strip_clips=1)
    test = study.test_set(ws, tiny)
    assert [c.id for c in test.clips] == ["bear", "car-turn"]
    for clip in test.clips:
        assert clip.frames.shape == (4, 48, 88, 3)      # short side 48, sides multiples of 8, 4 frames
        np.testing.assert_array_equal(clip.reference, clip.frames[0])  # the first-frame protocol
        assert clip.reference_kind == "first_frame"
    assert "first-frame reference" in test._repr_html_()
    run = study.train_run(tmp_path / "run", tiny, DISFlow(), _cfg(), "cpu", progress=False)
    evaluation = study.evaluate(ws, run, test, progress=False)
    assert evaluation["clip_ids"] == ["bear", "car-turn"]
    metrics = study.stage_metrics(ws, evaluation, run, test)
    assert metrics["test_set"] == "davis" and metrics["test_clips"] == 2
    assert all(np.isfinite(metrics[f"psnr_{m}"]) for m in METHODS)
    # frame 0 is the reference itself: given to the methods, not scored (PSNR would be inf)
    assert evaluation["first_scored_frame"] == 1
    assert all(len(v) == 3 for v in evaluation["results"]["fusion"].psnr)
    assert all(len(v) == 2 for v in evaluation["results"]["fusion"].warp_error)
    # the temporal branch carries the reference along a 3 px pan: frame 1 is close
    assert evaluation["results"]["temporal"].psnr[0][0] > 25
    assert study.interval_table(evaluation).shape[0] == len(METHODS)
    assert set(study.measurement_notes(evaluation).index) >= {"warp error flow"}


def test_davis_and_video_folder_errors(tmp_path):
    from polyspace_core.colorize.data import load_sequence_clips
    from polyspace_core.datasets.registry import list_color_sequences
    from polyspace_core.video.encode import write_video

    ws = _ws(color_eval_dataset="davis", color_eval_root=str(tmp_path / "nowhere"))
    with pytest.raises(PolySpaceError, match="color_eval_root") as e:
        study.test_set(ws)
    assert "\n" not in str(e.value)
    with pytest.raises(PolySpaceError, match="color_eval_root: not set"):
        study.test_set(_ws(color_eval_dataset="davis", color_eval_root=None))
    root = tmp_path / "DAVIS"
    _write_davis(root, ("bear", "dog"), frames=3)
    (root / "JPEGImages" / "480p" / "empty").mkdir()
    with pytest.raises(PolySpaceError, match="empty sequence"):
        list_color_sequences("davis", root)
    assert [s.name for s in list_color_sequences("davis", root, split="2017/val")] == ["bear", "dog"]
    (root / "JPEGImages" / "480p" / "dog" / "00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(PolySpaceError, match="00001.jpg: frame does not decode"):
        load_sequence_clips("davis", root, 32, sequences=["dog"], progress=False)
    with pytest.raises(PolySpaceError, match="'cat': not in"):
        list_color_sequences("davis", root, sequences=["cat"])
    # a folder of videos (Videvo style), through the project's decoders
    videos = tmp_path / "videvo"
    videos.mkdir()
    rng = np.random.default_rng(0)
    clip = np.repeat(rng.integers(0, 255, (1, 32, 48, 3), dtype=np.uint8), 6, axis=0)
    write_video(videos / "a.mp4", clip, fps=10, codec="h264", bframes=0, options={"crf": "0"})
    clips = load_sequence_clips("videos", videos, 32, max_frames=4, progress=False)
    assert [c.id for c in clips] == ["a"] and clips[0].frames.shape == (4, 32, 48, 3)
    np.testing.assert_array_equal(clips[0].reference, clips[0].frames[0])
    (videos / "b.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(PolySpaceError, match="b.mp4"):
        load_sequence_clips("videos", videos, 32, progress=False)
    with pytest.raises(PolySpaceError, match="no video files"):
        list_color_sequences("videos", tmp_path / "DAVIS")


def test_seeds_combine_clip_by_clip():
    """08 over seeds: the seeded methods' per-clip values are averaged over the seeds before the
    intervals and claims; summary means and std over seeds; other clips cannot be combined."""
    from polyspace_core.colorize.evaluate import MethodResult, clip_values, combine_seeds
    from polyspace_core.stats import paired_difference

    def evaluation(fusion_psnr, exemplar_psnr, ids=("a", "b", "c")):
        results = {"global": MethodResult(psnr=[[20.0], [21.0], [19.0]], cdc=[0.1, 0.1, 0.1]),
                   "exemplar": MethodResult(psnr=[[v] for v in exemplar_psnr], cdc=[0.1, 0.1, 0.1]),
                   "fusion": MethodResult(psnr=[[v] for v in fusion_psnr], cdc=[0.1, 0.1, 0.1])}
        for r in results.values():
            r.ssim = r.psnr
            r.warp_error = [[0.0]] * 3
            r.frames, r.seconds = 3, 1.0
        return {"results": results, "summary": {m: r.summary() for m, r in results.items()},
                "clip_ids": list(ids)}

    first = evaluation([24.0, 25.0, 23.0], [22.0, 23.0, 22.0])
    second = evaluation([26.0, 25.0, 24.0], [22.0, 24.0, 21.0])
    del second["results"]["global"], second["summary"]["global"]  # global does not depend on training
    both = combine_seeds({0: first, 7: second})
    assert both["seeds"] == [0, 7]
    values = clip_values(both, "psnr")
    np.testing.assert_allclose(values["fusion"], [25.0, 25.0, 23.5])
    np.testing.assert_allclose(values["global"], [20.0, 21.0, 19.0])
    assert both["summary"]["fusion"]["psnr"] == pytest.approx(np.mean([24.0, 25.0]))
    assert both["summary_std"]["fusion"]["psnr"] == pytest.approx(np.std([24.0, 25.0], ddof=1))
    claim = next(c for c in study.claims(both) if c.id == "fusion_beats_exemplar_psnr")
    diff = paired_difference([25.0, 25.0, 23.5], [22.0, 23.5, 21.5])
    assert (claim.value, claim.ci_low, claim.ci_high) == pytest.approx((diff.value, diff.low, diff.high))
    assert "2 seeds" in claim.rule
    with pytest.raises(PolySpaceError, match="other clips"):
        combine_seeds({0: first, 7: evaluation([1.0] * 3, [1.0] * 3, ids=("a", "b", "x"))})


def test_learning_rates_are_shown_against_the_seeds_guide():
    from polyspace_core.colorize.system import RECOMMENDED_LR

    ws = SimpleNamespace(p=SimpleNamespace(color_lr_exemplar=2e-3, color_lr_exemplar_finetune=2e-4,
                                           color_lr_fusion=5e-5))
    table = study.learning_rates(ws)
    guide = RECOMMENDED_LR
    assert table["seed's guide"].tolist() == [guide["scratch"]["exemplar"], guide["pretrained"]["exemplar"],
                                              guide["scratch"]["fusion"]]
    assert table["ratio"].tolist() == pytest.approx([20.0, 20.0, 0.5])


def test_color_checkpoint_scores_a_system_trained_elsewhere_without_training(tiny, tmp_path, capsys):
    """color_checkpoint: a FusionSystem folder from elsewhere (train-color's layout: DIR/checkpoint
    + DIR/history.json) is loaded with the notebook's flow and scored on DAVIS as it is; the
    workspace's run folder is never touched (this stand-in workspace has none) and no seed trains."""
    import json

    import torch

    from polyspace_core.colorize.exemplar import build_exemplar_branch
    from polyspace_core.colorize.system import FusionSystem

    torch.manual_seed(3)
    original = FusionSystem(build_exemplar_branch()).eval()
    original.trained_size = 32
    folder = original.save_pretrained(tmp_path / "elsewhere" / "checkpoint")
    (tmp_path / "elsewhere" / "history.json").write_text(json.dumps({"epochs": [
        {"phase": "fusion", "epoch": 1, "train_loss": 0.1, "val_l1": 0.05, "seconds": 1.0}]}))
    _write_davis(tmp_path / "DAVIS")
    ws = _ws(color_checkpoint=str(folder), seeds=[0, 1], color_eval_dataset="davis",
             color_eval_root=str(tmp_path / "DAVIS"), color_eval_size=32, color_eval_frames=4, color_strip_clips=0)
    run = study.train(ws, tiny, DISFlow())
    assert run.loaded_from == folder and run.checkpoint == folder and run.seconds == 0.0
    assert run.best("fusion")["val_l1"] == 0.05 and "not trained here" in run._repr_html_()
    for key, value in original.state_dict().items():
        assert torch.equal(run.system.state_dict()[key], value), key
    runs = study.train_seeds(ws, tiny, DISFlow(), run)
    assert runs == {0: run} and "further seeds [1] are not run" in capsys.readouterr().out
    test = study.test_set(ws, tiny)
    evaluation = study.evaluate(ws, run, test, progress=False, runs=runs)
    # the scores are the saved system's own
    direct = study.evaluate_run(study.ColorRun(original, [], tmp_path, {}, 0.0, False, torch.device("cpu")),
                                test.clips, keep_outputs=0, progress=False, methods=["exemplar", "fusion"])
    for method in ("exemplar", "fusion"):
        assert evaluation["results"][method].psnr == direct["results"][method].psnr
    metrics = study.stage_metrics(ws, evaluation, run, test)
    assert metrics["checkpoint"] == str(folder) and metrics["test_set"] == "davis"
    with pytest.raises(PolySpaceError, match="no system.json"):
        study.train(_ws(color_checkpoint=str(tmp_path)), tiny, DISFlow())
