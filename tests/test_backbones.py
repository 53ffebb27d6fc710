"""Backbones: token rules against manual computations, token order, base-config checkpoints loaded
through the hub path (save_pretrained -> from_pretrained), and one-line errors for unloadable models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polyspace_core.backbones import (
    ARCHS,
    TINY_PRESETS,
    VideoBackbone,
    build_tiny,
    check_source,
    load_backbone,
    parse_model_spec,
    token_rule,
)
from polyspace_core.errors import PolySpaceError


def manual_rules(arch: str, hidden: torch.Tensor, t: int, s: int) -> dict[str, torch.Tensor]:
    """Each architecture's rules written out from its token layout (independent of backbones/models.py)."""
    b, _, d = hidden.shape
    if arch in ("vjepa2", "videomae"):  # no CLS; tokens time-major (t, s)
        grid = hidden.reshape(b, t, s, d)
        clip = hidden.mean(1)
    elif arch == "vivit":  # CLS first, then time-major tubelets
        grid = hidden[:, 1:].reshape(b, t, s, d)
        clip = hidden[:, 0]
    else:  # timesformer: CLS first, then patch-major (s, t)
        grid = hidden[:, 1:].reshape(b, s, t, d).permute(0, 2, 1, 3)
        clip = hidden[:, 0]
    return {"temporal": grid.mean(2), "full": grid.reshape(b, t * s, d), "clip": clip[:, None]}


