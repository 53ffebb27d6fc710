"""The TSM ResNet presets by name (no torch import: the CLI lists them in `--arch`)."""

from __future__ import annotations

from typing import Any

ARCHS: dict[str, dict[str, Any]] = {
    "resnet50": dict(widths=(64, 128, 256, 512), depths=(3, 4, 6, 3), stem_width=64),
    "resnet101": dict(widths=(64, 128, 256, 512), depths=(3, 4, 23, 3), stem_width=64),
    # narrow/shallow variants for the built-in CPU runs on small frames (32-64 px): a 3x3 stride-1
    # stem keeps the resolution that small moving objects need; trained from scratch, so no dropout
    "small": dict(widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), stem_width=16, stem_kernel=3, stem_stride=1,
                  dropout=0.0),
    "tiny": dict(widths=(8, 16, 32), depths=(1, 1, 1), stem_width=16, stem_kernel=3, stem_stride=1, dropout=0.0),
}
