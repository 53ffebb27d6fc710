"""Layer-wise CKA along backbones' hidden states (Kornblith et al. 2019, Fig. 2 style).

The feature store keeps one layer per model. To see WHERE in the student its representation
resembles a teacher's, `layer_features` re-runs the backbones named in a store's manifest (same
source and frame count) on a few of its videos, decoding each video once for all models, and
keeps every transformer layer's output, mean-pooled over patch tokens (CLS excluded). Clips are
sampled uniformly over the whole video, the same for every model, so the comparison is
self-consistent even where the store used an annotated window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import PolySpaceError
from .metrics import SIMILARITY_METRICS

# where the encoder's transformer blocks live (transformers versions moved ViViT's to `layers`)
_LAYER_PATHS = ("encoder.layer", "encoder.layers", "layers")


def _encoder_layers(backbone) -> torch.nn.ModuleList:
    """The encoder's transformer blocks (never V-JEPA 2's predictor, which is skipped)."""
    for path in _LAYER_PATHS:
        module = backbone.model
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, torch.nn.ModuleList) and len(module) > 0:
            return module
    raise PolySpaceError(f"model {backbone.name!r}: no encoder blocks at {' / '.join(_LAYER_PATHS)}; "
                         f"layer-wise CKA supports the VJEPA2/VideoMAE/TimeSformer/ViViT classes")


@torch.no_grad()
def backbone_layer_features(backbone, pixels: torch.Tensor) -> list[torch.Tensor]:
    """Pixels (B, T, 3, h, w) -> one (B, D) tensor per encoder layer: the block's output tokens,
    CLS dropped, mean-pooled. Captured with forward hooks, so nothing about the model changes."""
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        hidden = output[0] if isinstance(output, (tuple, list)) else output
        captured.append(hidden)

    handles = [layer.register_forward_hook(keep) for layer in _encoder_layers(backbone)]
    try:
        device = next(backbone.model.parameters()).device
        backbone.hidden_states(pixels.to(device))
    finally:
        for h in handles:
            h.remove()
    start = 1 if backbone.arch.has_cls else 0
    return [h[:, start:].float().mean(dim=1).cpu() for h in captured]


def layer_features(split_dir: str | Path, models: Sequence[str], max_clips: int = 64, batch: int = 8,
                   device: str | torch.device = "cpu") -> dict[str, list[np.ndarray]]:
    """Per model named in the store's manifest: a list over encoder layers of (N, D) clip features
    for the first `max_clips` successfully extracted videos of the split."""
    from ..backbones import load_backbone
    from ..features.store import FeatureStore
    from ..video.multi import ClipRequest, decode_clips

    store = FeatureStore.open(split_dir)
    if max_clips < 4:
        raise PolySpaceError(f"layer-wise CKA max_clips={max_clips}: needs at least 4 clips")
    backbones = {}
    for name in models:
        info = store.model_info(name)
        source = info.get("source")
        if not source:
            raise PolySpaceError(f"{split_dir}: the manifest has no source for model {name!r}; re-extract the store")
        frames = int(info.get("clip", {}).get("frames", 16))
        backbones[name] = load_backbone(f"{name}={source}", frames=frames, device=device, local_files_only=True)
    indices = store.indices()[:max_clips]
    if len(indices) < 4:
        raise PolySpaceError(f"{split_dir}: only {len(indices)} usable videos; layer-wise CKA needs at least 4")
    requests = [ClipRequest(name, b.frames, sampling="uniform") for name, b in backbones.items()]
    per_model: dict[str, list[list[torch.Tensor]]] = {name: [] for name in backbones}
    for start in tqdm(range(0, len(indices), batch), desc="layer-wise features"):
        chunk = indices[start:start + batch]
        decoded = [decode_clips(store.paths[i], requests) for i in chunk]
        for name, b in backbones.items():
            pixels = b.preprocess([d.clips[name] for d in decoded])
            per_model[name].append(backbone_layer_features(b, pixels))
    return {name: [torch.cat([batch_layers[layer] for batch_layers in chunks]).numpy()
                   for layer in range(len(chunks[0]))]
            for name, chunks in per_model.items()}


def layerwise_similarity(rows: Sequence[np.ndarray], cols: Sequence[np.ndarray],
                         metric: str = "linear_cka") -> np.ndarray:
    """(len(rows), len(cols)) matrix of `metric` between every pair of layer features."""
    if metric not in SIMILARITY_METRICS:
        raise PolySpaceError(f"similarity metric {metric!r} is unknown; use one of {', '.join(SIMILARITY_METRICS)}")
    fn = SIMILARITY_METRICS[metric]
    return np.array([[fn(a, b) for b in cols] for a in rows])
