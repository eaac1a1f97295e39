"""Finding the workspace root and the BUILD.toml files inside it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
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


def _declares_torchpack(pyproject: Path) -> bool:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        # A broken pyproject.toml is somebody else's problem; it just does not mark a root.
        return False
    tool = data.get("tool")
    return isinstance(tool, dict) and isinstance(tool.get("torchpack"), dict)


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
    return Workspace(root=root, out=(out.resolve() if out is not None else root / DEFAULT_OUT))
