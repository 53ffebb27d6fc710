"""SynthColor: the built-in exemplar video colorization dataset, generated from real photos.

Each clip is a short colour video made from one of the colour photographs scikit-image ships
(astronaut, chelsea, coffee, rocket, ...) or matplotlib's sample photo (grace_hopper) seen
through a moving camera (pan + zoom), with textured coloured objects that move, rotate, occlude
each other and enter the view, and in some clips the frames of skimage's animated GIF as an
animated object. Every clip comes with an exemplar: either its first frame ("first_frame") or a
separate reference image of the same scene from another viewpoint at another time ("separate",
where objects that enter later are already visible). The colour video itself is the ground
truth; methods see only its lightness.

Layout under `out`:

    index.json                   written last: format, version, params, splits -> clip entries
    train/clip_0000.mp4          H.264 (near-lossless, crf 0), RGB uint8 frames
    train/clip_0000_ref.png      the exemplar, same size as the frames
    validation/...  test/...

Splits use disjoint source photos (a test clip never shows a training photo; the test split has
four photos, assigned round-robin), and every clip is drawn from its own seed (seed, split, clip
number), so the set is deterministic and a clip does not change when the number of clips does.
`test_clips` sets the test split's size apart from the 60/20/20 rule, so the test split can be
large enough for a per-clip paired comparison to have power while training stays as cheap. A
finished set (index.json present with the same parameters) is returned at once; other
parameters in the same folder are an error; a set an older version of this generator wrote
(another photo assignment) is announced and regenerated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import PolySpaceError
from ..io import atomic_write_bytes, atomic_write_json, read_json

FORMAT = "synthcolor"
VERSION = 2  # 2: four test photos (chelsea and grace_hopper joined coffee and rocket), test_clips
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}

# photo name -> file in skimage's data dir (bundled with the wheel: no download)
SOURCE_IMAGES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "retina": "retina.jpg",
    "colorwheel": "color.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "grace_hopper": "matplotlib:grace_hopper.jpg",  # matplotlib's sample data (bundled, no download)
}
# disjoint photos per split (the two motorcycle views are the same scene: both in train)
SPLIT_IMAGES = {
    "train": ["astronaut", "hubble_deep_field", "immunohistochemistry", "motorcycle_left", "motorcycle_right"],
    "validation": ["retina", "colorwheel"],
    "test": ["coffee", "rocket", "chelsea", "grace_hopper"],
}
GIF_FILE = "no_time_for_that_tiny.gif"
SHAPES = ("disk", "ellipse", "rectangle", "triangle", "diamond")


@dataclass
class SynthColorParams:
    clips: int = 40
    frames: int = 16
    size: int = 64
    seed: int = 0
    fps: float = 10.0
    test_clips: int | None = None

    def check(self) -> None:
        if self.test_clips is not None and self.test_clips < 1:
            raise PolySpaceError(f"synth-color test_clips={self.test_clips}: need at least 1 (or none for 20%)")
        if self.clips < 3:
            raise PolySpaceError(f"synth-color --clips={self.clips}: need at least 3 (one per split)")
        if self.frames < 2:
            raise PolySpaceError(f"synth-color --frames={self.frames}: need at least 2")
        if self.size < 32 or self.size % 2:
            raise PolySpaceError(f"synth-color --size={self.size}: use an even size of at least 32")


# ----------------------------------------------------------------------------- sources

def _data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.data_dir)


def load_source_image(name: str) -> np.ndarray:
    """The skimage photo `name` as (H, W, 3) uint8 RGB (alpha dropped)."""
    import skimage.io

    if name not in SOURCE_IMAGES:
        raise PolySpaceError(f"SynthColor source {name!r}: unknown; use one of {', '.join(SOURCE_IMAGES)}")
    if SOURCE_IMAGES[name].startswith("matplotlib:"):
        import matplotlib.cbook

        path = Path(matplotlib.cbook.get_sample_data(SOURCE_IMAGES[name].split(":", 1)[1], asfileobj=False))
        if not path.is_file():
            raise PolySpaceError(f"{path}: matplotlib's bundled sample photo is missing; reinstall matplotlib")
    else:
        path = _data_dir() / SOURCE_IMAGES[name]
    if not path.is_file():
        raise PolySpaceError(f"{path}: scikit-image's bundled photo is missing; reinstall scikit-image")
    img = skimage.io.imread(path)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def load_gif_frames() -> np.ndarray | None:
    """skimage's animated GIF as (T, H, W, 3) uint8, or None when this skimage has none."""
    import skimage.io

    path = _data_dir() / GIF_FILE
    if not path.is_file():
        return None
    frames = skimage.io.imread(path)
    return np.ascontiguousarray(frames[..., :3]).astype(np.uint8) if frames.ndim == 4 else None


