"""The `polyspace` console script: one subcommand per stage, thin over the package.

Each study registers its own subcommands from a `commands.py` next to its code, so this
file only wires them together. Handlers import torch & co lazily, so `polyspace --help`
stays fast. A PolySpaceError becomes `error: <one line>` and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import PolySpaceError

# modules that define `register(subparsers)`; each adds its subcommands with set_defaults(func=...)
COMMAND_MODULES = [
    "polyspace_core.report.commands",
    "polyspace_core.datasets.commands",
    "polyspace_core.features.commands",
    "polyspace_core.align.commands",
    "polyspace_core.fusion.commands",
    "polyspace_core.efficiency.commands",
    "polyspace_core.ffn.commands",
    "polyspace_core.colorize.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyspace", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # that study has no commands yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except PolySpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
