"""SynthMotion: a small action dataset whose classes are motions and their temporal order.

Every clip shows one textured scene with a main object (two for the collision classes), a few
small drifting distractors and sensor noise. What the object *looks* like (shape, colours, size,
background, distractors) is drawn from one random stream that never sees the class; how it
*moves* is drawn from another. So appearance cannot tell classes apart, only motion can:

- reversal pairs: move_left/move_right, rotate_cw/rotate_ccw, speed_up/slow_down, appear/vanish.
  The second class of a pair is *defined* as the first one played backwards, so a clip of one
  reversed is a clip of the other (the other classes are their own reversal);
- fine timing: zigzag_fast/zigzag_slow swing sideways every 1/16 vs every 2/16 of the clip,
  starting each quarter of the clip on a random side. Any one frame of a quarter is then on
  either side with probability 1/2, independently across quarters, for both classes: under
  4-segment TSN sampling (random or centre frames) both give exactly the same distribution of
  views (exact when the clip length is a multiple of 16) and the views still show the object
  jumping between sides, while 8 and 16 frames tell the swing rates apart.
  blink_once/blink_twice (last in the class order: the hardest to learn) differ by a vanishing
  that lasts 1/16 of the clip, which 16 frames always see and 4 mostly miss;
- bounce/pass_through: which side each of two objects ends on.

The look is built to keep motion learnable by small models trained from scratch: a dark stage
of nearly fixed brightness (random hue and low-contrast texture) with bright saturated objects
(see the notes in benchmarks/synthmotion.py).

Units: positions in [0, 1]^2 of the frame (x right, y down), angles in radians (increasing =
clockwise on screen, because y points down). This module only builds clips in memory;
`synthmotion_layouts.py` writes them to disk in the official dataset layouts.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import PolySpaceError
from ..video.sampling import segment_bounds


@dataclass(frozen=True)
class MotionClass:
    """name: the class id string. description: one line for the data card. family: the coarse
    group (motion family). reverse: the class a clip of this class becomes when played
    backwards. template: the SSv2-style template with a [something] placeholder."""

    name: str
    description: str
    family: str
    reverse: str
    template: str


SYNTHMOTION_CLASSES: tuple[MotionClass, ...] = (
    MotionClass("move_left", "slides to the left at a steady speed",
                "direction", "move_right", "Moving [something] to the left"),
    MotionClass("move_right", "slides to the right at a steady speed",
                "direction", "move_left", "Moving [something] to the right"),
    MotionClass("rotate_cw", "spins clockwise in place",
                "rotation", "rotate_ccw", "Turning [something] clockwise"),
    MotionClass("rotate_ccw", "spins counter-clockwise in place",
                "rotation", "rotate_cw", "Turning [something] counter-clockwise"),
    MotionClass("zigzag_fast", "travels in a straight line, swinging to the other side every 1/16 of the clip "
                "(each quarter starts on a random side)",
                "zigzag", "zigzag_fast", "Moving [something] in short zig-zags"),
    MotionClass("zigzag_slow", "travels in a straight line, swinging to the other side every 2/16 of the clip "
                "(each quarter starts on a random side)",
                "zigzag", "zigzag_slow", "Moving [something] in long zig-zags"),
    MotionClass("speed_up", "moves along a straight line, starting slow and speeding up",
                "speed", "slow_down", "Pushing [something] so that it speeds up"),
    MotionClass("slow_down", "moves along a straight line, starting fast and slowing to a stop",
                "speed", "speed_up", "Pushing [something] so that it slows down"),
    MotionClass("appear", "is absent, then pops into view and stays",
                "visibility", "vanish", "[Something] appearing"),
    MotionClass("vanish", "is in view, then disappears for the rest of the clip",
                "visibility", "appear", "[Something] disappearing"),
    MotionClass("bounce", "two objects approach each other, touch and bounce back",
                "collision", "bounce", "[Something] bouncing off [something]"),
    MotionClass("pass_through", "two objects approach each other and pass through each other",
                "collision", "pass_through", "[Something] passing through [something]"),
    MotionClass("blink_once", "circles on an orbit and vanishes for one brief moment",
                "blink", "blink_once", "[Something] blinking once while circling"),
    MotionClass("blink_twice", "circles on an orbit and vanishes for two brief moments",
                "blink", "blink_twice", "[Something] blinking twice while circling"),
)
CLASS_NAMES = tuple(c.name for c in SYNTHMOTION_CLASSES)
COARSE_GROUPS = tuple(dict.fromkeys(c.family for c in SYNTHMOTION_CLASSES))
# the first class of each reversal pair is sampled; the second is it played backwards
_PLAYED_BACKWARDS = {"move_right": "move_left", "rotate_ccw": "rotate_cw",
                     "slow_down": "speed_up", "vanish": "appear"}


def synthmotion_class(name: str) -> MotionClass:
    """The MotionClass for a class name, or for its SSv2-layout class string
    ("Moving something to the left")."""
    for c in SYNTHMOTION_CLASSES:
        if name in (c.name, c.template.replace("[", "").replace("]", "")):
            return c
    raise PolySpaceError(f"SynthMotion class {name!r}: unknown; classes are {', '.join(CLASS_NAMES)}")


def class_coarse_group(name: str) -> str:
    """The coarse group (motion family) of a SynthMotion class, e.g. move_left -> direction.
    Each group holds a pair of classes; see COARSE_GROUPS for the order of the groups."""
    return synthmotion_class(name).family


def coarse_label_map(class_names: Sequence[str]) -> tuple[list[int], list[str]]:
    """For a split's class list (any layout's names): the coarse label of each fine label, and
    the coarse group names (the groups present, in COARSE_GROUPS order).
    E.g. [move_left, move_right, blink_once] -> ([0, 0, 1], ["direction", "blink"])."""
    groups = [class_coarse_group(name) for name in class_names]
    present = [g for g in COARSE_GROUPS if g in groups]
    return [present.index(g) for g in groups], present


def select_classes(classes: int | Sequence[str]) -> list[str]:
    """`classes` as class names: an int N takes the first N classes (pairs stay together for
    even N), a list of names is checked."""
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        if not 2 <= classes <= len(CLASS_NAMES):
            raise PolySpaceError(f"classes={classes}: SynthMotion has {len(CLASS_NAMES)} classes; "
                                 f"use 2..{len(CLASS_NAMES)} or a list of names")
        return list(CLASS_NAMES[:classes])
    names = [str(c) for c in classes]
    unknown = [n for n in names if n not in CLASS_NAMES]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        raise PolySpaceError(f"classes={names}: use two or more distinct names from {', '.join(CLASS_NAMES)}")
    return names


# ----------------------------------------------------------------------------- shapes

def _normalised(points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Polygon centred on its area centroid and scaled to a max radius of 1."""
    p = np.asarray(points, dtype=np.float64)
    x, y = p[:, 0], p[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6 * area)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6 * area)
    p = p - [cx, cy]
    return p / np.linalg.norm(p, axis=1).max()


