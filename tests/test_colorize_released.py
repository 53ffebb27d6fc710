"""SwinTExCo's released layout (Chronopt-Research/SwinTExCo: src/inference.py, src/models/vit/embed.py,
src/models/CNN/NonlocalNet.py, src/models/CNN/ColorVidNet.py, src/models/CNN/FrameColor.py).

The release is written here from its documented key names and shapes with random tensors
(embed_net.pth from timm's own swinv2_cr_tiny feature extractor, as the release's wrapper holds
it under `pretrained.`), and the release's forward is written out below directly on those key
names with torch.nn.functional, independently of swintexco.py. The tests check that every
released tensor maps, that our modules reproduce that forward, and that wrong files are one line.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from polyspace_core.colorize.lab import normalize_ab, normalize_l
from polyspace_core.colorize.released import RELEASED_FILES, load_released, our_key, save_released
from polyspace_core.colorize.swintexco import build_swintexco_branch
from polyspace_core.errors import PolySpaceError

EPS = sys.float_info.epsilon

# ----------------------------------------------------------------------------- the released layout

# WarpNet: (Sequential, [(index, out, in, k) of its convs], [indices of its PReLUs])
WARPNET_SEQUENTIALS = [
    ("layer2_1", [(1, 128, 96), (5, 128, 128)], [3, 7]),
    ("layer3_1", [(1, 128, 192), (5, 128, 128)], [3, 7]),
    ("layer4_1", [(1, 256, 384), (5, 128, 256)], [3, 7]),
    ("layer5_1", [(1, 256, 768), (6, 128, 256)], [3, 8]),
]
# ColorVidNet: (name, out, in, k, dilation)
COLORNET_CONVS = [
    ("conv1_1.0", 32, 7, 3, 1), ("conv1_1.2", 64, 32, 3, 1), ("conv1_2", 64, 64, 3, 1),
    ("conv2_1", 128, 64, 3, 1), ("conv2_2", 128, 128, 3, 1),
    ("conv3_1", 256, 128, 3, 1), ("conv3_2", 256, 256, 3, 1), ("conv3_3", 256, 256, 3, 1),
    ("conv4_1", 512, 256, 3, 1), ("conv4_2", 512, 512, 3, 1), ("conv4_3", 512, 512, 3, 1),
    ("conv5_1", 512, 512, 3, 2), ("conv5_2", 512, 512, 3, 2), ("conv5_3", 512, 512, 3, 2),
    ("conv6_1", 512, 512, 3, 2), ("conv6_2", 512, 512, 3, 2), ("conv6_3", 512, 512, 3, 2),
    ("conv7_1", 512, 512, 3, 1), ("conv7_2", 512, 512, 3, 1), ("conv7_3", 512, 512, 3, 1),
    ("conv8_1.1", 256, 512, 3, 1), ("conv3_3_short", 256, 256, 3, 1), ("conv8_2", 256, 256, 3, 1),
    ("conv8_3", 256, 256, 3, 1), ("conv9_1.1", 128, 256, 3, 1), ("conv2_2_short", 128, 128, 3, 1),
    ("conv9_2", 128, 128, 3, 1), ("conv10_1.1", 128, 128, 3, 1), ("conv1_2_short", 128, 64, 3, 1),
    ("conv10_2", 128, 128, 3, 1), ("conv10_ab", 2, 128, 1, 1),
]
COLORNET_SS = [("conv1_2norm_ss", 64), ("conv2_2norm_ss", 128), ("conv3_3norm_ss", 256)]
COLORNET_PRELUS = ["relu1_1", "relu1_2", "relu2_1", "relu2_2", "relu3_1", "relu3_2", "relu3_3", "relu4_1",
                   "relu4_2", "relu4_3", "relu5_1", "relu5_2", "relu5_3", "relu6_1", "relu6_2", "relu6_3",
                   "relu7_1", "relu7_2", "relu7_3", "relu8_1_comb", "relu8_2", "relu8_3", "relu9_1_comb",
                   "relu9_2", "relu10_1_comb"]


def _conv(g, sd, name, cout, cin, k, groups=1, bias=True):
    fan_in = cin // groups * k * k
    sd[f"{name}.weight"] = torch.randn(cout, cin // groups, k, k, generator=g) * (2.0 / fan_in) ** 0.5
    if bias:
        sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.1


def _prelu(g, sd, name):
    sd[f"{name}.weight"] = 0.25 + 0.1 * torch.randn(1, generator=g)


def released_nonlocal(g) -> dict:
    sd = {}
    for seq, convs, prelus in WARPNET_SEQUENTIALS:
        for index, cout, cin in convs:
            _conv(g, sd, f"{seq}.{index}", cout, cin, 3)
        for index in prelus:
            _prelu(g, sd, f"{seq}.{index}")
    for i in range(3):
        _conv(g, sd, f"layer.{i}.conv1", 512, 512, 3)
        _conv(g, sd, f"layer.{i}.conv2", 512, 512, 3)
        _prelu(g, sd, f"layer.{i}.prelu")
    _conv(g, sd, "theta", 256, 512, 1)
    _conv(g, sd, "phi", 256, 512, 1)
    return sd


def released_colornet(g) -> dict:
    sd = {}
    for name, cout, cin, k, _ in COLORNET_CONVS:
        _conv(g, sd, name, cout, cin, k)
    for name, ch in COLORNET_SS:
        _conv(g, sd, name, ch, ch, 1, groups=ch, bias=False)
    for name in COLORNET_PRELUS:
        _prelu(g, sd, name)
    return sd


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A folder in the released layout with random weights, plus the timm model behind embed_net."""
    import timm

    torch.manual_seed(0)
    backbone = timm.create_model("swinv2_cr_tiny_ns_224", pretrained=False, features_only=True,
                                 out_indices=(0, 1, 2, 3)).eval()
    g = torch.Generator().manual_seed(1)
    folder = tmp_path_factory.mktemp("swintexco_release")
    parts = {"embed_net.pth": {f"pretrained.{k}": v for k, v in backbone.state_dict().items()},
             "nonlocal_net.pth": released_nonlocal(g), "colornet.pth": released_colornet(g)}
    for name, sd in parts.items():
        torch.save(sd, folder / name)
    return {"folder": folder, "backbone": backbone, **parts}


