"""The ImageNet start: torchvision's classic and current ResNet-50 files, from a given path or
torchvision's cache folder, into every stream; and how train-ffn announces what a run starts from.

Test files are torchvision's `resnet50()` state dict with random weights (never downloaded);
the classic file (resnet50-19c8e357.pth) is that without `num_batches_tracked`."""

import json

import pytest
import torch
from torch import nn
from torchvision.models import resnet50

from polyspace_core.cli import main
from polyspace_core.datasets import generate_synthmotion
from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn.pretrained import (
    IMAGENET_FILES,
    find_imagenet_weights,
    imagenet_cache_dir,
    load_imagenet_weights,
    torchvision_name,
)
from polyspace_core.ffn.tsm_resnet import build_model


@pytest.fixture()
def torch_home(tmp_path, monkeypatch):
    """An empty torchvision cache folder of our own ($TORCH_HOME/hub/checkpoints)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    assert imagenet_cache_dir() == folder
    return folder


def test_classic_and_current_files_start_every_stream_from_the_same_imagenet_bn(torch_home):
    torch.manual_seed(0)
    reference = resnet50()
    for m in reference.modules():  # BN statistics that differ from a fresh BN's
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(7)
    current = reference.state_dict()
    classic = {k: v for k, v in current.items() if not k.endswith("num_batches_tracked")}
    torch.save(current, torch_home / "resnet50-0676ba61.pth")
    assert find_imagenet_weights("resnet50") == torch_home / "resnet50-0676ba61.pth"
    torch.save(classic, torch_home / "resnet50-19c8e357.pth")
    assert find_imagenet_weights("resnet50") == torch_home / "resnet50-19c8e357.pth"  # the classic file first

    model = build_model("resnet50", num_classes=7, frame_counts=(4, 8, 16), ffn=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    counts = load_imagenet_weights(model, find_imagenet_weights("resnet50"))
    bn_layers = sum(isinstance(m, nn.BatchNorm2d) for m in reference.modules())
    assert counts == {"loaded": len(before) - 3 * bn_layers - 16 * 3 - 2, "source_tensors": len(classic) - 2,
                      "kept_num_batches_tracked": 3 * bn_layers}
    for key, value in model.state_dict().items():
        if key.startswith("fc.") or ".adaconvs." in key or key.endswith("num_batches_tracked"):
            assert torch.equal(value, before[key]), key      # new classifier, FFN alterations, BN counter kept
        else:
            assert torch.equal(value, current[torchvision_name(key)]), key
    for stream in range(3):  # every stream's BatchNorm is the same ImageNet BatchNorm
        assert torch.equal(model.layer4[1].bn3.bns[stream].running_var, reference.layer4[1].bn3.running_var)
        assert torch.equal(model.layer2[0].downsample[1].bns[stream].weight, reference.layer2[0].downsample[1].weight)

    load_imagenet_weights(model, torch_home / "resnet50-0676ba61.pth")  # the current layout's counter is used
    assert model.bn1.bns[2].num_batches_tracked.item() == 7


def _tiny_imagenet_file(path, drop_counter=True):
    """A torchvision-layout state dict with the tiny arch's shapes (a stand-in ImageNet file)."""
    torch.manual_seed(3)
    model = build_model("tiny", num_classes=4, frame_counts=(4, 8, 16), ffn=True)
    state = {}
    for key, value in model.state_dict().items():
        if ".adaconvs." in key or (drop_counter and key.endswith("num_batches_tracked")):
            continue
        state.setdefault(torchvision_name(key), value.clone() + 0.01)
    torch.save(state, path)
    return state


