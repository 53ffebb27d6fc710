"""Alignment: converters from the student's feature space into each teacher's, the losses that
train them, and the similarity metrics (CKA, mutual kNN, R², retrieval) that judge them.

    converters.py  ConverterConfig, build_converter, the six converter kinds, length adaptation
    losses.py      L2, cosine, InfoNCE, VICReg, Barlow Twins, L1 and their weighted sum
    metrics.py     linear / RBF / debiased / minibatch CKA, mutual kNN, cosine, R², retrieval top-1
    train.py       train_converter (returns a ConverterFit: per-epoch history + the run's summary),
                   evaluate_converter, save_converter / load_converter and converter sets
    layerwise.py   layer-wise CKA along backbones' hidden states
    study.py       what notebooks 02 and 03 call (ws first), and their stage_metrics; below them the
                   converter grid, validation selection, fidelity and alignment tables
    plots.py       figures for notebooks 02 and 03 (learning curves, CKA heatmaps, bar charts, widgets)
    commands.py    `polyspace train-converter`
"""
