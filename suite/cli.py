"""`python -m suite <command>`: a thin dispatcher over the modules in suite/commands/.

Each command module exposes `register(subparsers)` (adds its parser and sets `func`) so that a
command's flags live next to its implementation. Modules are imported only when listed here, and
each keeps its heavy imports (torch, ray, mlflow) inside its `func` so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from suite.errors import SuiteError

COMMANDS = ("models", "tasks", "run", "eval", "tune", "submit", "jobs", "leaderboard", "bench", "doctor")
SCRIPT = "suite"  # the console script of pyproject's [project.scripts]
MODULE_FORM = "python -m suite"


def program_name(argv0: str | None = None) -> str:
    """What the user typed to start the CLI, for usage lines and the commands it suggests: the
    installed script (`suite`), else `python -m suite` (also when embedded, e.g. in tests)."""
    name = Path(sys.argv[0] if argv0 is None else argv0).name
    return SCRIPT if name in (SCRIPT, f"{SCRIPT}.exe") else MODULE_FORM


class OneLineErrorParser(argparse.ArgumentParser):
    """Bad flags get one line naming the problem (argparse's default prints the whole usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_command(subparsers, name: str, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """The parser of command `name`: `{prog}` in its description and epilog becomes what the user
    typed (program_name), and both keep their line breaks."""
    return subparsers.add_parser(
        name, help=help, description=description.format(prog=program_name()),
        epilog=epilog.format(prog=program_name()), formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=program_name(),
        description="Spikformer Suite: train, tune and compare Spikformer on image, event and skeleton tasks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=OneLineErrorParser
    )
    for name in COMMANDS:
        importlib.import_module(f"suite.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except SuiteError as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
