"""The reader of an unzipped archive: a folder laid out like the ZIP's top-level folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Union

from ._record_files import check_record_name, file_kind, open_regular_file
from .errors import ArchiveFormatError, RecordNotFoundError


class DirectoryArchiveReader:
    """Reads an unzipped archive: a folder laid out like the ZIP's top-level folder.

    Every record is found when the folder is opened, and only regular files are records. A
    symbolic link to a file is followed when the file is inside the folder (an archive
    unpacked with links between its own files still reads); a link leading out of the folder,
    to a folder (which could loop or leave), or nowhere is refused, naming the folder and the
    record, as is a FIFO, device or socket. The folder is not watched once open: a file
    replaced by a symbolic link afterwards is refused when read.
    """

    mapped = False
    file_identity = None

    def __init__(self, folder: Union[str, os.PathLike]) -> None:
        self.name = os.fspath(folder)
        self.top_folder = Path(folder).name
        #: Record name -> the real path of its file.
        self._files: dict[str, str] = {}
        real_root = os.path.realpath(self.name)
        inside = real_root.rstrip(os.sep) + os.sep

        def fail(error: OSError) -> None:
            raise error

        for current, folders, files in os.walk(real_root, onerror=fail):
            for entry in sorted(folders + files):
                path = os.path.join(current, entry)
                name = os.path.relpath(path, real_root).replace(os.sep, "/")
                status = os.lstat(path)
                if stat.S_ISDIR(status.st_mode):
                    continue
                check_record_name(name, self.name)
                if stat.S_ISLNK(status.st_mode):
                    target = os.path.realpath(path)
                    if not target.startswith(inside):
                        raise self._fail(name, f"is a symbolic link leading out of the folder (to {target})")
                    try:
                        status = os.stat(target)
                    except OSError:
                        raise self._fail(name, "is a symbolic link to nothing") from None
                    if stat.S_ISDIR(status.st_mode):
                        raise self._fail(name, "is a symbolic link to a folder; only links to files are followed")
                    path = target
                if not stat.S_ISREG(status.st_mode):
                    raise self._fail(name, f"is {file_kind(status.st_mode)}, not a regular file")
                self._files[name] = path
        if not self._files:
            raise ArchiveFormatError(f"{self.name}: the folder holds no records; not an unzipped archive")
        self._files = dict(sorted(self._files.items()))

    def _fail(self, record: str, what: str) -> ArchiveFormatError:
        return ArchiveFormatError(f"{self.name}: record {record!r} {what}")

    def names(self) -> list[str]:
        return list(self._files)

    def has_record(self, name: str) -> bool:
        return name in self._files

    def read(self, name: str) -> bytes:
        path = self._files.get(name)
        if path is None:
            raise RecordNotFoundError(f"{self.name}: no record {name!r} in the archive")
        with open_regular_file(path, self.name, name, follow_links=False) as handle:
            return handle.read()

    def view(self, name: str, *, check_crc: bool = True) -> memoryview:
        return memoryview(self.read(name))

    def stored(self, name: str) -> tuple[memoryview, bool]:
        return memoryview(self.read(name)), False  # a copy: files are read, not mapped

    def check(self, name: str, data: memoryview) -> None:
        """Nothing to check: a folder keeps no CRC-32s."""
