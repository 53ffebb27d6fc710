"""SynthColor generation and the `polyspace synth-color` / `colorize` commands, incl. streaming."""

import json
import os

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from polyspace_core.cli import main
from polyspace_core.colorize.metrics import colorfulness
from polyspace_core.datasets.synthcolor import SPLIT_IMAGES, generate_synthcolor, load_synthcolor_index, read_clip
from polyspace_core.errors import PolySpaceError
from polyspace_core.video.decode import probe, read_frames
from polyspace_core.video.encode import write_video


def test_synth_color_cli_writes_a_deterministic_indexed_set(tmp_path, capsys):
    out = tmp_path / "sc"
    assert main(["synth-color", "--out", str(out), "--clips", "5", "--frames", "6", "--size", "32", "--seed", "3"]) == 0
    assert "train 3, validation 1, test 1" in capsys.readouterr().out
    index = load_synthcolor_index(out)
    assert index["params"] == {"clips": 5, "frames": 6, "size": 32, "seed": 3, "fps": 10.0, "test_clips": None}
    sources = {s: {e["source"] for e in index["splits"][s]} for s in index["splits"]}
    assert sources["test"] <= set(SPLIT_IMAGES["test"]) and not sources["test"] & sources["train"]
    entry = index["splits"]["train"][0]
    frames, ref = read_clip(out, entry)
    assert frames.shape == (6, 32, 32, 3) and ref.shape == (32, 32, 3)
    assert np.mean([colorfulness(f) for f in frames]) > 10          # real colour content
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 5   # things move
    if entry["reference_kind"] == "first_frame":
        assert np.abs(ref.astype(int) - frames[0].astype(int)).mean() < 4
    # a finished set returns at once, untouched
    stamp = os.path.getmtime(out / entry["video"])
    generate_synthcolor(out, clips=5, frames=6, size=32, seed=3)
    assert os.path.getmtime(out / entry["video"]) == stamp
    # same seed elsewhere: same frames
    generate_synthcolor(tmp_path / "again", clips=5, frames=6, size=32, seed=3, progress=False)
    np.testing.assert_array_equal(read_clip(tmp_path / "again", entry)[0], frames)
    with pytest.raises(PolySpaceError, match="other parameters|made with"):
        generate_synthcolor(out, clips=6, frames=6, size=32, seed=3)


def test_synth_color_clips_cover_the_hard_cases(tmp_path):
    generate_synthcolor(tmp_path, clips=12, frames=4, size=32, seed=0, progress=False)
    entries = [e for split in load_synthcolor_index(tmp_path)["splits"].values() for e in split]
    kinds = {k for e in entries for k in e["objects"]}
    assert {"wander", "entering", "occluder"} <= kinds
    assert {e["reference_kind"] for e in entries} == {"first_frame", "separate"}


def test_synth_color_test_split_from_many_photos_and_old_versions_regenerate(tmp_path):
    out = tmp_path / "sc"
    generate_synthcolor(out, clips=5, frames=3, size=32, seed=0, progress=False, test_clips=8)
    index = load_synthcolor_index(out)
    assert {s: len(e) for s, e in index["splits"].items()} == {"train": 3, "validation": 1, "test": 8}
    # round-robin over the four test photos, none of them a training photo
    assert [e["source"] for e in index["splits"]["test"]] == SPLIT_IMAGES["test"] * 2
    assert not set(SPLIT_IMAGES["test"]) & set(SPLIT_IMAGES["train"])
    # train clips do not depend on the test split's size
    generate_synthcolor(tmp_path / "small", clips=5, frames=3, size=32, seed=0, progress=False)
    entry = index["splits"]["train"][0]
    np.testing.assert_array_equal(read_clip(out, entry)[0], read_clip(tmp_path / "small", entry)[0])
    # a set an older generator version wrote is replaced, not refused
    index["version"] = 1
    (out / "index.json").write_text(json.dumps(index))
    generate_synthcolor(out, clips=5, frames=3, size=32, seed=0, progress=False)
    assert load_synthcolor_index(out)["version"] == 2 and len(load_synthcolor_index(out)["splits"]["test"]) == 1
    with pytest.raises(PolySpaceError, match="test_clips"):
        generate_synthcolor(tmp_path / "x", test_clips=0)


def test_synth_color_bad_parameters():
    with pytest.raises(PolySpaceError, match="--size"):
        generate_synthcolor("/nonexistent", size=33)
    with pytest.raises(PolySpaceError, match="--clips"):
        generate_synthcolor("/nonexistent", clips=2)