def test_missing_or_unexpected_keys_are_one_line_errors_naming_the_key(tmp_path):
    state = _tiny_imagenet_file(tmp_path / "ok.pth")
    model = build_model("tiny", num_classes=4, frame_counts=(4, 8, 16), ffn=True)
    load_imagenet_weights(model, tmp_path / "ok.pth")
    assert torch.equal(model.layer2[0].conv1.conv.weight, state["layer2.0.conv1.weight"])

    torch.save({k: v for k, v in state.items() if k != "layer1.0.bn2.running_mean"}, tmp_path / "missing.pth")
    with pytest.raises(PolySpaceError, match="missing.pth: has no 'layer1.0.bn2.running_mean'") as e:
        load_imagenet_weights(model, tmp_path / "missing.pth")
    assert "\n" not in str(e.value)
    torch.save({**state, "layer4.0.conv1.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(PolySpaceError, match="extra.pth: unexpected 'layer4.0.conv1.weight'") as e:
        load_imagenet_weights(model, tmp_path / "extra.pth")
    assert "\n" not in str(e.value)
    (tmp_path / "cut.pth").write_bytes((tmp_path / "ok.pth").read_bytes()[:500])
    with pytest.raises(PolySpaceError, match="cut.pth: not a readable torch file"):
        load_imagenet_weights(model, tmp_path / "cut.pth")


def test_no_file_found_says_which_file_to_put_where(torch_home, tmp_path):
    with pytest.raises(PolySpaceError) as e:
        find_imagenet_weights("resnet50")
    message = str(e.value)
    assert "\n" not in message and "put torchvision's resnet50-19c8e357.pth" in message
    assert f"into {torch_home}/" in message and "--pretrained none" in message
    with pytest.raises(PolySpaceError, match="resnet101-5d3b4d8f.pth"):
        find_imagenet_weights("resnet101")
    with pytest.raises(PolySpaceError, match="--arch tiny has no ImageNet weights"):
        find_imagenet_weights("tiny")
    with pytest.raises(PolySpaceError, match="--imagenet_weights .*nope.pth: file not found"):
        find_imagenet_weights("resnet50", tmp_path / "nope.pth")
    assert set(IMAGENET_FILES) == {"resnet50", "resnet101"}


@pytest.fixture(scope="module")
def ssv2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained_ssv2") / "set"
    generate_synthmotion(root, layout="ssv2", classes=4, clips_per_class=5, frames=16, size=32, seed=0,
                         progress=False)
    return root


def _args(root, save_dir, *extra):
    return ["train-ffn", "--video_dir", str(root / "20bn-something-something-v2"), "--labels_dir", str(root / "labels"),
            "--size", "28", "--short_side", "32", "--batch_size", "4", "--workers", "0", "--device", "cpu",
            "--save_dir", str(save_dir), "--test_run", *extra]


def test_train_ffn_announces_its_start_and_keeps_it_with_the_run(ssv2_root, tmp_path, torch_home, capsys):
    tiny = ["--arch", "tiny"]
    assert main(_args(ssv2_root, tmp_path / "auto", *tiny)) == 0
    assert "starting from random weights (--arch tiny has no ImageNet weights)" in capsys.readouterr().out
    info = json.loads((tmp_path / "auto" / "final.json").read_text())
    assert info["start"] == "none" and info["start_source"] is None

    assert main(_args(ssv2_root, tmp_path / "none", *tiny, "--pretrained", "none")) == 0
    assert "starting from random weights (--pretrained none): training from scratch" in capsys.readouterr().out

    _tiny_imagenet_file(tmp_path / "tiny_imagenet.pth")
    assert main(_args(ssv2_root, tmp_path / "imagenet", *tiny, "--imagenet_weights",
                      str(tmp_path / "tiny_imagenet.pth"))) == 0
    assert f"starting from ImageNet weights {tmp_path / 'tiny_imagenet.pth'}" in capsys.readouterr().out
    info = json.loads((tmp_path / "imagenet" / "final.json").read_text())
    assert info["start"] == "imagenet" and info["start_source"] == str(tmp_path / "tiny_imagenet.pth")

    # a folder holding a run begun from random weights is not continued as an ImageNet run
    assert main(_args(ssv2_root, tmp_path / "auto", *tiny, "--imagenet_weights",
                      str(tmp_path / "tiny_imagenet.pth"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a ffn run with another start" in err

    # evaluating ignores a start flag, and says so
    assert main(_args(ssv2_root, tmp_path / "auto", "--eval_only", "--resume", str(tmp_path / "auto" / "final.json"),
                      "--pretrained", "none")) == 0
    assert "note: --pretrained / --imagenet_weights not used: --eval_only" in capsys.readouterr().out


def test_train_ffn_start_errors_are_one_line(ssv2_root, tmp_path, torch_home, capsys):
    assert main(_args(ssv2_root, tmp_path / "a", "--arch", "tiny", "--pretrained", "imagenet")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--arch tiny has no ImageNet weights" in err
    assert main(_args(ssv2_root, tmp_path / "b", "--arch", "tiny", "--pretrained", "none",
                      "--imagenet_weights", "x.pth")) == 2
    assert "--pretrained none with --imagenet_weights" in capsys.readouterr().err
    # ResNet-50 starts from ImageNet unless told otherwise; without the file, one line says where it goes
    assert main(_args(ssv2_root, tmp_path / "c", "--arch", "resnet50")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resnet50-19c8e357.pth" in err and str(torch_home) in err
    assert not (tmp_path / "c" / "final.json").exists()
