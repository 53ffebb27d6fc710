"""Efficiency: what a prediction costs — FLOPs, parameters, latency, peak memory, storage.

    measure.py     count_flops (FlopCounterMode, attention included), count_parameters,
                   measure_latency, measure_peak_memory, vit_layer_flops (analytic check)
    catalog.py     backbones at their real checkpoint configurations and the tiny presets
    components.py  cost of a backbone, converter, fusion/student head, TSM/FFN, colorization system
    pipeline.py    student only / student + converters + fusion head / student + all teachers
    storage.py     feature store bytes per model and dtype; cached-vs-video throughput
    study.py       one function per cell of notebook 06; plots.py its figures
    (the `polyspace flops` command lives in polyspace_core/efficiency_commands.py)
"""
