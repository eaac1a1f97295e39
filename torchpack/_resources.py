"""``importlib.resources`` for packaged code: the package's folders as Traversables.

A module loaded by a PackageImporter has the importer as its loader, and the importer's
``get_resource_reader`` returns a :class:`PackageResourceReader`; from there ``files()`` and
the legacy ``read_text``/``open_binary``/``is_resource``/``contents`` functions all work on
records of the archive, without extracting anything.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Callable, Iterator
from typing import Any

from . import _disk_cache as disk_cache

try:  # Python >= 3.11
    from importlib.resources.abc import Traversable, TraversableResources
except ImportError:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable, TraversableResources  # type: ignore[no-redef]


class ArchiveFiles:
    """The record names of one archive, indexed by folder."""

    def __init__(self, names: list[str], read: Callable[[str], bytes]) -> None:
        self.read = read
        self.files = set(names)
        self.children: dict[str, set[str]] = {}
        for name in names:
            parts = name.split("/")
            for depth in range(len(parts)):
                folder = "/".join(parts[:depth])
                self.children.setdefault(folder, set()).add(parts[depth])

    def is_dir(self, path: str) -> bool:
        return path in self.children

    def is_file(self, path: str) -> bool:
        return path in self.files


class ArchivePath(Traversable):
    """A file or folder inside an archive."""

    def __init__(self, archive: ArchiveFiles, path: str) -> None:
        self._archive = archive
        self._path = path

    def __repr__(self) -> str:
        return f"ArchivePath({self._path!r})"

    @property
    def name(self) -> str:
        return posixpath.basename(self._path)

    def iterdir(self) -> Iterator["ArchivePath"]:
        for child in sorted(self._archive.children.get(self._path, ())):
            yield ArchivePath(self._archive, posixpath.join(self._path, child) if self._path else child)

    def is_dir(self) -> bool:
        return self._archive.is_dir(self._path)

    def is_file(self) -> bool:
        return self._archive.is_file(self._path)

    def joinpath(self, *descendants: str) -> "ArchivePath":
        path = self._path
        for descendant in descendants:
            for part in str(descendant).split("/"):
                if part in ("", "."):
                    continue
                if part == "..":
                    raise ValueError("resources cannot refer to a parent folder")
                path = posixpath.join(path, part) if path else part
        return ArchivePath(self._archive, path)

    def __truediv__(self, child: str) -> "ArchivePath":
        return self.joinpath(child)

    def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not self.is_file():
            raise FileNotFoundError(f"no resource {self._path!r} in the package")
        data = io.BytesIO(self._archive.read(self._path))
        if mode == "rb":
            return data
        if mode == "r":
            kwargs.setdefault("encoding", "utf-8")
            return io.TextIOWrapper(data, *args, **kwargs)
        raise ValueError(f"resources inside a package are read-only; mode {mode!r} is not supported")

    def __fspath__(self) -> str:
        """A real file with this resource's bytes, for code that opens resources by path.

        ``importlib.resources`` promises a Traversable, yet libraries pass what ``files()``
        returned to ``open`` or ``gzip.open`` (networkx does), which works with an installed
        package's ``pathlib.Path``. Files are written once into torchpack's cache, by content.
        """
        if self.is_dir():
            raise TypeError(f"resource folder {self._path!r} of a package has no file-system path")
        if not self.is_file():
            raise FileNotFoundError(f"no resource {self._path!r} in the package (save it with save_binary)")
        return disk_cache.resource_file(self._archive.read(self._path), self.name)

    def read_bytes(self) -> bytes:
        with self.open("rb") as handle:
            return handle.read()

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        # `errors`: Python 3.13's functional importlib.resources API (read_text(anchor, name,
        # errors=...)) passes it, as pathlib.Path.read_text accepts it.
        with self.open("r", encoding=encoding or "utf-8", errors=errors) as handle:
            return handle.read()


class PackageResourceReader(TraversableResources):
    """Resource reader for one package (folder) of an archive."""

    def __init__(self, archive: ArchiveFiles, folder: str) -> None:
        self._archive = archive
        self._folder = folder

    def files(self) -> ArchivePath:
        return ArchivePath(self._archive, self._folder)
