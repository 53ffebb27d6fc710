"""Video backbones: the real transformers classes, how they load, and what they cost.

    models.py   the registry (ARCHS), tiny presets, VideoBackbone, load_backbone(s), token rules
    catalog.py  backbones at their real checkpoint configurations and the tiny presets as
                BackboneSpecs, built from config (on `meta` for counting), and backbone_cost

    from polyspace_core.backbones import load_backbone
    student = load_backbone("MCG-NJU/videomae-base", device="cuda")
"""

from .models import (
                     ARCHS,
                     TINY_PRESETS,
                     TINY_SIZE,
                     TOKEN_RULES,
                     ClipSpec,
                     VideoBackbone,
                     autocast_dtype_for,
                     build_tiny,
                     check_source,
                     load_backbone,
                     load_backbones,
                     model_choices,
                     parse_model_spec,
                     preprocess_clips,
                     token_rule,
)

__all__ = ["ARCHS", "TINY_PRESETS", "TINY_SIZE", "TOKEN_RULES", "ClipSpec", "VideoBackbone", "autocast_dtype_for",
           "build_tiny", "check_source", "load_backbone", "load_backbones", "model_choices", "parse_model_spec",
           "preprocess_clips", "token_rule"]
