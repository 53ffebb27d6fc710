"""The `polyspace` console script builds every subcommand without importing torch, so `--help`
and argument errors answer at once."""

import subprocess
import sys


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
