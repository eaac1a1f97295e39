"""Which modules a callable actually uses when run on sample inputs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any


def trace_dependencies(callable: Callable[..., Any], inputs: Iterable[tuple[Any, ...]]) -> list[str]:
    """Run ``callable(*args)`` for each ``args`` in ``inputs``; return the modules whose code ran."""
    used: dict[str, None] = {}

    def record(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__")
        if module:
            used[module] = None

    previous = sys.getprofile()
    sys.setprofile(record)
    try:
        for args in inputs:
            callable(*args)
    finally:
        sys.setprofile(previous)
    return list(used)
