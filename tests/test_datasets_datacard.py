"""Data card and class-strip figure of a generated SynthMotion set."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from polyspace_core.datasets import data_card, generate_synthmotion, load_split, plot_class_strips
from polyspace_core.errors import PolySpaceError

CLASSES = ["appear", "vanish", "zigzag_fast", "zigzag_slow"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("card") / "diving"
    generate_synthmotion(root, "diving48", CLASSES, clips_per_class=3, frames=8, size=32, seed=3,
                         progress=False)
    return root


def test_data_card_of_a_generated_set(root: Path):
    card = data_card(root)
    assert card["dataset"] == "synthmotion" and card["layout"] == "diving48"
    assert card["parameters"]["classes"] == CLASSES and card["num_classes"] == 4
    assert sum(card["splits"].values()) == 12 and card["splits"]["test"] == 4
    zigzag = card["classes"][2]
    assert zigzag["name"] == "zigzag_fast" and zigzag["coarse_group"] == "zigzag"
    assert "swinging" in zigzag["description"]
    assert card["classes"][0]["reverse"] == "vanish"
    assert all(sum(c["counts"].values()) == 3 for c in card["classes"])
    assert any("hold-out" in n for n in card["notes"]) and any("flip" in n for n in card["notes"])


def test_data_card_of_one_split(root: Path):
    card = data_card(load_split("diving48", root, "test"))
    assert list(card["splits"]) == ["test"] and [c["counts"]["test"] for c in card["classes"]] == [1, 1, 1, 1]
    with pytest.raises(PolySpaceError, match="synthmotion.json: not found"):
        data_card(root / "rgb")


def test_class_strip_figure(root: Path):
    split = load_split("diving48", root, "train")
    fig = plot_class_strips(split, frames_per_class=4, seed=0)
    assert len(fig.axes) == 4 * 4
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (32, 32, 3) and np.asarray(shown).std() > 5  # real frames, not blank
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
