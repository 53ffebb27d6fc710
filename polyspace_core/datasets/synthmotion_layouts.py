"""Write SynthMotion to disk as real video files in any official dataset layout.

`generate_synthmotion(out, layout, ...)` renders every clip (synthmotion.py), encodes it with
`video.write_video` (H.264 .mp4, MPEG-4 .avi or VP9 .webm, as the layout's real dataset uses)
and writes the layout's annotation files, so the matching parser in this package reads it back
like the real dataset. Each clip is seeded by (seed, class, clip), so a set is reproducible
and a clip does not change when more classes or clips are asked for.

Caching: files are written atomically; a finished set is marked by `synthmotion.json` holding
its parameters, and a second call with the same parameters returns at once. An interrupted
run resumes (the clips already on disk are complete, because writes are atomic).

Splits are made per class: 20% test (`test_fraction`; the built-in demo asks for more, so its
test split has enough clips for tight intervals), 10% validation where the layout has a
validation split (hmdb51-csv, ssv2), the rest train. Layouts without one get their validation split from the
parser's seeded hold-out, as the real datasets do.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PolySpaceError
from ..io import atomic_write_json, atomic_write_text, read_json
from .synthmotion import CLASS_NAMES, check_clip_size, make_clip, select_classes, synthmotion_class

LAYOUTS = ("hmdb51", "hmdb51-csv", "ucf101", "diving48", "ssv2")
# 2: zigzag quarters start on a random side; H.264 without the macroblock tree (repeatable)
GENERATOR_VERSION = 2
MARKER = "synthmotion.json"
PARTIAL = ".synthmotion.partial.json"
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
FPS = 25
# what decides the content of a set; a marker with other values is another set
_KEYS = ("version", "layout", "classes", "clips_per_class", "frames", "size", "seed", "fps", "test_fraction")


@dataclass(frozen=True)
class PlannedClip:
    """One clip to write: class (name and index in SYNTHMOTION_CLASSES), clip number, split
    (for official split 1 / the split folders), its file relative to the root and its id."""

    class_name: str
    class_index: int
    clip: int
    split: str
    file: str
    video_id: str


def _split_counts(n: int, with_validation: bool, test_fraction: float = TEST_FRACTION) -> tuple[int, int]:
    """(test, validation) clips of a class with n clips; at least one test clip from 2 clips on."""
    n_test = max(1, round(test_fraction * n)) if n >= 2 else 0
    n_val = 0
    if with_validation and n - n_test >= 2:
        n_val = max(1, round(VAL_FRACTION * n))
    return n_test, n_val


def _assign_splits(class_index: int, n: int, seed: int, with_validation: bool, salt: int = 0,
                   test_fraction: float = TEST_FRACTION) -> list[str]:
    """Split of each clip of one class: a seeded shuffle, then test / validation / train."""
    n_test, n_val = _split_counts(n, with_validation, test_fraction)
    order = np.random.default_rng([seed, class_index, 1_000_003 + salt]).permutation(n)
    split = ["train"] * n
    for rank, clip in enumerate(order):
        split[clip] = "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"
    return split


def plan_clips(layout: str, classes: Sequence[str], clips_per_class: int, seed: int,
               test_fraction: float = TEST_FRACTION) -> list[PlannedClip]:
    """Every clip of the set with its split, file name and id, in class order."""
    with_validation = layout in ("hmdb51-csv", "ssv2")
    total = len(classes) * clips_per_class
    # dataset-wide ids (diving48, ssv2) are a seeded permutation, so an id does not give the class away
    uid = np.random.default_rng([seed, 31337]).permutation(total)
    plan = []
    for ci, name in enumerate(classes):
        class_index = CLASS_NAMES.index(name)
        splits = _assign_splits(class_index, clips_per_class, seed, with_validation, test_fraction=test_fraction)
        for clip in range(clips_per_class):
            number = int(uid[ci * clips_per_class + clip])
            if layout == "hmdb51":
                stem = f"synthmotion_{name}_{clip:04d}"
                file = f"{name}/{stem}.avi"
            elif layout == "hmdb51-csv":
                stem = f"{name}_synthmotion_{clip:04d}"
                file = f"{splits[clip]}/{stem}.mp4"
            elif layout == "ucf101":
                stem = f"v_{name}_g{clip // 4 + 1:02d}_c{clip % 4 + 1:02d}"
                file = f"{name}/{stem}.avi"
            elif layout == "diving48":
                stem = f"synthmotion_{number:05d}"
                file = f"rgb/{stem}.mp4"
            else:  # ssv2
                stem = str(number + 1)
                file = f"20bn-something-something-v2/{stem}.webm"
            plan.append(PlannedClip(name, class_index, clip, splits[clip], file, stem))
    return plan


def _write_clip(job: tuple[str, PlannedClip, int, int, int, int]) -> str:
    """Render and encode one clip unless it is already on disk (writes are atomic)."""
    from ..video import write_video

    root, item, frames, size, seed, fps = job
    path = Path(root) / item.file
    if not path.is_file():
        clip, _, _ = make_clip(item.class_name, frames, size, (seed, item.class_index, item.clip))
        write_video(path, clip, fps=fps)
    return item.file


# ----------------------------------------------------------------------------- annotation writers

def _write_hmdb51(root: Path, plan: list[PlannedClip], classes: list[str], params: dict) -> None:
    split_dir = root / "testTrainMulti_7030_splits"
    for split_id in (1, 2, 3):
        for name in classes:
            members = [p for p in plan if p.class_name == name]
            if split_id == 1:
                splits = [p.split for p in members]
            else:  # the other official splits: other seeded shuffles of the same clips
                splits = _assign_splits(members[0].class_index, len(members), params["seed"],
                                        False, salt=split_id, test_fraction=params["test_fraction"])
            code = {"train": 1, "validation": 1, "test": 2}
            # "<video>.avi <id> " with a trailing space, as in the official files
            lines = [f"{Path(p.file).name} {code[s]} " for p, s in zip(members, splits)]
            atomic_write_text(split_dir / f"{name}_test_split{split_id}.txt", "\n".join(lines) + "\n")


def _write_hmdb51_csv(root: Path, plan: list[PlannedClip], classes: list[str], params: dict) -> None:
    for split in ("train", "validation", "test"):
        rows = ["video_id,file_name,label,num_frames"]
        rows += [f"{p.video_id},{Path(p.file).name},{p.class_name},{params['frames']}"
                 for p in plan if p.split == split]
        atomic_write_text(root / split / "metadata.csv", "\n".join(rows) + "\n")


def _write_ucf101(root: Path, plan: list[PlannedClip], classes: list[str], params: dict) -> None:
    lists = root / "ucfTrainTestlist"
    crlf = "\r\n"  # the official lists have Windows line endings
    atomic_write_text(lists / "classInd.txt",
                      crlf.join(f"{i + 1} {name}" for i, name in enumerate(classes)) + crlf)
    for split_id in (1, 2, 3):
        train, test = [], []
        for ci, name in enumerate(classes):
            members = [p for p in plan if p.class_name == name]
            splits = ([p.split for p in members] if split_id == 1 else
                      _assign_splits(members[0].class_index, len(members), params["seed"], False,
                                     salt=split_id, test_fraction=params["test_fraction"]))
            for p, s in zip(members, splits):
                (test.append(p.file) if s == "test" else train.append(f"{p.file} {ci + 1}"))
        atomic_write_text(lists / f"trainlist{split_id:02d}.txt", crlf.join(train) + crlf)
        atomic_write_text(lists / f"testlist{split_id:02d}.txt", crlf.join(test) + crlf)


def _write_diving48(root: Path, plan: list[PlannedClip], classes: list[str], params: dict) -> None:
    atomic_write_json(root / "Diving48_vocab.json", [[name] for name in classes])
    index = {name: i for i, name in enumerate(classes)}
    for kind in ("train", "test"):
        records = [{"vid_name": p.video_id, "label": index[p.class_name], "start_frame": 0,
                    "end_frame": params["frames"]}
                   for p in plan if (p.split == "test") == (kind == "test")]
        atomic_write_json(root / f"Diving48_V2_{kind}.json", records)


def _write_ssv2(root: Path, plan: list[PlannedClip], classes: list[str], params: dict) -> None:
    from .synthmotion import sample_look

    labels = root / "labels"
    templates = {name: synthmotion_class(name).template for name in classes}
    table = {templates[name].replace("[", "").replace("]", ""): str(i) for i, name in enumerate(classes)}
    atomic_write_json(labels / "labels.json", table)
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    answers = []
    for p in plan:
        # placeholders name the shapes actually drawn (the look stream is cheap to replay)
        look = sample_look(np.random.default_rng([params["seed"], p.class_index, p.clip, 0]),
                           params["size"])
        template = templates[p.class_name]
        placeholders = look.shapes[:template.lower().count("[something]")]
        label = template
        for shape in placeholders:  # fill the placeholders left to right
            label = re.sub(r"\[[Ss]omething\]", shape, label, count=1)
        if p.split == "test":
            by_split["test"].append({"id": p.video_id})
            answers.append(f"{p.video_id};{template.replace('[', '').replace(']', '')}")
        else:
            by_split[p.split].append({"id": p.video_id, "label": label[0].lower() + label[1:],
                                      "template": template, "placeholders": placeholders})
    for split, records in by_split.items():
        atomic_write_json(labels / f"{split}.json", records)
    atomic_write_text(labels / "test-answers.csv", "\n".join(answers) + "\n")


_WRITERS = {"hmdb51": _write_hmdb51, "hmdb51-csv": _write_hmdb51_csv, "ucf101": _write_ucf101,
            "diving48": _write_diving48, "ssv2": _write_ssv2}


# ----------------------------------------------------------------------------- the generator

def read_synthmotion_marker(root: str | Path) -> dict:
    """The parameters of a finished SynthMotion set (its synthmotion.json)."""
    path = Path(root) / MARKER
    if not path.is_file():
        raise PolySpaceError(f"{path}: not found; {root} is not a finished SynthMotion set "
                             "(generate it with `polyspace synth --out DIR`)")
    marker = read_json(path)
    if not isinstance(marker, dict) or marker.get("generator") != "synthmotion" or "layout" not in marker:
        raise PolySpaceError(f"{path}: not a SynthMotion marker; regenerate the set")
    return marker


def generate_synthmotion(out: str | Path, layout: str = "hmdb51-csv", classes: int | Sequence[str] = 12,
                         clips_per_class: int = 100, frames: int = 16, size: int = 64, seed: int = 0,
                         workers: int = 0, *, fps: int = FPS, test_fraction: float = TEST_FRACTION,
                         progress: bool = True) -> dict:
    """Generate a SynthMotion set in `layout` under `out` (or return at once if it is there).

    classes: how many of SYNTHMOTION_CLASSES (the first N, reversal pairs together) or their
    names. clips_per_class: videos per class. frames, size: clip length and square frame size
    in pixels (even). seed: everything is derived from it. test_fraction: share of each
    class's clips in the test split (0 < f < 1; validation stays 10%). workers: processes for rendering and
    encoding (0 = in this process). Returns the set's marker: parameters, split counts, root
    and the parser name (`dataset`) to load it with `load_split(dataset, root, split)`.
    """
    from tqdm.auto import tqdm

    if layout not in LAYOUTS:
        raise PolySpaceError(f"layout={layout!r}: unknown; use one of {', '.join(LAYOUTS)}")
    names = select_classes(classes)
    check_clip_size(frames, size)
    for key, value, low in (("clips_per_class", clips_per_class, 1), ("seed", seed, 0),
                            ("workers", workers, 0), ("fps", fps, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise PolySpaceError(f"{key}={value!r}: must be an integer >= {low}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 0.8:
        raise PolySpaceError(f"test_fraction={test_fraction!r}: must be a number between 0 and 0.8")
    root = Path(out).expanduser()
    params = {"version": GENERATOR_VERSION, "layout": layout, "classes": names,
              "clips_per_class": int(clips_per_class), "frames": int(frames), "size": int(size),
              "seed": int(seed), "fps": int(fps), "test_fraction": float(test_fraction)}

    marker_path = root / MARKER
    if marker_path.is_file():
        marker = read_synthmotion_marker(root)
        marker.setdefault("test_fraction", TEST_FRACTION)  # sets made before the parameter existed
        if {k: marker.get(k) for k in _KEYS} == params:
            return {**marker, "root": os.fspath(root), "cached": True}
        if marker.get("version") != GENERATOR_VERSION:
            raise PolySpaceError(f"{root}: holds a SynthMotion set made by generator version "
                                 f"{marker.get('version')}, this is version {GENERATOR_VERSION} (its clips "
                                 "differ); delete the folder to regenerate it")
        differing = [k for k in _KEYS if marker.get(k) != params[k]]
        raise PolySpaceError(f"{root}: holds a SynthMotion set with other parameters "
                             f"({', '.join(differing)}); choose another --out or delete it")
    partial_path = root / PARTIAL
    if partial_path.is_file():  # an interrupted run: resume only if it was this same set
        previous = read_json(partial_path)
        previous.setdefault("test_fraction", TEST_FRACTION)
        if previous != params:
            raise PolySpaceError(f"{root}: holds an unfinished SynthMotion set with other parameters; "
                                 "choose another --out or delete it")
    elif root.exists() and any(root.iterdir()):
        raise PolySpaceError(f"{root}: exists and is not empty; choose an empty --out for SynthMotion")
    atomic_write_json(partial_path, params)

    plan = plan_clips(layout, names, int(clips_per_class), int(seed), float(test_fraction))
    jobs = [(os.fspath(root), p, int(frames), int(size), int(seed), int(fps)) for p in plan]
    bar = tqdm(total=len(jobs), desc=f"SynthMotion {layout}", unit="clip", disable=not progress)
    if workers > 0:
        # spawn, not fork: a forked child can hang on OpenCV/OpenMP thread pools the parent started
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for _ in pool.map(_write_clip, jobs, chunksize=8):
                bar.update()
    else:
        for job in jobs:
            _write_clip(job)
            bar.update()
    bar.close()

    _WRITERS[layout](root, plan, names, params)
    counts = {s: sum(p.split == s for p in plan) for s in ("train", "validation", "test")}
    marker = {"generator": "synthmotion", **params, "dataset": layout, "videos": len(plan),
              "split_counts": counts,
              "split_rule": (f"per class: {test_fraction:.0%} test, "
                             + (f"{VAL_FRACTION:.0%} validation, " if layout in ("hmdb51-csv", "ssv2")
                                else "validation held out of train by the parser, ")
                             + "rest train (seeded shuffle)")}
    atomic_write_json(marker_path, marker)
    partial_path.unlink(missing_ok=True)
    return {**marker, "root": os.fspath(root), "cached": False}
