"""The notebook-07 study layer: resumable runs (finished runs reused, interrupted ones continued
to the same weights), per-frame-count baselines, the table and the metrics."""

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_ffn_train import moving_bar_clips

from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn import study
from polyspace_core.video.frame_cache import FrameCache

SETTINGS = dict(arch="tiny", epochs=2, batch_size=8, lr=0.05, fc_lr_mult=1.0, seed=0, device="cpu", verbose=False)


@pytest.fixture(scope="module")
def data() -> study.TFDData:
    return study.TFDData(root=Path("."), class_names=["left", "right"], train=moving_bar_clips(24, seed=1),
                         val=moving_bar_clips(8, seed=2), test=moving_bar_clips(12, frame_counts=(4, 6, 8, 16), seed=3),
                         train_frames=(4, 8, 16), eval_frames=(4, 6, 8, 16), crop=16)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_finished_run_is_loaded_not_retrained(data, tmp_path):
    first = study.train_tfd_model("ffn", data, save_dir=tmp_path / "ffn", **SETTINGS)
    assert (tmp_path / "ffn" / "final.json").is_file() and (tmp_path / "ffn" / study.RUN_RECORD).is_file()
    again = study.train_tfd_model("ffn", data, save_dir=tmp_path / "ffn", **SETTINGS)
    assert _same_weights(first.model, again.model)
    assert again.seconds == pytest.approx(first.seconds) and again.history == first.history
    with pytest.raises(PolySpaceError, match="other settings"):
        study.train_tfd_model("ffn", data, save_dir=tmp_path / "ffn", **{**SETTINGS, "lr": 0.01})


def test_run_folder_is_keyed_on_data_and_settings(data, tmp_path):
    folder = study.run_folder(tmp_path, data, **SETTINGS)
    assert folder.parent == tmp_path and (folder / "identity.json").is_file()
    assert study.run_folder(tmp_path, data, **SETTINGS) == folder
    assert study.run_folder(tmp_path, data, **{**SETTINGS, "lr": 0.01}) != folder
    # a data change the model config cannot see (same classes, other crop) gets its own folder too
    other = study.TFDData(**{**data.__dict__, "crop": 12})
    assert study.run_folder(tmp_path, other, **SETTINGS) != folder
    # so is one read through a JPEG frame cache (other pixels); a uint8 one (the decoded pixels) is not
    for encoding, same in (("uint8", True), ("jpeg", False)):
        train = copy.copy(data.train)
        train.frame_cache = FrameCache(tmp_path / encoding, 32, encoding=encoding)
        cached = study.TFDData(**{**data.__dict__, "train": train})
        assert (study.run_folder(tmp_path, cached, **SETTINGS) == folder) is same


def test_interrupted_run_continues_to_the_same_weights(data, tmp_path):
    straight = study.train_tfd_model("tsm", data, save_dir=tmp_path / "straight", **SETTINGS)
    # an interruption after epoch 1: only epoch_1 survives
    interrupted = tmp_path / "interrupted"
    study.train_tfd_model("tsm", data, save_dir=interrupted, **SETTINGS)
    for name in ("final", "epoch_2", "best"):
        for suffix in (".json", ".safetensors"):
            (interrupted / f"{name}{suffix}").unlink(missing_ok=True)
    (interrupted / study.RUN_RECORD).unlink()
    resumed = study.train_tfd_model("tsm", data, save_dir=interrupted, **SETTINGS)
    assert _same_weights(straight.model, resumed.model)
    assert [r["epoch"] for r in resumed.history] == [1, 2]


def test_per_frame_count_baselines_train_one_count_each(data):
    separate = study.train_per_frame_baselines(data, None, **{**SETTINGS, "epochs": 1})
    assert sorted(separate) == [4, 8]
    assert [run.model.frame_counts for run in separate.values()] == [(4,), (8,)]
    with pytest.raises(PolySpaceError, match="frames=5"):
        study.train_tfd_model("tsm", data, frames=5, **SETTINGS)
    with pytest.raises(PolySpaceError, match="FFN trains every frame count"):
        study.train_tfd_model("ffn", data, frames=4, **SETTINGS)


