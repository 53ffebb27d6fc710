"""Figures for notebook 08: training curves, per-frame metric curves, frame strips, a frame slider.

Every function returns a matplotlib Figure (rendered statically in headless reports); the slider
wraps the same strip figure in an ipywidgets IntSlider for interactive sessions.
"""

from __future__ import annotations

import numpy as np

STRIP_ROWS = ("grey", "global", "temporal", "exemplar", "fusion", "ground_truth")
ROW_LABELS = {"grey": "input (L)", "global": "global transfer", "temporal": "temporal only",
              "exemplar": "exemplar only", "fusion": "fusion", "ground_truth": "ground truth"}


def plot_training_history(history: list[dict]):
    """Train loss and validation L1 per epoch for both phases."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, phase in zip(axes, ("exemplar", "fusion")):
        rows = [h for h in history if h["phase"] == phase]
        if not rows:
            ax.set_visible(False)
            continue
        ep = [h["epoch"] for h in rows]
        ax.plot(ep, [h["train_loss"] for h in rows], marker="o", label="train loss")
        ax.plot(ep, [h["val_l1"] for h in rows], marker="s", label="validation L1 (ab)")
        ax.set_title(f"phase {'A' if phase == 'exemplar' else 'B'}: {phase}")
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    return fig


def plot_per_frame_curves(evaluation: dict, metrics=("psnr", "ssim", "warp_error")):
    """Per-frame metric (mean over test clips) for each method."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .evaluate import per_frame_curves

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2))
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        sns.lineplot(data=per_frame_curves(evaluation, metric), x="frame", y=metric, hue="method", marker="o",
                     ax=ax)
        ax.set_title(metric.replace("_", " "))
    fig.tight_layout()
    return fig


def frame_strip(clip_outputs: dict[str, np.ndarray], frames: list[int] | None = None, rows=STRIP_ROWS,
                title: str = ""):
    """A grid: one row per method (grey input, each method, ground truth), one column per frame;
    the reference image in an extra first column."""
    import matplotlib.pyplot as plt

    n = len(clip_outputs["ground_truth"])
    frames = list(frames) if frames is not None else sorted({0, n // 3, 2 * n // 3, n - 1})
    rows = [r for r in rows if r in clip_outputs]
    fig, axes = plt.subplots(len(rows), len(frames) + 1, figsize=(1.35 * (len(frames) + 1), 1.35 * len(rows)),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(len(frames) + 1):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j == 0:
                if i == 0:
                    ax.imshow(clip_outputs["reference"][0])
                    ax.set_title("reference", fontsize=8)
                ax.set_ylabel(ROW_LABELS.get(row, row), fontsize=8, rotation=0, ha="right", va="center")
                continue
            ax.imshow(clip_outputs[row][frames[j - 1]])
            if i == 0:
                ax.set_title(f"t={frames[j - 1]}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def frame_slider(outputs: dict[str, dict[str, np.ndarray]]):
    """ipywidgets: pick a clip and a frame, see every method's output at that frame."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    clip_ids = list(outputs)
    clip = widgets.Dropdown(options=clip_ids, description="clip")
    frame = widgets.IntSlider(min=0, max=len(outputs[clip_ids[0]]["ground_truth"]) - 1, description="frame")
    out = widgets.Output()

    def redraw(*_):
        frame.max = len(outputs[clip.value]["ground_truth"]) - 1
        with out:
            out.clear_output(wait=True)
            fig = frame_strip(outputs[clip.value], [frame.value], title=clip.value)
            display(fig)
            plt.close(fig)

    clip.observe(redraw, names="value")
    frame.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([clip, frame]), out])
