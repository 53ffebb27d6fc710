"""Efficiency: what a prediction costs — FLOPs, parameters, latency, peak memory, storage.

    measure.py     count_flops (FlopCounterMode, attention included), count_parameters,
                   measure_latency, measure_peak_memory, vit_layer_flops (analytic check)
    catalog.py     backbones at their real checkpoint configurations and the tiny presets
    components.py  cost of a backbone, converter, fusion/student head, TSM/FFN, colorization system
    pipeline.py    student only / student + converters + fusion head / student + all teachers
    storage.py     feature store bytes per model and dtype; cached-vs-video throughput
    study.py       one function per cell of notebook 06; plots.py its figures
    (the `polyspace flops` command lives in polyspace_core/efficiency_commands.py)

Names are imported lazily (PEP 562) so that importing the CLI does not pay for torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "count_flops": "measure", "count_parameters": "measure", "measure_latency": "measure",
    "measure_peak_memory": "measure", "vit_layer_flops": "measure", "FlopCount": "measure",
    "Measurement": "measure",
    "BackboneSpec": "catalog", "REAL_BACKBONES": "catalog", "resolve_backbone": "catalog",
    "build_backbone": "catalog", "tiny_specs": "catalog",
    "backbone_cost": "components", "converter_cost": "components", "fusion_head_cost": "components",
    "student_head_cost": "components", "tsm_cost": "components", "colorization_cost": "components",
    "PipelineSpec": "pipeline", "PipelineCost": "pipeline", "pipeline_spec": "pipeline",
    "pipeline_cost": "pipeline", "spec_from_fusion_checkpoint": "pipeline",
    "storage_table": "storage", "written_store_bytes": "storage", "store_sizes": "storage",
    "fusion_mode_throughput": "storage",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
