"""Layer-wise CKA: per-layer clip features of the backbones a store names, on its own videos."""

import numpy as np
import pytest
import torch

from polyspace_core.align.layerwise import backbone_layer_features, layer_features, layerwise_similarity
from polyspace_core.align.plots import plot_layerwise
from polyspace_core.backbones import load_backbone
from polyspace_core.errors import PolySpaceError
from polyspace_core.features.store import FeatureStoreWriter
from polyspace_core.video.encode import write_video

MODELS = (("student", "vjepa2-tiny"), ("teacher", "videomae-tiny"))


@pytest.fixture(scope="module")
def backbones():
    return {spec: load_backbone(spec, frames=16) for _, spec in MODELS}


@pytest.fixture(scope="module")
def store(tmp_path_factory, backbones):
    root = tmp_path_factory.mktemp("lw")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        # moving bright squares: clips that differ from one another
        frames = np.zeros((20, 32, 32, 3), np.uint8)
        for t in range(20):
            x = (3 * t + 5 * i) % 24
            frames[t, 4 + i:12 + i, x:x + 8] = rng.integers(100, 255, 3)
        paths.append(str(write_video(root / f"v{i}.mp4", frames)))
    models = [{**backbones[spec].describe("temporal"), "role": role} for role, spec in MODELS]
    writer = FeatureStoreWriter(root / "features" / "test", models=models, dtype="float32", tokens="temporal",
                                shard_size=10, paths=paths, labels=[0] * 6, class_names=["a"])
    status = ["ok"] * 5 + ["failed: unreadable"]
    writer.write_shard(0, {m["name"]: torch.zeros(6, m["T"], m["dim"]) for m in models}, status, 6, 0)
    writer.finalize()
    return root / "features" / "test"


def test_hooked_layers_equal_the_models_own_hidden_states(backbones):
    b = backbones["videomae-tiny"]
    pixels = torch.rand(2, b.frames, 3, 32, 32)
    hooks_before = [len(layer._forward_hooks) for layer in b.model.encoder.layer]
    layers = backbone_layer_features(b, pixels)
    assert [len(layer._forward_hooks) for layer in b.model.encoder.layer] == hooks_before  # ours are removed
    with torch.no_grad():
        reference = b.model(pixel_values=pixels, output_hidden_states=True).hidden_states[1:]
    assert len(layers) == len(reference) == 3
    for mine, ref in zip(layers, reference):
        assert torch.allclose(mine, ref.mean(1), atol=1e-5)


def test_layer_features_and_similarity(store):
    feats = layer_features(store, ["vjepa2-tiny", "videomae-tiny"], max_clips=8, batch=3)
    assert [a.shape for a in feats["vjepa2-tiny"]] == [(5, 96)] * 3  # the failed video is left out
    assert [a.shape for a in feats["videomae-tiny"]] == [(5, 128)] * 3
    same = layerwise_similarity(feats["vjepa2-tiny"], feats["vjepa2-tiny"])
    assert np.allclose(np.diag(same), 1.0) and np.allclose(same, same.T)
    cross = layerwise_similarity(feats["vjepa2-tiny"], feats["videomae-tiny"], "rbf_cka")
    assert cross.shape == (3, 3) and ((cross >= 0) & (cross <= 1 + 1e-9)).all()
    fig = plot_layerwise(feats, "vjepa2-tiny", ["videomae-tiny"])
    assert len(fig.axes[0].texts) == 9
    with pytest.raises(PolySpaceError, match="max_clips"):
        layer_features(store, ["vjepa2-tiny"], max_clips=2)
    with pytest.raises(PolySpaceError, match="not in the feature store"):
        layer_features(store, ["vivit-tiny"])
