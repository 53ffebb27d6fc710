"""Damaged files where our own files should be: each read is one PolySpaceError line naming the
file and saying what to do, never safetensors' or torch's own error, and the damaged file is left
as it was (nothing is overwritten on the way out). Every file we write is recorded with its size
and checksum, so a damage is caught before the file is parsed: a truncated or replaced file by its
size, a flipped byte by its checksum."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from polyspace_core.errors import PolySpaceError

NOT_SAFETENSORS = "not a readable safetensors file"


def pickled(path: Path) -> bytes:
    """Replace `path` by a torch pickle of the same tensors (what an old tool might write)."""
    from safetensors.torch import load_file

    tensors = {k: v.clone() for k, v in load_file(str(path)).items()}  # off the mapped file before it is replaced
    torch.save(tensors, path)
    return path.read_bytes()


def truncated(path: Path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path.read_bytes()


def flipped(path: Path) -> bytes:
    """One bit flipped in the last byte (tensor data, not the header): the file still parses."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    return path.read_bytes()


# what the line says for each damage: its size or its checksum differs from the record
CAUGHT = {"pickled": "were written", "truncated": "were written", "flipped": "checksum does not match"}
DAMAGES = [pickled, truncated, flipped]


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("damage", DAMAGES)
def test_converter_weights(tmp_path, damage):
    from polyspace_core.align.converters import ConverterConfig, build_converter
    from polyspace_core.align.train import load_converter, save_converter

    save_converter(tmp_path / "c", build_converter(ConverterConfig("linear", d_in=8, d_out=6, t_in=2, t_out=2)))
    weights = tmp_path / "c" / "converter.safetensors"
    before = damage(weights)
    with pytest.raises(PolySpaceError) as error:
        load_converter(tmp_path / "c")
    assert_one_line_naming(error, weights, CAUGHT[damage.__name__], "train the converter again")
    assert weights.read_bytes() == before


@pytest.mark.parametrize("damage", DAMAGES)
def test_fusion_checkpoint_weights(tmp_path, damage):
    from polyspace_core.align.converters import ConverterConfig, build_converter
    from polyspace_core.fusion.pipeline import build_pipeline, load_fusion, save_fusion

    conv = build_converter(ConverterConfig("mlp", d_in=16, d_out=24, t_in=4, t_out=8, hidden=16, depth=1))
    pipeline = build_pipeline("student", (4, 16), {"t": conv}, num_classes=3, rank=4, gate_hidden=8)
    save_fusion(tmp_path / "f", pipeline, {"class_names": ["a", "b", "c"]})
    weights = tmp_path / "f" / "fusion.safetensors"
    before = damage(weights)
    with pytest.raises(PolySpaceError) as error:
        load_fusion(tmp_path / "f")
    assert_one_line_naming(error, weights, CAUGHT[damage.__name__], "train the fusion head again")
    assert weights.read_bytes() == before


@pytest.mark.parametrize("damage", DAMAGES)
def test_colorization_net_weights(tmp_path, damage):
    from polyspace_core.colorize.fusion_unet import FusionUNet

    FusionUNet().save_pretrained(tmp_path / "fusion")
    weights = tmp_path / "fusion" / "model.safetensors"
    before = damage(weights)
    with pytest.raises(PolySpaceError) as error:
        FusionUNet.from_pretrained(tmp_path / "fusion")
    assert_one_line_naming(error, weights, CAUGHT[damage.__name__], "save the fusion_unet again")
    assert weights.read_bytes() == before


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_training_state_on_resume(tmp_path, damage):
    from polyspace_core.distributed import make_accelerator
    from polyspace_core.fusion.data import TensorBatches
    from polyspace_core.fusion.head import LinearProbe
    from polyspace_core.fusion.train import TrainSettings, fit

    g = torch.Generator().manual_seed(0)
    train = TensorBatches({"s": torch.randn(32, 2, 8, generator=g)}, torch.arange(32) % 2, batch=8)
    val = TensorBatches({"s": torch.randn(16, 2, 8, generator=g)}, torch.arange(16) % 2, batch=8)
    settings = TrainSettings(epochs=2, batch=8, lr=1e-2, seed=0)
    acc = make_accelerator("cpu")
    fit(LinearProbe(["s"], [8], 2), train, val, settings, accelerator=acc, progress=False, save_dir=tmp_path,
        stop_after=1)
    state = tmp_path / "last" / "state.safetensors"
    before = damage(state)
    with pytest.raises(PolySpaceError) as error:
        fit(LinearProbe(["s"], [8], 2), train, val, settings, accelerator=acc, progress=False, save_dir=tmp_path)
    assert_one_line_naming(error, state, CAUGHT[damage.__name__], "start over")
    assert state.read_bytes() == before


