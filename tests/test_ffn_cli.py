"""`polyspace train-ffn` end to end on a small SynthMotion set in the SSv2 layout."""

import json

import pytest
import torch

from polyspace_core.cli import main
from polyspace_core.datasets import generate_synthmotion


@pytest.fixture(scope="module")
def ssv2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_ssv2") / "set"
    generate_synthmotion(root, layout="ssv2", classes=4, clips_per_class=5, frames=16, size=32, seed=0,
                         progress=False)
    return root


def _args(root, save_dir, *extra):
    return ["train-ffn", "--video_dir", str(root / "20bn-something-something-v2"), "--labels_dir", str(root / "labels"),
            "--arch", "tiny", "--size", "28", "--short_side", "32", "--batch_size", "4", "--workers", "0",
            "--device", "cpu", "--save_dir", str(save_dir), *extra]


def test_test_run_trains_two_batches_then_eval_only_reads_the_checkpoint(ssv2_root, tmp_path, capsys):
    assert main(_args(ssv2_root, tmp_path / "ffn", "--test_run", "--cache")) == 0
    out = capsys.readouterr().out
    assert "FFN training on cpu" in out and "TFD gap" in out
    info = json.loads((tmp_path / "ffn" / "final.json").read_text())
    assert info["kind"] == "ffn" and info["global_step"] == 2 and info["model_config"]["frame_counts"] == [4, 8, 16]
    assert info["model_config"]["class_names"][0] == "Moving something to the left"
    # the seed's files, with the seed's keys, readable by a weights-only load
    for name in ("best", "epoch_1", "final"):
        record = torch.load(tmp_path / "ffn" / f"{name}.pth", weights_only=True)
        assert {"epoch", "model_state_dict", "optimizer_state_dict", "scheduler_state_dict", "best_acc",
                "best_acc_4f", "best_acc_8f", "lambda_kl"} <= set(record)

    assert main(_args(ssv2_root, tmp_path / "ffn", "--eval_only", "--resume",
                      str(tmp_path / "ffn" / "final.json"))) == 0
    result = json.loads((tmp_path / "ffn" / "tfd_validation.json").read_text())
    assert {"acc_4f", "acc_8f", "acc_16f", "tfd_gap"} <= set(result)
    assert result["tfd_gap"] == pytest.approx(result["acc_16f"] - result["acc_4f"])


def test_vanilla_tsm_baseline_and_resume(ssv2_root, tmp_path, capsys):
    tsm = ["--model", "tsm", "--epochs", "2", "--save_every", "1", "--num_frames_h", "8", "--num_frames_m", "6",
           "--num_frames_l", "2"]
    assert main(_args(ssv2_root, tmp_path / "tsm", *tsm)) == 0
    info = json.loads((tmp_path / "tsm" / "final.json").read_text())
    assert info["kind"] == "tsm" and info["model_config"]["frame_counts"] == [8] and info["epoch"] == 2
    assert {"best_acc_2f", "best_acc_6f", "best_acc_8f"} <= set(info)
    capsys.readouterr()
    # resume after epoch 1: only epoch 2 runs again
    assert main(_args(ssv2_root, tmp_path / "tsm", *tsm, "--resume", str(tmp_path / "tsm" / "epoch_1.json"))) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "epoch 1/2" not in out and "epoch 2/2" in out
    # a different schedule length cannot continue the cosine schedule
    assert main(_args(ssv2_root, tmp_path / "tsm", *tsm[:2], "--epochs", "3", *tsm[4:],
                      "--resume", str(tmp_path / "tsm" / "epoch_1.json"))) == 2
    assert "--epochs 2" in capsys.readouterr().err


def test_a_finished_run_is_never_overwritten(ssv2_root, tmp_path, capsys):
    """The same command again keeps the finished run as it is; other settings into its folder are
    refused before training (one line, files untouched) unless --overwrite."""
    run = ["--model", "tsm", "--epochs", "1", "--num_frames_h", "8", "--num_frames_m", "4", "--num_frames_l", "2"]
    assert main(_args(ssv2_root, tmp_path / "r", *run)) == 0
    files = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.name.startswith(("best", "final"))}
    capsys.readouterr()
    assert main(_args(ssv2_root, tmp_path / "r", *run)) == 0
    assert "this run finished already" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.name in files} == files

    other = [*run[:2], "--epochs", "2", *run[4:]]
    assert main(_args(ssv2_root, tmp_path / "r", *other)) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "holds a tsm run with another train config" in captured.err
    assert "--overwrite" in captured.err and "epoch 1/2" not in captured.err + captured.out
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.name in files} == files
    # the clips' settings are part of the run too (a crop or a JPEG cache changes what it trains on)
    assert main(_args(ssv2_root, tmp_path / "r", *run, "--crop", "multiscale")) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "holds a tsm run with another data settings" in captured.err
    assert main(_args(ssv2_root, tmp_path / "r2", *run, "--crop", "multiscale", "--resume",
                      str(tmp_path / "r" / "final.json"))) == 2
    err = capsys.readouterr().err
    assert "was trained on clips with another crop" in err and "crop=random" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.name in files} == files
    assert main(_args(ssv2_root, tmp_path / "r", *other, "--overwrite")) == 0
    assert json.loads((tmp_path / "r" / "final.json").read_text())["epoch"] == 2


