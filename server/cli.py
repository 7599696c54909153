"""The ``ganpaint`` command: one sub-command per module in ``server.commands``.

Every command reports bad input as ``ganpaint <command>: error: <message>`` on stderr and exits
with status 2, never with a traceback; an interrupted command exits with 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from server.commands import COMMANDS, CommandError

__all__ = ["main", "build_parser"]


class OneLineErrors(argparse.ArgumentParser):
    """Bad arguments give one line, ``ganpaint <command>: error: <message> (see --help)``, exit 2:
    no usage block in front of it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered sub-command."""
    parser = OneLineErrors(
        prog="ganpaint",
        description="GAN painting studio and the interpretability engines behind it.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=OneLineErrors)
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(_run=command.run, _parser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CommandError as exc:
        print(f"{args._parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganpaint: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