def test_a_weights_file_that_is_missing(tmp_path):
    from polyspace_core.io import load_safetensors

    with pytest.raises(PolySpaceError) as error:
        load_safetensors(tmp_path / "gone.safetensors", fix="run the stage that writes it")
    assert_one_line_naming(error, tmp_path / "gone.safetensors", "file not found", "run the stage that writes it")


@pytest.mark.parametrize("text", ['{"preset": "smoke", "stages": [{"stage": "05_eval', '{"preset": "smoke"}', "[]"])
def test_a_damaged_report_index_stops_the_report_before_any_notebook_runs(tmp_path, monkeypatch, capsys, text):
    import shutil

    from polyspace_core.cli import main

    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "params", tmp_path / "params")
    (tmp_path / "notebooks").mkdir()  # no notebook at all: the index check must come first
    index = tmp_path / "reports" / "smoke" / "index.json"
    index.parent.mkdir(parents=True)
    index.write_text(text)
    monkeypatch.setenv("POLYSPACE_ROOT", str(tmp_path))
    assert main(["report", "--preset", "smoke", "--nb", "05"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {index}: not a report index") and err.count("\n") == 1, err
    assert "delete it and run the report again" in err
    assert index.read_text() == text


@pytest.mark.parametrize("where", ["parent is a file", "parent of the parent is a file"])
def test_colorize_into_a_folder_that_cannot_be_made_stops_before_any_work(tmp_path, capsys, where):
    from polyspace_core.cli import main

    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    out = blocker / "out.mp4" if where == "parent is a file" else blocker / "sub" / "out.mp4"
    # the input does not even exist: the output folder is checked first, before anything is read
    assert main(["colorize", "--input", str(tmp_path / "none.mp4"), "--reference", str(tmp_path / "none.png"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: cannot write there") and err.count("\n") == 1, err
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize("damage", [pickled, truncated])
def test_a_local_backbone_folder_with_damaged_weights(tmp_path, damage):
    from polyspace_core.backbones import build_tiny, load_backbone

    model, processor = build_tiny("videomae-tiny")
    model.save_pretrained(tmp_path / "vm")
    processor.save_pretrained(tmp_path / "vm")
    weights = tmp_path / "vm" / "model.safetensors"
    before = damage(weights)
    with pytest.raises(PolySpaceError) as error:
        load_backbone(f"teacher={tmp_path / 'vm'}")
    message = str(error.value)
    assert "\n" not in message and str(tmp_path / "vm") in message and "cannot load the weights" in message
    assert weights.read_bytes() == before


def _small_store(split_dir: Path, shards: int = 3):
    from polyspace_core.features.store import FeatureStoreWriter

    models = [{"name": "s", "role": "student", "source": "test", "T": 2, "dim": 4}]
    writer = FeatureStoreWriter(split_dir, models=models, dtype="float32", tokens="temporal", shard_size=2,
                                paths=[f"v{i}" for i in range(2 * shards)], labels=[0, 1] * shards,
                                class_names=["a", "b"])
    g = torch.Generator().manual_seed(0)
    for k, (start, end) in enumerate(writer.ranges):
        writer.write_shard(k, {"s": torch.randn(end - start, 2, 4, generator=g)}, ["ok"] * (end - start), 1, 0)
    return writer.finalize()


def test_a_shard_is_checked_once_per_process_and_again_when_it_changes(tmp_path, monkeypatch):
    import polyspace_core.io as io
    from polyspace_core.features.store import FeatureStore

    _small_store(tmp_path / "train")
    hashed = []
    real = io._hash_file
    monkeypatch.setattr(io, "_hash_file", lambda path, algorithm, data=None: hashed.append(path.name)
                        or real(path, algorithm, data))
    monkeypatch.setattr(io, "_verified", set())
    first = FeatureStore.open(tmp_path / "train").array("s")
    again = FeatureStore.open(tmp_path / "train").array("s")  # another reader in the same process
    assert torch.equal(first, again)
    assert sorted(hashed) == ["shard_00000.safetensors", "shard_00001.safetensors", "shard_00002.safetensors"]
    shard = tmp_path / "train" / "shard_00001.safetensors"
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))  # touched since
    FeatureStore.open(tmp_path / "train").array("s")
    assert hashed.count("shard_00001.safetensors") == 2 and len(hashed) == 4


def test_a_store_written_before_xxh3_is_checked_by_its_sha256(tmp_path):
    from polyspace_core.features.store import FeatureStore

    _small_store(tmp_path / "train")
    manifest_path = tmp_path / "train" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for shard in manifest["shards"]:
        del shard["xxh3_64"]
    manifest_path.write_text(json.dumps(manifest))
    assert FeatureStore.open(tmp_path / "train").array("s").shape == (6, 2, 4)
    shard = tmp_path / "train" / "shard_00002.safetensors"
    flipped(shard)
    with pytest.raises(PolySpaceError) as error:
        FeatureStore.open(tmp_path / "train").array("s")
    assert_one_line_naming(error, shard, "checksum does not match", "rerun the same featurize command")


def test_a_zoo_member_with_a_flipped_byte(tmp_path):
    from polyspace_core.backbones import build_tiny, load_backbone
    from polyspace_core.io import write_checksums

    model, processor = build_tiny("videomae-tiny")
    model.save_pretrained(tmp_path / "vm")
    processor.save_pretrained(tmp_path / "vm")
    write_checksums(tmp_path / "vm")  # as build_zoo does for every member
    assert load_backbone(f"teacher={tmp_path / 'vm'}").dim > 0
    weights = tmp_path / "vm" / "model.safetensors"
    before = flipped(weights)
    with pytest.raises(PolySpaceError) as error:
        load_backbone(f"teacher={tmp_path / 'vm'}")
    assert_one_line_naming(error, weights, "checksum does not match", "the zoo")
    assert weights.read_bytes() == before


def test_a_checkpoint_from_before_checksums_is_read_with_a_note(tmp_path, capsys):
    from polyspace_core.align.converters import ConverterConfig, build_converter
    from polyspace_core.align.train import load_converter, save_converter

    save_converter(tmp_path / "c", build_converter(ConverterConfig("linear", d_in=8, d_out=6, t_in=2, t_out=2)))
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    del config["checksums"]
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    assert load_converter(tmp_path / "c").config.d_in == 8
    out = capsys.readouterr().out
    assert "converter.safetensors was written without a recorded checksum" in out


# --------------------------------------------------------------------------------------------
# the command battery: every command, as a user types it, on a workspace of real results. Each
# case damages or misnames one thing and checks the boundary's promise: a non-zero exit, one
# `error: ...` line that names the file or parameter, no traceback, and every earlier result in
# the workspace byte-identical afterwards.


def _write_split(root: Path, split: str, n: int, seed: int) -> None:
    """A store split whose teachers are fixed linear maps of the student tokens, labels from the
    student's first token (so the converters and the head have something to learn)."""
    from polyspace_core.features.store import FeatureStoreWriter

    fixed, g = torch.Generator().manual_seed(99), torch.Generator().manual_seed(seed)
    student = torch.randn(n, 4, 12, generator=g)
    feats = {"vjepa2": student,
             "videomae": student[:, ::2] @ torch.randn(12, 10, generator=fixed),
             "timesformer": student.mean(1, keepdim=True) @ torch.randn(12, 6, generator=fixed)}
    labels = (student[:, 0, :3].argmax(1)).tolist()
    models = [{"name": "vjepa2", "role": "student", "source": "test:vjepa2", "T": 4, "dim": 12},
              {"name": "videomae", "role": "teacher", "source": "test:videomae", "T": 2, "dim": 10},
              {"name": "timesformer", "role": "teacher", "source": "test:timesformer", "T": 1, "dim": 6}]
    writer = FeatureStoreWriter(root / split, models=models, dtype="float32", tokens="temporal", shard_size=32,
                                paths=[f"v{i}.avi" for i in range(n)], labels=labels, class_names=["a", "b", "c"])
    for k, (start, end) in enumerate(writer.ranges):
        writer.write_shard(k, {m: f[start:end] for m, f in feats.items()}, ["ok"] * (end - start), end - start, 0)
    writer.finalize()


def _cli(argv: list[str]) -> int:
    from polyspace_core.cli import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own exit (now one line too)
        return int(e.code or 0)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """features/ (train, validation, test), converters/, fusion/, ffn/ (a finished test run on a
    tiny SSv2-layout set), color/ (a colorization checkpoint), a reference image."""
    import cv2
    import numpy as np

    from polyspace_core.colorize.exemplar import ExemplarBranch, ExemplarConfig
    from polyspace_core.colorize.system import FusionSystem
    from polyspace_core.datasets import generate_synthmotion

    ws = tmp_path_factory.mktemp("battery")
    for split, n, seed in (("train", 64, 0), ("validation", 32, 1), ("test", 32, 2)):
        _write_split(ws / "features", split, n, seed)
    cpu = ["--device", "cpu"]
    assert _cli(["train-converter", "--features", ws / "features", "--save_dir", ws / "converters", "--epochs", 2,
                 "--hidden", 16, "--depth", 1, "--batch", 16, *cpu]) == 0
    assert _cli(["train-fusion", "--use_cached_features", "--root", ws / "features", "--converters",
                 ws / "converters", "--save_dir", ws / "fusion", "--epochs", 2, "--rank", 4, "--gate_hidden", 8,
                 "--batch", 16, *cpu]) == 0
    generate_synthmotion(ws / "ssv2", layout="ssv2", classes=2, clips_per_class=3, frames=8, size=32, seed=0,
                         progress=False)
    assert _cli(_ffn_args(ws, "--test_run")) == 0
    FusionSystem(ExemplarBranch(ExemplarConfig())).save_pretrained(ws / "color")
    cv2.imwrite(str(ws / "reference.png"), np.full((32, 32, 3), (40, 120, 200), np.uint8))
    return ws


def _ffn_args(ws: Path, *extra) -> list:
    return ["train-ffn", "--video_dir", ws / "ssv2" / "20bn-something-something-v2", "--labels_dir",
            ws / "ssv2" / "labels", "--arch", "tiny", "--size", 28, "--short_side", 32, "--batch_size", 2,
            "--workers", 0, "--device", "cpu", "--save_dir", ws / "ffn", *extra]


def _snapshot(root: Path) -> dict[str, bytes]:
    # every file but the error logs the boundary itself writes
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "logs" not in p.relative_to(root).parts}


def _first_shard(ws: Path, split: str) -> Path:
    return ws / "features" / split / "shard_00000.safetensors"


def _nan_in_an_ok_sample(split: str):
    def damage(ws: Path) -> None:
        from safetensors.torch import load_file, save_file

        path = _first_shard(ws, split)
        tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
        tensors["vjepa2"][1] = float("nan")
        save_file(tensors, str(path))
        # the manifest is made to agree with the file, as a store damaged before it was recorded would
        manifest = json.loads((ws / "features" / split / "manifest.json").read_text())
        from polyspace_core.io import digest_file

        manifest["shards"][0].update(digest_file(path))
        (ws / "features" / split / "manifest.json").write_text(json.dumps(manifest))
    return damage


def _replace(relative: str, content: bytes):
    def damage(ws: Path) -> None:
        (ws / relative).write_bytes(content)
    return damage


def _apply(fn, relative: str):
    def damage(ws: Path) -> None:
        fn(ws / relative)
    return damage


def _remove(relative: str):
    def damage(ws: Path) -> None:
        (ws / relative).unlink()
    return damage


def _nothing(ws: Path) -> None:
    pass


TRAIN_CONVERTER = ["train-converter", "--features", "{ws}/features", "--save_dir", "{ws}/new_converters",
                   "--epochs", "1", "--hidden", "16", "--depth", "1", "--device", "cpu"]
TRAIN_FUSION = ["train-fusion", "--use_cached_features", "--root", "{ws}/features", "--converters",
                "{ws}/converters", "--save_dir", "{ws}/new_fusion", "--epochs", "1", "--rank", "4",
                "--gate_hidden", "8", "--device", "cpu"]
EVAL = ["eval", "--use_cached_features", "--root", "{ws}/features", "--fusion", "{ws}/fusion", "--device", "cpu"]
COLORIZE = ["colorize", "--input", "{ws}/ssv2/20bn-something-something-v2/1.webm", "--reference",
            "{ws}/reference.png", "--out", "{ws}/colorized.mp4", "--checkpoint", "{ws}/color", "--device", "cpu"]
FFN_EVAL = ["--eval_only", "--resume", "{ws}/ffn/final.json"]
SHARD = "features/train/shard_00000.safetensors"

# (case id, damage applied to a copy of the workspace, command, words the one line must hold)
CASES = [
    # feature stores, read by every command that trains or evaluates on them
    ("converter-shard-bit-flip", _apply(flipped, SHARD), TRAIN_CONVERTER, [SHARD, "checksum does not match"]),
    ("converter-shard-truncated", _apply(truncated, SHARD), TRAIN_CONVERTER, [SHARD, "were written"]),
    ("converter-shard-missing", _remove(SHARD), TRAIN_CONVERTER, [SHARD, "file not found"]),
    ("converter-manifest-not-json", _replace("features/train/manifest.json", b'{"format": "polyspace-feat'),
     TRAIN_CONVERTER, ["features/train/manifest.json", "not valid JSON"]),
    ("converter-nan-in-ok-sample", _nan_in_an_ok_sample("train"), TRAIN_CONVERTER,
     [SHARD, "NaN/inf", "marked ok"]),
    ("converter-unknown-teacher", _nothing, [*TRAIN_CONVERTER, "--teachers", "vivit"], ["vivit"]),
    ("converter-no-store-there", _nothing, [*TRAIN_CONVERTER[:2], "{ws}/converters", *TRAIN_CONVERTER[3:]],
     ["converters", "manifest.json"]),
    ("converter-epochs-not-a-number", _nothing, [*TRAIN_CONVERTER, "--epochs", "ten"], ["--epochs", "'ten'"]),
    ("converter-unknown-kind", _nothing, [*TRAIN_CONVERTER, "--kind", "transformer9"], ["transformer9"]),
    ("converter-negative-lr", _nothing, [*TRAIN_CONVERTER, "--lr", "-1"], ["lr"]),
    ("converter-bad-loss-weights", _nothing, [*TRAIN_CONVERTER, "--loss_weights", "1,x"], ["loss_weights"]),
    ("converter-wrong-student-dim", _nothing, [*TRAIN_CONVERTER, "--d_in", "768"], ["768", "12"]),
    ("fusion-validation-shard-bit-flip", _apply(flipped, "features/validation/shard_00000.safetensors"),
     TRAIN_FUSION, ["features/validation/shard_00000.safetensors", "checksum does not match"]),
    ("fusion-nan-in-ok-sample", _nan_in_an_ok_sample("train"), TRAIN_FUSION, [SHARD, "NaN/inf"]),
    ("fusion-converter-bit-flip", _apply(flipped, "converters/videomae/converter.safetensors"), TRAIN_FUSION,
     ["converters/videomae/converter.safetensors", "checksum does not match"]),
    ("fusion-converter-config-not-json", _replace("converters/videomae/config.json", b"{"), TRAIN_FUSION,
     ["converters/videomae/config.json", "not valid JSON"]),
    ("fusion-converters-missing", _nothing, [*TRAIN_FUSION[:5], "{ws}/nowhere", *TRAIN_FUSION[6:]], ["nowhere"]),
    ("fusion-teacher-without-converter", _nothing, [*TRAIN_FUSION, "--teachers", "vivit"], ["vivit"]),
    ("fusion-wrong-class-count", _nothing, [*TRAIN_FUSION, "--classes", "7"], ["7", "3"]),
    ("fusion-rank-zero", _nothing, [*TRAIN_FUSION, "--rank", "0"], ["rank"]),
    ("eval-fusion-weights-bit-flip", _apply(flipped, "fusion/best/fusion.safetensors"), EVAL,
     ["fusion/best/fusion.safetensors", "checksum does not match"]),
    ("eval-nan-in-test-split", _nan_in_an_ok_sample("test"), EVAL,
     ["features/test/shard_00000.safetensors", "NaN/inf"]),
    ("eval-test-shard-truncated", _apply(truncated, "features/test/shard_00000.safetensors"), EVAL,
     ["features/test/shard_00000.safetensors", "were written"]),
    ("eval-no-fusion-there", _nothing, [*EVAL[:5], "{ws}/converters", *EVAL[6:]], ["fusion.json"]),
    ("eval-unknown-split", _nothing, [*EVAL, "--split", "holdout"], ["holdout"]),
    ("features-info-manifest-not-json", _replace("features/test/manifest.json", b"[1, 2"),
     ["features-info", "{ws}/features/test"], ["features/test/manifest.json", "not valid JSON"]),
    ("features-info-verify-bit-flip", _apply(flipped, "features/test/shard_00000.safetensors"),
     ["features-info", "{ws}/features/test", "--verify"], ["features/test/shard_00000.safetensors", "checksum"]),
    ("import-pickle-refused", _replace("cache.pkl", b"\x80\x04K\x01."),
     ["import-pickle", "{ws}/cache.pkl", "--out", "{ws}/imported"], ["cache.pkl", "--allow-pickle"]),
    ("import-pickle-damaged", _replace("cache.pkl", b"not a pickle at all"),
     ["import-pickle", "{ws}/cache.pkl", "--out", "{ws}/imported", "--allow-pickle"], ["cache.pkl"]),
    ("featurize-no-dataset-there", _nothing,
     ["featurize", "--dataset", "hmdb51", "--root", "{ws}/nowhere", "--out", "{ws}/new_features",
      "--student", "videomae-tiny"], ["nowhere"]),
    ("featurize-unknown-dtype-flag", _nothing,
     ["featurize", "--dataset", "hmdb51", "--root", "{ws}/ssv2", "--out", "{ws}/f", "--fp8"], ["--fp8"]),
    ("data-info-unknown-dataset", _nothing, ["data-info", "--dataset", "kinetics", "--root", "{ws}/ssv2"],
     ["--dataset", "kinetics"]),
    ("data-info-no-dataset-there", _nothing, ["data-info", "--dataset", "ucf101", "--root", "{ws}/nowhere"],
     ["nowhere"]),
    ("ffn-checkpoint-bit-flip", _apply(flipped, "ffn/final.safetensors"), _ffn_args(Path("{ws}"), *FFN_EVAL),
     ["ffn/final.safetensors", "checksum does not match"]),
    ("ffn-checkpoint-json-truncated", _replace("ffn/final.json", b'{"format": "polyspace-ffn-check'),
     _ffn_args(Path("{ws}"), *FFN_EVAL), ["ffn/final.json", "not valid JSON"]),
    ("ffn-labels-missing", _remove("ssv2/labels/validation.json"), _ffn_args(Path("{ws}"), *FFN_EVAL),
     ["validation.json"]),
    ("ffn-other-settings-into-a-finished-run", _nothing, _ffn_args(Path("{ws}"), "--test_run", "--lr", "0.5"),
     ["ffn", "--overwrite"]),
    ("colorize-checkpoint-bit-flip", _apply(flipped, "color/fusion/model.safetensors"), COLORIZE,
     ["color/fusion/model.safetensors", "checksum does not match"]),
    ("colorize-input-not-a-video", _replace("ssv2/20bn-something-something-v2/1.webm", b"plain text"), COLORIZE,
     ["1.webm"]),
    ("colorize-reference-not-an-image", _replace("reference.png", b"plain text"), COLORIZE, ["reference.png"]),
    ("colorize-unknown-method", _nothing, [*COLORIZE, "--method", "magic"], ["--method", "magic"]),
    ("train-colorize-no-data", _nothing, ["train-colorize", "--data", "{ws}/nowhere", "--out", "{ws}/run"],
     ["nowhere"]),
    ("zoo-zero-epochs", _nothing, ["zoo", "--out", "{ws}/zoo", "--data", "{ws}/pretrain", "--epochs", "0"],
     ["epochs"]),
    ("flops-unknown-model", _nothing, ["flops", "--model", "{ws}/nowhere"], ["nowhere"]),
    ("report-unknown-preset", _nothing, ["report", "--preset", "nosuchpreset"], ["nosuchpreset"]),
    ("report-unknown-notebook", _nothing, ["report", "--preset", "smoke", "--nb", "99"], ["99"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_command_battery(workspace, tmp_path, capsys, case):
    import shutil

    _, damage, argv, words = case
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    damage(ws)
    before = _snapshot(ws)
    capsys.readouterr()
    rc = _cli([str(a).replace("{ws}", str(ws)) for a in argv])
    err = capsys.readouterr().err
    assert rc != 0, f"exit code 0; stderr: {err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word.replace("{ws}", str(ws)) in lines[0], f"{word!r} not in: {lines[0]}"
    assert _snapshot(ws) == before, "an earlier result changed"