def test_table_and_metrics_from_results(data):
    tsm = study.train_tfd_model("tsm", data, **{**SETTINGS, "epochs": 1})
    ffn = study.train_tfd_model("ffn", data, **{**SETTINGS, "epochs": 1})
    results = {"TSM": {4: 30.0, 6: 40.0, 8: 50.0, 16: 90.0}, "FFN": {4: 85.0, 6: 86.0, 8: 88.0, 16: 89.0},
               "TSM 4F only": {4: 60.0, 6: 55.0, 8: 50.0, 16: 40.0},
               "TSM 8F only": {4: 50.0, 6: 70.0, 8: 80.0, 16: 70.0}}
    row = study.per_frame_count_accuracy(results, {4: "TSM 4F only", 8: "TSM 8F only"})
    assert row == {4: 60.0, 8: 80.0, 16: 90.0}
    table = study.accuracy_table({**results, "TSM per frame count": row}, data.train_frames)
    assert table.loc["TSM", "TFD gap"] == 60.0 and table.loc["TSM per frame count", "TFD gap"] == 30.0
    accuracy = study.Accuracy(results, row, data.train_frames)
    assert accuracy.gaps == {"TSM": 60.0, "TSM per frame count": 30.0, "FFN": 4.0}
    metrics = study.stage_metrics(SimpleNamespace(stage="07_ffn_tfd"), accuracy, tsm, ffn)
    assert metrics["acc_tsm_4f"] == 30.0 and metrics["acc_ffn_16f"] == 89.0 and metrics["acc_ffn_6f"] == 86.0
    assert metrics["tfd_gap_tsm"] == 60.0 and metrics["tfd_gap_ffn"] == 4.0
    assert metrics["ffn_gap_at_most_third_of_tsm"] and metrics["ffn_high_within_2_points_of_tsm"]
    assert metrics["acc_separate_4f"] == 60.0 and metrics["separate_low_below_high"]


def test_claims_compare_ffn_and_tsm_clip_by_clip(data):
    rng = np.random.default_rng(0)
    n = 200
    tsm16 = rng.random(n) < 0.9
    correct = {"TSM": {4: rng.random(n) < 0.3, 8: rng.random(n) < 0.5, 16: tsm16},
               "FFN": {4: rng.random(n) < 0.85, 8: rng.random(n) < 0.88, 16: tsm16.copy()}}
    results = {name: {t: 100.0 * c.mean() for t, c in by.items()} for name, by in correct.items()}
    accuracy = study.Accuracy(results, None, (4, 8, 16), correct)
    claims = {c.id: c for c in accuracy.claims()}
    assert claims["ffn_beats_tsm_4f"].holds and claims["ffn_beats_tsm_4f"].ci_low > 30
    assert claims["ffn_beats_tsm_4f"].value == pytest.approx(results["FFN"][4] - results["TSM"][4])
    assert not claims["ffn_beats_tsm_16f"].holds and claims["ffn_beats_tsm_16f"].p_value == 1.0  # the same clips right
    gap = claims["ffn_gap_below_tsm_gap"]
    assert gap.holds and gap.value == pytest.approx((results["TSM"][16] - results["TSM"][4])
                                                     - (results["FFN"][16] - results["FFN"][4]))
    low, high = accuracy.intervals()["FFN"][4]
    assert low < results["FFN"][4] < high


def test_claims_over_seeds_average_each_clip(data):
    """TSM and FFN under several seeds ((S, N) correctness): accuracies are means over the seeds,
    intervals and claims resample clips with each clip's correctness averaged over the seeds, and
    McNemar's p is the largest per seed."""
    from polyspace_core.stats import bootstrap_interval, mcnemar_exact, paired_difference

    rng = np.random.default_rng(1)
    n, s = 150, 3
    correct = {"TSM": {4: rng.random((s, n)) < 0.3, 16: rng.random((s, n)) < 0.9},
               "FFN": {4: rng.random((s, n)) < 0.8, 16: rng.random((s, n)) < 0.9}}
    results = study.accuracy_from_correctness(correct)
    accuracy = study.Accuracy(results, None, (4, 16), correct)
    assert accuracy.seeds == 3
    assert results["FFN"][4] == pytest.approx(100 * np.mean([c.mean() for c in correct["FFN"][4]]))
    std = accuracy.seed_std()
    assert std["TSM"][4] == pytest.approx(np.std(100 * correct["TSM"][4].mean(1), ddof=1))
    ci = bootstrap_interval(correct["FFN"][4].mean(0))
    assert accuracy.intervals()["FFN"][4] == pytest.approx([100 * ci.low, 100 * ci.high])
    claim = next(c for c in accuracy.claims() if c.id == "ffn_beats_tsm_4f")
    diff = paired_difference(100 * correct["FFN"][4].mean(0), 100 * correct["TSM"][4].mean(0))
    assert (claim.value, claim.ci_low, claim.ci_high) == pytest.approx((diff.value, diff.low, diff.high))
    assert claim.p_value == max(mcnemar_exact(correct["FFN"][4][i], correct["TSM"][4][i]) for i in range(s))
    assert claim.holds and "3 seeds" in claim.rule


