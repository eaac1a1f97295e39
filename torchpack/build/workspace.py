"""Finding the workspace root and the BUILD.toml files inside it."""

from __future__ import annotations

import os
import posixpath
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: Files whose presence marks a workspace root (Bazel's markers, so one tree serves both).
ROOT_MARKERS = ("WORKSPACE", "WORKSPACE.bazel", "MODULE.bazel")
BUILD_FILE = "BUILD.toml"
DEFAULT_OUT = "torchpack-out"


class WorkspaceError(Exception):
    """No workspace root above the working directory, or a path outside the workspace."""


@dataclass(frozen=True)
class Workspace:
    """A workspace root and the output folder builds write to."""

    root: Path
    out: Path
    #: Folders, relative to the root (``""``: the root itself), that Python code is imported
    #: from, in order: ``[tool.torchpack] python-path`` of the root's pyproject.toml.
    python_path: tuple[str, ...] = ("",)

    def package_of(self, path: Path) -> str:
        """The package (workspace-relative posix folder) that ``path`` lies in."""
        try:
            relative = path.resolve().relative_to(self.root)
        except ValueError:
            raise WorkspaceError(f"{path} is outside the workspace {self.root}") from None
        return relative.as_posix() if relative.parts else ""

    def output_of(self, package: str, out: str) -> Path:
        """Where a target's archive goes: the out folder mirrors the workspace folders."""
        return self.out.joinpath(*package.split("/"), out) if package else self.out / out

    def build_files(self, package: str) -> Iterator[str]:
        """Packages at or below ``package`` that have a BUILD.toml, in sorted order."""
        top = self.root / package if package else self.root
        if not top.is_dir():
            return
        for folder, subdirs, files in os.walk(top):
            here = Path(folder)
            # Pruning in place keeps os.walk out of outputs, caches and virtualenvs: they can
            # be huge and never hold targets.
            subdirs[:] = sorted(d for d in subdirs if not self._skipped(here / d))
            if BUILD_FILE in files:
                yield self.package_of(here)

    def _skipped(self, folder: Path) -> bool:
        name = folder.name
        return (
            name.startswith((".", "bazel-"))
            or name in ("__pycache__", "node_modules", DEFAULT_OUT)
            or folder == self.out
            or (folder / "pyvenv.cfg").exists()
        )


def _torchpack_table(pyproject: Path) -> dict | None:
    """The ``[tool.torchpack]`` table of ``pyproject``, or ``None``."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        # A broken pyproject.toml is somebody else's problem; it just does not mark a root.
        return None
    tool = data.get("tool")
    table = tool.get("torchpack") if isinstance(tool, dict) else None
    return table if isinstance(table, dict) else None


def _declares_torchpack(pyproject: Path) -> bool:
    return _torchpack_table(pyproject) is not None


def read_python_path(root: Path) -> tuple[str, ...]:
    """``[tool.torchpack] python-path`` of ``<root>/pyproject.toml``: normalised folders.

    Only the root's file counts, and only what it says: never the working directory, so that
    a build gives the same bytes from wherever it is started.
    """
    from .toml_positions import locate_key

    pyproject = root / "pyproject.toml"
    table = _torchpack_table(pyproject) if pyproject.is_file() else None
    if table is None or "python-path" not in table:
        return ("",)
    line = locate_key(pyproject.read_text(encoding="utf-8"), ("tool", "torchpack", "python-path"))

    def error(message: str) -> WorkspaceError:
        return WorkspaceError(f"pyproject.toml{f':{line}' if line else ''}: [tool.torchpack] python-path: {message}")

    value = table["python-path"]
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise error('expected a non-empty array of folders, e.g. ["src"]')
    folders: list[str] = []
    for item in value:
        normal = posixpath.normpath(item) if item else "."
        if item.startswith("/") or "\\" in item or normal == ".." or normal.startswith("../"):
            raise error(f"{item!r} must be a folder inside the workspace, relative to its root")
        if not (root / normal).is_dir():
            raise error(f"{item!r}: there is no folder {root / normal}")
        folder = "" if normal == "." else normal
        if folder not in folders:
            folders.append(folder)
    return tuple(folders)


def flag_python_path(folders: Iterable[str]) -> tuple[str, ...]:
    """The folders of an action's ``--python-path`` flags as :func:`read_python_path` gives
    them: ``"."`` is the root, ``""``; none given is the root alone."""
    return tuple("" if folder in ("", ".") else folder for folder in folders) or ("",)


def cli_python_path(root: Path) -> tuple[str, ...] | None:
    """The python-path the CLI builds ``root`` with, or ``None`` when its pyproject.toml has no
    ``[tool.torchpack]`` table (the workspace is no CLI workspace).  Bazel's ``torch_package``
    checks its targets' ``python_path`` against it."""
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or not _declares_torchpack(pyproject):
        return None
    return read_python_path(root)


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` that marks a workspace root."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).is_file() for marker in ROOT_MARKERS):
            return folder
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and _declares_torchpack(pyproject):
            return folder
    raise WorkspaceError(
        f"no workspace root at or above {start}: create a WORKSPACE file, or add an empty "
        "[tool.torchpack] table to pyproject.toml, in the top folder of your project"
    )


def open_workspace(cwd: Path, out: Path | None = None) -> Workspace:
    """The workspace containing ``cwd``, writing to ``out`` (default ``<root>/torchpack-out``)."""
    root = find_root(cwd)
    out_folder = out.resolve() if out is not None else root / DEFAULT_OUT
    return Workspace(root=root, out=out_folder, python_path=read_python_path(root))
