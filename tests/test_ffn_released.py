"""Official FFN-pytorch and temporal-shift-module release files, read into our TSMResNet.

The files here are written from the official code's own names and nesting (an enumeration of
what their constructors register, filled with random tensors), never from our model, so a
mapping mistake cannot cancel out: our loaded model must compute what the official forward
computes on those tensors (a functional re-statement of resnet_TSM_FFN.py / torchvision+shift),
and every tensor must land where its name says.
"""

import json
import re

import pytest
import torch
import torch.nn.functional as F

from polyspace_core.cli import main
from polyspace_core.datasets import generate_synthmotion
from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn.checkpoint import load_model
from polyspace_core.ffn.released import read_release
from polyspace_core.ffn.tsm_resnet import TSMConfig, TSMResNet

COUNTS = (4, 8, 16)   # FFN-pytorch names its streams by these counts
SMALL = dict(widths=(8, 16), depths=(2, 1), stem=16)
BN = ("weight", "bias", "running_mean", "running_var")


def official_shapes(layout, widths, depths, stem=64, classes=5, batches_tracked=True):
    """Every tensor name and shape the official model registers, module. prefix omitted.

    ffn: resnet_TSM_FFN.ResNet inside models_FFN.TSN; tsm: torchvision ResNet with
    TemporalShift(conv1) in every block inside TSN; ffn-tsm/tsn: torchvision's own names."""
    shapes = {"base_model.conv1.weight": (stem, 3, 7, 7)}

    def bn(name, ch):
        shapes.update({f"{name}.{p}": (ch,) for p in BN})
        if batches_tracked:
            shapes[f"{name}.num_batches_tracked"] = ()

    streams = [f"_{t}" for t in COUNTS] if layout == "ffn" else [""]
    for s in streams:
        bn(f"base_model.bn1{s}", stem)
    inplanes = stem
    for stage, (planes, depth) in enumerate(zip(widths, depths), 1):
        for block in range(depth):
            p = f"base_model.layer{stage}.{block}."
            shapes[p + ("conv1.net.weight" if layout == "tsm" else "conv1.weight")] = (planes, inplanes, 1, 1)
            shapes[p + "conv2.weight"] = (planes, planes, 3, 3)
            shapes[p + "conv3.weight"] = (4 * planes, planes, 1, 1)
            for s in streams:
                for k, ch in ((1, planes), (2, planes), (3, 4 * planes)):
                    bn(f"{p}bn{k}{s}", ch)
                if layout == "ffn":
                    shapes[f"{p}adaconv{s}.weight"] = (inplanes, 1, 1, 1)
            if block == 0 and (stage > 1 or inplanes != 4 * planes):
                shapes[p + ("downsample_conv.weight" if layout == "ffn" else "downsample.0.weight")] = (
                    4 * planes, inplanes, 1, 1)
                for s in streams:
                    bn(f"{p}downsample_bn{s}" if layout == "ffn" else f"{p}downsample.1", 4 * planes)
            inplanes = 4 * planes
    shapes["new_fc.weight"], shapes["new_fc.bias"] = (classes, inplanes), (classes,)
    return shapes


def small_shapes(layout, **kw):
    """A two-stage Bottleneck net with the official stem: every layout's rules, at test speed."""
    return official_shapes(layout, SMALL["widths"], SMALL["depths"], SMALL["stem"], **kw)


