"""Training recipes by name: the settings `polyspace train-ffn --recipe NAME` starts from.

    default    this project's settings before the official recipe was added (cosine schedule, a
               random crop, lr 0.01 at any batch); kept so earlier runs resume unchanged
    official   the FFN paper's runs as the official code has them (BeSpontaneous/FFN-pytorch,
               2D_Network/exp/tsm_sthv2_FFN/run.sh and opts.py, main_FFN.py, ops/models_FFN.py):
               ResNet-50 from ImageNet, 16/8/4 frames, 50 epochs, SGD momentum 0.9, weight decay
               5e-4, lr 0.01 at a total batch of 32 (scaled linearly with ours), x0.1 at epochs
               20 and 40, classifier weight lr x5 and bias x10 (`fc_lr5`), gradient norm clipped
               at 20, dropout 0.5, lambda 1; TSN's multi-scale crop (scales 1, .875, .75, .66,
               max_distort 1, 13 fixed offsets) to 224, no flip for SSv2; evaluation resizes the
               short side to 256 (224 x 256 / 224) and takes the centre 224 crop

An explicit flag wins over the recipe (`--recipe official --epochs 10`). Only what the flags
set is here; the rest is fixed by the model (shift 1/8 of channels each way, in every block's
residual branch) or by the data (TSN sampling).
"""

from __future__ import annotations

from typing import Any

from ..errors import PolySpaceError
from ..video.multiscale import TSN_SCALES

# every flag a recipe sets, with this project's earlier defaults
DEFAULT: dict[str, Any] = {
    "arch": "resnet50", "epochs": 50, "batch_size": 8, "lr": 0.01, "lr_batch": None, "schedule": "cosine",
    "lr_steps": [20, 40], "lr_decay": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "fc_lr_mult": 5.0,
    "fc_bias_lr_mult": 10.0, "clip_grad_norm": 20.0, "dropout": 0.5, "lambda_kl": 1.0, "crop": "random",
    "scales": list(TSN_SCALES), "max_distort": 1, "more_fix_crop": True, "size": 224, "short_side": 256,
    "num_frames_l": 4, "num_frames_m": 8, "num_frames_h": 16, "pretrained": "auto",
}

OFFICIAL: dict[str, Any] = {
    **DEFAULT,
    "batch_size": 32, "lr_batch": 32, "schedule": "step", "crop": "multiscale", "pretrained": "imagenet",
}

RECIPES: dict[str, dict[str, Any]] = {"default": DEFAULT, "official": OFFICIAL}


def resolve_recipe(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The recipe `name` with the values in `given` that are not None laid over it."""
    if name not in RECIPES:
        raise PolySpaceError(f"--recipe {name}: unknown; use one of {', '.join(RECIPES)}")
    unknown = sorted(set(given) - set(RECIPES[name]))
    if unknown:
        raise PolySpaceError(f"recipe: {unknown[0]!r} is not a recipe setting ({', '.join(RECIPES[name])})")
    return {**RECIPES[name], **{k: v for k, v in given.items() if v is not None}}
