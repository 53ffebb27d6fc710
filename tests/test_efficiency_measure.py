"""FLOPs (analytic cross-check, attention present under every implementation, meta == real),
parameters, latency and peak memory of polyspace_core.measure / catalog."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from polyspace_core.backbones.catalog import (
    REAL_BACKBONES,
    backbone_cost,
    build_backbone,
    encoder_prefixes,
    resolve_backbone,
)
from polyspace_core.errors import PolySpaceError
from polyspace_core.measure import count_flops, count_parameters, measure_latency, measure_peak_memory, vit_layer_flops

# one-layer tiny video ViTs: 4 frames of 32x32, patch 8, tubelet 2 -> 2 x 16 = 32 tokens of width 64
FRAMES, SIZE, PATCH, TUBELET, WIDTH, MLP = 4, 32, 8, 2, 64, 128
TOKENS = (FRAMES // TUBELET) * (SIZE // PATCH) ** 2


def tiny_videomae(attn: str = "eager", layers: int = 1):
    from transformers import VideoMAEConfig, VideoMAEModel

    config = VideoMAEConfig(image_size=SIZE, patch_size=PATCH, num_frames=FRAMES, tubelet_size=TUBELET,
                            hidden_size=WIDTH, num_attention_heads=4, num_hidden_layers=layers, intermediate_size=MLP)
    config._attn_implementation = attn
    torch.manual_seed(0)
    return VideoMAEModel(config).eval()


def tiny_vjepa2():
    from transformers import VJEPA2Config, VJEPA2Model

    config = VJEPA2Config(crop_size=SIZE, patch_size=PATCH, frames_per_clip=FRAMES, tubelet_size=TUBELET,
                          hidden_size=WIDTH, num_attention_heads=4, num_hidden_layers=1, mlp_ratio=MLP / WIDTH,
                          pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=1,
                          num_pooler_layers=1, pred_num_mask_tokens=2)
    config._attn_implementation = "eager"
    return VJEPA2Model(config).eval()


def clip():
    return torch.randn(1, FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def patch_embedding_flops() -> int:
    # Conv3d 3 -> WIDTH with a (TUBELET, PATCH, PATCH) kernel, one output per token
    return 2 * TOKENS * WIDTH * 3 * TUBELET * PATCH * PATCH


def test_vit_layer_matches_the_analytic_count():
    """One ViT layer: QKV, Q·Kᵀ, attention·V, output projection, MLP — plus the patch embedding."""
    expected = vit_layer_flops(TOKENS, WIDTH, MLP)
    assert expected["scores"] == expected["weighted_values"] == 2 * TOKENS * TOKENS * WIDTH
    # per token 2·(3D² + D² + 2DM) = 16·D² with M = 2D, plus 2·2·N·D per token for the attention
    assert expected["total"] == 16 * TOKENS * WIDTH**2 + 4 * TOKENS**2 * WIDTH
    x = clip()
    for model, kwargs in ((tiny_videomae(), {"pixel_values": x}),
                          (tiny_vjepa2(), {"pixel_values_videos": x, "skip_predictor": True})):
        counted = count_flops(lambda model=model, kwargs=kwargs: model(**kwargs))
        assert counted.total == expected["total"] + patch_embedding_flops(), type(model).__name__
        assert counted.attention == expected["scores"] + expected["weighted_values"]


def test_attention_flops_are_counted_with_sdpa_on_cpu():
    """torch's FlopCounterMode alone counts the CPU SDPA kernel as zero; ours matches eager."""
    from torch.utils.flop_counter import FlopCounterMode

    x = clip()
    eager = count_flops(lambda: tiny_videomae("eager", layers=2)(pixel_values=x))
    sdpa_model = tiny_videomae("sdpa", layers=2)
    sdpa = count_flops(lambda: sdpa_model(pixel_values=x))
    attention = 2 * 4 * TOKENS * TOKENS * WIDTH  # two layers x (scores + weighted values)
    assert sdpa.total == eager.total
    assert sdpa.attention == eager.attention == attention
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in sdpa.by_op
    plain = FlopCounterMode(display=False)
    with torch.no_grad(), plain:
        sdpa_model(pixel_values=x)
    assert plain.get_total_flops() == eager.total - attention  # what the attention fix adds


def test_multihead_attention_fast_path_is_counted():
    """nn.MultiheadAttention self-attention in eval/no_grad runs one fused op; counted like the
    unfused path (in-projections, Q·Kᵀ, attention·V, out-projection) it takes with gradients."""
    from torch.utils.flop_counter import FlopCounterMode

    from polyspace_core.measure import _extra_formulas

    def expected(b, lq, lk, e):
        return 2 * b * (lq + 2 * lk) * e * e + 2 * b * lq * e * e + 4 * b * lq * lk * e

    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    fused = count_flops(lambda: mha(x, x, x, need_weights=False))
    assert "aten._native_multi_head_attention" in fused.by_op
    assert fused.total == expected(2, 5, 5, 16)
    for query, key in ((x, x), (x, kv)):  # with gradients: linear layers + SDPA, the same FLOPs
        counter = FlopCounterMode(display=False, custom_mapping=_extra_formulas())
        with counter:
            mha(query, key, key, need_weights=False)
        assert counter.get_total_flops() == expected(2, query.shape[1], key.shape[1], 16)


