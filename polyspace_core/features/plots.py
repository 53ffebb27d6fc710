"""Figures of a feature store: one clip's token features, token-norm histograms."""

from __future__ import annotations

import numpy as np
import torch

from .store import FeatureStore


def plot_token_features(store: FeatureStore, index: int, frames: np.ndarray | None = None, max_dims: int = 64,
                        center: bool = True):
    """One sample: a strip of its frames (optional) and, per model, a heatmap of its (T, D) token
    features (first `max_dims` dims). With `center`, the store's mean token is subtracted first, so
    the figure shows what sets this clip and each time step apart rather than the shared offset;
    each time step is then L2-normalised. Returns the Figure."""
    import matplotlib.pyplot as plt

    models = store.models
    n_rows = len(models) + (1 if frames is not None else 0)
    fig, axes = plt.subplots(n_rows, 1, figsize=(9, 1.3 + 1.5 * n_rows), squeeze=False)
    axes = axes[:, 0]
    row = 0
    if frames is not None:
        strip = np.concatenate(list(frames), axis=1)
        axes[0].imshow(strip)
        axes[0].set_axis_off()
        axes[0].set_title(f"#{index} {store.class_names[store.labels[index]] if store.labels[index] >= 0 else '?'}"
                          f" ({len(frames)} frames)", fontsize=9)
        row = 1
    for m in models:
        ax = axes[row]
        row += 1
        if not store.ok[index]:
            ax.text(0.5, 0.5, f"{m}: extraction failed", ha="center", va="center")
            ax.set_axis_off()
            continue
        x = store.sample(index, m).float()
        if center:
            x = x - _token_mean(store, m)
        x = x[:, :max_dims]
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        im = ax.imshow(x.T.numpy(), aspect="auto", cmap="coolwarm", interpolation="nearest")
        ax.set_ylabel(f"{m}\ndim" + (" (centred)" if center else ""), fontsize=8)
        ax.set_xlabel("token (time)" if store.tokens == "temporal" else "token", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    return fig


def _token_mean(store: FeatureStore, name: str) -> torch.Tensor:
    """Mean token (D,) of a model over the successful samples, summed a batch at a time."""
    total, count = torch.zeros(store.shape(name)[1], dtype=torch.float64), 0
    for x in store.batches(name):
        total += x.double().sum(dim=(0, 1))
        count += x.shape[0] * x.shape[1]
    return (total / max(count, 1)).float()


def plot_norms(store: FeatureStore):
    """Histogram of per-token L2 norms per model (successful samples). Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(store.models), figsize=(3.2 * len(store.models), 2.6), squeeze=False)
    for ax, m in zip(axes[0], store.models):
        norms = np.concatenate([x.norm(dim=-1).flatten().numpy() for x in store.batches(m)])
        ax.hist(norms, bins=30, color="#4477aa")
        ax.set_title(f"{m} (D={store.shape(m)[1]})", fontsize=9)
        ax.set_xlabel("token L2 norm", fontsize=8)
    fig.tight_layout()
    return fig
