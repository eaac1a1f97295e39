"""Warnings that point at the user's line, optionally issued once per subject.

``warnings.warn(stacklevel=N)`` counts frames, and torchpack's entry points are reached
through decorators and context managers (``collector_paused`` runs ``__init__`` inside
contextlib), so any fixed N points into a library file. The first frame outside torchpack
and contextlib is the line the user wrote.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Hashable

_LIBRARY_FOLDER = os.path.dirname(os.path.abspath(__file__)) + os.sep
_CONTEXTLIB_FILE = os.path.abspath(contextlib.__file__)
_warned: set[Hashable] = set()
_warned_lock = threading.Lock()


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` pointing at the first frame outside torchpack and contextlib."""
    level = 2  # stacklevel 2 is the frame that called this function
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_LIBRARY_FOLDER) and filename != _CONTEXTLIB_FILE:
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def warn_once(subject: Hashable, message: str, category: type[Warning]) -> None:
    """:func:`warn_at_caller`, once per process for each ``subject``."""
    with _warned_lock:
        if subject in _warned:
            return
        _warned.add(subject)
    warn_at_caller(message, category)