def _pan_video(path, n, h, w, grey=False):
    big = cv2.resize(data.coffee(), (w + n, h), interpolation=cv2.INTER_AREA)
    frames = np.stack([big[:, t:t + w] for t in range(n)])
    if grey:
        frames = np.repeat(cv2.cvtColor(frames.reshape(-1, w, 3), cv2.COLOR_RGB2GRAY).reshape(n, h, w, 1), 3, -1)
    write_video(path, frames, fps=12)
    ref = path.with_suffix(".png")
    cv2.imwrite(str(ref), cv2.cvtColor(big[:, :w], cv2.COLOR_RGB2BGR))
    return ref


def test_colorize_streams_a_long_video_with_bounded_memory(tmp_path, capsys):
    from polyspace_core.colorize.exemplar import build_exemplar_branch
    from polyspace_core.colorize.system import FusionSystem

    n, h, w = 300, 96, 128
    video = tmp_path / "long.mp4"
    ref = _pan_video(video, n, h, w)
    torch.manual_seed(0)
    FusionSystem(build_exemplar_branch()).save_pretrained(tmp_path / "ckpt")
    rc = main(["colorize", "--input", str(video), "--reference", str(ref), "--out", str(tmp_path / "out.mp4"),
               "--checkpoint", str(tmp_path / "ckpt"), "--working_size", "32", "--chunk", "16", "--device", "cpu"])
    assert rc == 0
    stats = json.loads(capsys.readouterr().out)
    # one decoder for the whole file, one chunk of frames held at a time (the process's peak RSS
    # over 300-900 frames is measured by benchmarks/colorize_stream.py)
    assert stats["frames"] == stats["frames_decoded"] == n and stats["peak_frames_held"] == 16
    assert stats["working_size"] == [32, 40]
    info = probe(tmp_path / "out.mp4")
    assert (info.num_frames, info.height, info.width) == (n, h, w)


def test_colorize_grey_input_with_the_temporal_method_gets_colour(tmp_path, capsys):
    video = tmp_path / "grey.mp4"
    ref = _pan_video(video, 12, 48, 64, grey=True)
    assert main(["colorize", "--input", str(video), "--reference", str(ref), "--out", str(tmp_path / "c.mp4"),
                 "--method", "temporal", "--work-size", "48", "--chunk", "5"]) == 0
    out = read_frames(tmp_path / "c.mp4", np.arange(12))
    assert np.mean([colorfulness(f) for f in out]) > 15
    grey_in = read_frames(video, np.arange(12))
    # lightness is the input's (up to H.264's 4:2:0 chroma rounding of the output)
    from polyspace_core.colorize.lab import frames_to_lab
    diff = (frames_to_lab(out)[:, 0] - frames_to_lab(grey_in)[:, 0]).abs()
    assert float(diff.median()) < 2.5