# ----------------------------------------------------------------------------- sprites

def _hsv_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour as float RGB in [0, 1]."""
    import colorsys

    h, s, v = rng.uniform(0, 1), rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def make_sprite(rng: np.random.Generator, diameter: int) -> np.ndarray:
    """A textured object: (d, d, 4) float32 RGBA in [0, 1] with an anti-aliased shape mask.

    Texture: one or two hues laid out in stripes, a checker or a radial pattern, with a mild
    shading, so the object has trackable structure and a colour its grey values do not give away."""
    import cv2

    d = max(int(diameter), 6)
    big = 4 * d  # draw the mask 4x larger, then area-downsample: anti-aliased edges
    mask = np.zeros((big, big), np.uint8)
    shape = SHAPES[rng.integers(len(SHAPES))]
    c = big // 2
    if shape == "disk":
        cv2.circle(mask, (c, c), int(big * 0.47), 255, -1)
    elif shape == "ellipse":
        cv2.ellipse(mask, (c, c), (int(big * 0.47), int(big * rng.uniform(0.25, 0.4))), 0, 0, 360, 255, -1)
    elif shape == "rectangle":
        hw, hh = int(big * 0.45), int(big * rng.uniform(0.25, 0.45))
        cv2.rectangle(mask, (c - hw, c - hh), (c + hw, c + hh), 255, -1)
    elif shape == "triangle":
        pts = np.array([[c, int(big * 0.04)], [int(big * 0.96), int(big * 0.92)], [int(big * 0.04), int(big * 0.92)]])
        cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
    else:  # diamond
        pts = np.array([[c, int(big * 0.03)], [int(big * 0.97), c], [c, int(big * 0.97)], [int(big * 0.03), c]])
        cv2.fillPoly(mask, [pts.astype(np.int32)], 255)
    alpha = cv2.resize(mask, (d, d), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0

    yy, xx = np.mgrid[0:d, 0:d].astype(np.float32) / d
    pattern = rng.integers(3)
    if pattern == 0:  # stripes in a random direction
        theta, period = rng.uniform(0, np.pi), rng.uniform(0.25, 0.5)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    elif pattern == 1:  # checker
        n = rng.integers(2, 4)
        t = ((np.floor(xx * n * 2) + np.floor(yy * n * 2)) % 2).astype(np.float32)
    else:  # radial rings
        r = np.hypot(xx - 0.5, yy - 0.5)
        t = 0.5 + 0.5 * np.cos(2 * np.pi * r / rng.uniform(0.2, 0.35))
    c1 = _hsv_colour(rng)
    c2 = _hsv_colour(rng) if rng.uniform() < 0.5 else c1 * rng.uniform(0.55, 0.8)
    rgb = c1[None, None] * t[..., None] + c2[None, None] * (1 - t[..., None])
    shade = 0.85 + 0.15 * (1 - yy)  # light from above
    rgb = np.clip(rgb * shade[..., None], 0, 1)
    return np.dstack([rgb, alpha]).astype(np.float32)


# ----------------------------------------------------------------------------- scene

@dataclass
class SceneObject:
    sprites: list[np.ndarray]   # one RGBA sprite, or the frames of an animated one
    pos0: np.ndarray            # scene coordinates of the centre at t=0
    vel: np.ndarray             # scene px per frame
    angle0: float
    spin: float                 # degrees per frame
    kind: str                   # wander | entering | occluder | animated


def _camera(t: float, cam: dict) -> tuple[np.ndarray, float]:
    """Camera centre (scene px) and zoom (scene px per output px) at time t."""
    a = t / max(cam["T"] - 1, 1)
    return cam["c0"] + a * (cam["c1"] - cam["c0"]), cam["z0"] + a * (cam["z1"] - cam["z0"])


def _render(scene: np.ndarray, objects: list[SceneObject], t: int, centre: np.ndarray,
            zoom: float, size: int) -> np.ndarray:
    """One frame: the scene through the camera, then objects back to front. uint8 (S, S, 3)."""
    import cv2

    half = (size - 1) / 2.0
    # output pixel u -> scene point zoom * u + (centre - zoom * half)
    to_scene = np.array([[zoom, 0, centre[0] - zoom * half], [0, zoom, centre[1] - zoom * half]], np.float64)
    frame = cv2.warpAffine(scene, to_scene, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT_101).astype(np.float32) / 255.0
    for obj in objects:
        sprite = obj.sprites[t % len(obj.sprites)]
        h, w = sprite.shape[:2]
        pos = obj.pos0 + t * obj.vel
        ang = np.deg2rad(obj.angle0 + t * obj.spin)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        # sprite pixel q -> scene pos + rot (q - sprite centre) -> output (scene - centre)/zoom + half
        lin = rot / zoom
        off = (pos - centre) / zoom + half - lin @ np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        m = np.hstack([lin, off[:, None]])
        layer = cv2.warpAffine(sprite, m, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        alpha = layer[..., 3:4]
        frame = frame * (1 - alpha) + layer[..., :3] * alpha
    return (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_clip(rng: np.random.Generator, photo: np.ndarray, frames: int, size: int,
              gif: np.ndarray | None) -> dict:
    """Render one clip: {'frames' (T, S, S, 3) uint8, 'reference' (S, S, 3) uint8,
    'reference_kind', 'objects' (kinds), 'camera'}."""
    import cv2

    # the scene: the photo scaled so its short side is ~3 frames wide
    scale = 3.0 * size / min(photo.shape[:2])
    scene = cv2.resize(photo, (round(photo.shape[1] * scale), round(photo.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    sh, sw = scene.shape[:2]

    # camera: pan across the scene and zoom in or out, always inside the scene
    z0 = rng.uniform(1.0, 1.5)
    z1 = float(np.clip(z0 * rng.uniform(0.8, 1.25), 0.9, 1.7))
    margin = 0.5 * size * max(z0, z1) + 2
    c0 = np.array([rng.uniform(margin, sw - margin), rng.uniform(margin, sh - margin)])
    direction = rng.uniform(0, 2 * np.pi)
    pan = rng.uniform(0.25, 0.7) * size * z0
    c1 = c0 + pan * np.array([np.cos(direction), np.sin(direction)])
    c1 = np.clip(c1, [margin, margin], [sw - margin, sh - margin])
    cam = {"T": frames, "c0": c0, "c1": c1, "z0": z0, "z1": z1}

    # objects, in drawing order (later ones occlude earlier ones)
    objects: list[SceneObject] = []
    view = size * z0
    n_wander = int(rng.integers(1, 3))
    for _ in range(n_wander):
        d = int(rng.uniform(0.22, 0.38) * view)
        speed = rng.uniform(0.4, 1.6) * z0
        heading = rng.uniform(0, 2 * np.pi)
        objects.append(SceneObject([make_sprite(rng, d)],
                                   c0 + rng.uniform(-0.3, 0.3, 2) * view,
                                   speed * np.array([np.cos(heading), np.sin(heading)]),
                                   rng.uniform(0, 360), rng.uniform(-4, 4), "wander"))
    if gif is not None and rng.uniform() < 0.35:  # the animated GIF as a moving object
        h = int(rng.uniform(0.35, 0.5) * view)
        w = max(int(h * gif.shape[2] / gif.shape[1]), 4)
        sprites = [np.dstack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255,
                              np.ones((h, w), np.float32)]) for f in gif]
        heading = rng.uniform(0, 2 * np.pi)
        objects.append(SceneObject(sprites, c0 + rng.uniform(-0.25, 0.25, 2) * view,
                                   0.6 * z0 * np.array([np.cos(heading), np.sin(heading)]),
                                   0.0, 0.0, "animated"))
    if rng.uniform() < 0.75:  # an object entering the view from one side
        d = int(rng.uniform(0.25, 0.4) * view)
        side = rng.integers(4)
        normal = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]][side], np.float64)  # points inward
        tangent = np.array([normal[1], -normal[0]])
        start = c0 - normal * (0.5 * view + 0.55 * d) + tangent * rng.uniform(-0.25, 0.25) * view
        arrive = rng.uniform(0.3, 0.6) * frames  # fully inside by then (relative to the start view)
        speed = (0.1 * view + 1.1 * d) / arrive
        objects.append(SceneObject([make_sprite(rng, d)], start, normal * speed + 0.3 * (c1 - c0) / frames,
                                   rng.uniform(0, 360), rng.uniform(-3, 3), "entering"))
    if rng.uniform() < 0.5:  # a large occluder sweeping across in front of everything
        d = int(rng.uniform(0.35, 0.5) * view)
        heading = rng.choice([-1.0, 1.0])
        start = c0 + np.array([-heading * (0.5 * view + 0.5 * d), rng.uniform(-0.2, 0.2) * view])
        speed = (view + d) / frames * rng.uniform(0.7, 1.0)
        objects.append(SceneObject([make_sprite(rng, d)], start, np.array([heading * speed, 0.0]),
                                   rng.uniform(0, 360), 0.0, "occluder"))

    video = np.stack([_render(scene, objects, t, *_camera(t, cam), size) for t in range(frames)])
    if rng.uniform() < 0.5:
        kind, reference = "first_frame", video[0].copy()
    else:  # another viewpoint near the end of the clip: objects that entered are visible
        t_ref = frames - 1
        centre, zoom = _camera(t_ref, cam)
        centre = centre + rng.uniform(-0.12, 0.12, 2) * size * zoom
        zoom = min(zoom * rng.uniform(1.1, 1.3), 0.5 * min(sh, sw) / (0.5 * size) * 0.95)
        lo, hi = 0.5 * size * zoom, np.array([sw, sh]) - 0.5 * size * zoom
        centre = np.clip(centre, lo, hi)
        kind, reference = "separate", _render(scene, objects, t_ref, centre, zoom, size)
    return {"frames": video, "reference": reference, "reference_kind": kind,
            "objects": [o.kind for o in objects],
            "camera": {"pan_px": float(np.linalg.norm(c1 - c0) / z0), "zoom": [float(z0), float(z1)]}}


# ----------------------------------------------------------------------------- the set

def split_counts(clips: int, test_clips: int | None = None) -> dict[str, int]:
    """Clips per split: 60/20/20 of `clips`, at least one each; with `test_clips`, the test split
    has that many clips on top and train/validation keep their 60/20 share of `clips`."""
    val = max(1, round(clips * SPLIT_FRACTIONS["validation"]))
    test = max(1, round(clips * SPLIT_FRACTIONS["test"]))
    return {"train": clips - val - test, "validation": val, "test": test if test_clips is None else test_clips}


def generate_synthcolor(out: str | os.PathLike, clips: int = 40, frames: int = 16, size: int = 64,
                        seed: int = 0, fps: float = 10.0, progress: bool = True,
                        test_clips: int | None = None) -> Path:
    """Write a SynthColor set under `out` (see the module docstring); returns index.json's path.

    A folder that already holds a finished set with the same parameters is returned at once;
    a finished set with other parameters is an error (choose another --out or delete it)."""
    import cv2
    from tqdm.auto import tqdm

    from ..video.encode import write_video

    params = SynthColorParams(clips, frames, size, seed, fps, test_clips)
    params.check()
    out = Path(out)
    index_path = out / "index.json"
    wanted = {"clips": clips, "frames": frames, "size": size, "seed": seed, "fps": fps, "test_clips": test_clips}
    if index_path.is_file():
        index = read_json(index_path)
        if index.get("format") == FORMAT and index.get("version") == VERSION and index.get("params") == wanted:
            return index_path
        if index.get("format") == FORMAT and isinstance(index.get("version"), int) and index["version"] < VERSION:
            _remove_old_set(out, index)
        else:
            raise PolySpaceError(f"{out}: already holds a SynthColor set made with {index.get('params')}; "
                                 f"choose another --out or delete that folder to regenerate with {wanted}")

    gif = load_gif_frames()
    photos = {name: load_source_image(name) for names in SPLIT_IMAGES.values() for name in names}
    counts = split_counts(clips, test_clips)
    splits: dict[str, list[dict]] = {}
    jobs = [(s, i) for s in SPLITS for i in range(counts[s])]
    for split in SPLITS:
        splits[split] = []
    for split, i in tqdm(jobs, desc="synth-color", disable=not progress):
        split_no = SPLITS.index(split)
        rng = np.random.default_rng([seed, split_no, i])  # one seed per clip
        photo_name = SPLIT_IMAGES[split][i % len(SPLIT_IMAGES[split])]
        clip = make_clip(rng, photos[photo_name], frames, size, gif)
        stem = f"{split}/clip_{i:04d}"
        video_path, ref_path = out / f"{stem}.mp4", out / f"{stem}_ref.png"
        # crf 0: lossless luma/chroma planes (chroma is still 4:2:0); the decoded video is the truth
        write_video(video_path, clip["frames"], fps=fps, codec="h264", bframes=0, options={"crf": "0"})
        ok, png = cv2.imencode(".png", cv2.cvtColor(clip["reference"], cv2.COLOR_RGB2BGR))
        atomic_write_bytes(ref_path, png.tobytes())
        splits[split].append({"id": f"{split}_{i:04d}", "video": f"{stem}.mp4",
                              "reference": f"{stem}_ref.png", "reference_kind": clip["reference_kind"],
                              "source": photo_name, "frames": frames, "height": size, "width": size,
                              "objects": clip["objects"], "camera": clip["camera"]})
    index = {"format": FORMAT, "version": VERSION, "params": wanted,
             "source_images": SPLIT_IMAGES, "animated_gif": GIF_FILE if gif is not None else None,
             "splits": splits}
    atomic_write_json(index_path, index)  # last: its presence marks the set finished
    return index_path


def _remove_old_set(out: Path, index: dict) -> None:
    """Delete what an older generator version wrote at `out` (its index and split folders), saying so."""
    import shutil

    print(f"{out}: SynthColor version {index['version']} (an older photo assignment); "
          f"regenerating as version {VERSION}")
    (out / "index.json").unlink()
    for split in SPLITS:
        if (out / split).is_dir():
            shutil.rmtree(out / split)


# ----------------------------------------------------------------------------- reading

def load_synthcolor_index(root: str | os.PathLike) -> dict:
    """index.json of a finished SynthColor set at `root`."""
    root = Path(root)
    path = root / "index.json"
    if not path.is_file():
        raise PolySpaceError(f"{root}: no SynthColor index.json; run `polyspace synth-color --out {root}` first")
    index = read_json(path)
    if index.get("format") != FORMAT:
        raise PolySpaceError(f"{path}: not a SynthColor index (format={index.get('format')!r})")
    return index


def read_reference(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (grey and RGBA images are converted)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise PolySpaceError(f"{path}: cannot read the image (missing or not an image file)")
    if img.dtype != np.uint8:
        img = (img / (65535.0 if img.dtype == np.uint16 else max(img.max(), 1)) * 255).round().astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=-1)
    code = cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code)


def read_clip(root: str | os.PathLike, entry: dict) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, H, W, 3) uint8 RGB, reference (H, W, 3) uint8 RGB) of one index entry."""
    from ..video.decode import read_frames

    root = Path(root)
    # PyAV: for short clips it is ~10x faster than decord, whose per-file setup dominates
    frames = read_frames(root / entry["video"], np.arange(entry["frames"]), backend="pyav")
    return frames, read_reference(root / entry["reference"])
