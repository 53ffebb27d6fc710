"""Exemplar branch: shapes, frozen embedding, strategies, Swin from a local checkpoint, files,
and that the correspondence + colour net learn to colour from the reference."""

import numpy as np
import pytest
import torch

from polyspace_core.colorize.exemplar import ExemplarBranch, build_exemplar_branch
from polyspace_core.colorize.lab import split_lab
from polyspace_core.errors import PolySpaceError


def _inputs(b=2, h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    l = torch.rand(b, 1, h, w, generator=g) * 2 - 1
    ab = torch.rand(b, 2, h, w, generator=g) - 0.5
    return l, ab


def test_shapes_and_frozen_embedding():
    branch = build_exemplar_branch()
    l, ab = _inputs()
    out = branch(l, l, ab)
    assert out["ab"].shape == (2, 2, 32, 40) and out["warped_ab"].shape == (2, 2, 32, 40)
    assert out["similarity"].shape == (2, 1, 32, 40)
    sim = out["similarity"].detach()
    assert 0 <= float(sim.min()) and float(sim.max()) <= 1 + 1e-6
    out["ab"].sum().backward()
    assert all(p.grad is None for p in branch.embed.parameters())
    assert all(p.grad is not None for p in branch.nonlocal_net.parameters())
    branch.train()
    assert not branch.embed.training


def test_identical_frame_and_reference_copies_reference_colours():
    """With the frame equal to the reference, the best match of each position is itself."""
    import cv2
    from skimage import data

    from polyspace_core.colorize.lab import frames_to_lab

    img = cv2.resize(data.astronaut(), (64, 64), interpolation=cv2.INTER_AREA)
    l, ab = split_lab(frames_to_lab(img)[None])
    branch = build_exemplar_branch(temperature=1e-3)
    with torch.no_grad():
        out = branch(l, l, ab)
    grid = torch.nn.functional.adaptive_avg_pool2d(ab, (16, 16))
    warped_grid = torch.nn.functional.adaptive_avg_pool2d(out["warped_ab"], (16, 16))
    err = (warped_grid - grid).abs().mean()
    baseline = (grid - grid.mean((2, 3), keepdim=True)).abs().mean()  # one global colour
    assert err < 0.35 * baseline
    assert out["similarity"].mean() > 0.99


def test_strategies_set_what_trains():
    fresh = build_exemplar_branch()
    n_nonlocal = sum(p.numel() for p in fresh.nonlocal_net.parameters())
    n_color = sum(p.numel() for p in fresh.colornet.parameters())
    assert sum(p.numel() for p in fresh.trainable_parameters()) == n_nonlocal + n_color
    assert not any(p.requires_grad for p in fresh.embed.parameters())


def test_save_and_load_round_trip_is_strategy_1(tmp_path):
    branch = build_exemplar_branch(embed_seed=3)
    with torch.no_grad():
        for p in branch.colornet.parameters():
            p.add_(0.01)  # make the colour net non-trivial
    branch.save_pretrained(tmp_path / "ex")
    loaded = ExemplarBranch.from_pretrained(tmp_path / "ex")
    l, ab = _inputs(seed=1)
    torch.testing.assert_close(loaded(l, l, ab)["ab"], branch(l, l, ab)["ab"])
    assert loaded.pretrained
    assert not any(p.requires_grad for p in loaded.colornet.parameters())
    assert all(p.requires_grad for p in loaded.nonlocal_net.parameters())
    assert len(loaded.trainable_parameters()) == len(list(loaded.nonlocal_net.parameters()))


def _tiny_backbone(family: str, folder):
    """A tiny randomly initialised transformers model of `family` saved with its image processor
    (a made-up mean/std, so the test sees that the processor's own normalisation is used)."""
    import transformers

    torch.manual_seed(0)
    if family == "swin":
        model = transformers.SwinModel(transformers.SwinConfig(
            image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4))
        proc = transformers.ViTImageProcessor(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    elif family == "swinv2":
        model = transformers.Swinv2Model(transformers.Swinv2Config(
            image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4))
        proc = transformers.ViTImageProcessor(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    else:
        model = transformers.ConvNextModel(transformers.ConvNextConfig(
            hidden_sizes=[8, 16], depths=[1, 1], num_stages=2))
        proc = transformers.ConvNextImageProcessor(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return model


@pytest.mark.parametrize("family,channels", [("swin", 16 + 32), ("swinv2", 16 + 32), ("convnext", 8 + 16)])
def test_backbone_families_from_a_local_folder(tmp_path, family, channels):
    model = _tiny_backbone(family, tmp_path / family)
    branch = build_exemplar_branch(tmp_path / family, embed=family)
    assert branch.config.embed == family and branch.embed.out_channels == channels
    assert branch.config.pixel_mean == pytest.approx([0.5, 0.4, 0.3])   # its processor's, not ImageNet's
    assert branch.describe_weights()["embedding"] == f"pretrained: {family} {tmp_path / family}"
    # the loaded weights are the saved ones, and the features are the model's own stride-4 map
    l, ab = _inputs(h=48, w=64)
    feats = branch.embed(l)
    assert feats.shape == (2, channels, 12, 16)
    pixels = (((l * 50 + 50) / 100).expand(-1, 3, -1, -1) - branch.embed.mean) / branch.embed.std
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
    first = out.hidden_states[1] if family == "convnext" else out.reshaped_hidden_states[0]
    torch.testing.assert_close(feats[:, :first.shape[1]], first)
    assert branch(l, l, ab)["ab"].shape == (2, 2, 48, 64)
    assert not any(p.requires_grad for p in branch.embed.parameters())
    branch.save_pretrained(tmp_path / "ex")     # the backbone config travels with the branch
    loaded = ExemplarBranch.from_pretrained(tmp_path / "ex")
    torch.testing.assert_close(loaded(l, l, ab)["ab"], branch(l, l, ab)["ab"])


def test_backbone_from_a_cached_hub_id_offline(tmp_path, offline_hf_cache):
    _tiny_backbone("swinv2", tmp_path / "swinv2")
    offline_hf_cache.add("microsoft/swinv2-tiny-patch4-window8-256", tmp_path / "swinv2")
    branch = build_exemplar_branch("microsoft/swinv2-tiny-patch4-window8-256", embed="swinv2")
    assert branch.config.backbone_source == "microsoft/swinv2-tiny-patch4-window8-256"
    with pytest.raises(PolySpaceError, match="not found locally") as error:   # not cached: never downloaded
        build_exemplar_branch("microsoft/swinv2-base-patch4-window8-256", embed="swinv2")
    assert "\n" not in str(error.value)


def test_backbone_errors_are_one_line(tmp_path):
    _tiny_backbone("swin", tmp_path / "swin")
    with pytest.raises(PolySpaceError, match="is a 'swin' model, not 'swinv2'"):
        build_exemplar_branch(tmp_path / "swin", embed="swinv2")
    with pytest.raises(PolySpaceError, match="name its family"):
        build_exemplar_branch(tmp_path / "swin")
    with pytest.raises(PolySpaceError, match="needs backbone="):
        build_exemplar_branch(embed="swinv2")
    (tmp_path / "noproc").mkdir()
    import transformers
    transformers.SwinModel(transformers.SwinConfig(image_size=32, embed_dim=8, depths=[1], num_heads=[1],
                                                   window_size=4)).save_pretrained(tmp_path / "noproc")
    with pytest.raises(PolySpaceError, match="preprocessor_config.json"):   # no silent ImageNet default
        build_exemplar_branch(tmp_path / "noproc", embed="swin")
    assert build_exemplar_branch().describe_weights()["embedding"] == "random"


def test_missing_checkpoints_are_errors(tmp_path):
    with pytest.raises(PolySpaceError, match="no such folder"):
        build_exemplar_branch(swin_checkpoint=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolySpaceError, match="no config.json"):
        build_exemplar_branch(swin_checkpoint=tmp_path / "empty")
    with pytest.raises(PolySpaceError, match="config.json and model.safetensors"):
        ExemplarBranch.from_pretrained(tmp_path)
    with pytest.raises(PolySpaceError, match="exemplar config"):
        build_exemplar_branch(not_a_field=1)


def test_learns_to_colour_from_the_reference():
    """Frames whose colours are only knowable from the reference: random hues per image on a
    shared texture. A few dozen steps must cut the error well below the untrained branch."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    from polyspace_core.colorize.lab import rgb_to_lab

    def sample(n):
        ls, refs = [], []
        for _ in range(n):
            base = torch.rand(1, 1, 8, 8)
            tex = torch.nn.functional.interpolate(base, size=(32, 32), mode="bilinear", align_corners=False)
            hue = torch.tensor(rng.uniform(0, 1, 3), dtype=torch.float32).view(1, 3, 1, 1)
            other = torch.tensor(rng.uniform(0, 1, 3), dtype=torch.float32).view(1, 3, 1, 1)
            rgb = tex * hue + (1 - tex) * other           # two colours mixed by a texture
            shift = int(rng.integers(-4, 5))
            ls.append(rgb_to_lab(torch.roll(rgb, shift, dims=3)))
            refs.append(rgb_to_lab(rgb))
        return torch.cat(ls), torch.cat(refs)

    train_x, train_r = sample(48)
    test_x, test_r = sample(8)
    branch = build_exemplar_branch()
    opt = torch.optim.Adam(branch.trainable_parameters(), lr=3e-3)

    def error(x, r):
        with torch.no_grad():
            l, ab = split_lab(x)
            rl, rab = split_lab(r)
            return float((branch(l, rl, rab)["ab"] - ab).abs().mean())

    before = error(test_x, test_r)
    for _ in range(40):
        idx = torch.randint(0, 48, (12,))
        l, ab = split_lab(train_x[idx])
        rl, rab = split_lab(train_r[idx])
        out = branch(l, rl, rab)
        loss = (out["ab"] - ab).abs().mean() + 0.5 * (out["warped_ab"] - ab).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = error(test_x, test_r)
    assert after < 0.6 * before


def test_matching_grid_is_pooled_only_above_match_positions():
    from polyspace_core.colorize.exemplar import NonLocalCorrespondence

    net = NonLocalCorrespondence(8, dim=4, max_positions=1024)
    assert net.grid_size(16, 16) == (16, 16)          # the 64 px training size: as it is
    assert net.grid_size(64, 64) == (32, 32)          # 256x256
    assert net.grid_size(64, 114) == (22, 38)         # 256x456 (640x360 at the working size)
    net.max_positions = 0
    assert net.grid_size(64, 114) == (64, 114)
    with pytest.raises(PolySpaceError, match="match_positions=-1"):
        NonLocalCorrespondence(8, max_positions=-1)


def test_pooled_matching_and_cached_keys_leave_small_frames_unchanged():
    """At the training size the default grid cap changes nothing, and a reference encoded once
    (keys included) gives what encoding it at every call gives; above the cap the output keeps
    its shape and the correspondence runs on at most match_positions positions."""
    torch.manual_seed(0)
    branch = build_exemplar_branch().eval()
    l, ab = _inputs(b=1, h=64, w=64)
    with torch.no_grad():
        capped = branch(l, l, ab)
        cached = branch(l, reference=branch.encode_reference(l, ab))
        branch.nonlocal_net.max_positions = 0
        full = branch(l, l, ab)
    for key in ("ab", "warped_ab", "similarity"):
        torch.testing.assert_close(capped[key], full[key], rtol=0, atol=0)
        torch.testing.assert_close(cached[key], full[key], rtol=0, atol=0)
    branch.nonlocal_net.max_positions = 64
    l, ab = _inputs(b=2, h=64, w=96)
    with torch.no_grad():
        ref = branch.encode_reference(l, ab)
        out = branch(l, reference=ref)
    assert ref.key.shape == (2, branch.config.match_dim, 6 * 8) and ref.ab_grid.shape == (2, 2, 6 * 8)  # 16x24 / 3
    assert out["ab"].shape == (2, 2, 64, 96) and out["similarity"].shape == (2, 1, 64, 96)