def test_colorize_global_method_on_an_odd_sized_video(tmp_path, capsys):
    from polyspace_core.colorize.stream import VideoStreamWriter

    big = cv2.resize(data.rocket(), (81, 61), interpolation=cv2.INTER_AREA)
    writer = VideoStreamWriter(tmp_path / "odd.mp4", width=81, height=61, fps=5)  # 4:4:4: odd sides allowed
    writer.write(np.stack([big] * 4))
    writer.close()
    ref = tmp_path / "ref.png"
    cv2.imwrite(str(ref), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    assert main(["colorize", "--input", str(tmp_path / "odd.mp4"), "--reference", str(ref),
                 "--out", str(tmp_path / "o.mp4"), "--method", "global"]) == 0
    info = probe(tmp_path / "o.mp4")
    assert (info.num_frames, info.height, info.width) == (4, 61, 81)
    out = read_frames(tmp_path / "o.mp4", np.arange(4))
    assert colorfulness(out[0]) > 10


def test_colorize_errors(tmp_path, capsys):
    video = tmp_path / "v.mp4"
    ref = _pan_video(video, 4, 32, 32)
    assert main(["colorize", "--input", str(video), "--reference", str(ref), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["colorize", "--input", str(video), "--reference", str(tmp_path / "missing.png"),
                 "--out", str(tmp_path / "o.mp4"), "--method", "global"]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main(["colorize", "--input", str(video), "--reference", str(ref), "--out", str(tmp_path / "o.mp4"),
                 "--flow", "raft"]) == 2
    assert "RAFT weights" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_train_colorize_keeps_a_finished_run_and_refuses_other_settings(tmp_path, capsys):
    """The same command again reuses the run as it is; other settings into its --out are one line
    (nothing is reused for them, nothing overwritten) unless --overwrite."""
    data = tmp_path / "sc"
    assert main(["synth-color", "--out", str(data), "--clips", "5", "--frames", "4", "--size", "32"]) == 0
    run = ["train-colorize", "--data", str(data), "--out", str(tmp_path / "run"), "--device", "cpu",
           "--exemplar-epochs", "1", "--fusion-epochs", "1", "--batch-size", "4", "--fusion-batch-size", "2"]
    assert main(run) == 0
    files = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert main(run) == 0
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == files
    capsys.readouterr()
    other = [*run[:-4], "--fusion-epochs", "2", *run[-2:]]
    assert main(other) == 2
    err = capsys.readouterr().err  # the clips' loading bars, then the one line
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith(f"error: {tmp_path / 'run'}: holds a colorization run made "
                                                      f"with other settings") and "--overwrite" in last
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == files
    assert main([*other, "--overwrite"]) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history["epochs"] if h["phase"] == "fusion"] == [1, 2]


def test_train_color_with_an_embedding_family_then_colorize_with_its_branch(tmp_path, capsys):
    """`train-color --embed swinv2 --embed_backbone DIR` trains our exemplar branch on a frozen Swin
    V2 from a local folder; `colorize --swintexco_ckpt` runs that branch on its own, frame for
    frame what --checkpoint gives with --method exemplar."""
    from test_colorize_exemplar import _tiny_backbone

    from polyspace_core.colorize.exemplar import ExemplarBranch

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b"):
        _pan_video(videos / f"{name}.mp4", 6, 32, 40)
    model = _tiny_backbone("swinv2", tmp_path / "swinv2")
    run = tmp_path / "run"
    assert main(["train-color", "--dataset", str(videos), "--embed", "swinv2", "--embed_backbone",
                 str(tmp_path / "swinv2"), "--save_dir", str(run), "--size", "32", "--frames", "3",
                 "--epochs", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    # 6 frames a video: two windows of 3; video a held out for validation
    assert "2 training clips (2 from video, 0 from ImageNet), 2 validation clips" in out
    assert "embedding pretrained: swinv2" in out
    branch = ExemplarBranch.from_pretrained(run / "checkpoint" / "exemplar")
    assert branch.config.embed == "swinv2"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(branch.embed.backbone.state_dict()[key], value)

    video = tmp_path / "v.mp4"
    ref = _pan_video(video, 4, 32, 40)
    common = ["colorize", "--input", str(video), "--reference", str(ref), "--method", "exemplar",
              "--working_size", "32", "--device", "cpu"]
    alone = ["--swintexco_ckpt", str(run / "checkpoint" / "exemplar")]
    assert main([*common, "--out", str(tmp_path / "alone.mp4"), *alone]) == 0
    assert main([*common, "--out", str(tmp_path / "whole.mp4"), "--checkpoint", str(run / "checkpoint")]) == 0
    np.testing.assert_array_equal(read_frames(tmp_path / "alone.mp4", np.arange(4)),
                                  read_frames(tmp_path / "whole.mp4", np.arange(4)))


def test_train_color_and_colorize_flag_errors_are_one_line(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    ref = _pan_video(videos / "a.mp4", 4, 32, 32)
    (tmp_path / "empty").mkdir()
    (tmp_path / "imagenet" / "n01").mkdir(parents=True)
    train = ["train-color", "--save_dir", str(tmp_path / "run"), "--size", "32", "--frames", "2", "--device", "cpu"]
    colorize = ["colorize", "--input", str(videos / "a.mp4"), "--reference", str(ref), "--out", str(tmp_path / "o.mp4")]
    cases = [
        ([*train, "--dataset", str(videos)], "needs at least 2"),
        ([*train, "--dataset", str(tmp_path / "empty")], "neither DAVIS"),
        ([*colorize, "--swintexco_ckpt", str(tmp_path / "empty")], "runs --method exemplar"),
        ([*colorize, "--method", "exemplar", "--swintexco_ckpt", str(tmp_path / "empty"), "--checkpoint", "x"],
         "not both"),
        ([*colorize, "--method", "exemplar", "--swintexco_ckpt", str(tmp_path / "empty")],
         "neither SwinTExCo's release"),
    ]
    cases += [
        ([*train, "--dataset", str(videos), "--imagenet", str(tmp_path / "imagenet")], "no images in class folders"),
        ([*train, "--dataset", str(videos), "--embed", "swinv2"], "needs --embed_backbone"),
        ([*train, "--dataset", str(videos), "--embed", "convnext", "--swintexco_ckpt", "x", "--embed_backbone", "y"],
         "cannot go with --embed convnext"),
        ([*train, "--dataset", str(videos), "--embed_backbone", "y"], "is --swin_backbone"),
        ([*train, "--dataset", str(videos), "--embed", "convnext", "--embed_backbone", "nobody/nothing"],
         "not found locally"),
    ]
    for k, (args, expected) in enumerate(cases):
        if k == 5:
            _pan_video(videos / "b.mp4", 4, 32, 32)  # two videos from here on
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert "Traceback" not in err and expected in last, (args, last)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "run" / "checkpoint").exists()