# none has rotational symmetry, so a spin is always visible (a disc would hide it)
SHAPES: dict[str, np.ndarray] = {
    "arrow": _normalised([(1, 0), (0.1, 0.65), (0.1, 0.28), (-0.9, 0.28), (-0.9, -0.28),
                          (0.1, -0.28), (0.1, -0.65)]),
    "L-block": _normalised([(-0.7, -0.9), (-0.15, -0.9), (-0.15, 0.35), (0.8, 0.35), (0.8, 0.9),
                            (-0.7, 0.9)]),
    "wedge": _normalised([(1, 0), (-0.7, 0.55), (-0.7, -0.55)]),
    "house": _normalised([(0, -1), (0.75, -0.35), (0.75, 0.9), (-0.75, 0.9), (-0.75, -0.35)]),
    "flag": _normalised([(-0.8, -1), (0.9, -0.5), (-0.45, 0.05), (-0.45, 1), (-0.8, 1)]),
}
SHAPE_NAMES = tuple(SHAPES)
_DISTRACTOR_SHAPES = {
    "disc": np.stack([np.cos(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
                      np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))], 1),
    "square": np.array([(-0.7, -0.7), (0.7, -0.7), (0.7, 0.7), (-0.7, 0.7)]),
}


# ----------------------------------------------------------------------------- what a clip looks like

