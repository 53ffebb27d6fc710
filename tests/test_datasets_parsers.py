"""Parsers against small fixtures written in each dataset's official annotation format."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from polyspace_core.datasets import UNLABELED, VideoItem, load_split, stratified_holdout, stratified_subsample
from polyspace_core.errors import PolySpaceError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- HMDB51 official

@pytest.fixture
def hmdb51_root(tmp_path: Path) -> Path:
    """Three classes; split 1 has train (1), test (2) and unused (0) videos, split 2 differs."""
    root = tmp_path / "hmdb51"
    splits = root / "testTrainMulti_7030_splits"
    for cls in ("wave", "brush_hair", "clap"):
        lines1 = [f"{cls}_v{i}.avi {1 if i < 6 else 2 if i < 8 else 0} " for i in range(9)]
        lines2 = [f"{cls}_v{i}.avi {2 if i < 3 else 1} " for i in range(9)]
        write(splits / f"{cls}_test_split1.txt", "\n".join(lines1) + "\n")
        write(splits / f"{cls}_test_split2.txt", "\n".join(lines2) + "\n")
        write(splits / f"{cls}_test_split3.txt", "\n".join(lines1) + "\n")
    return root


def test_hmdb51_official_ids_classes_and_paths(hmdb51_root: Path):
    test = load_split("hmdb51", hmdb51_root, "test")
    assert test.class_names == ["brush_hair", "clap", "wave"]  # sorted, underscores kept
    assert len(test) == 6  # ids 2 only; ids 0 are unused
    assert {it.video_id for it in test.items if it.class_name == "wave"} == {"wave_v6", "wave_v7"}
    for it in test.items:
        assert it.label == test.class_names.index(it.class_name)
        assert it.path == hmdb51_root / it.class_name / f"{it.video_id}.avi"

    train = load_split("hmdb51", hmdb51_root, "train", val_fraction=0.0)
    assert len(train) == 18 and Counter(train.labels) == {0: 6, 1: 6, 2: 6}
    assert not {it.video_id for it in train.items} & {"wave_v8", "clap_v8"}  # 0 = unused

    split2 = load_split("hmdb51", hmdb51_root, "test", split_id=2)
    assert sorted(it.video_id for it in split2.items if it.class_name == "clap") == \
        ["clap_v0", "clap_v1", "clap_v2"]


def test_hmdb51_validation_is_stratified_holdout_of_train(hmdb51_root: Path):
    train = load_split("hmdb51", hmdb51_root, "train", val_fraction=0.34, seed=3)
    val = load_split("hmdb51", hmdb51_root, "validation", val_fraction=0.34, seed=3)
    full = load_split("hmdb51", hmdb51_root, "train", val_fraction=0.0)
    assert Counter(val.labels) == {0: 2, 1: 2, 2: 2}  # round(0.34 * 6) per class
    assert {it.path for it in train.items} | {it.path for it in val.items} == {it.path for it in full.items}
    assert not {it.path for it in train.items} & {it.path for it in val.items}
    assert any("hold" in n or "stratified" in n for n in val.notes)
    # the hold-out depends on the seed, and repeats for the same seed
    again = load_split("hmdb51", hmdb51_root, "validation", val_fraction=0.34, seed=3)
    other = load_split("hmdb51", hmdb51_root, "validation", val_fraction=0.34, seed=4)
    assert again.items == val.items and other.items != val.items


def test_hmdb51_errors_name_the_file(hmdb51_root: Path, tmp_path: Path):
    bad = hmdb51_root / "testTrainMulti_7030_splits" / "clap_test_split1.txt"
    bad.write_text("clap_v0.avi 7\n")
    with pytest.raises(PolySpaceError, match="clap_test_split1.txt: line 1"):
        load_split("hmdb51", hmdb51_root, "train")
    (tmp_path / "no_splits").mkdir()
    with pytest.raises(PolySpaceError, match="testTrainMulti_7030_splits: HMDB51 split folder not found"):
        load_split("hmdb51", tmp_path / "no_splits", "train")
    with pytest.raises(PolySpaceError, match="split_id=4"):
        load_split("hmdb51", hmdb51_root, "test", split_id=4)
    with pytest.raises(PolySpaceError, match="val_fraction=0"):
        load_split("hmdb51", hmdb51_root, "validation", val_fraction=0.0)


# ----------------------------------------------------------------------------- HMDB51 split folders

@pytest.fixture
def hmdb51_csv_root(tmp_path: Path) -> Path:
    root = tmp_path / "hmdb51_csv"
    write(root / "train" / "metadata.csv", "video_id,file_name,label,extra\n"
          "t0,walk_a.mp4,walk,x\nt1,run_a.mp4,run,x\nt2,walk_b.mp4,walk,x\n")
    write(root / "validation" / "metadata.csv", "video_id,file_name,label,extra\n"
          "v0,run_b.mp4,run,y\n")
    # "smoke" exists only in test: it must still get the same global id everywhere
    write(root / "test" / "metadata.csv", "video_id,file_name,label,extra\n"
          "s0,smoke_a.mp4,smoke,z\ns1,walk_c.mp4,walk,z\n")
    return root


def test_hmdb51_csv_global_class_ids_from_union(hmdb51_csv_root: Path):
    splits = {s: load_split("hmdb51-csv", hmdb51_csv_root, s) for s in ("train", "validation", "test")}
    for split in splits.values():
        assert split.class_names == ["run", "smoke", "walk"]
    assert splits["train"].labels == [2, 0, 2]
    assert splits["validation"].labels == [0]
    assert splits["test"].labels == [1, 2]
    item = splits["test"].items[0]
    assert item == VideoItem(hmdb51_csv_root / "test" / "smoke_a.mp4", 1, "smoke", "s0")


def test_hmdb51_csv_errors(hmdb51_csv_root: Path):
    write(hmdb51_csv_root / "validation" / "metadata.csv", "video_id,file,label\nv0,a.mp4,run\n")
    with pytest.raises(PolySpaceError, match=r"validation/metadata.csv: missing column\(s\) file_name"):
        load_split("hmdb51-csv", hmdb51_csv_root, "train")
    (hmdb51_csv_root / "validation" / "metadata.csv").unlink()
    # train still loads (class union over the splits present) ...
    assert len(load_split("hmdb51-csv", hmdb51_csv_root, "train")) == 3
    # ... but asking for the missing split names its file
    with pytest.raises(PolySpaceError, match="validation/metadata.csv: HMDB51 metadata.csv not found"):
        load_split("hmdb51-csv", hmdb51_csv_root, "validation")


# ----------------------------------------------------------------------------- UCF101

@pytest.fixture
def ucf101_root(tmp_path: Path) -> Path:
    root = tmp_path / "ucf101"
    lists = root / "ucfTrainTestlist"
    classes = ["ApplyEyeMakeup", "Archery", "BabyCrawling"]
    write(lists / "classInd.txt", "".join(f"{i + 1} {c}\r\n" for i, c in enumerate(classes)))
    train, test = [], []
    for i, c in enumerate(classes):
        for g in range(1, 6):
            for clip in (1, 2):
                rel = f"{c}/v_{c}_g{g:02d}_c{clip:02d}.avi"
                (test.append(rel) if g == 1 else train.append(f"{rel} {i + 1}"))
    write(lists / "trainlist01.txt", "\r\n".join(train) + "\r\n")
    write(lists / "testlist01.txt", "\r\n".join(test) + "\r\n")  # no labels, CRLF like the release
    return root


def test_ucf101_labels_from_classind_and_folders(ucf101_root: Path):
    test = load_split("ucf101", ucf101_root, "test")
    assert test.class_names == ["ApplyEyeMakeup", "Archery", "BabyCrawling"]
    assert len(test) == 6 and Counter(test.labels) == {0: 2, 1: 2, 2: 2}
    for it in test.items:
        assert it.path.parent.name == test.class_names[it.label]
        assert it.path == ucf101_root / it.class_name / f"{it.video_id}.avi"
    train = load_split("ucf101", ucf101_root, "train", val_fraction=0.0)
    assert len(train) == 24 and train.labels[:8] == [0] * 8


def test_ucf101_validation_holds_out_whole_groups(ucf101_root: Path):
    val = load_split("ucf101", ucf101_root, "validation", val_fraction=0.25, seed=1)
    train = load_split("ucf101", ucf101_root, "train", val_fraction=0.25, seed=1)
    group = lambda it: (it.label, it.video_id.split("_g")[1][:2])  # noqa: E731
    assert Counter(val.labels) == {0: 2, 1: 2, 2: 2}  # one group (2 clips) of 4 per class
    assert not {group(it) for it in val.items} & {group(it) for it in train.items}


def test_ucf101_errors(ucf101_root: Path):
    lists = ucf101_root / "ucfTrainTestlist"
    write(lists / "trainlist02.txt", "Archery/v_Archery_g02_c01.avi 5\r\n")
    with pytest.raises(PolySpaceError, match="trainlist02.txt: line 1: label 5 does not exist"):
        load_split("ucf101", ucf101_root, "train", split_id=2)
    write(lists / "trainlist02.txt", "Archery/v_Archery_g02_c01.avi 1\r\n")
    with pytest.raises(PolySpaceError, match="disagrees with the folder Archery"):
        load_split("ucf101", ucf101_root, "train", split_id=2)
    write(lists / "testlist02.txt", "Juggling/v_Juggling_g01_c01.avi\r\n")
    with pytest.raises(PolySpaceError, match="testlist02.txt: line 1: class folder of 'Juggling"):
        load_split("ucf101", ucf101_root, "test", split_id=2)
    with pytest.raises(PolySpaceError, match="testlist03.txt: UCF101 test list not found"):
        load_split("ucf101", ucf101_root, "test", split_id=3)


# ----------------------------------------------------------------------------- Diving48

@pytest.fixture
def diving48_root(tmp_path: Path) -> Path:
    root = tmp_path / "diving48"
    vocab = [["Back", "15som", "05Twis", "FREE"], ["Forward", "25som", "NoTwis", "PIKE"],
             ["Inward", "35som", "NoTwis", "TUCK"]]
    write(root / "Diving48_vocab.json", json.dumps(vocab))
    train = [{"vid_name": f"_abc{i:03d}_{i:05d}", "label": i % 3, "start_frame": 10 * i,
              "end_frame": 10 * i + 40} for i in range(12)]
    test = [{"vid_name": "-xyz_00001", "label": 2, "start_frame": 0, "end_frame": 55}]
    write(root / "Diving48_V2_train.json", json.dumps(train))
    write(root / "Diving48_V2_test.json", json.dumps(test))
    return root


def test_diving48_vocab_labels_and_frames(diving48_root: Path):
    test = load_split("diving48", diving48_root, "test")
    assert test.class_names[0] == "Back_15som_05Twis_FREE"
    (item,) = test.items
    assert item == VideoItem(diving48_root / "rgb" / "-xyz_00001.mp4", 2, "Inward_35som_NoTwis_TUCK",
                             "-xyz_00001", 0, 55)
    train = load_split("diving48", diving48_root, "train", val_fraction=0.25, seed=0)
    val = load_split("diving48", diving48_root, "validation", val_fraction=0.25, seed=0)
    assert Counter(val.labels) == {0: 1, 1: 1, 2: 1} and len(train) == 9
    assert train.items[0].start_frame is not None and train.items[0].end_frame - train.items[0].start_frame == 40


def test_diving48_errors(diving48_root: Path):
    write(diving48_root / "Diving48_V2_test.json", json.dumps([{"vid_name": "a", "label": 3}]))
    with pytest.raises(PolySpaceError, match="record 0 \\(a\\): label 3 does not exist in Diving48_vocab.json"):
        load_split("diving48", diving48_root, "test")
    write(diving48_root / "Diving48_V2_test.json", "[{\"vid_name\": ")
    with pytest.raises(PolySpaceError, match="Diving48_V2_test.json: Diving48 test annotation is not valid JSON"):
        load_split("diving48", diving48_root, "test")


# ----------------------------------------------------------------------------- Something-Something V2

@pytest.fixture
def ssv2_root(tmp_path: Path) -> Path:
    root = tmp_path / "ssv2"
    labels = {"Approaching something with your camera": "0", "Putting something on something": "1",
              "Something falling like a rock": "2"}
    write(root / "labels" / "labels.json", json.dumps(labels))
    train = [{"id": "78687", "label": "putting a cup on a table", "template": "Putting [something] on [something]",
              "placeholders": ["a cup", "a table"]},
             {"id": "42326", "label": "a pen falling like a rock", "template": "[Something] falling like a rock",
              "placeholders": ["a pen"]},
             {"id": "100", "label": "approaching a door with your camera",
              "template": "Approaching [something] with your camera", "placeholders": ["a door"]}]
    write(root / "labels" / "train.json", json.dumps(train))
    write(root / "labels" / "validation.json", json.dumps(train[:1]))
    write(root / "labels" / "test.json", json.dumps([{"id": "1420"}, {"id": "77"}]))
    return root


def test_ssv2_templates_with_brackets_map_to_label_table(ssv2_root: Path):
    train = load_split("ssv2", ssv2_root, "train")
    assert train.labels == [1, 2, 0]
    assert train.items[1].class_name == "Something falling like a rock"
    assert train.items[0].path == ssv2_root / "20bn-something-something-v2" / "78687.webm"
    assert load_split("ssv2", ssv2_root, "validation").labels == [1]


def test_ssv2_test_is_unlabeled_unless_answers_exist(ssv2_root: Path):
    test = load_split("ssv2", ssv2_root, "test")
    assert test.labels == [UNLABELED, UNLABELED] and test.items[0].class_name is None
    assert any("unlabeled" in n for n in test.notes)
    write(ssv2_root / "labels" / "test-answers.csv", "1420;Something falling like a rock\n77;"
          "Putting something on something\n")
    assert load_split("ssv2", ssv2_root, "test").labels == [2, 1]


def test_ssv2_errors(ssv2_root: Path):
    bad = [{"id": "5", "label": "x", "template": "Spinning [something] around", "placeholders": []}]
    write(ssv2_root / "labels" / "validation.json", json.dumps(bad))
    with pytest.raises(PolySpaceError, match="validation.json: record 0 \\(id 5\\): class 'Spinning something around'"):
        load_split("ssv2", ssv2_root, "validation")
    write(ssv2_root / "labels" / "labels.json", json.dumps({"a": "0", "b": "2"}))
    with pytest.raises(PolySpaceError, match="labels.json: indices must be 0..1 without gaps"):
        load_split("ssv2", ssv2_root, "train")
    (ssv2_root / "labels" / "train.json").unlink()
    write(ssv2_root / "labels" / "labels.json", json.dumps({"a": "0"}))
    with pytest.raises(PolySpaceError, match="train.json: SSv2 train annotation not found"):
        load_split("ssv2", ssv2_root, "train")


# ----------------------------------------------------------------------------- cutting splits

def _items(sizes: dict[int, int]) -> list[VideoItem]:
    # sorted by label, as a label-sorted list would be: "first N%" would keep only class 0
    return [VideoItem(Path(f"/v/{c}_{i}.mp4"), c, str(c), f"{c}_{i}") for c in sorted(sizes)
            for i in range(sizes[c])]


def test_stratified_subsample_fraction_and_count():
    items = _items({0: 40, 1: 20, 2: 10})
    half = stratified_subsample(items, 0.5, seed=0)
    assert Counter(it.label for it in half) == {0: 20, 1: 10, 2: 5}
    chosen0 = sorted(int(it.video_id.split("_")[1]) for it in half if it.label == 0)
    assert chosen0 != list(range(20))  # random within the class, not its first half
    assert [items.index(it) for it in half] == sorted(items.index(it) for it in half)  # order kept
    seven = stratified_subsample(items, 7, seed=0)
    assert len(seven) == 7 and Counter(it.label for it in seven) == {0: 4, 1: 2, 2: 1}
    assert stratified_subsample(items, 0.5, seed=0) == half
    assert stratified_subsample(items, 0.5, seed=1) != half
    tiny = stratified_subsample(items, 0.01, seed=0)
    assert Counter(it.label for it in tiny) == {0: 1, 1: 1, 2: 1}  # every class keeps one
    for bad in (0.0, 1.5, 0, -3, "half"):
        with pytest.raises(PolySpaceError, match="subsample"):
            stratified_subsample(items, bad, seed=0)


def test_load_split_subsample_is_stratified(hmdb51_root: Path):
    sub = load_split("hmdb51", hmdb51_root, "train", val_fraction=0.0, subsample=0.5, seed=2)
    assert Counter(sub.labels) == {0: 3, 1: 3, 2: 3}
    assert any("subsample" in n for n in sub.notes)


def test_stratified_holdout_keeps_one_each_side():
    kept, held = stratified_holdout(_items({0: 2, 1: 1, 2: 30}), 0.1, seed=0)
    assert Counter(it.label for it in held) == {0: 1, 2: 3}
    assert Counter(it.label for it in kept) == {0: 1, 1: 1, 2: 27}


def test_load_split_rejects_unknown_dataset_split_and_root(tmp_path: Path, hmdb51_root: Path):
    with pytest.raises(PolySpaceError, match="dataset='kinetics': unknown"):
        load_split("kinetics", tmp_path, "train")
    with pytest.raises(PolySpaceError, match="split='dev': unknown"):
        load_split("hmdb51", hmdb51_root, "dev")
    with pytest.raises(PolySpaceError, match="dataset root not found"):
        load_split("ucf101", tmp_path / "nope", "train")
    with pytest.raises(PolySpaceError, match="synthmotion.json: not found"):
        load_split("synthmotion", tmp_path, "train")