def test_bad_input_is_a_one_line_error(ssv2_root, tmp_path, capsys):
    assert main(_args(ssv2_root, tmp_path, "--eval_only")) == 2
    assert "--eval_only needs --resume" in capsys.readouterr().err
    args = _args(ssv2_root, tmp_path, "--test_run")
    args[2] = str(tmp_path / "missing")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --video_dir") and err.count("\n") == 1
    assert main(_args(ssv2_root, tmp_path, "--num_frames_l", "8")) == 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:   # argparse's choices, one line (cli.OneLineParser)
        main(_args(ssv2_root, tmp_path, "--frame_cache", str(tmp_path / "c"), "--frame_cache_format", "png"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--frame_cache_format: invalid choice: 'png'" in err
    assert main(_args(ssv2_root, tmp_path, "--frame_cache", str(tmp_path / "c"), "--frame_cache_format", "jpeg",
                      "--frame_cache_quality", "0")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "JPEG quality 0" in err


def test_a_test_run_through_a_jpeg_frame_cache(ssv2_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    run = ["--test_run", "--frame_cache", str(cache), "--frame_cache_format", "jpeg", "--frame_cache_quality", "80"]
    assert main(_args(ssv2_root, tmp_path / "ffn", *run)) == 0
    assert f"frames from the on-disk frame cache {cache} (JPEG quality 80, lossy)" in capsys.readouterr().out
    headers = [json.loads(p.read_bytes().split(b"\n", 1)[0]) for p in cache.rglob("*.frames")]
    assert headers and {(h["format"], h["quality"]) for h in headers} == {("polyspace-frame-cache-jpeg/1", 80)}


def test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(ssv2_root, tmp_path, capsys):
    """Stopped after epoch 1 and resumed in a fresh process state, the run draws the same TSN
    offsets, crops and batch order as the uninterrupted one (the loader's own pass count used to
    restart at 0 and replay epoch 0's draws: weights differed by up to 0.14)."""
    import shutil

    from safetensors.torch import load_file

    run = ["--epochs", "3", "--save_every", "1"]
    assert main(_args(ssv2_root, tmp_path / "straight", *run)) == 0
    (tmp_path / "resumed").mkdir()
    for name in ("epoch_1.json", "epoch_1.safetensors"):
        shutil.copy(tmp_path / "straight" / name, tmp_path / "resumed" / name)
    assert main(_args(ssv2_root, tmp_path / "resumed", *run)) == 0  # picks up epoch_1 by itself
    assert "resumed from" in capsys.readouterr().out
    straight = load_file(str(tmp_path / "straight" / "final.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "final.safetensors"))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_on_error_skip_counts_a_video_that_does_not_decode(ssv2_root, tmp_path, capsys):
    """A truncated validation video: the default stops with one line naming it; --on_error skip
    leaves it out of every figure and says how many were left out."""
    import shutil

    root = tmp_path / "set"
    shutil.copytree(ssv2_root, root)
    first = json.loads((root / "labels" / "validation.json").read_text())[0]["id"]
    video = root / "20bn-something-something-v2" / f"{first}.webm"
    video.write_bytes(video.read_bytes()[:200])
    assert main(_args(root, tmp_path / "stop", "--test_run", "--backend", "pyav")) == 2
    err = capsys.readouterr().err
    assert f"{first}.webm" in err and "on_error='skip'" in err and "Traceback" not in err
    with pytest.warns(UserWarning, match=f"{first}.webm"):
        assert main(_args(root, tmp_path / "skip", "--test_run", "--on_error", "skip")) == 0
    out = capsys.readouterr().out
    assert "left out: 1 videos that did not decode" in out
    info = json.loads((tmp_path / "skip" / "final.json").read_text())
    assert info["history"][-1]["val_skipped"] == 1