def random_state(shapes, seed=0):
    """Non-trivial values: BN statistics away from 0/1 and adaconvs large enough to matter."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1234)
        elif name.endswith(("running_var", ".weight")) and len(shape) == 1:
            state[name] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 1:
            state[name] = 0.1 * torch.randn(shape, generator=g)
        elif "adaconv" in name:
            state[name] = 0.2 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1)
            state[name] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return state


def official_logits(sd, clip, layout, stream):
    """The official eval forward on `sd` (their names): TSN folds T frames into the batch, the
    ResNet shifts with n_segment = T, FFN picks the BNs/adaconv of `stream`, new_fc, average."""
    b, c, t, h, w = clip.shape
    x = clip.transpose(1, 2).reshape(b * t, c, h, w)
    s = f"_{stream}" if layout == "ffn" else ""

    def bn(x, name):
        return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                            sd[f"{name}.bias"], False, 0.0, 1e-5)

    def shift(x):  # TSM.shift / TemporalShift.shift, fold_div 8
        nt, ch, hh, ww = x.shape
        x = x.view(nt // t, t, ch, hh, ww)
        fold, out = ch // 8, torch.zeros_like(x)
        out[:, :-1, :fold] = x[:, 1:, :fold]
        out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
        out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
        return out.view(nt, ch, hh, ww)

    x = F.conv2d(x, sd["base_model.conv1.weight"], stride=2, padding=3)
    x = F.max_pool2d(F.relu(bn(x, f"base_model.bn1{s}")), 3, 2, 1)
    stages = sorted({int(m.group(1)) for k in sd for m in [re.match(r"base_model\.layer(\d+)\.", k)] if m})
    for stage in stages:
        blocks = sorted({int(m.group(1)) for k in sd
                         for m in [re.match(rf"base_model\.layer{stage}\.(\d+)\.", k)] if m})
        for block in blocks:
            p = f"base_model.layer{stage}.{block}."
            stride = 2 if stage > 1 and block == 0 else 1
            out = x if layout == "tsn" else shift(x)
            if layout == "ffn":
                out = F.conv2d(out, sd[f"{p}adaconv{s}.weight"], groups=out.shape[1]) + out
            out = F.conv2d(out, sd[p + ("conv1.net.weight" if layout == "tsm" else "conv1.weight")])
            out = F.relu(bn(out, f"{p}bn1{s}"))
            out = F.relu(bn(F.conv2d(out, sd[p + "conv2.weight"], stride=stride, padding=1), f"{p}bn2{s}"))
            out = bn(F.conv2d(out, sd[p + "conv3.weight"]), f"{p}bn3{s}")
            down, down_bn = ((p + "downsample_conv.weight", f"{p}downsample_bn{s}") if layout == "ffn"
                             else (p + "downsample.0.weight", p + "downsample.1"))
            identity = bn(F.conv2d(x, sd[down], stride=stride), down_bn) if down in sd else x
            x = F.relu(out + identity)
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["new_fc.weight"], sd["new_fc.bias"]).view(b, t, -1).mean(1)


def save_release(path, state, **meta):
    """As main_FFN.py / main.py save it: DataParallel's module. prefix, their dict keys."""
    record = {"epoch": 50, "state_dict": {f"module.{k}": v for k, v in state.items()},
              "optimizer": {"state": {}, "param_groups": [
                  {"lr": 0.0001, "momentum": 0.9, "weight_decay": 5e-4, "lr_mult": 1, "decay_mult": 1,
                   "name": "normal_weight", "params": [0, 1]}]},
              "best_prec1": 63.61, **meta}
    torch.save(record, path)
    return path


@pytest.mark.parametrize("layout", ["ffn", "tsm", "ffn-tsm", "tsn"])
def test_a_release_computes_what_the_official_forward_computes(tmp_path, layout):
    shapes = small_shapes(layout)
    state = random_state(shapes)
    path = save_release(tmp_path / "ckpt.best.pth.tar", state)
    release = read_release(path, layout=None if layout in ("ffn", "tsm") else layout)
    assert release.layout == layout
    assert sorted(release.source_keys.values()) == sorted(shapes)  # every tensor of the file used...
    model = release.build().eval()
    assert release.state.keys() == model.state_dict().keys()       # ...and every tensor of the model set
    assert model.config.adaconv == (layout == "ffn") and model.config.shift_div == (0 if layout == "tsn" else 8)
    for ours, theirs in release.source_keys.items():
        assert torch.equal(model.state_dict()[ours], state[theirs]), (ours, theirs)

    torch.manual_seed(1)
    for frames in (4, 8, 16):
        clip = torch.randn(2, 3, frames, 32, 32)
        with torch.no_grad():
            ours = model(clip)
            theirs = official_logits(state, clip, layout, frames)
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5), (frames, (ours - theirs).abs().max())
    if layout == "ffn":  # a count between the trained ones uses the nearest stream, ties to the higher
        clip = torch.randn(1, 3, 6, 32, 32)
        with torch.no_grad():
            assert torch.allclose(model(clip), official_logits(state, clip, layout, 8), atol=1e-5)
    # load_model reads the same file into the same model
    loaded = load_model(path, layout=None if layout in ("ffn", "tsm") else layout)
    with torch.no_grad():
        assert torch.equal(loaded(clip), model(clip))


