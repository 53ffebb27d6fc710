"""Cached and video mode on the real chain: SynthMotion videos -> featurize (tiny student and
teacher) -> ridge converters -> fusion, plus the CLI, fp16 stores and the 05 table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polyspace_core.cli import main
from polyspace_core.distributed import make_accelerator
from polyspace_core.errors import PolySpaceError
from polyspace_core.fusion.train import HeadOptions, TrainSettings, train_fusion

STUDENT, TEACHER = "vjepa2-tiny", "timesformer-tiny"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from polyspace_core.datasets import generate_synthmotion, load_split
    from polyspace_core.features.featurize import featurize

    root = tmp_path_factory.mktemp("fusion_chain")
    info = generate_synthmotion(root / "videos", layout="hmdb51-csv", classes=3, clips_per_class=6, frames=16,
                                size=32, seed=0, progress=False)
    for split in ("train", "validation", "test"):
        featurize(load_split(info["dataset"], info["root"], split), STUDENT, [TEACHER], root / "features",
                  batch=4, device="cpu", progress=False)
    assert main(["train-converter", "--features", str(root / "features"), "--save_dir", str(root / "converters"),
                 "--kind", "ridge", "--device", "cpu"]) == 0
    return {"root": root, "dataset": info["dataset"], "videos": info["root"], "features": root / "features",
            "converters": root / "converters"}


@pytest.fixture(scope="module")
def accelerator():
    return make_accelerator("cpu")


def test_cached_and_video_mode_take_the_same_steps(chain, accelerator):
    settings = TrainSettings(epochs=2, batch=4, lr=1e-3)
    runs = {}
    for mode in ("cached", "video"):
        torch.manual_seed(0)
        data = ({"features": chain["features"]} if mode == "cached" else
                {"dataset": chain["dataset"], "root": chain["videos"], "student": STUDENT})
        runs[mode] = train_fusion(mode=mode, converters=chain["converters"], settings=settings,
                                  head=HeadOptions(rank=16, gate_hidden=16), save_dir=chain["root"] / f"fusion_{mode}",
                                  accelerator=accelerator, progress=False, **data)
    cached, video = runs["cached"], runs["video"]
    assert cached.mode == "cached" and video.mode == "video"
    # same batches, same features (the video path runs featurize's code), same optimisation
    def column(run, key):
        return [row[key] for row in run.history]

    assert column(cached, "train_loss") == pytest.approx(column(video, "train_loss"), rel=1e-5)
    assert column(cached, "val_top1") == column(video, "val_top1")
    for (k, a), (_, b) in zip(cached.pipeline.state_dict().items(), video.pipeline.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    assert (chain["root"] / "fusion_video" / "best" / "fusion.json").is_file()
    # ... and the same evaluation: the video-mode checkpoint scored on videos and on the store
    from polyspace_core.fusion.evaluate import evaluate_checkpoint

    on_videos = evaluate_checkpoint(chain["root"] / "fusion_video", split="test", dataset=chain["dataset"],
                                    root=chain["videos"], device="cpu", progress=False)
    on_store = evaluate_checkpoint(chain["root"] / "fusion_video", split="test", features=chain["features"],
                                   device="cpu", progress=False)
    assert on_videos["mode"] == "video" and on_store["mode"] == "cached"
    assert on_videos["top1"] == on_store["top1"] and on_videos["confusion"] == on_store["confusion"]
    assert on_videos["loss"] == pytest.approx(on_store["loss"], rel=1e-5)


def test_fp16_store_is_read_by_its_manifest_and_the_flag_is_checked(chain, accelerator, tmp_path):
    from polyspace_core.features.store import FeatureStore, FeatureStoreWriter
    from polyspace_core.fusion.data import cached_batches, open_split_store

    # the same features written as fp16 (what featurize --fp16 stores)
    for split in ("train", "validation"):
        src = FeatureStore.open(chain["features"] / split)
        writer = FeatureStoreWriter(tmp_path / "fp16" / split, models=src.manifest["models"], dtype="fp16",
                                    tokens=src.tokens, shard_size=1000, paths=src.paths, labels=src.labels.tolist(),
                                    class_names=src.class_names)
        writer.write_shard(0, {m: src.array(m) for m in src.models}, src.status, len(src), 0)
        writer.finalize()
    store = open_split_store(tmp_path / "fp16", "train", features_fp16=True)  # flag agrees: fine
    batch = next(iter(cached_batches(store, [STUDENT], batch=4, shuffle=False)))
    assert batch[STUDENT].dtype == torch.float32
    ref = FeatureStore.open(chain["features"] / "train").array(STUDENT)[batch["index"]]
    torch.testing.assert_close(batch[STUDENT], ref.half().float())
    # training on fp16 features needs no flag at all
    run = train_fusion(mode="cached", features=tmp_path / "fp16", converters=chain["converters"],
                       settings=TrainSettings(epochs=1, batch=4), accelerator=accelerator, progress=False)
    assert [row["epoch"] for row in run.history] == [1]
    # the legacy flag on fp32 features is a clear error, not a dtype crash
    with pytest.raises(PolySpaceError, match="--features_fp16 was given but these features are stored as float32"):
        open_split_store(chain["features"], "train", features_fp16=True)


def test_cli_train_fusion_and_eval(chain, tmp_path, capsys):
    save = tmp_path / "fusion"
    args = ["train-fusion", "--use_cached_features", "--root", str(chain["features"]), "--converters",
            str(chain["converters"]), "--classes", "3", "--epochs", "2", "--batch", "4", "--lr", "1e-3",
            "--save_dir", str(save), "--device", "cpu", "--rank", "8"]
    assert main(args) == 0
    assert "cached mode" in capsys.readouterr().out
    history = json.loads((save / "history.json").read_text())
    assert history["mode"] == "cached" and [row["epoch"] for row in history["epochs"]] == [1, 2]
    assert main(["eval", "--fusion", str(save), "--student_only", "--split", "test", "--use_cached_features",
                 "--root", str(chain["features"]), "--device", "cpu", "--probe_epochs", "3",
                 "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["fusion"]["n"] == result["student_only"]["n"] == 3 * 1  # one test clip per class
    assert 0.0 <= result["fusion"]["top1"] <= 1.0
    # wrong class count, fp16 flag on fp32 features: one-line errors, exit 2
    assert main(args + ["--classes", "5"]) == 2  # the last --classes wins
    assert "--classes 5" in capsys.readouterr().err
    assert main(args + ["--features_fp16"]) == 2
    assert "--features_fp16 was given" in capsys.readouterr().err


def test_downstream_table_has_every_baseline_and_costs(chain):
    from polyspace_core.fusion.evaluate import evaluate_downstream

    report = evaluate_downstream(chain["root"] / "fusion_cached" / "best", chain["features"], device="cpu",
                                 probe_settings=TrainSettings(epochs=5, batch=8, lr=1e-2), progress=False)
    keys = [r["key"] for r in report.rows]
    assert keys == ["student", "student_matched", "student_attentive", "fusion", f"teacher_{TEACHER}",
                    "teachers_concat", "fusion_oracle"]
    m = report.metrics()
    for key in keys:
        assert 0.0 <= m[f"top1_{key}"] <= 1.0 and m[f"top5_{key}"] == 1.0  # 3 classes: top-5 is everything
    # every baseline was trained (selected on validation), never left random
    for name, fit in report.baselines.items():
        assert fit.best_epoch >= 1 and len(fit.history) >= 1 and "train_loss" in fit.history[0], name
    assert report.baselines["student_matched"].params == pytest.approx(m["params_fusion"], rel=0.05)
    assert report.baselines["student_attentive"].params == pytest.approx(m["params_fusion"], rel=0.1)
    # cost: backbones included; fusion = student + converter + head; oracle runs every backbone
    c = report.costs
    assert c["backbone_gflops"][STUDENT] > 0 and c["backbone_gflops"][TEACHER] > 0
    assert m["gflops_fusion"] == pytest.approx(c["backbone_gflops"][STUDENT] + c["converter_gflops"][TEACHER]
                                               + c["head_gflops"])
    assert m["gflops_fusion_oracle"] > m["gflops_fusion"] > m["gflops_student"] > 0
    assert m["gflops_teachers_concat"] > c["backbone_gflops"][TEACHER]
    assert set(report.gates["per_teacher"]) == {TEACHER}
    assert report.confusion["fusion"].shape == (3, 3) and report.confusion["fusion"].sum() == 3
    # per clip predictions for every row; each top-1 with its interval; the claims recomputed from them
    for row in report.rows:
        correct = report.predictions[row["key"]] == report.labels
        assert correct.mean() == pytest.approx(row["top1"]) and row["top1_low"] <= row["top1"] <= row["top1_high"]
    claims = {c.id: c for c in report.claims}
    assert set(claims) == {"fusion_beats_student", "fusion_beats_student_matched", "fusion_beats_student_attentive"}
    assert claims["fusion_beats_student"].value == pytest.approx(m["top1_fusion"] - m["top1_student"])
    assert m["claims"][0]["id"] == "fusion_beats_student" and 0 <= m["claims"][0]["p_value"] <= 1


def test_video_batches_skip_or_stop_at_an_undecodable_video(chain, tmp_path):
    from polyspace_core.backbones import load_backbone
    from polyspace_core.datasets import load_split
    from polyspace_core.datasets.base import VideoItem
    from polyspace_core.fusion.data import VideoBatches

    items = list(load_split(chain["dataset"], chain["videos"], "validation").items)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"")  # an empty file is not a video
    items.insert(1, VideoItem(broken, 0, items[0].class_name, "broken"))
    labels = [it.label for it in items]
    student = load_backbone(STUDENT)
    skipping = VideoBatches(items, labels, student, batch=2, on_error="skip")
    batches = list(skipping)
    served = sorted(i for b in batches for i in b["index"].tolist())
    assert served == [i for i in range(len(items)) if i != 1]  # the rest is served, nothing made up
    assert all(b["pixels"].shape[1:] == (student.frames, 3, 32, 32) for b in batches)
    assert list(skipping.skipped) == [str(broken)] and "empty" in skipping.skipped[str(broken)]
    with pytest.raises(PolySpaceError, match="broken.mp4"):
        list(VideoBatches(items, labels, student, batch=2, on_error="error"))


def test_stage_inputs_come_from_the_store_manifest(chain, tmp_path):
    from polyspace_core.fusion.study import inputs_from_runs

    inputs = inputs_from_runs(tmp_path, tmp_path, tmp_path, cached=False, features=chain["features"],
                              converters=chain["converters"])
    assert inputs.mode == "video" and inputs.dataset == chain["dataset"]
    assert inputs.videos == Path(chain["videos"]) and inputs.student == f"{STUDENT}={STUDENT}"
    assert inputs.teachers == [TEACHER] and inputs.frames == 16 and len(inputs.class_names) == 3
    # no store under the featurize run dir: a clear error that says what to run
    with pytest.raises(PolySpaceError, match="run 01_featurize"):
        inputs_from_runs(tmp_path, tmp_path, tmp_path, cached=True, converters=chain["converters"])


def test_seeds_combine_clip_by_clip(chain):
    """05 over seeds: rows are means over the seeds, std beside them; intervals and claims come
    from each clip's correctness averaged over the seeds, McNemar's p is the largest per seed."""
    import dataclasses

    import numpy as np

    from polyspace_core.fusion.evaluate import combine_seeds, evaluate_downstream
    from polyspace_core.stats import bootstrap_interval, mcnemar_exact, paired_difference

    reports = {seed: evaluate_downstream(chain["root"] / "fusion_cached" / "best", chain["features"], device="cpu",
                                         probe_settings=TrainSettings(epochs=3, batch=8, lr=1e-2, seed=seed),
                                         costs=False, progress=False) for seed in (0, 1)}
    both = combine_seeds(reports)
    assert both.seeds == [0, 1]
    for row in both.rows:
        per_seed = [next(r["top1"] for r in reports[s].rows if r["key"] == row["key"]) for s in (0, 1)]
        assert row["top1"] == pytest.approx(np.mean(per_seed))
        assert row["top1_std"] == pytest.approx(np.std(per_seed, ddof=1))
        pooled = np.mean([reports[s].predictions[row["key"]] == reports[s].labels for s in (0, 1)], axis=0)
        ci = bootstrap_interval(pooled)
        assert (row["top1_low"], row["top1_high"]) == pytest.approx((ci.low, ci.high))
    claim = next(c for c in both.claims if c.id == "fusion_beats_student")
    correct = {k: [reports[s].predictions[k] == reports[s].labels for s in (0, 1)] for k in ("fusion", "student")}
    diff = paired_difference(np.mean(correct["fusion"], 0), np.mean(correct["student"], 0))
    assert (claim.value, claim.ci_low, claim.ci_high) == pytest.approx((diff.value, diff.low, diff.high))
    assert claim.p_value == max(mcnemar_exact(correct["fusion"][s], correct["student"][s]) for s in (0, 1))
    assert "2 seeds" in claim.rule
    m = both.metrics()
    assert m["seeds"] == [0, 1] and set(m["top1_seed_std"]) == {r["key"] for r in both.rows}

    # seeds scored on other clips cannot be combined
    other = dataclasses.replace(reports[1], labels=reports[1].labels[::-1].copy())
    with pytest.raises(PolySpaceError, match="other clips"):
        combine_seeds({0: reports[0], 1: other})


def test_training_seeds_parameter():
    from polyspace_core.seeding import training_seeds

    assert training_seeds([3, 1], 0) == [3, 1] and training_seeds([], 5) == [5] and training_seeds(None, 2) == [2]
    for bad in ([1, 1], [-1], [1.5], [True]):
        with pytest.raises(PolySpaceError, match="seeds"):
            training_seeds(bad, 0)


def test_oracle_standardises_teacher_features_with_their_own_statistics(chain):
    """05's oracle feeds the teachers' own features; its head normalises them with the teachers'
    training-split mean/std, not with the statistics fitted on converted features."""
    from polyspace_core.features.store import FeatureStore
    from polyspace_core.fusion.data import cached_batches
    from polyspace_core.fusion.pipeline import load_fusion, oracle_pipeline

    pipeline = load_fusion(chain["root"] / "fusion_cached" / "best")
    fitted = pipeline.head.branches[0].standardize
    converted_stats = fitted.mean.clone(), fitted.std.clone()
    store = FeatureStore.open(chain["features"] / "train")
    batches = cached_batches(store, [TEACHER], batch=4, shuffle=False)
    oracle = oracle_pipeline(pipeline, batches.full_pass())
    # the reference: per-dimension moments over every token of the ok training clips
    ok = torch.as_tensor(store.indices(ok_only=True))
    tokens = store.array(TEACHER)[ok].double().reshape(-1, store.shape(TEACHER)[1])
    std = oracle.head.branches[0].standardize
    torch.testing.assert_close(std.mean, tokens.mean(0).float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std.std, tokens.std(0, unbiased=False).float(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(std.std, converted_stats[1])  # ridge outputs have other statistics
    assert oracle.teacher_inputs and not pipeline.teacher_inputs
    # the fusion head itself is untouched, and the rest of the oracle is the same trained head
    torch.testing.assert_close(pipeline.head.branches[0].standardize.std, converted_stats[1])
    torch.testing.assert_close(oracle.head.classifier.weight, pipeline.head.classifier.weight)
    batch = next(iter(cached_batches(FeatureStore.open(chain["features"] / "test"), [STUDENT, TEACHER], batch=3,
                                     shuffle=False)))
    z = (batch[TEACHER] - std.mean) / std.std
    # the fusion head fed inputs that its converted-feature statistics standardise to the same z
    expect = pipeline.head(batch[STUDENT], [z * converted_stats[1] + converted_stats[0]])
    torch.testing.assert_close(oracle(batch)["logits"], expect["logits"], rtol=1e-4, atol=1e-5)
    with pytest.raises(PolySpaceError, match="teachers' own features"):
        oracle_pipeline(pipeline, cached_batches(store, [STUDENT], batch=4, shuffle=False).full_pass())


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: the CUDA half of the policy runs where there is one"))])
def test_cached_and_video_mode_agree_under_bf16_autocast(chain, tmp_path, device):
    """One precision policy: featurize runs the backbones under bf16 autocast (on CPU too) and
    records it; video mode runs the student the same way and rounds to the store's dtype;
    converters run in float32 in both modes; the head under the accelerator's bf16 autocast."""
    from polyspace_core.datasets import load_split
    from polyspace_core.features.featurize import featurize
    from polyspace_core.features.store import FeatureStore
    from polyspace_core.fusion.data import StudentFeatures, VideoBatches
    from polyspace_core.fusion.train import _video_precision

    features = tmp_path / "bf16"
    for split in ("train", "validation"):
        featurize(load_split(chain["dataset"], chain["videos"], split), STUDENT, [TEACHER], features,
                  dtype="bfloat16", batch=4, device=device, progress=False)
    store = FeatureStore.open(features / "validation")
    assert store.dtype == torch.bfloat16
    assert [store.model_info(m)["autocast"] for m in store.models] == ["bfloat16", "bfloat16"]
    # the stored features are the bf16-autocast ones, not fp32 features rounded to bf16
    fp32 = FeatureStore.open(chain["features"] / "validation").array(STUDENT).float()
    assert not torch.equal(store.array(STUDENT).float(), fp32.bfloat16().float())

    # the student in video mode computes what the store holds
    split = load_split(chain["dataset"], chain["videos"], "validation")
    from polyspace_core.backbones import load_backbone

    student = StudentFeatures(load_backbone(STUDENT, device=device), "temporal", "bfloat16")
    for batch in VideoBatches(split.items, split.labels, student.backbone, batch=4):
        got = student({k: v.to(device) for k, v in batch.items()})[student.name].cpu()
        torch.testing.assert_close(got, store.array(STUDENT)[batch["index"]].float(), rtol=0, atol=0)

    assert main(["train-converter", "--features", str(features), "--save_dir", str(tmp_path / "converters"),
                 "--kind", "ridge", "--device", device]) == 0
    # video mode without a store finds the precision through the converters' training store
    assert _video_precision(None, tmp_path / "converters", "train") == "bfloat16"
    acc = make_accelerator(device, mixed_precision="bf16")
    runs = {}
    for mode in ("cached", "video"):
        torch.manual_seed(0)
        data = {"features": features} if mode == "cached" else {"dataset": chain["dataset"],
                                                                 "root": chain["videos"], "student": STUDENT}
        runs[mode] = train_fusion(mode=mode, converters=tmp_path / "converters",
                                  settings=TrainSettings(epochs=2, batch=4, lr=1e-3),
                                  head=HeadOptions(rank=16, gate_hidden=16), save_dir=tmp_path / f"fusion_{mode}",
                                  accelerator=acc, device=device, progress=False, **data)
    cached, video = runs["cached"], runs["video"]
    assert [r["train_loss"] for r in cached.history] == pytest.approx([r["train_loss"] for r in video.history],
                                                                       rel=1e-3)
    assert [r["val_top1"] for r in cached.history] == [r["val_top1"] for r in video.history]
    for (k, a), (_, b) in zip(cached.pipeline.state_dict().items(), video.pipeline.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-3, msg=k)
    meta = json.loads((tmp_path / "fusion_video" / "best" / "fusion.json").read_text())
    assert meta["data"]["dtype"] == "bfloat16"
