"""Something-Something V2 (Goyal et al. 2017)::

    <root>/20bn-something-something-v2/<id>.webm
    <root>/labels/labels.json                 {"Approaching something with your camera": "0", ...}
    <root>/labels/train.json, validation.json [{"id", "label", "template", "placeholders"}, ...]
    <root>/labels/test.json                   [{"id"}, ...]
    <root>/labels/test-answers.csv            optional, "<id>;<class>" lines (released later)

The class of a video is its template with the placeholder brackets removed
("Putting [something] on [something]" -> "Putting something on something"), looked up in
labels.json, whose index strings are the global class ids. test.json has ids only: without
test-answers.csv the test items are UNLABELED (label -1), which a loss refuses instead of
training on a made-up class.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PolySpaceError
from .base import (
    UNLABELED,
    DatasetSplit,
    VideoItem,
    check_split,
    check_split_id,
    finish_split,
    read_json_file,
    read_lines,
)

VIDEO_DIR = "20bn-something-something-v2"


def template_to_class(template: str) -> str:
    """"Putting [something] on [something]" -> "Putting something on something"."""
    return template.replace("[", "").replace("]", "")


def ssv2_classes(root: Path) -> list[str]:
    """Class names in label order from labels/labels.json."""
    path = Path(root) / "labels" / "labels.json"
    table = read_json_file(path, "SSv2 label table", dict)
    by_index: dict[int, str] = {}
    for name, index in table.items():
        if not (isinstance(index, (str, int)) and str(index).isdigit()):
            raise PolySpaceError(f"{path}: class {name!r} has index {index!r}; indices must be "
                                 "integer strings like \"0\"")
        if int(index) in by_index:
            raise PolySpaceError(f"{path}: index {index} is used by {by_index[int(index)]!r} and {name!r}")
        by_index[int(index)] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise PolySpaceError(f"{path}: indices must be 0..{len(by_index) - 1} without gaps")
    return [by_index[i] for i in range(len(by_index))]


def load_ssv2(root: str | Path, split: str, *, split_id: int = 1, seed: int = 0,
              subsample: float | int | None = None, **_unused) -> DatasetSplit:
    """One split of SSv2 (official train / validation / test)."""
    root = Path(root)
    split = check_split(split)
    check_split_id("ssv2", split_id, (1,))
    class_names = ssv2_classes(root)
    index = {name: i for i, name in enumerate(class_names)}
    videos = root / VIDEO_DIR
    path = root / "labels" / f"{split}.json"
    records = read_json_file(path, f"SSv2 {split} annotation", list)
    notes = [f"labels/{split}.json; {len(class_names)} classes from labels/labels.json"]

    answers: dict[str, str] = {}
    if split == "test":
        answers_path = root / "labels" / "test-answers.csv"
        if answers_path.is_file():
            for n, line in enumerate(read_lines(answers_path, "SSv2 test answers"), start=1):
                vid, sep, name = line.partition(";")
                if not sep or name not in index:
                    raise PolySpaceError(f"{answers_path}: line {n} {line!r} is not '<id>;<class>' "
                                         "with a class from labels.json")
                answers[vid] = name
            notes.append("test labels from labels/test-answers.csv")
        else:
            notes.append("test.json has no labels and labels/test-answers.csv is absent: "
                         "test items are unlabeled (label -1)")

    items: list[VideoItem] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or "id" not in rec:
            raise PolySpaceError(f"{path}: record {i} has no id, got {rec!r:.120}")
        vid = str(rec["id"])
        if split == "test":
            if answers and vid not in answers:
                raise PolySpaceError(f"{root / 'labels' / 'test-answers.csv'}: no answer for test id {vid}")
            name = answers.get(vid)
        else:
            if not isinstance(rec.get("template"), str):
                raise PolySpaceError(f"{path}: record {i} (id {vid}) has no template string")
            name = template_to_class(rec["template"])
            if name not in index:
                raise PolySpaceError(f"{path}: record {i} (id {vid}): class {name!r} (from template "
                                     f"{rec['template']!r}) does not exist in labels/labels.json")
        label = index[name] if name is not None else UNLABELED
        items.append(VideoItem(videos / f"{vid}.webm", label, name, vid))
    return finish_split("ssv2", split, items, class_names, root, notes, subsample, seed)
