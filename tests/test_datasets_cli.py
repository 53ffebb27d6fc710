"""`polyspace synth` and `polyspace data-info` through polyspace_core.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

from polyspace_core.cli import main


def test_synth_then_data_info(tmp_path: Path, capsys):
    out = tmp_path / "ucf"
    args = ["synth", "--layout", "ucf101", "--out", str(out), "--classes", "3", "--clips-per-class", "3",
            "--frames", "8", "--size", "32", "--seed", "4", "--workers", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "9 videos, 3 classes" in text and "test 3" in text
    assert main(args) == 0 and "already there" in capsys.readouterr().out

    assert main(["data-info", "--dataset", "ucf101", "--root", str(out), "--split", "test"]) == 0
    text = capsys.readouterr().out
    assert "[test] 3 videos, 0 missing files" in text
    for label, name in enumerate(["move_left", "move_right", "rotate_cw"]):
        assert f"{label:>5}      1  {name}" in text
    assert "first items:" in text and "v_move_left_g01_c0" in text

    assert main(["data-info", "--dataset", "synthmotion", "--root", str(out), "--json", "--show", "2"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "ucf101" and info["class_names"] == ["move_left", "move_right", "rotate_cw"]
    assert sum(s["videos"] for s in info["splits"].values()) == 9
    first = info["splits"]["train"]["first_items"]
    assert len(first) == 2 and all(Path(i["path"]).parent.name == i["class_name"] for i in first)
    assert info["splits"]["train"]["class_counts"]["move_left"] + \
        info["splits"]["validation"]["class_counts"]["move_left"] == 2


def test_data_info_errors_are_one_line_with_exit_2(tmp_path: Path, capsys):
    (tmp_path / "ucfTrainTestlist").mkdir()
    assert main(["data-info", "--dataset", "ucf101", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "ucfTrainTestlist/classInd.txt" in err and "\n" not in err

    (tmp_path / "Diving48_vocab.json").write_text('[["Back", "15som"]')  # truncated JSON
    assert main(["data-info", "--dataset", "diving48", "--root", str(tmp_path), "--split", "test"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Diving48_vocab.json: Diving48 vocabulary is not valid JSON" in err and "\n" not in err

    assert main(["data-info", "--dataset", "hmdb51", "--root", str(tmp_path / "absent")]) == 2
    assert "dataset root not found" in capsys.readouterr().err


def test_data_info_counts_missing_videos(tmp_path: Path, capsys):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "labels.json").write_text(json.dumps({"Holding something": "0"}))
    (tmp_path / "labels" / "validation.json").write_text(json.dumps(
        [{"id": "7", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["a cup"]}]))
    assert main(["data-info", "--dataset", "ssv2", "--root", str(tmp_path), "--split", "validation"]) == 0
    text = capsys.readouterr().out
    assert "[validation] 1 videos, 1 missing files" in text and "7.webm" in text
