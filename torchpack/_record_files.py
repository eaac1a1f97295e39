"""Record names and the files records come from: the checks both archive readers share.

A record name must not escape a folder when extracted; a path must be a regular file, opened
without blocking (a FIFO or a device could block a reader forever or never end); a file
torchpack writes is written whole or not at all (:func:`write_atomically`).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from typing import BinaryIO

from .errors import ArchiveFormatError

# An empty, "." or ".." path segment, an absolute path (also Windows drive letters and
# backslashes), or a NUL: names that could escape a folder when extracted, or are ambiguous.
_UNSAFE_NAME = re.compile(r"(?:^|/)\.{0,2}(?:/|$)|^/|^.:|[\\\0]")
#: What _UNSAFE_NAME finds, as pieces of a text holding one name per line, between newlines:
#: substring searches run at memory speed, where the pattern costs 1 us per name.
_UNSAFE_PIECES = ("\n\n", "\n/", "/\n", "//", "/./", "/../", "\n./", "\n../", "/.\n", "/..\n", "\n.\n", "\n..\n", "\\", "\0")
_DRIVE_LETTER_LINE = re.compile(r"\n.:")


def check_record_name(name: str, archive: str) -> None:
    """Reject names that could escape a folder when extracted, or that are ambiguous."""
    # A trailing "/" marks a folder entry, the one place an empty last segment is allowed.
    body = name[:-1] if name.endswith("/") else name
    if not name or _UNSAFE_NAME.search(body):
        raise ArchiveFormatError(f"{archive}: unsafe record name {name!r}")


def check_record_names(names: list[str], archive: str) -> None:
    """:func:`check_record_name` for each name; a few searches of them all when none has a newline."""
    text = "\n" + "\n".join(names) + "\n"
    if "/\n" in text:  # folder entries: their trailing "/" is the one empty segment allowed
        text = "\n" + "\n".join(name[:-1] if name.endswith("/") else name for name in names) + "\n"
    if (
        text.count("\n") == len(names) + 1
        and not any(piece in text for piece in _UNSAFE_PIECES)
        and not _DRIVE_LETTER_LINE.search(text)
    ):
        return
    for name in names:  # the first culprit, named in the error
        check_record_name(name, archive)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for messages."""
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular_file(path: str, archive: str, record: str | None = None, *, follow_links: bool = True) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file without blocking.

    Opening a FIFO for reading waits for a writer, and reading a device may never end, so
    the file is opened non-blocking and its type checked on the open descriptor (no window
    between a check and the open). ``follow_links=False`` refuses a symbolic link as the last
    step of the path.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW)
    where = archive if record is None else f"{archive}: record {record!r}"
    try:
        descriptor = os.open(path, flags)
    except OSError:
        if not follow_links and os.path.islink(path):
            raise ArchiveFormatError(f"{where} became a symbolic link after the folder was opened") from None
        raise
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise ArchiveFormatError(f"{where} is {file_kind(status.st_mode)}, not a regular file")
    return os.fdopen(descriptor, "rb")


#: An archive's signature lives beside it (:mod:`torchpack._signing`); here so that finding
#: it does not import the signing machinery (the build CLI checks for stale ones every build).
SIGNATURE_SUFFIX = ".sig"


def signature_path(archive: str | os.PathLike) -> str:
    """Where an archive's signature lives: ``ARCHIVE.sig`` (a folder archive's too)."""
    return os.fspath(archive).rstrip("/" + os.sep) + SIGNATURE_SUFFIX


def write_atomically(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``.

    A reader (another process, a memory mapping of the old file) sees the old file or the new
    one, never half of one; nothing is left behind when the write fails. ``mode``: the new
    file's permissions (a temporary file starts private, 0600).
    """
    folder = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
