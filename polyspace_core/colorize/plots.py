"""Figures for notebook 08: training curves, per-frame metric curves, per-clip paired differences,
frame strips, a frame slider.

Every function returns a matplotlib Figure (rendered statically in headless reports), closed
once made so a notebook shows it once, as the cell's result; the slider wraps the same strip
figure in an ipywidgets IntSlider for interactive sessions.
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
    plt.close(fig)
    return fig


def plot_per_frame_curves(evaluation: dict, metrics=("psnr", "ssim", "warp_error")):
    """Per-frame metric (mean over test clips) for each method, one panel per metric."""
    import matplotlib.pyplot as plt

    from .evaluate import per_frame_curves

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        curves = per_frame_curves(evaluation, metric)
        for method, rows in curves.groupby("method", sort=False):
            ax.plot(rows["frame"], rows[metric], marker="o", markersize=3, label=ROW_LABELS.get(method, method))
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _mosaic(tiles: list[list[np.ndarray | None]], pad: int) -> np.ndarray:
    """Rows of equally sized uint8 RGB tiles (None = blank) -> one white-padded image."""
    h, w = next(t for row in tiles for t in row if t is not None).shape[:2]
    out = np.full((len(tiles) * (h + pad) + pad, len(tiles[0]) * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            if tile is not None:
                y, x = pad + i * (h + pad), pad + j * (w + pad)
                out[y:y + h, x:x + w] = tile
    return out


def frame_strip(clip_outputs: dict[str, np.ndarray], frames: list[int] | None = None, rows=STRIP_ROWS,
                title: str = ""):
    """A grid: one row per method (grey input, each method, ground truth), one column per frame;
    the reference image in an extra first column. Drawn as one image (one axes), so a strip of
    many frames stays quick to render."""
    import matplotlib.pyplot as plt

    n = len(clip_outputs["ground_truth"])
    frames = list(frames) if frames is not None else sorted({0, n // 3, 2 * n // 3, n - 1})
    rows = [r for r in rows if r in clip_outputs]
    reference = clip_outputs["reference"][0]
    h, w = clip_outputs["ground_truth"].shape[1:3]
    if reference.shape[:2] != (h, w):
        import cv2
        reference = cv2.resize(reference, (w, h), interpolation=cv2.INTER_AREA)
    tiles = [[reference if i == 0 else None] + [clip_outputs[row][t] for t in frames] for i, row in enumerate(rows)]
    pad = max(1, h // 16)
    image = _mosaic(tiles, pad)
    fig, ax = plt.subplots(figsize=(1.35 * (len(frames) + 1) + 1.2, 1.35 * len(rows) + 0.3))
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([pad + j * (w + pad) + w / 2 for j in range(len(frames) + 1)],
                  ["reference"] + [f"t={t}" for t in frames], fontsize=8)
    ax.set_yticks([pad + i * (h + pad) + h / 2 for i in range(len(rows))],
                  [ROW_LABELS.get(r, r) for r in rows], fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_xlabel(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def frame_slider(outputs: dict[str, dict[str, np.ndarray]]):
    """ipywidgets: pick a clip and a frame, see every method's output at that frame."""
    import ipywidgets as widgets
    from IPython.display import display

    clip_ids = list(outputs)
    clip = widgets.Dropdown(options=clip_ids, description="clip")
    frame = widgets.IntSlider(min=0, max=len(outputs[clip_ids[0]]["ground_truth"]) - 1, description="frame")
    out = widgets.Output()

    def redraw(*_):
        frame.max = len(outputs[clip.value]["ground_truth"]) - 1
        with out:
            out.clear_output(wait=True)
            display(frame_strip(outputs[clip.value], [frame.value], title=clip.value))

    clip.observe(redraw, names="value")
    frame.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([clip, frame]), out])


def frame_strips(outputs: dict[str, dict[str, np.ndarray]]):
    """One frame strip (4 frames spread over the clip) per kept clip, as a FigureList."""
    from ..viz import FigureList

    return FigureList(frame_strip(frames, title=clip_id) for clip_id, frames in outputs.items())


def frame_browser(outputs: dict[str, dict[str, np.ndarray]], interactive: bool, max_columns: int = 8):
    """Interactive: the frame slider. Headless: the first kept clip at up to `max_columns` frames
    spread evenly over it (every frame when the clip is that short), statically."""
    if interactive:
        return frame_slider(outputs)
    clip_id = next(iter(outputs))
    n = len(outputs[clip_id]["ground_truth"])
    frames = sorted({int(round(x)) for x in np.linspace(0, n - 1, min(n, max_columns))})
    return frame_strip(outputs[clip_id], frames, title=f"{clip_id}: frames {frames[0]}-{frames[-1]}")


def plot_paired_differences(evaluation: dict, metric: str = "psnr", against: str = "fusion"):
    """Per clip: `against` - each other method on `metric` (one dot per clip, the same clips for
    every method), with the mean and its 95% paired bootstrap interval (stats.paired_difference)
    as a bar; the dashed line is no difference."""
    import matplotlib.pyplot as plt

    from ..stats import paired_difference
    from .evaluate import clip_values

    values = clip_values(evaluation, metric)
    others = [m for m in values if m != against]
    fig, ax = plt.subplots(figsize=(1.6 * len(others) + 2.0, 3.2))
    rng = np.random.default_rng(0)  # horizontal jitter only, so overlapping dots stay visible
    for i, m in enumerate(others):
        diff = values[against] - values[m]
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(diff)), diff, s=10, alpha=0.5)
        ci = paired_difference(values[against], values[m], name=f"{metric} {against} - {m}")
        ax.errorbar(i + 0.3, ci.value, yerr=[[ci.value - ci.low], [ci.high - ci.value]], fmt="o", color="black",
                    capsize=4)
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(others)), [ROW_LABELS.get(m, m) for m in others], fontsize=8)
    ax.set_ylabel(f"{against} - method ({metric}, per clip)")
    ax.set_title(f"{len(values[against])} clips: per-clip differences, mean and 95% paired interval", fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig
