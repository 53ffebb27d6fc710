"""The `polyspace` console script builds every subcommand without importing torch, so `--help`
and argument errors answer at once."""

import subprocess
import sys
from pathlib import Path

import torch


def test_building_the_parser_imports_no_torch():
    code = ("import sys; from polyspace_core.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('torch', 'torchvision', 'transformers', 'cv2') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, f"building the CLI imported {out.stdout.strip()}"


def test_every_study_registers_its_subcommands():
    from polyspace_core.cli import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    assert {"synth", "synth-color", "data-info", "featurize", "train-converter", "train-fusion", "eval",
            "train-ffn", "colorize", "train-colorize", "report", "flops"} <= commands


# --------------------------------------------------------------------------------------------
# the error boundary: one line on the terminal, the traceback in a log (or with --debug)


class _MissingVideos(torch.utils.data.Dataset):
    """A dataset whose videos are gone: the worker raises the one-line error the readers raise."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        from polyspace_core.errors import PolySpaceError

        raise PolySpaceError(f"data/ssv2/{index}.webm: file not found; check --video_dir")


def _run(monkeypatch, tmp_path, handler, *extra):
    import polyspace_core.cli as cli
    import polyspace_core.datasets.commands as commands

    monkeypatch.setattr(commands, "_data_info", handler)  # registered when main builds the parser
    monkeypatch.setattr(cli, "_log_dir", lambda: tmp_path / "logs")
    return cli.main(["data-info", "--dataset", "ssv2", "--root", str(tmp_path), *extra])


def test_an_unexpected_error_is_one_line_and_a_saved_traceback(monkeypatch, tmp_path, capsys):
    def broken(args):
        raise ValueError("shapes (3, 4) and (5,) do not match\nsecond line of detail")

    assert _run(monkeypatch, tmp_path, broken) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("error: data-info: ValueError: shapes (3, 4) and (5,) do not match; the traceback is in ")
    log = Path(err.split("the traceback is in ")[1].split(" (rerun")[0])
    assert log.parent == tmp_path / "logs"
    text = log.read_text()
    assert "polyspace data-info --dataset ssv2" in text and "Traceback (most recent call last)" in text
    assert "second line of detail" in text and "in broken" in text


def test_debug_prints_the_traceback(monkeypatch, tmp_path, capsys):
    def broken(args):
        raise KeyError("missing")

    assert _run(monkeypatch, tmp_path, broken, "--debug") == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("POLYSPACE_DEBUG", "1")
    assert _run(monkeypatch, tmp_path, broken) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_an_error_in_a_dataloader_worker_is_its_own_one_line(monkeypatch, tmp_path, capsys):
    from torch.utils.data import DataLoader

    def reads_videos(args):
        for _ in DataLoader(_MissingVideos(), batch_size=2, num_workers=1):
            pass

    assert _run(monkeypatch, tmp_path, reads_videos) == 2
    err = capsys.readouterr().err
    assert err == "error: data/ssv2/0.webm: file not found; check --video_dir\n", err
