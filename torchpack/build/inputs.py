"""What an export read, for the action cache: workspace files by path and installed code by
its distribution.

The export process records every file it opens (an audit hook) and, at the end, looks at the
modules it imported; :func:`export_inputs` turns both into the ``inputs`` and
``distributions`` of the action's report (see :mod:`torchpack.build.action`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ReadRecorder:
    """Audit hook recording the paths of files opened for reading (factories' data files, ...)."""

    def __init__(self) -> None:
        self.paths: set[str] = set()

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path, mode, flags = (tuple(args) + (None, None))[:3]
        reading = (mode is None and isinstance(flags, int) and flags & os.O_ACCMODE == os.O_RDONLY) or (
            isinstance(mode, str) and not any(c in mode for c in "wax+")
        )
        if reading:
            self.paths.add(os.path.abspath(os.fsdecode(path)))


def _site_folders() -> list[Path]:
    """The site-packages folders on ``sys.path``, resolved once per lookup of many files."""
    return [Path(entry).resolve() for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")]


def _installed_distribution(path: Path, sites: list[Path]) -> str | None:
    """The distribution that installed ``path``, when it lies in one of the ``sites`` folders."""
    from torchpack._records import _distributions_providing

    for real in sites:
        if path.is_relative_to(real):
            top = path.relative_to(real).parts[0].partition(".")[0]
            providers = _distributions_providing(top)
            return providers[0] if providers else None
    return None


def _libraries_used(root: Path, preloaded: frozenset[str]) -> set[str]:
    """The distribution of each installed library the export's code used, though the archive may name
    none of them: numpy drawing a factory's initial weights shapes the pickle as much as an
    extern does.  Libraries first imported during the export count, and so do those the
    workspace's modules import by name: torch imports numpy before any factory runs, so
    "newly imported" alone would miss the commonest one.  ``preloaded`` holds the top-level
    names imported before the export began."""
    from torchpack._source_scan import scan_source

    # String prefixes, not Path.is_relative_to: sys.modules holds over a thousand of torch's
    # modules, and building a Path for each cost more than the rest of a small export.
    inside = os.path.join(root, "")
    named: set[str] = set()
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        top = name.partition(".")[0]
        if not file.startswith(inside):
            # A submodule a preloaded library loads lazily (numpy's, torch's) is still that library.
            if top not in preloaded:
                named.add(top)
        elif file.endswith(".py"):
            with contextlib.suppress(OSError, SyntaxError, ImportError, UnicodeDecodeError):
                source = Path(file).read_text(encoding="utf-8")
                named.update(ref.module.partition(".")[0] for ref in scan_source(source, module.__package__ or "", file))
    # Only what was really imported can have run; a name the source merely mentions cannot.
    # The standard library is the toolchain's, and has no distribution.
    files = {file for top in named if isinstance(file := getattr(sys.modules.get(top), "__file__", None), str)}
    sites = _site_folders()
    return {distribution for file in files if (distribution := _installed_distribution(Path(file).resolve(), sites)) is not None}


def export_inputs(
    root: Path, read: Iterable[Path], tops: Iterable[str], recorder: ReadRecorder, skip: set[Path], preloaded: frozenset[str]
) -> tuple[list[str], list[str]]:
    """Everything the export read, as cache-record paths (workspace-relative where possible),
    and the distributions whose version stands for installed code among it."""
    from torchpack._records import _distributions_providing

    inside = os.path.join(root, "")
    candidates = {Path(p) for p in recorder.paths if p.startswith(inside)}
    candidates.update(read)
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        # Workspace modules imported by factories shape the pickles even when not interned.
        if isinstance(file, str) and file.startswith(inside):
            candidates.add(Path(file))
    distributions = {dist for top in tops for dist in _distributions_providing(top)}
    distributions.update(_libraries_used(root, preloaded))
    found = set()
    sites = _site_folders()
    for path in candidates:
        resolved = path.resolve()
        if resolved in skip or resolved.suffix == ".pyc" or not resolved.is_file():
            continue
        if resolved.is_relative_to(root):
            found.add(resolved.relative_to(root).as_posix())
        elif (distribution := _installed_distribution(resolved, sites)) is not None:
            # Installed code is keyed by its distribution's version, not by its path: a venv
            # restored elsewhere must still hit.
            distributions.add(distribution)
        else:
            found.add(str(resolved))
    return sorted(found), sorted(distributions)
