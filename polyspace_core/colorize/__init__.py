"""Exemplar-based video colorization: flow propagation + exemplar matching + a fusion UNet.

Modules: lab (colour space), flow (flow backends, warping), propagation (temporal branch),
exemplar (exemplar branch), fusion_unet, system (FusionSystem), loss (FusionLoss), train
(two-phase training with Accelerate), metrics, baselines (global colour transfer), data (clips
in memory), evaluate (method comparison), stream (colorize a video of any length), viz
(figures), commands (`polyspace synth-color`, `colorize`, `train-colorize`), study (what
notebook 08 calls).
"""
