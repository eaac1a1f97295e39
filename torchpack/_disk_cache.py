"""A small content-addressed cache on disk, shared by every process of a user.

Two things are expensive and depend only on a module's source text: finding its imports
(a full parse) and compiling it. Both are kept here, keyed by the SHA-256 of the source and
the interpreter's bytecode magic, so re-exporting or re-importing a library costs a file read
per module. The third is hashing a large mapped tensor to check its integrity digest, which
is remembered per archive file (see :class:`torchpack._integrity.CheckedReader`). Archives
never depend on this cache: it only remembers results that would be computed the same again.
Set ``TORCHPACK_CACHE_DIR`` to move it, or to an empty string to turn it off.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import marshal
import os
import shutil
import tempfile
import types
from pathlib import Path

_MAGIC = importlib.util.MAGIC_NUMBER.hex()

#: Cache kinds. IMPORTS and CODE are keyed by source digest; VERIFIED holds empty markers,
#: one per large record of an archive file that matched its integrity digest; RESOURCES holds
#: resource files given a file-system path, keyed by content digest.
IMPORTS = "imports-v3"
CODE = "code"
VERIFIED = "verified"
RESOURCES = "resources"


def cache_root() -> Path | None:
    configured = os.environ.get("TORCHPACK_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "torchpack"


def _path(kind: str, key: str) -> Path | None:
    root = cache_root()
    return None if root is None else root / kind / _MAGIC / key[:2] / key


def load(kind: str, key: str) -> bytes | None:
    path = _path(kind, key)
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def store(kind: str, key: str, data: bytes) -> None:
    """Write atomically; a cache that cannot be written is simply not used."""
    path = _path(kind, key)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except OSError:
        return


_PLACEHOLDER_FILENAME = "<torchpack-cached>"


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    constants = tuple(
        _with_filename(const, filename) if isinstance(const, types.CodeType) else const for const in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=constants)


def compile_module(source: str, source_digest: str, filename: str) -> types.CodeType:
    """``compile(source, filename, "exec")``, served from the cache when possible."""
    cached = load(CODE, source_digest)
    if cached is not None:
        try:
            return _with_filename(marshal.loads(cached), filename)
        except (EOFError, ValueError, TypeError):
            pass  # a damaged entry: compile again and overwrite it
    code = compile(source, _PLACEHOLDER_FILENAME, "exec", dont_inherit=True)
    store(CODE, source_digest, marshal.dumps(code))
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
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, 0o444)
        os.replace(temp, path)
    return str(path)

