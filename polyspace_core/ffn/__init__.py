"""Frame Flexible Network (FFN, CVPR 2023) on a Temporal Shift Module (TSM) ResNet.

One model serves several frame counts: convolutions and classifier are shared, each trained
frame count keeps its own BatchNorm layers and a small per-block weight alteration, and the
4F/8F streams learn from the 16F stream through a KL term. The vanilla TSM baseline is the
same network with a single stream. Modules:

    archs.py        the ResNet presets by name (resnet50, resnet101, small, tiny)
    shift.py        temporal shift and the shifted first conv of a bottleneck
    tsm_resnet.py   config-driven TSM ResNet (torchvision Bottleneck blocks)
    pretrained.py   the ImageNet start: torchvision's ResNet files (given, or from its cache folder)
                    into every stream
    loss.py         CE on the teacher stream + KL(teacher || student) for the other streams
    data.py         multi-frame-count clips from one decode with one shared crop (random or TSN's
                    multi-scale), streamed, in memory or through the on-disk frame cache
    recipe.py       training recipes by name (default, official: the paper's as its code runs it)
    checkpoint.py   safetensors + JSON checkpoints and the seed's .pth beside them; load_model also
                    reads official releases
    released.py     the official FFN-pytorch and temporal-shift-module release files, mapped onto
                    our model key by key
    train.py        TSMTrainer (one frame count) and FFNTrainer (several), Accelerate-ready; the
                    history is a list of per-epoch dicts
    evaluate.py     accuracy per frame count, the TFD gap, FLOPs per frame count
    study.py        what notebook 07 calls (ws first: data, train, per_frame_baselines, evaluate,
                    flops) and its stage_metrics; the resumable runs and tables behind them
    plots.py        figures for notebook 07
    commands.py     `polyspace train-ffn`
"""