@dataclass
class Look:
    """Appearance of a clip; drawn without knowing the class. Two objects are always drawn
    (the second is used only by the collision classes) so the random stream is the same for
    every class."""

    background: np.ndarray               # (S, S, 3) uint8
    shapes: list[str]                    # 2 main object shapes
    colors: np.ndarray                   # (2, 3) uint8 fill colours
    edges: np.ndarray                    # (2, 3) uint8 outline colours
    radii: np.ndarray                    # (2,) object radius in frame units
    angles: np.ndarray                   # (2,) resting orientation
    distractors: list[dict] = field(default_factory=list)
    noise_sigma: float = 0.0             # per-frame Gaussian sensor noise (0-255 scale)
    outline: bool = False                # draw a contrasting outline around the objects


def _luma(rgb: np.ndarray) -> float:
    return float(np.dot(np.asarray(rgb, dtype=np.float64) / 255.0, [0.299, 0.587, 0.114]))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A low-contrast textured background: gradient, stripes, checkerboard or smooth blobs."""
    import cv2

    # a dark, muted stage with a low-contrast texture (a nearby hue and brightness), so the bright
    # objects are the salient thing. Its hue and texture vary per clip, its brightness hardly:
    # with a background brightness that varied from clip to clip (0.1-0.3), small video models
    # trained from scratch did not learn the motion classes in a CPU budget, while hue and
    # texture variation cost little (ablation notes in benchmarks/synthmotion.py).
    hue, saturation, value = rng.uniform(), rng.uniform(0.0, 0.25), rng.uniform(0.12, 0.18)
    base = _hsv(hue, saturation, value)
    other = _hsv((hue + rng.uniform(-0.06, 0.06)) % 1.0, saturation,
                 np.clip(value + rng.choice([-1, 1]) * rng.uniform(0.03, 0.08), 0, 1))
    kind = rng.integers(4)
    yy, xx = np.mgrid[0:size, 0:size] / size
    theta = rng.uniform(0, 2 * np.pi)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    if kind == 0:    # linear gradient
        t = (along - along.min()) / (np.ptp(along) + 1e-9)
    elif kind == 1:  # stripes
        t = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * along + rng.uniform(0, 2 * np.pi))
    elif kind == 2:  # checkerboard
        cells = rng.integers(3, 9)
        t = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(np.float64)
    else:            # smooth blobs: upsampled low-resolution noise
        low = rng.uniform(0, 1, (6, 6)).astype(np.float32)
        t = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float64)
        t = np.clip(t, 0, 1)
    img = base + (other - base) * t[..., None]
    img = img + rng.normal(0, 3.0, img.shape)  # fine static grain
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _contrasting_color(rng: np.random.Generator, background_luma: float) -> np.ndarray:
    """A saturated colour at least 0.25 brighter than the background."""
    for _ in range(32):
        rgb = _hsv(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0))
        if _luma(rgb) - background_luma >= 0.25:
            return rgb
    return _hsv(rng.uniform(), rng.uniform(0.0, 0.3), 1.0)  # pale, hence bright


def sample_look(rng: np.random.Generator, size: int, clutter: bool = True) -> Look:
    """Appearance of one clip. With clutter=False (figures and tests): flat dark background,
    fixed colours (object 0 red, object 1 blue), no distractors, no noise."""
    shapes = [SHAPE_NAMES[i] for i in rng.integers(len(SHAPE_NAMES), size=2)]
    radii = rng.uniform(0.11, 0.16, size=2)
    angles = rng.uniform(0, 2 * np.pi, size=2)
    if not clutter:
        background = np.full((size, size, 3), 30, np.uint8)
        colors = np.array([[240, 70, 70], [70, 90, 240]], np.uint8)
        return Look(background, shapes, colors, colors.copy(), radii, angles)

    background = _background(rng, size)
    bg_luma = _luma(background.reshape(-1, 3).mean(0))
    colors = np.stack([_contrasting_color(rng, bg_luma) for _ in range(2)])
    # outline: darker on light objects, lighter on dark ones, so the silhouette stays crisp
    edges = np.stack([c * 0.45 if _luma(c) > 0.5 else c + (255 - c) * 0.6 for c in colors])
    distractors = []
    bg_value = float(background.reshape(-1, 3).mean(0).max()) / 255
    for _ in range(int(rng.integers(0, 3))):  # small, dull, slowly drifting clutter
        start = rng.uniform(0.05, 0.95, 2)
        heading = rng.uniform(0, 2 * np.pi)
        value = np.clip(bg_value + rng.choice([-1, 1]) * rng.uniform(0.15, 0.3), 0.05, 1.0)
        distractors.append({
            "shape": list(_DISTRACTOR_SHAPES)[int(rng.integers(2))],
            "radius": rng.uniform(0.02, 0.035),
            "color": _hsv(rng.uniform(), rng.uniform(0.0, 0.3), value),
            "start": start,
            "shift": rng.uniform(0, 0.2) * np.array([np.cos(heading), np.sin(heading)]),
        })
    return Look(background, shapes, np.round(colors).astype(np.uint8),
                np.round(np.clip(edges, 0, 255)).astype(np.uint8), radii, angles,
                distractors, float(rng.uniform(1.5, 4.0)), outline=True)


# ----------------------------------------------------------------------------- how it moves

@dataclass
class Scene:
    """Per-frame state of the main objects: centers (K, T, 2) in frame units, angles (K, T) in
    radians, visible (K, T) bool. K = 1, or 2 for the collision classes."""

    centers: np.ndarray
    angles: np.ndarray
    visible: np.ndarray

    def reversed(self) -> Scene:
        return Scene(self.centers[:, ::-1].copy(), self.angles[:, ::-1].copy(),
                     self.visible[:, ::-1].copy())

    @property
    def num_frames(self) -> int:
        return self.centers.shape[1]


def _start_for(rng: np.random.Generator, delta: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """A start point p such that p and p + delta both lie in [lo, hi]^2 (per axis)."""
    low = np.maximum(lo, lo - delta)
    high = np.minimum(hi, hi - delta)
    if np.any(high < low):
        raise ValueError("path does not fit in the frame")
    return rng.uniform(low, high)


def _event_windows(rng: np.random.Generator, frames: int, count: int) -> list[int]:
    """Start frames of `count` brief events (each max(1, round(frames / 16)) frames long), at least two
    frames from either end and two visible frames apart. The allowed set is symmetric in time,
    so these classes are their own reversal."""
    k = max(1, round(frames / 16))
    first, last = 2, frames - 2 - k  # inclusive range of event starts
    starts = range(first, last + 1)
    if count == 1:
        return [int(rng.choice(list(starts)))]
    pairs = [(a, b) for a in starts for b in starts if b >= a + k + 2]
    a, b = pairs[int(rng.integers(len(pairs)))]
    return [a, b]


def _single(centers: np.ndarray, angles: np.ndarray, visible: np.ndarray | None = None) -> Scene:
    t = len(centers)
    vis = np.ones(t, bool) if visible is None else visible
    return Scene(centers[None], angles[None], vis[None])


def sample_scene(name: str, rng: np.random.Generator, frames: int, look: Look) -> Scene:
    """The motion of one clip of class `name` over `frames` frames, fitted to the object sizes."""
    if name in _PLAYED_BACKWARDS:  # defined as its partner played backwards
        return sample_scene(_PLAYED_BACKWARDS[name], rng, frames, look).reversed()
    u = np.linspace(0.0, 1.0, frames)
    r = float(look.radii[0])
    lo, hi = r + 0.03, 1 - r - 0.03  # object centres stay here, so the object stays in view
    span = hi - lo
    still = np.full(frames, look.angles[0])

    if name == "move_left":
        delta = np.array([-rng.uniform(0.5, 0.85) * span, rng.uniform(-0.1, 0.1) * span])
        start = _start_for(rng, delta, lo, hi)
        return _single(start + u[:, None] * delta, still)

    if name == "rotate_cw":
        drift = rng.uniform(-0.05, 0.05, 2)
        start = _start_for(rng, drift, lo, hi)
        turn = rng.uniform(0.8, 1.5) * np.pi  # 144..270 degrees over the clip
        return _single(start + u[:, None] * drift, look.angles[0] + turn * u)

    if name == "speed_up":
        heading = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(heading), np.sin(heading)])
        # the longer axis of the path covers 50-85% of the free span
        delta = direction * rng.uniform(0.5, 0.85) * span / np.abs(direction).max()
        start = _start_for(rng, delta, lo, hi)
        power = rng.uniform(2.0, 3.0)  # position ~ t^p: slow start, fast finish
        return _single(start + (u ** power)[:, None] * delta, still)

    if name == "appear":
        drift = rng.uniform(-0.08, 0.08, 2) * span
        start = _start_for(rng, drift, lo, hi)
        onset = int(rng.integers(math.ceil(0.25 * (frames - 1)), math.floor(0.75 * (frames - 1)) + 1))
        return _single(start + u[:, None] * drift, still, np.arange(frames) >= onset)

    if name in ("blink_once", "blink_twice"):
        radius = rng.uniform(0.12, 0.22) * span / 0.7
        center = rng.uniform(lo + radius, hi - radius, 2)
        sweep = rng.uniform(0.6, 1.2) * np.pi * rng.choice([-1, 1])
        phase = rng.uniform(0, 2 * np.pi) + sweep * u
        centers = center + radius * np.stack([np.cos(phase), np.sin(phase)], 1)
        visible = np.ones(frames, bool)
        k = max(1, round(frames / 16))
        for s in _event_windows(rng, frames, 1 if name == "blink_once" else 2):
            visible[s:s + k] = False
        return _single(centers, still, visible)

    if name in ("zigzag_fast", "zigzag_slow"):
        heading = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(heading), np.sin(heading)])
        across = np.array([-direction[1], direction[0]])
        swing = rng.uniform(0.6, 0.9) * r * across  # the two sides are 1.2-1.8 radii apart
        delta = direction * rng.uniform(0.3, 0.6) * span
        start = _start_for(rng, delta, lo + np.abs(swing), hi - np.abs(swing))
        # The clip is cut into 4 quarters (the segments of 4-frame TSN sampling). Each quarter
        # starts on a random side and switches every `unit` frames (fast) or every 2 units (slow),
        # unit = 1/16 of the clip: a quarter holds as many frames on each side for both classes, so
        # a random frame of it is a fair coin, and its centre frame is the random starting side
        # (fast) or its opposite (slow). 4 TSN frames thus see identical distributions -- with the
        # jumps still visible, unlike a strictly periodic swing whose centre frames all fall on one
        # side and look like a straight move.
        unit = max(1, round(frames / 16))
        hold = 1 if name == "zigzag_fast" else 2  # units on one side before switching
        bounds = segment_bounds(frames, 4)
        quarter = np.repeat(np.arange(4), np.diff(bounds))
        start_side = rng.choice([-1.0, 1.0], size=4)
        steps = (np.arange(frames) - bounds[quarter]) // unit // hold
        side = start_side[quarter] * np.where(steps % 2 == 0, 1.0, -1.0)
        return _single(start + u[:, None] * delta + side[:, None] * swing, still)

    if name in ("bounce", "pass_through"):
        heading = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(heading), np.sin(heading)])
        r_max = float(look.radii.max())
        lo2, hi2 = r_max + 0.01, 1 - r_max - 0.01  # the shapes rarely fill their radius
        meet = 0.5 + rng.uniform(-0.04, 0.04, 2)
        # how far from the meeting point a centre may go along +-direction and stay in view
        reach = min(min(hi2 - meet[i], meet[i] - lo2) / abs(direction[i])
                    for i in range(2) if abs(direction[i]) > 1e-9)
        gap = 0.4 * float(look.radii.sum())  # bouncing centres stop this far from the meeting point
        cross = rng.uniform(0.4, 0.6)        # when they meet (symmetric around the middle)
        speed = rng.uniform(0.8, 1.0) * (reach - gap) / max(cross, 1 - cross)
        if name == "bounce":
            along = -(gap + speed * np.abs(u - cross))   # object 0 stays on the minus side
        else:
            along = speed * (u - cross)                  # object 0 crosses to the plus side
        c0 = meet + along[:, None] * direction
        c1 = meet - along[:, None] * direction
        return Scene(np.stack([c0, c1]), np.stack([still, np.full(frames, look.angles[1])]),
                     np.ones((2, frames), bool))

    raise PolySpaceError(f"SynthMotion class {name!r}: unknown; classes are {', '.join(CLASS_NAMES)}")


# ----------------------------------------------------------------------------- drawing

def _polygon_px(shape: np.ndarray, center: np.ndarray, radius: float, angle: float, size: int) -> np.ndarray:
    """Shape -> pixel polygon in cv2 fixed point (4 fractional bits, for sub-pixel motion)."""
    c, s = np.cos(angle), np.sin(angle)
    rotated = shape @ np.array([[c, s], [-s, c]])  # y points down: +angle turns clockwise on screen
    points = (center + rotated * radius) * size - 0.5
    return np.round(points * 16).astype(np.int32)


def render(scene: Scene, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Draw the clip: (T, S, S, 3) uint8 RGB. `rng` draws the per-frame sensor noise."""
    import cv2

    size = look.background.shape[0]
    frames = np.empty((scene.num_frames, size, size, 3), np.uint8)
    for t in range(scene.num_frames):
        img = look.background.copy()
        u = t / max(scene.num_frames - 1, 1)
        for d in look.distractors:  # behind the main objects
            pts = _polygon_px(_DISTRACTOR_SHAPES[d["shape"]], d["start"] + u * d["shift"],
                              d["radius"], 0.0, size)
            cv2.fillPoly(img, [pts], tuple(int(v) for v in d["color"]), cv2.LINE_AA, shift=4)
        for k in range(scene.centers.shape[0]):
            if not scene.visible[k, t]:
                continue
            pts = _polygon_px(SHAPES[look.shapes[k]], scene.centers[k, t], float(look.radii[k]),
                              float(scene.angles[k, t]), size)
            cv2.fillPoly(img, [pts], tuple(int(v) for v in look.colors[k]), cv2.LINE_AA, shift=4)
            if look.outline:
                cv2.polylines(img, [pts], True, tuple(int(v) for v in look.edges[k]), 1,
                              cv2.LINE_AA, shift=4)
        if look.noise_sigma > 0:
            img = np.clip(img + rng.normal(0.0, look.noise_sigma, img.shape), 0, 255).round()
        frames[t] = img
    return frames


def make_clip(name: str, frames: int, size: int, key: Sequence[int], clutter: bool = True
              ) -> tuple[np.ndarray, Scene, Look]:
    """One SynthMotion clip of class `name`: (frames (T, S, S, 3) uint8 RGB, scene, look).

    key: integers that seed the clip (the generator uses (seed, class index, clip index)).
    Appearance, motion and noise come from three streams derived from `key`, so the same key
    gives the same look for every class.
    """
    check_clip_size(frames, size)
    look = sample_look(np.random.default_rng([*key, 0]), size, clutter)
    scene = sample_scene(name, np.random.default_rng([*key, 1]), frames, look)
    return render(scene, look, np.random.default_rng([*key, 2])), scene, look


def check_clip_size(frames: int, size: int) -> None:
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 8:
        raise PolySpaceError(f"frames={frames}: SynthMotion needs at least 8 frames per clip "
                             "(the timing classes need room for two events)")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16 or size % 2:
        raise PolySpaceError(f"size={size}: use an even frame size of at least 16 pixels")
