"""kill -9 in the middle of every trainer, then the same command again: the result equals, bit for
bit, that of a run never interrupted (featurize has its own in test_features_resume.py).

Each trainer resumes from what it saved last: train-fusion and train-ffn from their per-epoch
state (model, optimizer, scheduler, RNG, sampler position), train-converter from the converters
already finished (one per teacher, each seeded on its own), the zoo from the members already
finished, train-colorize from its finished phase (with the generators' state where it ended).
Every run is a subprocess with one thread, killed once the first unit of work is on disk; the
test checks the kill landed before the end, so it always exercises a resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "polyspace_core.cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
            "POLYSPACE_ROOT": str(ROOT)}


def _run(cmd: list) -> None:
    done = subprocess.run([str(c) for c in cmd], env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _kill_when(cmd: list, marker: Path, finished: Path, timeout: float = 300) -> None:
    """Start `cmd`, SIGKILL it as soon as `marker` exists; the run must not have reached `finished`."""
    proc = subprocess.Popen([str(c) for c in cmd], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"ended before {marker} appeared: {proc.stderr.read().decode()[-3000:]}"
        assert time.time() < deadline, f"{marker} did not appear within {timeout} s"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not finished.exists(), f"the run reached {finished} before the kill; make it longer"


def _same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys(), (a, b)
    for key in ta:
        assert torch.equal(ta[key], tb[key]), f"{a.name}: {key} differs"


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    from test_bad_inputs import _write_split

    root = tmp_path_factory.mktemp("kill_features")
    for split, n, seed in (("train", 512, 0), ("validation", 64, 1)):
        _write_split(root, split, n, seed)
    return root


def test_train_converter(features, tmp_path):
    def cmd(out):
        return [*CLI, "train-converter", "--features", features, "--save_dir", out, "--epochs", 40, "--hidden", 64,
                "--depth", 2, "--batch", 32, "--device", "cpu"]

    _run(cmd(tmp_path / "straight"))
    killed = tmp_path / "killed"
    # the first converter done, the second under way
    _kill_when(cmd(killed), killed / "videomae" / "config.json", killed / "timesformer" / "config.json")
    _run(cmd(killed))
    for teacher in ("videomae", "timesformer"):
        _same_tensors(tmp_path / "straight" / teacher / "converter.safetensors",
                      killed / teacher / "converter.safetensors")


def test_train_fusion(features, tmp_path):
    converters = tmp_path / "converters"
    _run([*CLI, "train-converter", "--features", features, "--save_dir", converters, "--epochs", 2, "--hidden", 16,
          "--depth", 1, "--device", "cpu"])

    def cmd(out):
        return [*CLI, "train-fusion", "--use_cached_features", "--root", features, "--converters", converters,
                "--save_dir", out, "--epochs", 30, "--batch", 16, "--rank", 32, "--gate_hidden", 32, "--device", "cpu"]

    _run(cmd(tmp_path / "straight"))
    killed = tmp_path / "killed"
    _kill_when(cmd(killed), killed / "last" / "state.json", killed / "history.json")
    _run(cmd(killed))
    for name in ("best/fusion.safetensors", "last/state.safetensors"):
        _same_tensors(tmp_path / "straight" / name, killed / name)
    # the curves too: one point per epoch, the resumed part where the killed run left off
    from polyspace_core.scalar_log import read_scalars

    straight, resumed = read_scalars(tmp_path / "straight" / "tensorboard"), read_scalars(killed / "tensorboard")
    assert straight.keys() == resumed.keys() and "val/top1" in straight
    for name in straight:
        assert [s for s, _ in resumed[name]] == [s for s, _ in straight[name]] == list(range(1, 31)), name
        assert [v for _, v in resumed[name]] == [v for _, v in straight[name]] or "seconds" in name, name


def test_train_ffn(tmp_path):
    from polyspace_core.datasets import generate_synthmotion

    generate_synthmotion(tmp_path / "ssv2", layout="ssv2", classes=2, clips_per_class=4, frames=8, size=32, seed=0,
                         progress=False)

    def cmd(out):
        return [*CLI, "train-ffn", "--video_dir", tmp_path / "ssv2" / "20bn-something-something-v2", "--labels_dir",
                tmp_path / "ssv2" / "labels", "--arch", "tiny", "--size", 28, "--short_side", 32, "--batch_size", 2,
                "--workers", 0, "--device", "cpu", "--epochs", 4, "--save_every", 1, "--save_dir", out]

    _run(cmd(tmp_path / "straight"))
    killed = tmp_path / "killed"
    _kill_when(cmd(killed), killed / "epoch_1.json", killed / "final.json")
    _run(cmd(killed))  # finds epoch_1 by itself
    _same_tensors(tmp_path / "straight" / "final.safetensors", killed / "final.safetensors")


def test_train_colorize(tmp_path):
    from polyspace_core.datasets.synthcolor import generate_synthcolor

    generate_synthcolor(tmp_path / "data", clips=5, frames=4, size=32, seed=0, progress=False)

    def cmd(out):
        return [*CLI, "train-colorize", "--data", tmp_path / "data", "--out", out, "--device", "cpu",
                "--exemplar-epochs", 1, "--fusion-epochs", 6, "--batch-size", 4, "--fusion-batch-size", 2]

    _run(cmd(tmp_path / "straight"))
    killed = tmp_path / "killed"
    # phase A done (its folder is complete once config.json is there), phase B under way
    _kill_when(cmd(killed), killed / "exemplar_phase" / "config.json", killed / "checkpoint" / "system.json")
    _run(cmd(killed))
    for part in ("exemplar", "fusion"):
        _same_tensors(tmp_path / "straight" / "checkpoint" / part / "model.safetensors",
                      killed / "checkpoint" / part / "model.safetensors")


@pytest.mark.parametrize("jobs", [1, 2])
def test_zoo(tmp_path, jobs):
    """Killed while training members (one after another, or two at once in worker processes that
    must die with it), a rerun finishes the zoo with the same weights as a run never killed."""
    code = ("import sys; from polyspace_core.features.zoo import build_zoo; "
            "build_zoo(sys.argv[1], sys.argv[2], members=['vjepa2-tiny', 'timesformer-tiny'], epochs=6, "
            f"device='cpu', workers=0, progress=False, jobs={jobs}, "
            "pretrain=dict(classes=4, clips_per_class=4, size=32))")

    def cmd(out):
        return [sys.executable, "-c", code, out, tmp_path / "data"]

    _run(cmd(tmp_path / "straight"))
    killed = tmp_path / "killed"
    cards = [killed / m / "zoo_card.json" for m in ("vjepa2-tiny", "timesformer-tiny")]
    if jobs == 1:
        _kill_when(cmd(killed), cards[0], cards[1])
    else:  # both train at once: kill at the first card; no orphaned worker may finish the other later
        proc = subprocess.Popen([str(c) for c in cmd(killed)], env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not any(c.exists() for c in cards):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = [c.exists() for c in cards]
        time.sleep(8)
        assert [c.exists() for c in cards] == done, "a worker outlived the killed build"
    _run(cmd(killed))
    for member in ("vjepa2-tiny", "timesformer-tiny"):
        _same_tensors(tmp_path / "straight" / member / "model.safetensors", killed / member / "model.safetensors")
