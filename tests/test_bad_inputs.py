"""Damaged files where our own files should be: each read is one PolySpaceError line naming the
file and saying what to do, never safetensors' or torch's own error, and the damaged file is left
as it was (nothing is overwritten on the way out)."""

from __future__ import annotations

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


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("damage", [pickled, truncated])
def test_converter_weights(tmp_path, damage):
    from polyspace_core.align.converters import ConverterConfig, build_converter
    from polyspace_core.align.train import load_converter, save_converter

    save_converter(tmp_path / "c", build_converter(ConverterConfig("linear", d_in=8, d_out=6, t_in=2, t_out=2)))
    weights = tmp_path / "c" / "converter.safetensors"
    before = damage(weights)
    with pytest.raises(PolySpaceError) as error:
        load_converter(tmp_path / "c")
    assert_one_line_naming(error, weights, NOT_SAFETENSORS, "train the converter again")
    assert weights.read_bytes() == before


@pytest.mark.parametrize("damage", [pickled, truncated])
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
    assert_one_line_naming(error, weights, NOT_SAFETENSORS, "train the fusion head again")
    assert weights.read_bytes() == before


@pytest.mark.parametrize("damage", [pickled, truncated])
def test_colorization_net_weights(tmp_path, damage):
    from polyspace_core.colorize.fusion_unet import FusionUNet

    FusionUNet().save_pretrained(tmp_path / "fusion")
    weights = tmp_path / "fusion" / "model.safetensors"
    before = damage(weights)
    with pytest.raises(PolySpaceError) as error:
        FusionUNet.from_pretrained(tmp_path / "fusion")
    assert_one_line_naming(error, weights, NOT_SAFETENSORS, "save the fusion_unet again")
    assert weights.read_bytes() == before


def test_truncated_training_state_on_resume(tmp_path):
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
    before = truncated(state)
    with pytest.raises(PolySpaceError) as error:
        fit(LinearProbe(["s"], [8], 2), train, val, settings, accelerator=acc, progress=False, save_dir=tmp_path)
    assert_one_line_naming(error, state, NOT_SAFETENSORS, "start over")
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