def test_meta_count_equals_real_count_and_parameters():
    spec = resolve_backbone("videomae-tiny")
    meta_model, meta_inputs = build_backbone(spec, "meta")
    cpu_model, cpu_inputs = build_backbone(spec, "cpu")
    assert meta_inputs["pixel_values"].is_meta
    assert count_flops(lambda: meta_model(**meta_inputs)).total == count_flops(lambda: cpu_model(**cpu_inputs)).total
    assert count_parameters(meta_model) == count_parameters(cpu_model) == sum(p.numel() for p in cpu_model.parameters())


def test_vjepa2_parameters_exclude_the_predictor():
    spec = resolve_backbone("vjepa2-tiny")
    model, _ = build_backbone(spec, "meta")
    encoder = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("predictor."))
    assert encoder_prefixes(spec) == ("predictor.",)
    assert count_parameters(model, exclude_prefixes=encoder_prefixes(spec)) == encoder < count_parameters(model)


@pytest.mark.parametrize("name, gmacs, params_m", [
    ("videomae_base", 180.0, 86.2),      # VideoMAE ViT-B 16x224: 180 GFLOPs (MACs) per view, 87M incl. head
    ("timesformer_base", 196.0, 121.4),  # TimeSformer 8x224: 0.59 TFLOPs for 3 views, 121.4M
])
def test_real_configurations_match_published_costs(name, gmacs, params_m):
    """Real-size configs counted on meta agree with the papers' numbers (they quote MACs)."""
    m = backbone_cost(REAL_BACKBONES[name])
    assert m.gflops / 2 == pytest.approx(gmacs, rel=0.015)
    assert m.params / 1e6 == pytest.approx(params_m, rel=0.015)
    assert m.latency is None  # FLOPs only unless asked


def test_resolve_backbone_names_and_errors():
    assert resolve_backbone("vjepa2").name == "vjepa2_vitl"
    assert resolve_backbone("MCG-NJU/videomae-base").name == "videomae_base"
    assert resolve_backbone("student=vjepa2-tiny").name == "student"
    spec = resolve_backbone("vjepa2_vitl", frames=32, size=384)
    assert (spec.frames, spec.size, spec.config["crop_size"], spec.tokens("temporal")) == (32, 384, 384, 16)
    assert resolve_backbone("vivit_base").tokens("full") == 16 * 196
    with pytest.raises(PolySpaceError, match="not a known backbone"):
        resolve_backbone("resnet9000")
    with pytest.raises(PolySpaceError, match="not a multiple of its patch size 16"):
        resolve_backbone("videomae_base", size=100)
    with pytest.raises(PolySpaceError, match="tubelet"):
        resolve_backbone("vivit_base", frames=15)


def test_local_checkpoint_folder_is_costed_from_its_config(tmp_path):
    from polyspace_core.backbones import load_backbone

    load_backbone("videomae-tiny").save_pretrained(tmp_path / "zoo-videomae")
    local = resolve_backbone(str(tmp_path / "zoo-videomae"))
    preset = resolve_backbone("videomae-tiny")
    assert (local.name, local.frames, local.size, local.width) == ("zoo_videomae", preset.frames, preset.size,
                                                                   preset.width)
    assert backbone_cost(local).flops == backbone_cost(preset).flops


def test_peak_memory_counts_tensor_allocations_exactly():
    mb = 2**20

    def work():
        a = torch.empty(mb // 4)          # 1 MB
        b = torch.empty(2 * mb // 4)      # +2 MB -> 3
        del a
        c = b + 1                          # +2 MB -> 4 MB peak
        c.add_(1)                          # in place: nothing new
        return c.view(-1)[:10].sum()       # a view and a scalar

    peak = measure_peak_memory(work, "cpu")
    assert peak.peak_bytes == 4 * mb + 4  # + the 4-byte sum
    assert "tensor" in peak.method
    weights = torch.randn(256, 256)
    assert measure_peak_memory(lambda: weights.t(), "cpu").peak_bytes == 0  # a view of existing memory


def test_latency_is_the_median_after_warmup():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.02)

    lat = measure_latency(slow, "cpu", warmup=2, repeats=3)
    assert len(calls) == 5
    assert lat.repeats == 3 and lat.warmup == 2
    assert 20 <= lat.min_ms <= lat.median_ms <= lat.max_ms < 500
    with pytest.raises(PolySpaceError, match="repeats"):
        measure_latency(slow, "cpu", repeats=0)


def test_backbone_latency_only_under_the_threshold():
    spec = resolve_backbone("vivit-tiny")
    assert backbone_cost(spec, latency_max_gflops=0.0).latency is None
    timed = backbone_cost(spec, "cpu", latency_max_gflops=1.0, repeats=2)
    assert timed.latency is not None and timed.latency.repeats == 2 and timed.latency_ms > 0
    assert timed.memory is not None and timed.memory.peak_bytes > 0


def test_catalog_models_count_the_same_as_eager():
    """build_backbone uses SDPA where supported; its count equals the eager model's, on cpu and meta."""
    from polyspace_core.backbones import ARCHS
    from polyspace_core.backbones.models import _transformers_class as cls

    spec = resolve_backbone("vivit-tiny")
    sdpa_model, inputs = build_backbone(spec, "cpu")
    assert sdpa_model.config._attn_implementation == "sdpa"
    config = cls(ARCHS["vivit"].config_class)(**spec.config)
    config._attn_implementation = "eager"
    eager_model = cls(ARCHS["vivit"].model_class)(config, add_pooling_layer=False).eval()
    eager = count_flops(lambda: eager_model(**inputs))
    sdpa = count_flops(lambda: sdpa_model(**inputs))
    assert sdpa.total == eager.total and sdpa.attention == eager.attention > 0
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in sdpa.by_op and "aten.bmm" in eager.by_op
