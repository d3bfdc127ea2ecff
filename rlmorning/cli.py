"""``rlmorning`` command line: thin parsing around :mod:`rlmorning.api`.

Subcommands live in the modules of :mod:`rlmorning.commands`; each module has
``register(subparsers) -> {name: handler}``, so a feature adds its commands without editing this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import rlmorning.commands
from rlmorning.errors import RlmError, TrainingTerminated


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The top-level parser and the handler of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="rlmorning",
        description="DQN on Atari and pluggable classic components around one Gymnasium training loop.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict = {}
    names = sorted(m.name for m in pkgutil.iter_modules(rlmorning.commands.__path__))
    names.sort(key=lambda n: n != "core")  # core commands first in --help
    for name in names:
        module = importlib.import_module(f"rlmorning.commands.{name}")
        handlers.update(module.register(sub))
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlmorning`` console script."""
    parser, handlers = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if unknown:  # the subcommand's usage, which shows the options it does take
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return handlers[args.command](args)
    except RlmError as exc:
        print(f"rlmorning: error: {exc}", file=sys.stderr)
        return 2
    except TrainingTerminated:
        print("rlmorning: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("rlmorning: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("rlmorning: error: out of memory (lower buffer_size or batch_size)", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a file the user named: a bug, keep the traceback
            raise
        print(f"rlmorning: error: '{exc.filename}': {exc.strerror or exc}", file=sys.stderr)
        return 2


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of ``command`` (the top-level parser if there is none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


if __name__ == "__main__":
    sys.exit(main())
