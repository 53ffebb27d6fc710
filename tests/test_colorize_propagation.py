"""Temporal branch: colours follow motion, confidence marks what is unknown, memory is bounded and
lets a revealed region take its colour from an older frame."""

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from polyspace_core.colorize.flow import DISFlow
from polyspace_core.colorize.lab import frames_to_lab, split_lab
from polyspace_core.colorize.propagation import TemporalPropagator, propagate_sequence
from polyspace_core.errors import PolySpaceError

S = 64


def _scene(dx: float, occluder: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A textured colour photo crop moved by dx pixels, with an optional flat grey square."""
    img = cv2.resize(data.astronaut(), (2 * S, 2 * S), interpolation=cv2.INTER_AREA)
    m = np.float32([[1, 0, dx + S / 2], [0, 1, S / 2]])
    frame = cv2.warpAffine(img, m, (S, S), flags=cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    if occluder:
        y0, x0, y1, x1 = occluder
        frame[y0:y1, x0:x1] = 128
    return frame


def _lab(frames):
    lab = frames_to_lab(np.stack(frames))
    l, ab = split_lab(lab)
    grey = (lab[:, 0] * 2.55).round().to(torch.uint8).numpy()
    return grey, ab


def test_colours_follow_a_pan_and_entering_content_gets_low_confidence():
    frames = [_scene(2.0 * t) for t in range(6)]
    grey, ab = _lab(frames)
    ab_pred, conf = propagate_sequence(TemporalPropagator(DISFlow()), grey[None, 1:], grey[:1], ab[:1])
    assert ab_pred.shape == (1, 5, 2, S, S) and conf.shape == (1, 5, 1, S, S)
    inner = (slice(None), slice(None), slice(None), slice(8, -8), slice(8, -20))
    err = (ab_pred - ab[None, 1:]).abs()[inner].mean()
    grey_err = ab[None, 1:].abs()[inner].mean()   # what "no colour" would score
    assert err < 0.25 * grey_err
    # the view pans right: the right edge shows content frame 0 never had
    assert conf[0, -1, 0, :, -4:].mean() < 0.3 < conf[0, -1, 0, 8:-8, 8:-20].mean()


def test_memory_recovers_a_region_hidden_in_the_previous_frame():
    box = (20, 20, 44, 44)
    f0, f1, f2 = _scene(0), _scene(0, occluder=box), _scene(0)
    grey, ab = _lab([f0, f1, f2])
    prop = TemporalPropagator(DISFlow(), memory_size=2, keep_reference=False)
    prop.push(grey[:1], ab[:1])
    prop.push(grey[1:2], ab[1:2])        # the occluded frame, with its (grey) box
    out, conf = prop.propagate(grey[2:3])
    region = (slice(None), slice(None), slice(24, 40), slice(24, 40))
    err_memory = (out - ab[2:3]).abs()[region].mean()
    prop_short = TemporalPropagator(DISFlow(), memory_size=1, keep_reference=False)
    prop_short.push(grey[1:2], ab[1:2])
    out_short, _ = prop_short.propagate(grey[2:3])
    err_short = (out_short - ab[2:3]).abs()[region].mean()
    assert err_memory < 0.5 * err_short


def test_memory_is_bounded_and_reference_is_kept():
    grey, ab = _lab([_scene(t) for t in range(8)])
    prop = TemporalPropagator(DISFlow(), memory_size=3)
    prop.set_reference(grey[:1], ab[:1])
    for t in range(1, 8):
        prop.propagate(grey[t:t + 1])
        prop.push(grey[t:t + 1], ab[t:t + 1])
        assert len(prop.recent) <= 3
    assert len(prop) == 4 and prop.reference is not None and prop.reference.age == 7
    assert [e.age for e in prop.recent] == [2, 1, 0]


def test_batched_sequences_are_independent():
    a = _lab([_scene(2.0 * t) for t in range(3)])
    b = _lab([_scene(-2.0 * t) for t in range(3)])
    grey = np.stack([a[0], b[0]])
    ab = torch.stack([a[1], b[1]])
    both, _ = propagate_sequence(TemporalPropagator(DISFlow()), grey[:, 1:], grey[:, 0], ab[:, 0])
    alone, _ = propagate_sequence(TemporalPropagator(DISFlow()), grey[1:, 1:], grey[1:, 0], ab[1:, 0])
    torch.testing.assert_close(both[1:], alone)


def test_errors():
    prop = TemporalPropagator(DISFlow())
    with pytest.raises(PolySpaceError, match="memory is empty"):
        prop.propagate(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(PolySpaceError, match="memory_size"):
        TemporalPropagator(DISFlow(), memory_size=0)
    prop.push(np.zeros((1, 8, 8), np.uint8), torch.zeros(1, 2, 8, 8))
    with pytest.raises(PolySpaceError, match="working size"):
        prop.propagate(np.zeros((1, 9, 8), np.uint8))
