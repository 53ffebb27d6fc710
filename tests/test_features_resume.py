"""featurize survives SIGKILL (the resumed store equals an uninterrupted one and finished shards are not
recomputed) and a 2-process torchrun run yields the same store as one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from polyspace_core.features.store import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["--student", "vjepa2-tiny", "--teachers", "videomae-tiny", "timesformer-tiny", "vivit-tiny"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from polyspace_core.datasets import generate_synthmotion

    root = tmp_path_factory.mktemp("synth")
    generate_synthmotion(root, layout="hmdb51-csv", classes=4, clips_per_class=4, frames=16, size=32,
                         seed=5, progress=False)
    return root


def featurize_cmd(synth: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "polyspace_core.cli", "featurize", "--dataset", "synthmotion", "--root",
            str(synth), "--split", "train", "--out", str(out), *MODELS, "--workers", "0", "--device", "cpu",
            "--batch", "2", *extra]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def assert_same_store(a: FeatureStore, b: FeatureStore) -> None:
    assert a.models == b.models and a.manifest["fingerprint"] == b.manifest["fingerprint"]
    assert [s.sha256 for s in a.shards] == [s.sha256 for s in b.shards]
    for m in a.models:
        assert torch.equal(a.array(m), b.array(m))
    assert a.status == b.status and (a.labels == b.labels).all()


@pytest.fixture
def one_thread():
    """In-process runs use one thread like the OMP_NUM_THREADS=1 subprocesses: same kernels, same bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_kill_and_resume_equals_uninterrupted_run(synth, tmp_path, one_thread):
    from polyspace_core.cli import main

    # shards of one video: the kill lands after the first shard and before the last
    killed = tmp_path / "killed"
    proc = subprocess.Popen(featurize_cmd(synth, killed, "--shard_size", "1"), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first_receipt = killed / "train" / "progress" / "shard_00000.json"
    deadline = time.time() + 240
    while not first_receipt.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "featurize made no shard within 240 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    split_dir = killed / "train"
    assert not (split_dir / "manifest.json").exists()
    done_before = sorted(p.name for p in (split_dir / "progress").glob("shard_*.json"))
    shards_before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in split_dir.glob("shard_*.safetensors")}
    n_shards = len(list((synth / "train").glob("*.mp4")))
    assert 1 <= len(done_before) < n_shards

    # resume in this process: only the missing shards are computed
    assert main(featurize_cmd(synth, killed, "--shard_size", "1")[3:]) == 0
    resumed = FeatureStore.open(split_dir, verify=True)
    for name in done_before:
        shard = name.replace(".json", ".safetensors")
        stat = (split_dir / shard).stat()
        assert (stat.st_ino, stat.st_mtime_ns) == shards_before[shard], f"{shard} was recomputed"

    assert main(featurize_cmd(synth, tmp_path / "clean", "--shard_size", "1")[3:]) == 0
    assert_same_store(resumed, FeatureStore.open(tmp_path / "clean" / "train"))


@pytest.mark.distributed
def test_two_processes_equal_one(synth, tmp_path, one_thread):
    from polyspace_core.cli import main

    assert main(featurize_cmd(synth, tmp_path / "one", "--shard_size", "3")[3:]) == 0
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
              "polyspace_core.cli"] + featurize_cmd(synth, tmp_path / "two", "--shard_size", "3")[3:]
    double = subprocess.run(launch, env=env(), capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-2000:]
    one, two = FeatureStore.open(tmp_path / "one" / "train"), FeatureStore.open(tmp_path / "two" / "train")
    assert two.manifest["provenance"]["world_size"] == 2 and one.manifest["provenance"]["world_size"] == 1
    assert_same_store(one, two)
    assert two.manifest["decodes"] == one.manifest["decodes"]
