"""Fusion: the residual-gated head over converted teacher features, its training in cached and
video mode, and the honest evaluation against student-only and teacher baselines.

    head.py      FusionConfig, FusionHead, StudentHead (matched capacity), LinearProbe
    pipeline.py  FusionPipeline (converters + head), fusion checkpoints (safetensors + JSON)
    data.py      batches: feature store (cached) / videos through the student (video mode)
    engine.py    the one training loop (AdamW, cosine, AMP on CUDA, Accelerate DDP, resume)
    metrics.py   top-1, top-5, mean per-class accuracy, confusion matrix
    train.py     train_fusion: one entry point for both modes
    probes.py    linear probes and the matched-capacity student head
    evaluate.py  05's side-by-side table, gate statistics, accuracy vs cost
    plots.py     figures for notebooks 04 and 05
    commands.py  `polyspace train-fusion`, `polyspace eval`
"""