def test_our_model_round_trips_through_the_ffn_layout_with_identical_logits(tmp_path):
    torch.manual_seed(0)
    ours = TSMResNet(TSMConfig(num_classes=5, widths=SMALL["widths"], depths=SMALL["depths"],
                               stem_width=SMALL["stem"], frame_counts=COUNTS, adaconv=True)).eval()
    for m in ours.modules():  # BN statistics and adaconvs that change the logits
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
        elif isinstance(m, torch.nn.Conv2d) and m.groups > 1:
            m.weight.data.normal_(0, 0.2)
    # our names -> theirs, written from the official names above (shapes included)
    shapes = small_shapes("ffn")
    theirs = {}
    for key, value in ours.state_dict().items():
        name = key
        name = re.sub(r"^fc\.", "new_fc.", name)
        name = re.sub(r"\.conv1\.adaconvs\.(\d)\.", lambda m: f".adaconv_{COUNTS[int(m.group(1))]}.", name)
        name = name.replace(".conv1.conv.", ".conv1.").replace(".downsample.0.", ".downsample_conv.")
        name = re.sub(r"\.downsample\.1\.bns\.(\d)\.", lambda m: f".downsample_bn_{COUNTS[int(m.group(1))]}.", name)
        name = re.sub(r"(^|\.)bn(\d)\.bns\.(\d)\.", lambda m: f"{m.group(1)}bn{m.group(2)}_{COUNTS[int(m.group(3))]}.",
                      name)
        name = name if name.startswith("new_fc.") else f"base_model.{name}"
        assert name in shapes and tuple(value.shape) == shapes[name], key
        theirs[name] = value.clone()
    assert theirs.keys() == shapes.keys()
    path = save_release(tmp_path / "ffn.pth", theirs)

    loaded = load_model(path)
    for key, value in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    torch.manual_seed(2)
    for frames in (4, 6, 8, 12, 16):
        clip = torch.randn(2, 3, frames, 32, 32)
        with torch.no_grad():
            assert torch.equal(loaded(clip), ours(clip)), frames


def test_a_release_loads_into_a_model_of_its_shape_and_only_that(tmp_path):
    state = random_state(small_shapes("ffn"))
    release = read_release(save_release(tmp_path / "ffn.pth", state))
    same = TSMResNet(TSMConfig(num_classes=5, widths=SMALL["widths"], depths=SMALL["depths"],
                               stem_width=SMALL["stem"], frame_counts=COUNTS, adaconv=True))
    release.load_into(same)
    assert torch.equal(same.layer2[0].conv1.adaconvs[2].weight, state["base_model.layer2.0.adaconv_16.weight"])
    for change, field in ((dict(num_classes=7), "num_classes"), (dict(frame_counts=(2, 6, 8)), "frame_counts"),
                          (dict(adaconv=False), "adaconv"), (dict(depths=(1, 1)), "depths")):
        settings = dict(num_classes=5, widths=SMALL["widths"], depths=SMALL["depths"], stem_width=SMALL["stem"],
                        frame_counts=COUNTS, adaconv=True)
        other = TSMResNet(TSMConfig(**{**settings, **change}))
        with pytest.raises(PolySpaceError, match=f"with {field} .* this run's model has"):
            release.load_into(other)


def test_a_classic_file_without_num_batches_tracked_and_a_bare_state_dict_load(tmp_path):
    shapes = small_shapes("tsm", batches_tracked=False)
    state = random_state(shapes)
    torch.save({f"module.{k}": v for k, v in state.items()},  # a bare state dict, no checkpoint around it
               tmp_path / "TSM_somethingv2_RGB_resnet50_shift8_blockres_avg_segment16_e45.pth")
    release = read_release(tmp_path / "TSM_somethingv2_RGB_resnet50_shift8_blockres_avg_segment16_e45.pth")
    assert release.layout == "tsm" and release.config.frame_counts == (16,)  # from the name, as their scripts
    assert release.state["bn1.bns.0.num_batches_tracked"].item() == 0
    assert release.info == {}


def _one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_files_that_cannot_be_loaded_faithfully_are_one_line_errors(tmp_path):
    shapes = small_shapes("ffn")
    state = random_state(shapes)
    good = save_release(tmp_path / "good.pth", state)

    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    for name in ("truncated.pth", "junk.pth"):
        with pytest.raises(PolySpaceError) as e:
            load_model(tmp_path / name)
        assert f"{name}: not a readable torch file" in _one_line(e)
    with pytest.raises(PolySpaceError, match="missing.pth: file not found"):
        load_model(tmp_path / "missing.pth")

    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(PolySpaceError) as e:
        load_model(tmp_path / "other.pth")
    assert "neither a polyspace checkpoint" in _one_line(e) and "'encoder.weight'" in str(e.value)

    cases = {
        # a non-local block: a part our model lacks is refused, not dropped
        "extra": ({**state, "base_model.layer2.0.nl.weight": torch.zeros(3)},
                  "'base_model.layer2.0.nl.weight' has no place"),
        "missing": ({k: v for k, v in state.items() if k != "base_model.layer1.1.adaconv_8.weight"},
                    "lacks the tensor for our 'layer1.1.conv1.adaconvs.1.weight'"),
        "shape": ({**state, "base_model.layer1.0.adaconv_4.weight": torch.zeros(5, 1, 1, 1)},
                  "'base_model.layer1.0.adaconv_4.weight' is \\(5, 1, 1, 1\\)"),
        "twice": ({**state, "base_model.fc.weight": state["new_fc.weight"]}, "both give our 'fc.weight'"),
    }
    for name, (bad, message) in cases.items():
        with pytest.raises(PolySpaceError, match=message) as e:
            read_release(save_release(tmp_path / f"{name}.pth", bad))
        _one_line(e)

    with pytest.raises(PolySpaceError, match="says arch 'resnet101'") as e:
        read_release(save_release(tmp_path / "arch.pth", state, arch="resnet101"))
    _one_line(e)

    # temporal-shift-module shifts only every other block of a ResNet-101; ours shifts all
    tsm = random_state(small_shapes("tsm"))
    tsm["base_model.layer1.1.conv1.weight"] = tsm.pop("base_model.layer1.1.conv1.net.weight")
    with pytest.raises(PolySpaceError, match="shifts every block") as e:
        read_release(save_release(tmp_path / "r101.pth", tsm))
    _one_line(e)

    plain = save_release(tmp_path / "plain.pth", random_state(small_shapes("tsn")))
    with pytest.raises(PolySpaceError, match="--release_layout ffn-tsm or tsn") as e:
        read_release(plain)
    _one_line(e)
    with pytest.raises(PolySpaceError, match="--release_layout ffn, but its keys are in the ffn-tsm/tsn layout"):
        read_release(plain, layout="ffn")
    with pytest.raises(PolySpaceError, match="BasicBlock"):
        basic = {k: v for k, v in state.items() if ".conv3." not in k}
        read_release(save_release(tmp_path / "basic.pth", basic))


