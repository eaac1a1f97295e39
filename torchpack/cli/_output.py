"""What every subcommand shares: the input-error type, colours, JSON and sizes on stdout."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import TorchpackError

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


class InputError(TorchpackError):
    """The command line names something that is not there (a module, a file, a tool): exit 2."""


def use_colour() -> bool:
    """Colours only on a terminal, and never when the user opted out (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def paint(text: str, style: str) -> str:
    """``text`` in ``style`` (a key of the table above) when colours are on, as is otherwise."""
    if not use_colour():
        return text
    return f"\033[{_CODES[style]}m{text}\033[0m"


def print_json(document: Any) -> None:
    """A JSON document on stdout, keys sorted so that CI scripts and diffs see a stable shape."""
    print(json.dumps(document, indent=2, sort_keys=True))


def format_size(size: int) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ``3.2 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
