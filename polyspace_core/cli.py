"""The `polyspace` console script: one subcommand per stage, thin over the package.

Each study registers its own subcommands from a `commands.py` next to its code, so this
file only wires them together. Handlers import torch & co lazily, so `polyspace --help`
stays fast.

This is also the one error boundary: a PolySpaceError becomes `error: <one line>` and exit
status 2; any other exception becomes `error: <command>: <type>: <first line>; the traceback is
in <log>` and exit status 1, its full traceback written to runs/logs/ (and printed only with
`--debug` or POLYSPACE_DEBUG=1). No traceback reaches the terminal otherwise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import os
import sys
import tempfile
import traceback
from pathlib import Path

from .errors import PolySpaceError

DEBUG_ENV = "POLYSPACE_DEBUG"
DEBUG_FLAG = "--debug"

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


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in the boundary's shape: one line (not the usage block), exit 2.
    Subcommand parsers are made with the same class (add_subparsers uses type(self))."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="polyspace", description=__doc__.splitlines()[0])
    # accepted anywhere on the command line (main takes it out before the subcommand parses)
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help=f"print the full traceback of an error (also {DEBUG_ENV}=1)")
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


def one_line(error: BaseException) -> str:
    """The message of `error` as one line. An error raised in a DataLoader worker arrives as
    "Caught <Type> in DataLoader worker process N. Original Traceback ... <Type>: <message>"
    (PolySpaceError joins those lines into one): what the user needs is that last message."""
    text = str(error)
    marker = f"{type(error).__name__}: "
    if text.startswith("Caught ") and "Original Traceback" in text and marker in text:
        text = text[text.rindex(marker) + len(marker):]
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _log_dir() -> Path:
    """runs/logs/ of the project checkout, else polyspace-logs/ in the temp folder."""
    from .paths import project_root

    try:
        return project_root() / "runs" / "logs"
    except PolySpaceError:
        return Path(tempfile.gettempdir()) / "polyspace-logs"


def save_traceback(command: str, error: BaseException, argv: list[str]) -> Path | None:
    """Write the command line and the full traceback to <log dir>/<command>-<UTC time>-<pid>.log;
    the path, or None when it cannot be written."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = _log_dir() / f"{command}-{stamp}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"polyspace {' '.join(argv)}\n\n{''.join(traceback.format_exception(error))}",
                        encoding="utf-8")
    except OSError:
        return None
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != DEBUG_FLAG]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except PolySpaceError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # the boundary: anything unforeseen is one line plus a saved traceback
        if debug:
            traceback.print_exc()
        log = save_traceback(args.command, e, argv)
        where = f"the traceback is in {log}" if log else "the traceback could not be saved"
        print(f"error: {args.command}: {type(e).__name__}: {one_line(e)}; {where} "
              f"(rerun with {DEBUG_FLAG} to print it)", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