@pytest.fixture(scope="module")
def ssv2_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("released_ssv2") / "set"
    generate_synthmotion(root, layout="ssv2", classes=4, clips_per_class=5, frames=16, size=32, seed=0,
                         progress=False)
    return root


def _cli(root, save_dir, *extra):
    return ["train-ffn", "--video_dir", str(root / "20bn-something-something-v2"), "--labels_dir", str(root / "labels"),
            "--size", "28", "--short_side", "32", "--batch_size", "4", "--workers", "0", "--device", "cpu",
            "--save_dir", str(save_dir), *extra]


def test_eval_only_evaluates_an_official_resnet50_ffn_release(ssv2_root, tmp_path, capsys):
    shapes = official_shapes("ffn", (64, 128, 256, 512), (3, 4, 6, 3), classes=4)
    state = random_state(shapes)
    path = save_release(tmp_path / "ckpt.best.pth.tar", state, arch="resnet50")
    release = read_release(path)
    assert release.config.arch == "resnet50" and len(release.source_keys) == len(shapes) == 898
    model = release.build().eval()
    clip = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():  # the real shapes compute the official function too
        assert torch.allclose(model(clip), official_logits(state, clip, "ffn", 4), rtol=1e-4, atol=1e-4)

    # 4/6/8 frames keep it short on CPU (6 runs through the nearest trained stream, 8)
    assert main(_cli(ssv2_root, tmp_path / "eval", "--eval_only", "--resume", str(path), "--test_run",
                     "--num_frames_l", "4", "--num_frames_m", "6", "--num_frames_h", "8")) == 0
    out = capsys.readouterr().out
    assert "an official FFN release (FFN-pytorch) (arch resnet50, 4/8/16-frame streams, 4 classes, epoch 50, " \
           "best_prec1 63.61); all 898 tensors mapped" in out and "TFD gap" in out
    result = json.loads((tmp_path / "eval" / "tfd_validation.json").read_text())
    assert {"acc_4f", "acc_6f", "acc_8f", "tfd_gap"} <= set(result) and result["checkpoint"] == str(path)


def test_cli_bad_release_files_are_one_line_errors(ssv2_root, tmp_path, capsys):
    seven = save_release(tmp_path / "seven.pth", random_state(small_shapes("tsm", classes=7)))
    assert main(_cli(ssv2_root, tmp_path / "e", "--eval_only", "--resume", str(seven))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model has 7 classes, the labels have 4" in err

    (tmp_path / "cut.pth").write_bytes(seven.read_bytes()[:1000])
    assert main(_cli(ssv2_root, tmp_path / "e", "--eval_only", "--resume", str(tmp_path / "cut.pth"))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cut.pth: not a readable torch file" in err

    # training from a release needs a model of its shape: the tiny arch is not one
    four = save_release(tmp_path / "four.pth", random_state(small_shapes("ffn", classes=4)))
    assert main(_cli(ssv2_root, tmp_path / "t", "--arch", "tiny", "--test_run", "--resume", str(four))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an official FFN release (FFN-pytorch) with widths [8, 16]" in err
    assert main(_cli(ssv2_root, tmp_path / "t", "--arch", "tiny", "--test_run", "--resume", str(four),
                     "--pretrained", "imagenet")) == 2
    assert "leave out --pretrained" in capsys.readouterr().err