def random_clips(backbone: VideoBackbone, n: int = 2, h: int = 40, w: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (backbone.frames, h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny():
    return {name: load_backbone(name) for name in TINY_PRESETS}


@pytest.mark.parametrize("preset", list(TINY_PRESETS))
def test_tiny_token_rules_match_manual(tiny, preset):
    b = tiny[preset]
    pixels = b.preprocess(random_clips(b))
    assert pixels.shape == (2, b.frames, 3, 32, 32) and pixels.dtype == torch.float32
    hidden = b.hidden_states(pixels)
    ref = manual_rules(b.arch.key, hidden, b.temporal_tokens, b.spatial_tokens)
    for rule in ("temporal", "full", "clip"):
        got = b.features(pixels, rule)
        assert got.shape == (2, b.num_tokens(rule), b.dim)
        torch.testing.assert_close(got, ref[rule])
    assert b.describe("temporal")["T"] == b.temporal_tokens


def _embeddings_without_positions(b: VideoBackbone, pixels: torch.Tensor) -> torch.Tensor:
    """The token layout the encoder keeps: patch embeddings with position/time embeddings zeroed."""
    emb = b.model.encoder.embeddings if b.arch.key == "vjepa2" else b.model.embeddings
    with torch.no_grad():
        for attr in ("position_embeddings", "time_embeddings"):
            if isinstance(getattr(emb, attr, None), torch.Tensor):
                getattr(emb, attr).zero_()
        if b.arch.key == "vjepa2":
            return emb(pixels)
        if b.arch.key == "videomae":
            return emb(pixels, None)
        return emb(pixels)


@pytest.mark.parametrize("preset", list(TINY_PRESETS))
def test_token_order_groups_tokens_by_time(preset):
    """Frames of constant, time-dependent colour: after split_tokens, every spatial token of one
    temporal index must be identical, and different temporal indices must differ."""
    model, processor = build_tiny(preset)
    b = VideoBackbone(preset, preset, ARCHS[TINY_PRESETS[preset][0]], model, processor, frames=16)
    values = torch.linspace(-1, 1, b.frames)
    pixels = values[None, :, None, None, None].expand(1, b.frames, 3, 32, 32).contiguous()
    _, grid = b.split_tokens(_embeddings_without_positions(b, pixels))
    assert grid.shape[1:3] == (b.temporal_tokens, b.spatial_tokens)
    torch.testing.assert_close(grid, grid[:, :, :1].expand_as(grid))  # same within a time index
    per_time = grid[0, :, 0]
    assert torch.cdist(per_time, per_time).triu(1)[
        torch.triu_indices(len(per_time), len(per_time), 1).unbind()].min() > 1e-3


def test_tiny_presets_are_deterministic_and_round_trip(tmp_path, tiny):
    b = tiny["timesformer-tiny"]
    again = load_backbone("timesformer-tiny")
    pixels = b.preprocess(random_clips(b, 1))
    assert torch.equal(b.features(pixels), again.features(pixels))
    b.save_pretrained(tmp_path / "ts")
    assert {p.name for p in (tmp_path / "ts").iterdir()} >= {"config.json", "model.safetensors",
                                                            "video_preprocessor_config.json"}
    loaded = load_backbone(f"teacher_x={tmp_path / 'ts'}")
    assert loaded.name == "teacher_x" and loaded.frames == 8
    assert torch.equal(loaded.features(loaded.preprocess(random_clips(b, 1))), b.features(pixels))


def test_vjepa2_takes_any_frame_count_and_skips_predictor(tiny):
    b = load_backbone("vjepa2-tiny", frames=8)
    assert b.frames == 8 and b.temporal_tokens == 4
    pixels = b.preprocess(random_clips(b, 1))
    encoder_only = b.model.get_vision_features(pixels)  # transformers' own encoder-only path
    torch.testing.assert_close(b.features(pixels, "clip")[:, 0], encoder_only.mean(1))
    with pytest.raises(PolySpaceError, match="expects clips of 8"):
        b.preprocess(random_clips(tiny["vjepa2-tiny"], 1))


# ----------------------------------------------------------------------------- base configurations

def _base_checkpoint(arch: str, directory):
    """A checkpoint at the REAL base widths (one layer to stay cheap) with random weights, saved the
    way the hub checkpoint is (classification class where the hub has one) + its hub processor."""
    import transformers as tf
    from transformers.initialization import no_init_weights

    if arch == "vjepa2":  # facebook/vjepa2-vitl-fpc64-256: ViT-L, 256 px
        cfg, cls = tf.VJEPA2Config(num_hidden_layers=1, pred_num_hidden_layers=1, num_pooler_layers=1), tf.VJEPA2Model
        proc = tf.VJEPA2VideoProcessor(crop_size=256)
    elif arch == "videomae":  # MCG-NJU/videomae-base ships VideoMAEImageProcessor
        # VideoMAE builds its fixed sin-cos table in pure Python at construction (~8 s at 224 px);
        # the table is not a weight, so build at 32 px and save the real 224 px config below
        cfg, cls = tf.VideoMAEConfig(num_hidden_layers=1, image_size=32), tf.VideoMAEModel
        proc = tf.VideoMAEImageProcessor(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    elif arch == "timesformer":  # facebook/timesformer-base-finetuned-k400
        cfg, cls = tf.TimesformerConfig(num_hidden_layers=1, num_labels=400), tf.TimesformerForVideoClassification
        proc = tf.VideoMAEImageProcessor(image_mean=[0.45] * 3, image_std=[0.225] * 3)
    else:  # google/vivit-b-16x2-kinetics400
        cfg, cls = tf.VivitConfig(num_hidden_layers=1, num_labels=400), tf.VivitForVideoClassification
        proc = tf.VivitImageProcessor()
    # transformers' own init of a ViT-L takes ~10 s on one core; a plain normal init is enough here
    with no_init_weights():
        model = cls(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.02, generator=gen)
            else:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
    if arch == "videomae":
        model.config.image_size = 224
    model.save_pretrained(directory)
    proc.save_pretrained(directory)


@pytest.mark.parametrize("arch,frames,t_tokens,dim", [("vjepa2", 16, 8, 1024), ("videomae", 16, 8, 768),
                                                      ("timesformer", 8, 8, 768), ("vivit", 32, 16, 768)])
def test_base_configuration_checkpoint_loads_like_a_hub_id(tmp_path, arch, frames, t_tokens, dim):
    _base_checkpoint(arch, tmp_path / arch)
    b = load_backbone(str(tmp_path / arch), frames=16)
    assert b.arch.key == arch and b.frames == frames and b.dim == dim and b.temporal_tokens == t_tokens
    assert (b.clip_spec.height, b.clip_spec.width) == ((256, 256) if arch == "vjepa2" else (224, 224))
    if arch == "vivit":
        assert b.model.pooler is None  # the checkpoint has no pooler: never a random one
    clip = np.random.default_rng(0).integers(0, 256, (frames, 36, 48, 3), dtype=np.uint8)
    pixels = b.preprocess([clip])
    hidden = b.hidden_states(pixels)
    assert torch.isfinite(hidden).all()
    ref = manual_rules(arch, hidden, b.temporal_tokens, b.spatial_tokens)
    temporal, clip_vec = b.features(pixels, "temporal"), token_rule(b, hidden, "clip")
    assert temporal.shape == (1, t_tokens, dim) and clip_vec.shape == (1, 1, dim)
    torch.testing.assert_close(temporal, ref["temporal"])
    torch.testing.assert_close(clip_vec, ref["clip"])
    if arch == "timesformer":  # CLS after the final norm: last_hidden_state is already normed
        assert torch.allclose(hidden[:, 0].std(-1), torch.ones(1), atol=0.1)


# ----------------------------------------------------------------------------- errors

def test_unknown_key_is_a_one_line_error():
    with pytest.raises(PolySpaceError, match="not a registry key") as e:
        load_backbone("vjepa3")
    assert "\n" not in str(e.value) and "vjepa2-tiny" in str(e.value)


def test_missing_local_dir_and_offline_hub_id(tmp_path):
    with pytest.raises(PolySpaceError, match="not a registry key"):
        load_backbone(str(tmp_path / "nowhere"))
    with pytest.raises(PolySpaceError, match="hf download") as e:
        load_backbone("polyspace-test/no-such-model", local_files_only=True)
    assert "\n" not in str(e.value)
    with pytest.raises(PolySpaceError, match="cannot load") as e:
        load_backbone("videomae", local_files_only=True)  # the registry key's hub id, not cached
    assert "MCG-NJU/videomae-base" in str(e.value)


def test_directory_without_processor_or_weights_or_of_another_model(tmp_path, tiny):
    b = tiny["videomae-tiny"]
    b.model.save_pretrained(tmp_path / "noproc")
    with pytest.raises(PolySpaceError, match="no processor config"):
        load_backbone(str(tmp_path / "noproc"))
    # encoder weights missing from the checkpoint must not become random layers
    from safetensors.torch import load_file, save_file

    b.save_pretrained(tmp_path / "partial")
    weights = load_file(tmp_path / "partial" / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "encoder.layer.2." not in k},
              tmp_path / "partial" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(PolySpaceError, match="no weights for"):
        load_backbone(str(tmp_path / "partial"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(PolySpaceError, match="not one of the video backbones"):
        load_backbone(str(tmp_path / "bert"))


def test_check_source_tells_what_load_backbone_would_refuse_without_loading(tmp_path, tiny, offline_hf_cache):
    b = tiny["videomae-tiny"]
    b.save_pretrained(tmp_path / "full")
    assert check_source(f"t={tmp_path / 'full'}") == str(tmp_path / "full")
    assert check_source("vivit-tiny") == "vivit-tiny"
    b.model.config.save_pretrained(tmp_path / "config_only")
    for bad, match in ((str(tmp_path / "config_only"), "holds no config.json and weights"),
                       (str(tmp_path / "nowhere"), "not a registry key"),
                       ("videomae", "cannot read the config of the hub id 'MCG-NJU/videomae-base'")):
        with pytest.raises(PolySpaceError, match=match) as e:
            check_source(bad)
        assert "\n" not in str(e.value)
    # offline, a cache holding a hub id's config only (all that costs read) is not a model to load
    offline_hf_cache.add("MCG-NJU/videomae-base", tmp_path / "config_only")
    with pytest.raises(PolySpaceError, match="has the config of 'MCG-NJU/videomae-base' but not its weights"):
        check_source("videomae")
    offline_hf_cache.add("org/full", tmp_path / "full")
    assert check_source("org/full") == "org/full"
    load_backbone("org/full")  # what it passed loads


def test_model_spec_names():
    assert parse_model_spec("vjepa2-tiny") == ("vjepa2-tiny", "vjepa2-tiny")
    assert parse_model_spec("data/zoo/vivit-tiny/") == ("vivit-tiny", "data/zoo/vivit-tiny/")
    assert parse_model_spec("MCG-NJU/videomae-base") == ("videomae-base", "MCG-NJU/videomae-base")
    assert parse_model_spec("mae = MCG-NJU/videomae-base") == ("mae", "MCG-NJU/videomae-base")
    with pytest.raises(PolySpaceError):
        parse_model_spec("=x")