def test_per_clip_correctness_agrees_with_accuracy(data):
    tsm = study.train_tfd_model("tsm", data, **{**SETTINGS, "epochs": 1})
    correct = study.clip_correctness({"TSM": tsm.model}, data.test)
    accuracy = study.evaluate_models({"TSM": tsm.model}, data.test)
    assert set(correct["TSM"]) == set(accuracy["TSM"]) == set(data.eval_frames)
    for t, c in correct["TSM"].items():
        assert c.dtype == bool and len(c) == len(data.test)
        assert 100.0 * c.mean() == pytest.approx(accuracy["TSM"][t])


def test_imagenet_start_is_a_setting_of_the_study(data, tmp_path):
    from polyspace_core.ffn.pretrained import torchvision_name
    from polyspace_core.ffn.tsm_resnet import build_model
    from polyspace_core.io import read_json
    from polyspace_core.paths import project_root
    from polyspace_core.workspace import load_preset

    # a torchvision-named state dict of the tiny ResNet stands in for the ImageNet file
    torch.manual_seed(3)
    source = build_model("tiny", 2, frame_counts=(16,), ffn=False).state_dict()
    weights = {torchvision_name(k): v for k, v in source.items() if not k.startswith("fc.")}
    torch.save(weights, tmp_path / "imagenet.pth")
    settings = {**SETTINGS, "epochs": 1}
    run = study.train_tfd_model("ffn", data, save_dir=tmp_path / "ffn", pretrained="imagenet",
                                imagenet_weights=tmp_path / "imagenet.pth", **settings)
    info = read_json(tmp_path / "ffn" / "final.json")
    assert info["start"] == "imagenet" and info["start_source"] == str(tmp_path / "imagenet.pth")
    assert run.model is not None
    with pytest.raises(PolySpaceError, match="other settings"):    # a random start is another run
        study.train_tfd_model("ffn", data, save_dir=tmp_path / "ffn", pretrained="none", **settings)
    with pytest.raises(PolySpaceError, match="no ImageNet weights"):
        study.train_tfd_model("ffn", data, save_dir=tmp_path / "other", pretrained="imagenet", **settings)

    # the default preset's settings are the keys they were before these options existed, so the
    # run folder (keyed on them) and the saved runs in it stay the same
    p = SimpleNamespace(**load_preset("default", project_root()))
    assert set(study.settings_from_params(p, 0, "cpu")) == {"arch", "epochs", "batch_size", "lr", "fc_lr_mult",
                                                            "lambda_kl", "seed", "device"}


def test_seed_repeats_train_each_seed_in_its_own_folder(data, tmp_path):
    from polyspace_core.paths import project_root
    from polyspace_core.workspace import load_preset

    p = SimpleNamespace(**{**load_preset("default", project_root()), "ffn_epochs": 1, "ffn_batch": 8,
                           "ffn_seeds": [0, 4]})
    ws = SimpleNamespace(p=p, seed=0, device="cpu", run_dir=tmp_path, stage="07_ffn_tfd", path=Path)
    tsm, ffn = study.train(ws, data, "tsm"), study.train(ws, data, "ffn")
    repeats = study.seed_repeats(ws, data)
    assert list(repeats) == [4] and set(repeats[4]) == {"tsm", "ffn"}
    assert repeats[4]["ffn"].save_dir.parent != ffn.save_dir.parent          # another run folder
    assert not _same_weights(repeats[4]["ffn"].model, ffn.model)
    accuracy = study.evaluate(ws, data, tsm, ffn, None, repeats)
    assert accuracy.seeds == 2 and accuracy.correct["FFN"][4].shape == (2, 12)
    metrics = study.stage_metrics(ws, accuracy, tsm, ffn)
    assert metrics["seeds"] == [0, 4] and metrics["test_clips"] == 12 and set(metrics["acc_seed_std"]) == {"tsm", "ffn"}
    with pytest.raises(PolySpaceError, match="the first must be the notebook's seed"):
        study.seed_repeats(SimpleNamespace(**{**ws.__dict__, "p": SimpleNamespace(**{**p.__dict__,
                                                                                  "ffn_seeds": [4, 0]})}), data)
