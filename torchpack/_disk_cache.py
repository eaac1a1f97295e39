"""A small content-addressed cache on disk, shared by every process of a user.

Two things are expensive and depend only on a module's source text: finding its imports
(a full parse) and compiling it. Both are kept here, keyed by the SHA-256 of the source and
the interpreter's bytecode magic, so re-exporting or re-importing a library costs a file read
per module. The third is hashing a large mapped tensor to check its integrity digest, which
is remembered per archive file (see :class:`torchpack._integrity.CheckedReader`). Archives
never depend on this cache: it only remembers results that would be computed the same again.
Set ``TORCHPACK_CACHE_DIR`` to move it, or to an empty string to turn it off.

What is read back is trusted no further than it is checked. The cache folder is used only
when it is the user's own: not a symbolic link, owned by this user, writable by nobody else
(as pip and ``__pycache__`` rely on the permissions of their folders); otherwise the cache
is off for the process, with a :class:`~torchpack.errors.CacheDirectoryWarning`. Entries are
read without following symbolic links, and only regular files of this user count. Compiled
code carries a header - entry format, interpreter magic, the SHA-256 of its source and of
its own payload - and must unmarshal to a module's code object compiled here; any other
entry (damaged, truncated, left by another interpreter, filed under another source's
digest) is compiled again and replaced. The checks cannot tell code planted by a process of
the same user that writes the header too, any more than ``__pycache__`` can: such a process
could as well edit the user's installed packages.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import marshal
import os
import shutil
import stat
import tempfile
import types
from pathlib import Path

from ._record_files import write_atomically
from ._user_warnings import warn_at_caller
from .errors import CacheDirectoryWarning

_MAGIC = importlib.util.MAGIC_NUMBER.hex()

#: Cache kinds. IMPORTS and CODE are keyed by source digest; VERIFIED holds empty markers,
#: one per large record of an archive file that matched its integrity digest; RESOURCES holds
#: resource files given a file-system path, keyed by content digest.
IMPORTS = "imports-v3"
CODE = "code"
VERIFIED = "verified"
RESOURCES = "resources"


def cache_root() -> Path | None:
    """The cache folder, or None when caching is off or the folder is not safe to trust."""
    configured = os.environ.get("TORCHPACK_CACHE_DIR")
    if configured is not None:
        if not configured:
            return None
        root = configured
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "torchpack")
    return Path(root) if _is_trusted_folder(root) else None


@functools.lru_cache(maxsize=None)
def _is_trusted_folder(root: str) -> bool:
    """Create ``root`` (for this user only) when missing; whether the cache may use it.

    Checked once per process and folder. A folder that cannot be created or read is not
    used, silently, as an unwritable cache has always been; an unsafe one is named.
    """
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        status = os.lstat(root)
    except OSError:
        return False
    if stat.S_ISLNK(status.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(status.st_mode):
        problem = "is not a folder"
    elif status.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {status.st_uid})"
    elif status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"is writable by others (mode {stat.S_IMODE(status.st_mode):o})"
    else:
        return True
    warn_at_caller(
        f"torchpack cache folder {root} {problem}: the cache is not used. Set TORCHPACK_CACHE_DIR "
        "to a folder of your own, or to an empty string to turn the cache off.",
        CacheDirectoryWarning,
    )
    return False


def _path(kind: str, key: str) -> Path | None:
    root = cache_root()
    return None if root is None else root / kind / _MAGIC / key[:2] / key


def _read_own_file(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of this user, not reached through a
    final symbolic link; None otherwise (never blocks on a FIFO)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
            return None
        try:
            return handle.read()
        except OSError:
            return None


def load(kind: str, key: str) -> bytes | None:
    path = _path(kind, key)
    return None if path is None else _read_own_file(path)


def store(kind: str, key: str, data: bytes) -> None:
    """Write atomically; a cache that cannot be written is simply not used."""
    path = _path(kind, key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data)
    except OSError:
        return


_PLACEHOLDER_FILENAME = "<torchpack-cached>"


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    constants = tuple(
        _with_filename(const, filename) if isinstance(const, types.CodeType) else const for const in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=constants)


#: Starts every compiled-code entry; a new layout gets a new version here.
_CODE_ENTRY_FORMAT = b"torchpack-code-1\0"


def _code_header(source_digest: str) -> bytes:
    """What a code entry for this source, written by this interpreter, starts with."""
    return _CODE_ENTRY_FORMAT + importlib.util.MAGIC_NUMBER + bytes.fromhex(source_digest)


def _cached_code(source_digest: str) -> types.CodeType | None:
    """The code object cached for this source digest, or None when there is no valid one."""
    entry = load(CODE, source_digest)
    if entry is None:
        return None
    header = _code_header(source_digest)
    payload_start = len(header) + hashlib.sha256().digest_size
    if not entry.startswith(header) or len(entry) < payload_start:
        return None
    payload = memoryview(entry)[payload_start:]
    if hashlib.sha256(payload).digest() != entry[len(header) : payload_start]:
        return None  # truncated or damaged
    try:
        code = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    if type(code) is not types.CodeType or code.co_filename != _PLACEHOLDER_FILENAME or code.co_name != "<module>":
        return None
    return code


def compile_module(source: str, source_digest: str, filename: str) -> types.CodeType:
    """``compile(source, filename, "exec")``, served from the cache when a valid entry is there.

    ``source_digest`` is the SHA-256 (hex) of the source's UTF-8 bytes. An entry that does
    not check out is compiled again and replaced (atomically), never executed. Entries hold
    no file name: code is compiled under a placeholder (which the check requires) and given
    the module's file name on the way out, so one entry serves every archive of the source.
    """
    code = _cached_code(source_digest)
    if code is None:
        code = compile(source, _PLACEHOLDER_FILENAME, "exec", dont_inherit=True)
        payload = marshal.dumps(code)
        store(CODE, source_digest, _code_header(source_digest) + hashlib.sha256(payload).digest() + payload)
    return _with_filename(code, filename)


_scratch_folder: str | None = None


def resource_file(data: bytes, filename: str) -> str:
    """A read-only file holding ``data`` and named ``filename``, for code that needs a real path.

    Content-addressed, so each distinct resource is written once per user; with the cache
    turned off, into a folder of this process that is removed when it exits.
    """
    global _scratch_folder
    digest = hashlib.sha256(data).hexdigest()
    folder = _path(RESOURCES, digest)
    if folder is None:
        if _scratch_folder is None:
            _scratch_folder = tempfile.mkdtemp(prefix="torchpack-resources-")
            atexit.register(shutil.rmtree, _scratch_folder, True)
        folder = Path(_scratch_folder) / digest
    path = folder / filename
    if _read_own_file(path) != data:  # missing, or not what its digest names: (re)write it
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data, mode=0o444)
    return str(path)

