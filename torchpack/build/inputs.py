"""What an export read, for the action cache: workspace files by path, installed code by its
distribution, and any other code it imported by its file's content.

The export process records every file it opens (an audit hook) and, at the end, looks at the
modules it imported; :func:`export_inputs` turns both into the ``inputs`` and
``distributions`` of the action's report (see :mod:`torchpack.build.action`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
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


def _prefixes(folders: Iterable[str]) -> tuple[str, ...]:
    """Each folder as given and resolved, with a trailing separator, for ``str.startswith``."""
    return tuple({os.path.join(form, "") for folder in folders for form in (os.path.abspath(folder), os.path.realpath(folder))})


class _CodeLocations:
    """Where a file of imported code lies outside the workspace, and so how the key names it.

    Code in a site-packages folder is its distribution's (keyed by version, so that a venv
    restored elsewhere still hits); the standard library is the interpreter's (keyed by the
    toolchain); anything else (an editable install's source folder, a PYTHONPATH or ``.pth``
    folder, a site-packages library without distribution metadata) is keyed by content.
    Lookups compare string prefixes: an export of a model imports over a thousand modules.
    """

    #: :meth:`owner` of the standard library's files: no distribution, keyed with the interpreter.
    STANDARD_LIBRARY = ""

    def __init__(self) -> None:
        self._sites = _prefixes(entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages"))
        # The base interpreter's folders (a venv's own sysconfig paths name the venv); stdlib
        # holds pyenv's and Debian's lib-dynload too.
        base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix, "installed_base": sys.base_prefix,
                "installed_platbase": sys.base_exec_prefix}
        self._stdlib = _prefixes(sysconfig.get_path(name, vars=base) for name in ("stdlib", "platstdlib"))
        self._providers: dict[str, str | None] = {}

    def owner(self, file: str) -> str | None:
        """The distribution that installed ``file``; :attr:`STANDARD_LIBRARY` for the standard
        library's; ``None`` for code to key by content."""
        owner = self._owner(file)
        # Resolving costs a system call per folder: only for a file no folder's prefix matched.
        return owner if owner is not None or (real := os.path.realpath(file)) == file else self._owner(real)

    def _owner(self, file: str) -> str | None:
        # Sites first: a base interpreter's site-packages lies inside its stdlib folder.
        for site in self._sites:
            if file.startswith(site):
                return self._provider(file[len(site):].partition(os.sep)[0].partition(".")[0])
        return self.STANDARD_LIBRARY if file.startswith(self._stdlib) else None

    def _provider(self, top: str) -> str | None:
        if top not in self._providers:
            from torchpack._records import _distributions_providing

            providers = _distributions_providing(top)
            self._providers[top] = providers[0] if providers else None
        return self._providers[top]


def _imported_names(file: str, package: str) -> set[str]:
    """The top-level names a workspace module's source imports (none if it cannot be read)."""
    from torchpack._source_scan import scan_source

    with contextlib.suppress(OSError, SyntaxError, ImportError, UnicodeDecodeError):
        source = Path(file).read_text(encoding="utf-8")
        return {ref.module.partition(".")[0] for ref in scan_source(source, package, file)}
    return set()


def export_inputs(
    root: Path, read: Iterable[Path], tops: Iterable[str], recorder: ReadRecorder, skip: set[Path], preloaded: frozenset[str]
) -> tuple[list[str], list[str]]:
    """Everything the export read, as cache-record paths (workspace-relative where possible,
    else absolute), and the distributions whose version stands for installed code among it.

    Besides the files it opened and the distributions the archive externs or interns, the code
    the export ran counts, though the archive may name none of it: numpy drawing a factory's
    initial weights shapes the pickle as much as an extern does.  That is every module
    imported from the workspace, and every library (top-level name) first imported during the
    export or imported by name by the workspace's modules: torch imports numpy before any
    factory runs, so "newly imported" alone would miss the commonest one.  ``preloaded`` holds
    the top-level names imported before the export began: torch's, torchpack's and what they
    import, keyed by the toolchain (a submodule a preloaded library loads lazily is still that
    library).  Only what was really imported can have run; a name the source merely mentions
    cannot.
    """
    from torchpack._records import _distributions_providing

    # String prefixes, not Path.is_relative_to: sys.modules holds over a thousand of torch's
    # modules, and building a Path for each cost more than the rest of a small export.
    inside = os.path.join(root, "")
    candidates = {Path(p) for p in recorder.paths if p.startswith(inside)}
    candidates.update(read)
    modules: set[Path] = set()  # files of imported modules to key by content
    named: set[str] = set()
    elsewhere: dict[str, list[str]] = {}  # top-level name -> files of its modules outside the workspace
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        if file.startswith(inside):
            # Workspace modules imported by factories shape the pickles even when not interned.
            modules.add(Path(file))
            if file.endswith(".py"):
                named |= _imported_names(file, module.__package__ or "")
        else:
            elsewhere.setdefault(name.partition(".")[0], []).append(file)
    used = {top for top in elsewhere if top not in preloaded} | (named & elsewhere.keys())
    distributions = {dist for top in tops for dist in _distributions_providing(top)}
    locations = _CodeLocations()
    for top in used:
        # A preloaded library the workspace imports by name counts by its distribution only
        # (its code is the toolchain's), which its first module's file names: looking at
        # each of torch's thousand would double the walk.
        for file in elsewhere[top] if top not in preloaded else elsewhere[top][:1]:
            owner = locations.owner(file)
            if owner is None:
                if top not in preloaded:
                    modules.add(Path(file))
            elif owner != locations.STANDARD_LIBRARY:
                distributions.add(owner)
    found = set()
    for path in candidates | modules:
        resolved = path.resolve()
        # A bytecode cache follows its source (and carries its mtime): not an input, unless a
        # module was imported from it alone.
        if resolved in skip or (resolved.suffix == ".pyc" and path not in modules) or not resolved.is_file():
            continue
        if resolved.is_relative_to(root):
            found.add(resolved.relative_to(root).as_posix())
        elif (owner := locations.owner(str(resolved))) is None:
            found.add(str(resolved))
        elif owner != locations.STANDARD_LIBRARY:
            distributions.add(owner)
    return sorted(found), sorted(distributions)
