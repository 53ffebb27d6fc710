"""Alignment: converters from the student's feature space into each teacher's, the losses that
train them, and the similarity metrics (CKA, mutual kNN, R², retrieval) that judge them.

    converters.py  ConverterConfig, build_converter, the six converter kinds, length adaptation
    losses.py      L2, cosine, InfoNCE, VICReg, Barlow Twins, L1 and their weighted sum
    metrics.py     linear / RBF / debiased / minibatch CKA, mutual kNN, cosine, R², retrieval top-1
    train.py       train_converter, save_converter / load_converter (+ converter sets), fidelity
    study.py       the experiments of notebooks 02 and 03 (converter grid, selection, alignment table)
    layerwise.py   layer-wise CKA along backbones' hidden states
    plots.py       figures for the notebooks (learning curves, CKA heatmaps, bar charts, widgets)
    commands.py    `polyspace train-converter`
"""