# ----------------------------------------------------------------------------- the release's forward

def _pad_conv(x, sd, name, stride=1):
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride)


def _prelu_f(x, sd, name):
    return F.prelu(x, sd[f"{name}.weight"])


def reference_warpnet(sd, b_lab, a_feats, b_feats, temperature):
    def features(feats):
        maps = []
        for (seq, convs, prelus), f in zip(WARPNET_SEQUENTIALS, feats):
            (i1, *_), (i2, *_) = convs
            x = _prelu_f(F.instance_norm(_pad_conv(f, sd, f"{seq}.{i1}")), sd, f"{seq}.{prelus[0]}")
            if seq == "layer5_1":
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = _prelu_f(F.instance_norm(_pad_conv(x, sd, f"{seq}.{i2}", stride=2 if seq == "layer2_1" else 1)),
                         sd, f"{seq}.{prelus[1]}")
            if seq in ("layer4_1", "layer5_1"):
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            maps.append(x)
        x = torch.cat(maps, 1)
        for i in range(3):
            out = _prelu_f(F.instance_norm(_pad_conv(x, sd, f"layer.{i}.conv1")), sd, f"layer.{i}.prelu")
            out = F.instance_norm(_pad_conv(out, sd, f"layer.{i}.conv2"))
            x = _prelu_f(out + x, sd, f"layer.{i}.prelu")
        return x

    def project(x, name):
        x = F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"]).flatten(2)
        x = x - x.mean(-1, keepdim=True)
        return x / (torch.norm(x, 2, 1, keepdim=True) + EPS)

    n, _, h, w = b_lab.shape
    theta, phi = project(features(a_feats), "theta"), project(features(b_feats), "phi")
    f = theta.permute(0, 2, 1) @ phi
    sim = f.max(-1).values.view(n, 1, h // 4, w // 4)
    colours = F.avg_pool2d(b_lab, 4).view(n, 3, -1).permute(0, 2, 1)
    y = (F.softmax(f / temperature, -1) @ colours).permute(0, 2, 1).reshape(n, 3, h // 4, w // 4)
    return F.interpolate(y, scale_factor=4), F.interpolate(sim, scale_factor=4)


def reference_colornet(sd, x):
    def conv(x, name, dil=1, stride=1):
        k = sd[f"{name}.weight"].shape[-1]
        return F.conv2d(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"), stride=stride,
                        padding=dil if k == 3 else 0, dilation=dil)

    def block(x, names, dil=1):
        for name in names:
            x = _prelu_f(conv(x, f"conv{name}", dil), sd, f"relu{name}")
        return F.instance_norm(x)

    def ss(x, name, ch):
        return F.conv2d(x, sd[f"{name}.weight"], stride=2, groups=ch)

    up = lambda x: F.interpolate(x, scale_factor=2, mode="nearest")  # noqa: E731
    x = _prelu_f(conv(F.relu(conv(x, "conv1_1.0")), "conv1_1.2"), sd, "relu1_1")
    c1 = block(x, ["1_2"])
    c2 = block(ss(c1, "conv1_2norm_ss", 64), ["2_1", "2_2"])
    c3 = block(ss(c2, "conv2_2norm_ss", 128), ["3_1", "3_2", "3_3"])
    c4 = block(ss(c3, "conv3_3norm_ss", 256), ["4_1", "4_2", "4_3"])
    c5 = block(c4, ["5_1", "5_2", "5_3"], dil=2)
    c6 = block(c5, ["6_1", "6_2", "6_3"], dil=2)
    c7 = block(c6, ["7_1", "7_2", "7_3"])
    c8 = block(_prelu_f(conv(up(c7), "conv8_1.1") + conv(c3, "conv3_3_short"), sd, "relu8_1_comb"), ["8_2", "8_3"])
    c9 = block(_prelu_f(conv(up(c8), "conv9_1.1") + conv(c2, "conv2_2_short"), sd, "relu9_1_comb"), ["9_2"])
    c10 = _prelu_f(conv(up(c9), "conv10_1.1") + conv(c1, "conv1_2_short"), sd, "relu10_1_comb")
    c10 = F.leaky_relu(conv(c10, "conv10_2"), 0.2)
    return torch.tanh(conv(c10, "conv10_ab")) * 128


# ----------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def loaded(release):
    return load_released(release["folder"]).eval()


def test_every_released_tensor_maps_once_and_fills_the_branch(release, loaded):
    ours = loaded.state_dict()
    targets = [our_key(name, k) for name in RELEASED_FILES for k in release[name]]
    assert None not in targets and len(targets) == len(set(targets)) == len(ours)
    for name in RELEASED_FILES:
        for key, value in release[name].items():
            torch.testing.assert_close(ours[our_key(name, key)], value, rtol=0, atol=0)
    # Strategy 1: only the non-local net trains; the embedding and colour net stay frozen
    assert loaded.pretrained
    assert {id(p) for p in loaded.trainable_parameters()} == {id(p) for p in loaded.nonlocal_net.parameters()}
    assert not any(p.requires_grad for p in (*loaded.embed.parameters(), *loaded.colornet.parameters()))
    assert loaded.describe_weights()["embedding"].startswith("pretrained: SwinTExCo release")


def test_warpnet_and_colornet_reproduce_the_release(release, loaded):
    g = torch.Generator().manual_seed(2)
    size = 64   # WarpNet works at any multiple of 32: stage maps at 32, 16, 8, 4 after the x2 upsampling
    feats = [[F.normalize(torch.randn(1, c, size // s, size // s, generator=g), dim=1)
              for c, s in zip((96, 192, 384, 768), (2, 4, 8, 16))] for _ in range(2)]
    b_lab = torch.cat([torch.rand(1, 1, size, size, generator=g) * 100 - 50,
                       torch.randn(1, 2, size, size, generator=g) * 30], 1)
    with torch.no_grad():
        ours = loaded.nonlocal_net(b_lab, feats[0], feats[1], temperature=0.01)
        theirs = reference_warpnet(release["nonlocal_net.pth"], b_lab, feats[0], feats[1], 0.01)
        torch.testing.assert_close(ours[0], theirs[0], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(ours[1], theirs[1], rtol=1e-4, atol=1e-5)
        x = torch.randn(1, 7, 32, 32, generator=g) * 20
        torch.testing.assert_close(loaded.colornet(x), reference_colornet(release["colornet.pth"], x),
                                   rtol=1e-4, atol=1e-3)


def test_a_frame_through_the_released_pipeline(release, loaded):
    """One frame end to end at the release's 224 px, against the release's pipeline composed
    from the timm model it wraps and the functional forwards above (FrameColor.frame_colorization)."""
    g = torch.Generator().manual_seed(3)
    L = torch.rand(1, 1, 224, 224, generator=g) * 80 + 10
    ref_lab = torch.cat([torch.rand(1, 1, 224, 224, generator=g) * 80 + 10,
                         torch.randn(1, 2, 224, 224, generator=g) * 20], 1)
    from polyspace_core.colorize.lab import lab_to_rgb

    with torch.no_grad():
        loaded.reset_memory()
        ref = loaded.encode_reference(normalize_l(ref_lab[:, :1]), normalize_ab(ref_lab[:, 1:]))
        out = loaded(normalize_l(L), reference=ref)

        def embed(rgb):
            return [F.normalize(F.interpolate(f, scale_factor=2), dim=1, eps=0) for f in release["backbone"](rgb)]

        b_lab = torch.cat([ref_lab[:, :1] - 50, ref_lab[:, 1:]], 1)
        warped, sim = reference_warpnet(release["nonlocal_net.pth"], b_lab, embed((L / 100).expand(-1, 3, -1, -1)),
                                        embed(lab_to_rgb(ref_lab)), 0.01)
        x = torch.cat([L - 50, warped[:, 1:], sim, torch.zeros(1, 3, 224, 224)], 1)
        ab = reference_colornet(release["colornet.pth"], x)
    torch.testing.assert_close(out["ab"], normalize_ab(ab), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(out["similarity"], (sim + 1) / 2, rtol=1e-4, atol=1e-4)


def test_save_released_writes_the_release_layout(release, loaded, tmp_path):
    save_released(loaded, tmp_path / "out")
    for name in RELEASED_FILES:
        written = torch.load(tmp_path / "out" / name, weights_only=True)
        assert {k: tuple(v.shape) for k, v in written.items()} == {k: tuple(v.shape) for k, v in release[name].items()}


def _write(folder, release, **replace):
    folder.mkdir(parents=True, exist_ok=True)
    for name in RELEASED_FILES:
        torch.save(replace.get(name.split(".")[0], release[name]), folder / name)
    return folder


def test_wrong_layouts_are_one_line_naming_the_file(release, tmp_path):
    cases = {
        "missing": (None, "no colornet.pth"),
        "extra": ({**release["nonlocal_net.pth"], "layer6_1.1.weight": torch.zeros(1)}, "layer6_1.1.weight"),
        "shape": ({**release["nonlocal_net.pth"], "theta.weight": torch.zeros(128, 512, 1, 1)}, "theta.weight"),
        "lacking": ({k: v for k, v in release["nonlocal_net.pth"].items() if k != "phi.bias"}, "lacks 1"),
        "prefixed": ({f"module.{k}": v for k, v in release["nonlocal_net.pth"].items()}, "module."),
    }
    for case, (nonlocal_sd, expected) in cases.items():
        folder = _write(tmp_path / case, release, **({} if nonlocal_sd is None else {"nonlocal_net": nonlocal_sd}))
        if case == "missing":
            (folder / "colornet.pth").unlink()
        with pytest.raises(PolySpaceError) as error:
            load_released(folder)
        message = str(error.value)
        assert "\n" not in message and expected in message, (case, message)
        assert str(folder) in message
    # swapped files: the colour net's tensors in the embedding's file
    folder = _write(tmp_path / "swapped", release, embed_net=release["colornet.pth"])
    with pytest.raises(PolySpaceError, match="embed_net.pth: .* does not have"):
        load_released(folder)
    # a file that is not a state dict
    folder = _write(tmp_path / "list", release, colornet=[1, 2, 3])
    with pytest.raises(PolySpaceError, match="colornet.pth: not a state dict"):
        load_released(folder)


def test_strategy_2_backbone_from_a_local_file_and_a_cached_hub_id(tmp_path, offline_hf_cache):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(4)
    full = timm.create_model("swinv2_cr_tiny_ns_224", pretrained=False)
    (tmp_path / "hub").mkdir()
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, tmp_path / "hub" / "model.safetensors")
    branch = build_swintexco_branch(tmp_path / "hub" / "model.safetensors")
    embed = branch.embed.backbone.state_dict()
    key = "blocks.1.attn.qkv.weight"
    torch.testing.assert_close(embed[f"stages_2.{key}"], full.state_dict()[f"stages.2.{key}"])
    # Strategy 2 of the seed: embedding frozen, non-local net trained, colour net random and frozen
    assert not branch.pretrained
    assert {id(p) for p in branch.trainable_parameters()} == {id(p) for p in branch.nonlocal_net.parameters()}
    assert not any(p.requires_grad for p in branch.colornet.parameters())
    assert branch.describe_weights()["embedding"].startswith("pretrained: swinv2_cr_tiny_ns_224")
    assert build_swintexco_branch(train_colornet=True).describe_weights()["embedding"] == "random"
    offline_hf_cache.add("timm/swinv2_cr_tiny_ns_224.sw_in1k", tmp_path / "hub")
    cached = build_swintexco_branch("timm/swinv2_cr_tiny_ns_224.sw_in1k")
    key = "patch_embed.proj.weight"
    torch.testing.assert_close(cached.embed.backbone.state_dict()[key], embed[key])
    with pytest.raises(PolySpaceError, match="not in the local HF cache"):
        build_swintexco_branch("timm/swinv2_cr_small_ns_224.sw_in1k", backbone="swinv2-cr-s-224")
    with pytest.raises(PolySpaceError, match="use one of"):
        build_swintexco_branch(backbone="swinv2-t-256")


def test_a_fusion_system_with_the_release_saves_and_loads_in_our_format(loaded, tmp_path):
    from polyspace_core.colorize.swintexco import SwinTExCoBranch
    from polyspace_core.colorize.system import FusionSystem

    FusionSystem(loaded).save_pretrained(tmp_path / "system")
    again = FusionSystem.from_pretrained(tmp_path / "system")
    assert isinstance(again.exemplar, SwinTExCoBranch) and again.exemplar.pretrained
    assert again.exemplar.config == loaded.config
    assert again.describe_weights()["embedding"] == loaded.describe_weights()["embedding"]
    theirs = loaded.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in again.exemplar.state_dict().items())
