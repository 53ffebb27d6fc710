"""Efficiency: what a prediction costs — FLOPs, parameters, latency, peak memory, storage.

    components.py  cost of a converter, a fusion/student head, a TSM/FFN model, the colorization system
    pipeline.py    student only / student + converters + fusion head / student + all teachers
    storage.py     feature store bytes per model and dtype; cached-vs-video throughput
    study.py       what notebook 06 calls (ws first: backbones, as_run, real_size, tsm, colorization,
                   storage, ...) and its stage_metrics
    plots.py       figures for notebook 06
    commands.py    `polyspace flops`

The measuring itself (count_flops, count_parameters, measure_latency, measure_peak_memory) is
polyspace_core/measure.py; the backbones at their real checkpoint configurations and the tiny
presets are polyspace_core/backbones/catalog.py.
"""
