"""SynthMotion: class semantics measured from pixels, reversal pairs, fine timing, appearance
independence, and the generator's round trip through every official layout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from polyspace_core.datasets import (
    COARSE_GROUPS,
    SYNTHMOTION_CLASSES,
    class_coarse_group,
    coarse_label_map,
    generate_synthmotion,
    load_split,
    make_clip,
    synthmotion_class,
)
from polyspace_core.datasets.synthmotion import sample_look, sample_scene
from polyspace_core.datasets.synthmotion_layouts import LAYOUTS, MARKER, PARTIAL, plan_clips
from polyspace_core.errors import PolySpaceError
from polyspace_core.video import read_frames, uniform_indices

NAMES = [c.name for c in SYNTHMOTION_CLASSES]
SIZE = 96  # the pixel oracle below measures small rotations; a larger frame makes that robust


# ----------------------------------------------------------------------------- a pixel oracle
# Clean renders (clutter=False) have a flat dark background, object 0 red and object 1 blue.
# The oracle reads the motion from the pixels alone, without the generator's trajectories.

def masks(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, b = frames[..., 0].astype(int), frames[..., 2].astype(int)
    return (r > 140) & (b < 140), (b > 140) & (r < 140)


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def turn_between(a: np.ndarray, b: np.ndarray) -> float:
    """The on-screen rotation (degrees, + = clockwise) that best maps mask a onto mask b."""
    ca, cb = centroid(a), centroid(b)
    best, best_iou = 0.0, -1.0
    for angle in range(-80, 81, 4):
        m = cv2.getRotationMatrix2D((float(ca[0]), float(ca[1])), angle, 1.0)
        m[:, 2] += cb - ca
        warped = cv2.warpAffine(a.astype(np.float32), m, a.shape[::-1]) > 0.5
        iou = (warped & b).sum() / max((warped | b).sum(), 1)
        if iou > best_iou:
            best, best_iou = angle, iou
    return -best  # cv2: positive = counter-clockwise on screen


def runs(flags: np.ndarray) -> int:
    """Number of runs of True."""
    return int(np.sum(flags[1:] & ~flags[:-1]) + flags[0])


def sides(path: np.ndarray) -> np.ndarray:
    """+-1 per frame: on which side of its straight-line fit a path is."""
    t = np.arange(len(path))
    trend = np.stack([np.polyval(np.polyfit(t, path[:, i], 1), t) for i in range(2)], 1)
    offset = path - trend
    axis = np.linalg.svd(offset - offset.mean(0))[2][0]  # the swing direction
    return np.sign(offset @ axis)


def oracle(family: str, frames: np.ndarray) -> str:
    red, blue = masks(frames)
    area = red.sum(axis=(1, 2))
    visible = area > 0.3 * np.median(area[area > 0])
    if family == "visibility":
        assert visible[0] != visible[-1]
        return "appear" if visible[-1] else "vanish"
    if family == "blink":
        assert visible[0] and visible[-1]
        return {1: "blink_once", 2: "blink_twice"}[runs(~visible)]
    if family == "collision":  # the objects overlap while they meet: compare the ends only
        axis = centroid(red[0]) - centroid(blue[0])
        same_side = np.dot(centroid(red[-1]) - centroid(blue[-1]), axis) > 0
        return "bounce" if same_side else "pass_through"
    assert visible.all()
    path = np.stack([centroid(m) for m in red])
    if family == "direction":
        dx, dy = path[-1] - path[0]
        assert abs(dx) > 0.25 * SIZE and abs(dx) > 2 * abs(dy)
        return "move_left" if dx < 0 else "move_right"
    if family == "rotation":
        assert np.linalg.norm(path[-1] - path[0]) < 0.1 * SIZE
        total = sum(turn_between(red[t], red[t + 1]) for t in range(len(red) - 1))
        assert abs(total) > 90
        return "rotate_cw" if total > 0 else "rotate_ccw"
    if family == "speed":
        step = np.linalg.norm(np.diff(path, axis=0), axis=1)
        half = len(step) // 2
        first, second = step[:half].sum(), step[-half:].sum()
        assert max(first, second) > 1.5 * min(first, second)
        return "speed_up" if second > first else "slow_down"
    if family == "zigzag":  # frames 2k and 2k+1: always on opposite sides (fast), never (slow)
        side = sides(path)
        switched = side[0:-1:2] != side[1::2]
        assert switched.all() or not switched.any()
        return "zigzag_fast" if switched.all() else "zigzag_slow"
    raise AssertionError(family)


@pytest.mark.parametrize("name", NAMES)
def test_class_motion_from_pixels_and_reversal(name):
    """Each class shows its motion; its clip played backwards shows the reversed class."""
    c = synthmotion_class(name)
    for clip in range(4):
        frames, _, _ = make_clip(name, 16, SIZE, (11, NAMES.index(name), clip), clutter=False)
        assert oracle(c.family, frames) == name
        assert oracle(c.family, frames[::-1]) == c.reverse
    # timing classes keep working at the shortest clip the generator allows
    frames, _, _ = make_clip(name, 8, SIZE, (12, NAMES.index(name), 0), clutter=False)
    assert oracle(c.family, frames) == name


def test_reversal_pairs_are_mutual_and_differ_only_in_order():
    by_name = {c.name: c for c in SYNTHMOTION_CLASSES}
    pairs = {c.name for c in SYNTHMOTION_CLASSES if c.reverse != c.name}
    assert pairs == {"move_left", "move_right", "rotate_cw", "rotate_ccw", "speed_up", "slow_down",
                     "appear", "vanish"}
    for c in SYNTHMOTION_CLASSES:
        assert by_name[c.reverse].reverse == c.name
    # the second class of a pair is the first played backwards: same key, exact frame reversal
    for a, b in (("move_left", "move_right"), ("appear", "vanish")):
        fa, _, _ = make_clip(a, 12, 32, (3, 0, 1), clutter=False)
        fb, _, _ = make_clip(b, 12, 32, (3, 0, 1), clutter=False)
        np.testing.assert_array_equal(fa[::-1], fb)


def test_four_frames_miss_what_sixteen_frames_carry():
    """zigzag fast vs slow: 4 TSN frames see the same thing for both, 16 frames tell them apart.
    blink once vs twice: 16 frames always see both vanishings, the 4 TSN centre frames rarely."""
    four = uniform_indices(16, 4)
    rng = np.random.default_rng(0)
    centre_views = {}
    for name in ("zigzag_fast", "zigzag_slow"):
        for clip in range(12):
            frames, scene, _ = make_clip(name, 16, SIZE, (21, NAMES.index(name), clip), clutter=False)
            assert oracle("zigzag", frames) == name  # all 16 frames: told apart
            side = sides(scene.centers[0])
            # training views (a random frame per segment): every segment holds 2 frames on each
            # side, so each of the 4 sides is a fair coin for both classes
            assert all(side[4 * q:4 * q + 4].sum() == 0 for q in range(4))
        # evaluation views (the segment centres): the 4 sides are independent fair coins for both
        # classes, so the object is seen jumping (not a straight move) and the classes look alike
        look_rng = np.random.default_rng(NAMES.index(name))
        patterns = []
        for _ in range(800):
            view = sides(sample_scene(name, look_rng, 16, sample_look(look_rng, SIZE)).centers[0])[four]
            patterns.append(tuple(view * view[0]))  # sides() fixes no sign: relative to the first
        centre_views[name] = Counter(patterns)
        assert len(centre_views[name]) == 8
        assert all(abs(n / 800 - 1 / 8) < 0.035 for n in centre_views[name].values())
    # the training views of one clip are fair coins too (a check of the per-segment claim above)
    seen = Counter(tuple(side[np.arange(4) * 4 + rng.integers(0, 4, 4)]) for _ in range(800))
    assert len(seen) == 16 and all(abs(n / 800 - 1 / 16) < 0.04 for n in seen.values())

    both_seen = 0
    for clip in range(30):
        frames, scene, _ = make_clip("blink_twice", 16, SIZE, (22, NAMES.index("blink_twice"), clip),
                                     clutter=False)
        assert oracle("blink", frames) == "blink_twice"
        both_seen += runs(~scene.visible[0][four]) == 2
    assert both_seen / 30 < 0.25


def test_appearance_is_drawn_without_the_class():
    """The same clip key gives the same look (background, shapes, colours, distractors) for
    every class, so appearance carries no class information."""
    looks = [make_clip(name, 8, 32, (5, 0, 3))[2] for name in NAMES]
    for look in looks[1:]:
        np.testing.assert_array_equal(look.background, looks[0].background)
        np.testing.assert_array_equal(look.colors, looks[0].colors)
        assert look.shapes == looks[0].shapes and len(look.distractors) == len(looks[0].distractors)
    # ... while different keys vary it
    other = make_clip(NAMES[0], 8, 32, (5, 0, 4))[2]
    assert not np.array_equal(other.background, looks[0].background)
    # and mean frame brightness is not a class cue: its spread within a class exceeds across classes
    means = np.array([[make_clip(n, 8, 32, (9, 0, k))[0].mean() for k in range(6)] for n in NAMES[:4]])
    assert means.std(axis=1).mean() > means.mean(axis=1).std()


def test_coarse_groups_pair_the_classes():
    assert [class_coarse_group(n) for n in NAMES[:4]] == ["direction", "direction", "rotation", "rotation"]
    assert Counter(class_coarse_group(n) for n in NAMES) == dict.fromkeys(COARSE_GROUPS, 2)
    assert class_coarse_group("Moving something to the left") == "direction"  # SSv2-layout name
    with pytest.raises(PolySpaceError, match="SynthMotion class 'jump'"):
        class_coarse_group("jump")
    # a split's (sorted, hmdb51-csv style) class list -> coarse labels over the groups present
    labels, groups = coarse_label_map(["blink_once", "move_left", "Moving something to the right"])
    assert groups == ["direction", "blink"] and labels == [1, 0, 0]


# ----------------------------------------------------------------------------- generator round trip

CLASSES = ["move_left", "blink_twice", "bounce"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_generate_round_trip_through_the_layouts_parser(tmp_path: Path, layout: str):
    info = generate_synthmotion(tmp_path / layout, layout, CLASSES, clips_per_class=2, frames=8,
                                size=32, seed=5, progress=False)
    assert info["cached"] is False and info["videos"] == 6 and info["dataset"] == layout
    truth = {str(tmp_path / layout / p.file): p for p in plan_clips(layout, CLASSES, 2, 5)}

    seen = {}
    for split in ("train", "validation", "test"):
        ds = load_split(layout, tmp_path / layout, split)
        assert len(ds.class_names) == 3
        for item in ds.items:
            planned = truth[str(item.path)]
            assert synthmotion_class(ds.class_names[item.label]).name == planned.class_name
            assert synthmotion_class(item.class_name).name == planned.class_name
            seen[str(item.path)] = split
    assert set(seen) == set(truth)  # every clip, each in one split
    assert Counter(seen.values())["test"] == 3  # one test clip per class
    # the same set through the "synthmotion" entry point, which reads the layout from the marker
    assert load_split("synthmotion", tmp_path / layout, "test").dataset == layout

    # the files are real videos of the rendered clips
    planned = next(iter(truth.values()))
    decoded = read_frames(tmp_path / layout / planned.file, range(8))
    reference, _, _ = make_clip(planned.class_name, 8, 32, (5, planned.class_index, planned.clip))
    mse = ((decoded.astype(float) - reference) ** 2).mean()
    assert decoded.shape == (8, 32, 32, 3) and 10 * np.log10(255 ** 2 / mse) > 24


def test_generation_is_deterministic_cached_and_resumable(tmp_path: Path):
    kwargs = dict(layout="hmdb51-csv", classes=2, clips_per_class=3, frames=8, size=32, seed=1,
                  progress=False)
    a = generate_synthmotion(tmp_path / "a", **kwargs)
    generate_synthmotion(tmp_path / "b", **kwargs)
    assert (tmp_path / "a/train/metadata.csv").read_text() == (tmp_path / "b/train/metadata.csv").read_text()
    for p in plan_clips("hmdb51-csv", a["classes"], 3, 1):
        np.testing.assert_array_equal(read_frames(tmp_path / "a" / p.file, range(8)),
                                      read_frames(tmp_path / "b" / p.file, range(8)))
    marker = json.loads((tmp_path / "a" / MARKER).read_text())
    assert marker["classes"] == ["move_left", "move_right"] and marker["seed"] == 1

    # same parameters: returns at once without touching the files
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.mp4")}
    again = generate_synthmotion(tmp_path / "a", **kwargs)
    assert again["cached"] is True and {p: p.stat().st_mtime_ns for p in stamp} == stamp
    # other parameters into the same folder: refused, naming what differs
    with pytest.raises(PolySpaceError, match="other parameters \\(seed\\)"):
        generate_synthmotion(tmp_path / "a", **{**kwargs, "seed": 2})
    # a set made by an older generator: refused, saying so
    older = tmp_path / "older"
    older.mkdir()
    (older / MARKER).write_text(json.dumps({**marker, "version": marker["version"] - 1}))
    with pytest.raises(PolySpaceError, match="made by generator version"):
        generate_synthmotion(older, **kwargs)

    # an interrupted run (no marker yet, one clip missing) resumes and redoes only that clip
    (tmp_path / "a" / MARKER).unlink()
    (tmp_path / "a" / PARTIAL).write_text(json.dumps({k: marker[k] for k in (
        "version", "layout", "classes", "clips_per_class", "frames", "size", "seed", "fps")}))
    victim = sorted(stamp)[0]
    victim.unlink()
    resumed = generate_synthmotion(tmp_path / "a", **kwargs)
    assert resumed["cached"] is False and victim.is_file() and not (tmp_path / "a" / PARTIAL).exists()
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items() if p != victim)

    # a folder with foreign files is not overwritten
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(PolySpaceError, match="exists and is not empty"):
        generate_synthmotion(tmp_path / "c", **kwargs)


def test_generate_rejects_bad_parameters(tmp_path: Path):
    with pytest.raises(PolySpaceError, match="layout='kinetics'"):
        generate_synthmotion(tmp_path / "x", "kinetics", progress=False)
    with pytest.raises(PolySpaceError, match="frames=4"):
        generate_synthmotion(tmp_path / "x", "ssv2", 2, 2, frames=4, progress=False)
    with pytest.raises(PolySpaceError, match="size=33"):
        generate_synthmotion(tmp_path / "x", "ssv2", 2, 2, size=33, progress=False)
    with pytest.raises(PolySpaceError, match="classes=15"):
        generate_synthmotion(tmp_path / "x", "ssv2", 15, 2, progress=False)
    with pytest.raises(PolySpaceError, match="classes=\\['move_left', 'fly'\\]"):
        generate_synthmotion(tmp_path / "x", "ssv2", ["move_left", "fly"], 2, progress=False)
    assert not (tmp_path / "x").exists()


def test_test_fraction_sets_the_test_split(tmp_path: Path):
    """A larger test share (the demo's, for tight intervals) moves clips from train to test per
    class; validation keeps its 10%; a share out of range is one line."""
    info = generate_synthmotion(tmp_path / "a", layout="hmdb51-csv", classes=2, clips_per_class=10, frames=8,
                                size=16, seed=0, test_fraction=0.5, progress=False)
    assert info["split_counts"] == {"train": 8, "validation": 2, "test": 10}
    assert info["test_fraction"] == 0.5 and "50% test" in info["split_rule"]
    assert len(load_split(info["dataset"], info["root"], "test").items) == 10
    for bad in (0, 0.9, "0.3", True):
        with pytest.raises(PolySpaceError, match="test_fraction"):
            generate_synthmotion(tmp_path / "b", layout="hmdb51-csv", classes=2, clips_per_class=10, frames=8,
                                 size=16, test_fraction=bad, progress=False)
