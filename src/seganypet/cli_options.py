"""Argument types shared by the subcommands' parsers (argparse turns their errors into one line).

Importing this module imports nothing heavy: every parser is built when ``seganypet --help`` runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """A parser whose mistakes are one line on stderr and exit status 2, like every other
    refused input (argparse would print the whole usage first). Subcommand parsers made with
    ``add_subparsers`` inherit it."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.splitlines())  # an argument may hold a line break
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def whole_number_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {value}")
        return value

    return parse


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    value = whole_number_at_least(1)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {value}")
    return value


THREADS_HELP = "torch threads (default: SEGANYPET_NUM_THREADS or all cores)"
