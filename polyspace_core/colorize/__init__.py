"""Exemplar-based video colorization: flow propagation + exemplar matching + a fusion UNet.

    data.py          SynthColor clips in memory (uint8 frames + Lab tensors), frame/sequence datasets
    lab.py           the Lab colour space: conversions, L/ab split, normalisation
    flow.py          flow backends (DIS, Farneback, RAFT, MemFlow) and warping
    propagation.py   the temporal branch: the reference's colours carried along the flow
    exemplar.py      the exemplar branch: correspondence to the reference + colour net
    unet.py          the UNet the fusion net is built on
    fusion_unet.py   the fusion UNet over both branches' outputs
    system.py        FusionSystem: both branches + the fusion UNet, saved as one folder
    loss.py          FusionLoss (L1 + temporal consistency [+ perceptual/contextual])
    train_config.py  the torch-free training flags (TrainConfig), so `polyspace --help` stays fast
    train.py         two-phase training with Accelerate (per-epoch history as a list of dicts)
    baselines.py     global colour transfer from the reference
    metrics.py       PSNR, SSIM, CDC, warp error, colourfulness
    evaluate.py      the method comparison on whole clips (evaluate_methods, method_metrics)
    stream.py        colorize a video of any length, in chunks
    study.py         what notebook 08 calls (ws first), and its stage_metrics
    plots.py         figures for notebook 08
    commands.py      `polyspace synth-color`, `colorize`, `train-colorize`
"""
