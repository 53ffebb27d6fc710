"""`polyspace train-converter` end to end on a small feature store written with the real writer."""

import json

import pytest
import torch

from polyspace_core.align.metrics import r2_score
from polyspace_core.align.train import load_converter_set, pairs_from_store, predict
from polyspace_core.cli import main
from polyspace_core.features.store import FeatureStoreWriter

STUDENT, TEACHERS = ("vjepa2", 4, 12), (("videomae", 2, 10), ("timesformer", 1, 6))


def write_split(root, split, n, seed, failed=()):
    """A store split whose teachers are fixed linear maps of the student tokens (+ noise);
    samples in `failed` are NaN rows marked failed, as featurize writes them."""
    fixed = torch.Generator().manual_seed(99)
    g = torch.Generator().manual_seed(seed)
    name, t_s, d_s = STUDENT
    x = torch.randn(n, t_s, d_s, generator=g)
    feats = {name: x}
    for t_name, t_t, d_t in TEACHERS:
        w = torch.randn(d_s, d_t, generator=fixed)
        pooled = torch.nn.functional.interpolate(x.transpose(1, 2), size=t_t, mode="linear",
                                                 align_corners=True).transpose(1, 2) if t_t > 1 else x.mean(1, True)
        feats[t_name] = pooled @ w + 0.05 * torch.randn(n, t_t, d_t, generator=g)
    status = ["failed: could not decode" if i in failed else "ok" for i in range(n)]
    for f in feats.values():
        f[list(failed)] = float("nan")
    models = [{"name": name, "role": "student", "T": t_s, "dim": d_s}]
    models += [{"name": t, "role": "teacher", "T": tt, "dim": d} for t, tt, d in TEACHERS]
    writer = FeatureStoreWriter(root / split, models=models, dtype="float16", tokens="temporal", shard_size=40,
                                paths=[f"v{i}.mp4" for i in range(n)], labels=[i % 3 for i in range(n)],
                                class_names=["a", "b", "c"])
    for k, (start, end) in enumerate(writer.ranges):
        writer.write_shard(k, {m: f[start:end] for m, f in feats.items()}, status[start:end], end - start, 0)
    writer.finalize()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    write_split(root, "train", 100, 0, failed=(3, 50))
    write_split(root, "validation", 40, 1)
    return root


def run(args, capsys):
    rc = main(["train-converter", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_train_converter_from_the_store(store, tmp_path, capsys):
    save = tmp_path / "conv"
    args = ["--features", store, "--teachers", "videomae", "timesformer", "--d_in", 12, "--d_out", 10, 6,
            "--epochs", 30, "--batch", 16, "--lr", 1e-2, "--save_dir", save, "--kind", "C",
            "--loss_weights", "1,0.1,0,0,0,0", "--device", "cpu"]
    rc, out, err = run(args, capsys)
    assert rc == 0, err
    assert "98 train / 40 validation" in out  # the two failed samples are left out
    index = json.loads((save / "converters.json").read_text())
    assert index["student"] == "vjepa2" and set(index["teachers"]) == {"videomae", "timesformer"}
    student, convs = load_converter_set(save)
    x, y = pairs_from_store(store / "validation", "vjepa2", "videomae")
    assert convs["videomae"].config.kind == "linear" and convs["videomae"].config.t_out == 2
    assert r2_score(y, predict(convs["videomae"], x)) > 0.9
    hist = json.loads((save / "timesformer" / "history.json").read_text())
    assert hist["settings"]["loss_weights"] == "l2+0.1*cos" and hist["validation_fidelity"]["r2"] > 0.9
    assert [row["epoch"] for row in hist["epochs"]] == list(range(1, 31)) and 1 <= hist["best_epoch"] <= 30
    # a rerun with the same settings resumes: nothing is retrained
    rc, out, _ = run(args, capsys)
    assert rc == 0 and out.count("skipping") == 2
    # other settings into the same folder would lose the finished set: refused before any training
    files = {p: p.read_bytes() for p in save.rglob("*") if p.is_file()}
    other = [a if a != 30 else 5 for a in args]  # --epochs 5
    rc, out, err = run(other, capsys)
    assert rc == 2 and err.count("\n") == 1 and "holds a converter trained with other training arguments" in err
    assert "--overwrite" in err and out == ""
    assert {p: p.read_bytes() for p in save.rglob("*") if p.is_file()} == files
    rc, out, _ = run([*other, "--overwrite"], capsys)
    assert rc == 0 and json.loads((save / "timesformer" / "history.json").read_text())["settings"]["epochs"] == 5


@pytest.mark.parametrize("extra,match", [
    (["--d_in", 768], "--d_in 768 does not match the store: 'vjepa2' features are 12-dim"),
    (["--teachers", "videomae", "--d_out", 6], "--d_out 6 does not match the store: 'videomae'"),
    (["--teachers", "vivit"], "model 'vivit' is not in the feature store"),
    (["--kind", "gru"], "converter kind 'gru' is unknown"),
    (["--loss_weights", "l2+kl"], "loss 'kl' is unknown"),
])
def test_train_converter_rejects_bad_flags(store, tmp_path, capsys, extra, match):
    rc, _, err = run(["--features", store, "--save_dir", tmp_path / "c", "--epochs", 1, *extra], capsys)
    assert rc == 2 and match in err and err.count("\n") == 1


def test_train_converter_points_at_the_store_root(store, tmp_path, capsys):
    rc, _, err = run(["--features", store / "train", "--save_dir", tmp_path / "c"], capsys)
    assert rc == 2 and "pass its parent folder" in err
    rc, _, err = run(["--features", tmp_path / "nowhere", "--save_dir", tmp_path / "c"], capsys)
    assert rc == 2 and "no feature store here" in err


def test_train_converter_does_not_mix_into_another_students_set(store, tmp_path, capsys):
    save = tmp_path / "conv"
    save.mkdir()
    index = save / "converters.json"
    index.write_text(json.dumps({"format": "polyspace-converter-set/1", "student": "other", "teachers": {}}))
    rc, out, err = run(["--features", store, "--teachers", "timesformer", "--epochs", 1, "--save_dir", save,
                        "--device", "cpu"], capsys)
    assert rc == 2 and "holds the converter set of student 'other', not 'vjepa2'" in err and out == ""
    assert json.loads(index.read_text())["student"] == "other" and sorted(p.name for p in save.iterdir()) == [
        "converters.json"]
