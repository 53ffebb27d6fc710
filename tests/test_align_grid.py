"""Length adaptation over the token grid (T, H, W): a token keeps its place in space and time
across models with different grids, the temporal case is the old 1-d rule, and the converters,
the fusion head and the store's manifest carry the grids."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polyspace_core.align.converters import ConverterConfig, build_converter
from polyspace_core.align.resample import grid_matrix, interpolation_matrix, resample_grid, resample_tokens
from polyspace_core.errors import PolySpaceError
from polyspace_core.fusion.head import FusionConfig, FusionHead


def positions(grid: tuple[int, int, int]) -> torch.Tensor:
    """(1, T*H*W, 3) tokens whose features are their own normalised (t, h, w) position in [0, 1]."""
    axes = [torch.linspace(0, 1, n) if n > 1 else torch.zeros(1) for n in grid]
    t, h, w = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([t, h, w], dim=-1).reshape(1, -1, 3)


def test_a_token_keeps_its_place_from_16x16_to_14x14_patches():
    src, dst = (8, 16, 16), (8, 14, 14)  # V-JEPA 2 at 256 px -> VideoMAE at 224 px, 8 tubelets each
    y = resample_grid(positions(src), src, dst)
    # interpolation over each side reproduces a linear function of position exactly: every token
    # of the new grid carries its own (t, h, w)
    torch.testing.assert_close(y, positions(dst), rtol=0, atol=1e-6)
    # a single token in a corner lands in the same corner, whole
    one = torch.zeros(1, 8 * 16 * 16, 1)
    one[0, (7 * 16 + 0) * 16 + 15] = 1.0  # t=7, h=0, w=15: last time step, top-right patch
    out = resample_grid(one, src, dst).reshape(8, 14, 14)
    assert out[7, 0, 13] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)
    # interpolating along the flattened (T*S) axis (the old rule) mixes places
    flat = resample_tokens(positions(src), 8 * 14 * 14)
    assert (flat - positions(dst)).abs().max() > 0.3


def test_space_and_time_together_and_the_mean_for_one_token():
    src, dst = (4, 6, 6), (8, 3, 5)
    torch.testing.assert_close(resample_grid(positions(src), src, dst), positions(dst), rtol=0, atol=1e-6)
    # full tokens -> one token per time step: the spatial mean, i.e. the temporal token rule
    x = torch.randn(2, 4 * 6 * 6, 5)
    torch.testing.assert_close(resample_grid(x, src, (4, 1, 1)), x.reshape(2, 4, 36, 5).mean(2))
    with pytest.raises(PolySpaceError, match="do not fill the grid"):
        resample_grid(x, (4, 6, 5), dst)


def test_temporal_grids_are_the_old_rule_bit_for_bit():
    x = torch.randn(3, 8, 7)
    reference = F.interpolate(x.transpose(1, 2), size=16, mode="linear", align_corners=True).transpose(1, 2)
    assert torch.equal(resample_grid(x, (8, 1, 1), (16, 1, 1)), reference)
    assert torch.equal(resample_grid(x, (8, 1, 1), (16, 1, 1)), resample_tokens(x, 16))
    # a converter saved before grids were recorded (no grid keys) reads as a layout over time
    old = ConverterConfig.from_dict({"kind": "linear", "d_in": 7, "d_out": 4, "t_in": 8, "t_out": 16})
    assert (old.grid_in, old.grid_out) == ([8, 1, 1], [16, 1, 1])
    conv = build_converter(old)
    assert torch.equal(conv(x), conv.proj(reference))


def test_interpolation_matrices_agree_with_resampling():
    for src, dst in (((8, 16, 16), (8, 14, 14)), ((4, 3, 1), (2, 5, 2)), ((6, 1, 1), (3, 1, 1))):
        x = torch.randn(2, src[0] * src[1] * src[2], 3)
        m = grid_matrix(src, dst)
        torch.testing.assert_close(torch.einsum("on,bnd->bod", m, x), resample_grid(x, src, dst))
    assert torch.equal(grid_matrix((6, 1, 1), (3, 1, 1)), interpolation_matrix(6, 3))
    # the learned time-mixing converter ("B") starts from the grid's matrix
    conv = build_converter(ConverterConfig("resampler", 4, 4, 2 * 9, 2 * 4, hidden=8, depth=1,
                                           grid_in=[2, 3, 3], grid_out=[2, 2, 2]))
    assert torch.equal(conv.time_mix.detach(), grid_matrix((2, 3, 3), (2, 2, 2)))


def test_converters_and_head_carry_their_grids():
    cfg = ConverterConfig("ridge", 3, 3, 8 * 16 * 16, 8 * 14 * 14, ridge_alpha=0.0, grid_in=[8, 16, 16],
                          grid_out=[8, 14, 14])
    conv = build_converter(ConverterConfig.from_dict(cfg.to_dict()))  # the grids survive the checkpoint JSON
    x = positions((8, 16, 16)).repeat(4, 1, 1) + 0.01 * torch.randn(4, 8 * 16 * 16, 3)
    conv.fit(x, conv.adapt(x))  # the identity on the teacher's grid
    torch.testing.assert_close(conv(x), conv.adapt(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(PolySpaceError, match="product is the token count"):
        ConverterConfig("ridge", 3, 3, 8, 8, grid_in=[2, 2, 3])

    head_cfg = FusionConfig(student="s", student_dim=3, student_tokens=8 * 16 * 16, teachers=["t"], teacher_dims=[3],
                            teacher_tokens=[8 * 14 * 14], num_classes=2,
                            student_grid=[8, 16, 16], teacher_grids=[[8, 14, 14]])
    head = FusionHead(FusionConfig.from_dict(head_cfg.to_dict()))
    # the branch brings teacher tokens onto the student's grid, place for place
    branch = head.branches[0]
    seen = {}
    branch.norm.register_forward_hook(lambda m, args, out: seen.setdefault("in", args[0]))
    head(torch.randn(2, 8 * 16 * 16, 3), [positions((8, 14, 14)).repeat(2, 1, 1)])
    torch.testing.assert_close(seen["in"][0], positions((8, 16, 16))[0], rtol=0, atol=1e-5)
    # a head saved before grids were recorded: time only, as before
    old = {k: v for k, v in head_cfg.to_dict().items() if k not in ("student_grid", "teacher_grids")}
    old.update(student_tokens=8, teacher_tokens=[4])
    restored = FusionConfig.from_dict(old)
    assert restored.student_grid == [8, 1, 1] and restored.teacher_grids == [[4, 1, 1]]


def test_backbone_and_manifest_record_the_token_grid(tmp_path):
    from polyspace_core.backbones import load_backbone

    b = load_backbone("vjepa2-tiny")  # 32 px, patch 8, 16 frames, tubelet 2
    assert b.token_grid("full") == (8, 4, 4) and b.num_tokens("full") == 128
    assert b.token_grid("temporal") == (8, 1, 1) and b.token_grid("clip") == (1, 1, 1)
    assert b.describe("full")["grid"] == [8, 4, 4]

    from polyspace_core.features.store import FeatureStoreWriter

    def store(models, tokens, folder):
        writer = FeatureStoreWriter(tmp_path / folder, models=models, dtype="float32", tokens=tokens, shard_size=4,
                                    paths=["a", "b"], labels=[0, 1], class_names=["x", "y"])
        writer.write_shard(0, {m["name"]: torch.randn(2, m["T"], m["dim"]) for m in models}, ["ok", "ok"], 2, 0)
        return writer.finalize()

    full = store([b.describe("full") | {"role": "student"}], "full", "full")
    assert full.grid(b.name) == (8, 4, 4)
    # stores written before grids were recorded: temporal is a layout over time, full cannot be guessed
    old = {k: v for k, v in b.describe("temporal").items() if k != "grid"}
    assert store([old | {"role": "student"}], "temporal", "old").grid(b.name) == (8, 1, 1)
    old_full = {k: v for k, v in b.describe("full").items() if k != "grid"}
    with pytest.raises(PolySpaceError, match="no token grid"):
        store([old_full | {"role": "student"}], "full", "old_full").grid(b.name)
