"""Which top-level modules belong to the standard library (they are extern'd implicitly)."""

from __future__ import annotations

import sys

_STDLIB: frozenset[str] = frozenset(sys.stdlib_module_names) | {"__future__"}


def is_stdlib_module(top_level_name: str) -> bool:
    return top_level_name in _STDLIB
