"""Fusion: the residual-gated head over converted teacher features, its training in cached and
video mode, and the honest evaluation against student-only and teacher baselines.

    data.py      batches: feature store (cached) / videos through the student (video mode)
    head.py      FusionConfig, FusionHead, StudentHead (matched capacity), LinearProbe
    pipeline.py  FusionPipeline (converters + head), fusion checkpoints (safetensors + JSON)
    train.py     the one training loop `fit` (AdamW, cosine, AMP on CUDA, Accelerate DDP, resume;
                 returns a FitResult: per-epoch history + the run's summary) and train_fusion, one
                 entry point for both modes (a FusionRun)
    probes.py    linear probes and the matched-capacity student head
    evaluate.py  05's side-by-side table (DownstreamReport), gate statistics, accuracy vs cost
    metrics.py   top-1, top-5, mean per-class accuracy, confusion matrix
    study.py     what notebooks 04 and 05 call (ws first), and their stage_metrics
    plots.py     figures for notebooks 04 and 05
    commands.py  `polyspace train-fusion`, `polyspace eval`
"""
