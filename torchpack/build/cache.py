"""The action cache: skip an export when nothing that decides its bytes has changed.

Like Bazel's action cache, a record maps an action key to the digest of the output, and the
output's bytes are kept by content, so that any of several earlier builds can be served again
(seed 2 -> 3 -> 2 hits the third time).  The key digests:

1. the target's canonical definition;
2. the SHA-256 of every workspace file its export read (the action reports them: interned
   sources, resources, files factories opened, workspace modules they imported), and of every
   module file it imported from outside both the workspace and site-packages' distributions
   (an editable install, a PYTHONPATH or ``.pth`` folder, a library without metadata);
3. the SHA-256 of each dependency's archive;
4. the versions of the distributions the archive externs or interns, or whose libraries the
   export's code used (reported by the action);
5. the toolchain: the interpreter's implementation, version and ABI/platform tags (never its
   path: ``python`` and ``python3``, or a venv restored elsewhere, are the same toolchain),
   torch's version, torchpack's own sources and ``SOURCE_DATE_EPOCH``.

Which files and distributions an export reads is only known after it ran, so a lookup takes
each record of the target (most recently used first), recomputes the key from *that record's*
file list and distribution names as they are now, and hits when it equals the recorded key.
This is sound for the same reason as Bazel's discovered inputs: an export that reads the same
definition, files, deps and distributions at the same contents and versions reads nothing
else, so a changed input it would newly read can only be reached through one of those.

Layout under ``<out>/.cache/``: ``actions/<target>/<key>-<sha256>.json`` (records; a record's
mtime is its last use), ``actions/<target>/output.json`` (the size, mtime and inode of the
archive last written, which spares hashing it again) and ``cas/<sha256>`` (archives).  Bounds:
:data:`MAX_RECORDS` records per target and :data:`MAX_BYTES` of stored archives in all
(``TORCHPACK_ACTION_CACHE_BYTES`` overrides it), least recently used evicted first.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import secrets
import shutil
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._record_files import write_atomically
from .labels import Label
from .targets import Target, canonical_json

_CHUNK = 1 << 20
#: Records kept per target: enough to go back and forth between a few seeds or branches.
MAX_RECORDS = 8
#: Stored archives in all, unless TORCHPACK_ACTION_CACHE_BYTES says otherwise.
MAX_BYTES = 2 << 30


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def toolchain_identity() -> dict[str, Any]:
    """What identifies the interpreter and torch: versions and tags, never a path."""
    return {
        "implementation": sys.implementation.name,
        "version": list(sys.version_info),
        "cache_tag": sys.implementation.cache_tag,
        "abiflags": getattr(sys, "abiflags", ""),
        "soabi": sysconfig.get_config_var("SOABI") or "",
        "platform": sysconfig.get_platform(),
        "torch": _installed_version("torch"),
        "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", ""),
    }


def toolchain_fingerprint() -> str:
    """Digest of :func:`toolchain_identity` and torchpack's sources.

    torchpack's sources are hashed rather than its version so that editing torchpack itself
    (development, an editable install) invalidates the cache.
    """
    import torchpack

    digest = hashlib.sha256(canonical_json(toolchain_identity()).encode())
    for home in torchpack.__path__:
        for source in sorted(Path(home).rglob("*.py")):
            digest.update(f"{source.relative_to(home).as_posix()} {file_digest(source)}\n".encode())
    return digest.hexdigest()


def temporary_prefix(output: Path) -> str:
    """Temporaries of ``output`` are named ``<prefix><pid>-<random>``, next to it."""
    return f".{output.name}.tmp-"


def temporary_owner(name: str, prefix: str) -> int | None:
    """The pid in a temporary named ``<prefix><pid>-<random>``; ``None`` for other names."""
    pid, dash, _ = name[len(prefix):].partition("-") if name.startswith(prefix) else ("", "", "")
    return int(pid) if dash and pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # somebody else's process
    return True


def remove_dead_temporaries(folder: Path, prefix: str) -> None:
    """Remove temporaries left by processes that died (SIGKILL); a live build's are not touched."""
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            owner = temporary_owner(entry.name, prefix)
            if owner is not None and not _alive(owner):
                entry.unlink(missing_ok=True)


@dataclass(frozen=True)
class CacheRecord:
    """One successful build of a target: what it read and what it produced."""

    key: str
    inputs: dict[str, str]  # cache-record path -> SHA-256
    distributions: dict[str, str | None]  # name -> version (None: not installed)
    sha256: str
    size: int
    seconds: float


def _by_recent_use(paths: Iterable[Path]) -> list[Path]:
    """``paths`` that still exist, most recently used (modified) first."""
    stamped = []
    for path in paths:
        with contextlib.suppress(OSError):
            stamped.append((path.stat().st_mtime_ns, path))
    return [path for _, path in sorted(stamped, reverse=True)]


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text.encode("utf-8"))


class ActionCache:
    """Records and stored archives under ``<out>/.cache/`` (see the module docstring)."""

    def __init__(self, out: Path, root: Path, toolchain: str, *, max_records: int = MAX_RECORDS, max_bytes: int | None = None) -> None:
        self.folder = out / ".cache"
        self.actions = self.folder / "actions"
        self.blobs = self.folder / "cas"
        self.root = root
        self.toolchain = toolchain
        self.max_records = max_records
        self.max_bytes = max_bytes if max_bytes is not None else int(os.environ.get("TORCHPACK_ACTION_CACHE_BYTES", MAX_BYTES))

    # -- keys ----------------------------------------------------------------------------------

    def _resolve(self, path: str) -> Path:
        return Path(path) if os.path.isabs(path) else self.root / path

    def digest_inputs(self, inputs: Iterable[str]) -> dict[str, str] | None:
        """SHA-256 of each input file now; ``None`` if one has disappeared."""
        try:
            return {path: file_digest(self._resolve(path)) for path in sorted(inputs)}
        except OSError:
            return None

    def key(self, target: Target, inputs: dict[str, str], deps: dict[Label, str], distributions: dict[str, str | None]) -> str:
        return hashlib.sha256(
            canonical_json(
                {
                    "definition": target.definition(),
                    "inputs": inputs,
                    "deps": {str(label): digest for label, digest in deps.items()},
                    "distributions": distributions,
                    "toolchain": self.toolchain,
                }
            ).encode()
        ).hexdigest()

    # -- records -------------------------------------------------------------------------------

    def _target_folder(self, label: Label) -> Path:
        return self.actions / hashlib.sha256(str(label).encode()).hexdigest()[:32]

    def _record_files(self, label: Label) -> list[Path]:
        """The target's record files, most recently used first."""
        return _by_recent_use(self._target_folder(label).glob("*-*.json"))

    @staticmethod
    def _read(path: Path) -> CacheRecord | None:
        try:
            return CacheRecord(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            # Gone, or written by another torchpack version: a miss, never an error.
            return None

    def records(self, label: Label) -> list[CacheRecord]:
        return [record for path in self._record_files(label) if (record := self._read(path)) is not None]

    def previous_seconds(self, label: Label) -> float | None:
        """How long the target's most recent build took (for the progress bar)."""
        records = self.records(label)
        return records[0].seconds if records else None

    def lookup(self, target: Target, deps: dict[Label, str], output: Path) -> CacheRecord | None:
        """A record whose key matches the inputs as they are now, with ``output`` holding its
        archive (restored from the stored archives when needed); else ``None``."""
        digests: dict[str, str | None] = {}
        versions: dict[str, str | None] = {}
        for path in self._record_files(target.label):
            record = self._read(path)
            if record is None:
                continue
            for name in record.inputs.keys() - digests.keys():
                digests[name] = (self.digest_inputs([name]) or {}).get(name)
            if any(digests[name] is None for name in record.inputs):
                continue
            for name in record.distributions.keys() - versions.keys():
                versions[name] = _installed_version(name)
            inputs = {name: digests[name] or "" for name in record.inputs}
            now = {name: versions[name] for name in record.distributions}
            if self.key(target, inputs, deps, now) != record.key or not self._materialize(target.label, record, output):
                continue
            with contextlib.suppress(OSError):
                os.utime(path)  # most recently used
            return record
        return None

    def store(
        self, target: Target, deps: dict[Label, str], inputs: Iterable[str], distributions: Iterable[str],
        output: Path, sha256: str, size: int, seconds: float,
    ) -> None:
        """Record a successful build whose archive, ``sha256``, is at ``output``."""
        digests = self.digest_inputs(inputs)
        if digests is None:
            return  # an input vanished while building: nothing trustworthy to record
        versions = {name: _installed_version(name) for name in sorted(distributions)}
        key = self.key(target, digests, deps, versions)
        record = CacheRecord(key, digests, versions, sha256, size, round(seconds, 3))
        folder = self._target_folder(target.label)
        _write_atomically(folder / f"{key}-{sha256}.json", json.dumps(asdict(record), indent=1, sort_keys=True) + "\n")
        self._stamp(target.label, output, sha256)
        if size <= self.max_bytes:
            self._keep_archive(output, sha256)
        self._evict(folder)

    def forget(self, label: Label) -> None:
        """Drop every record of a target whose build failed (a failed --check makes them all
        suspect), and the archives only they referred to."""
        shutil.rmtree(self._target_folder(label), ignore_errors=True)
        self._evict(None)

    # -- archives ------------------------------------------------------------------------------

    def _stamp(self, label: Label, output: Path, sha256: str) -> None:
        with contextlib.suppress(OSError):
            stat = output.stat()
            stamp = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
            _write_atomically(self._target_folder(label) / "output.json", json.dumps(stamp) + "\n")

    def _output_digest(self, label: Label, output: Path) -> str | None:
        try:
            stat = output.stat()
            stamp = json.loads((self._target_folder(label) / "output.json").read_text(encoding="utf-8"))
            if [stamp.get("size"), stamp.get("mtime_ns"), stamp.get("inode")] == [stat.st_size, stat.st_mtime_ns, stat.st_ino]:
                return str(stamp.get("sha256"))
        except (OSError, ValueError, AttributeError):
            pass
        try:
            return file_digest(output)
        except OSError:
            return None

    def _materialize(self, label: Label, record: CacheRecord, output: Path) -> bool:
        """Make ``output`` hold the record's archive; ``False`` when it cannot."""
        if self._output_digest(label, output) == record.sha256:
            return True
        blob = self.blobs / record.sha256
        try:
            if blob.stat().st_size != record.size or file_digest(blob) != record.sha256:
                blob.unlink(missing_ok=True)  # damaged: useless
                return False
        except OSError:
            return False
        output.parent.mkdir(parents=True, exist_ok=True)
        if not self._copy(blob, output.parent, f"{temporary_prefix(output)}{os.getpid()}-", output):
            return False
        self._stamp(label, output, record.sha256)
        return True

    @staticmethod
    def _copy(source: Path, folder: Path, prefix: str, destination: Path) -> bool:
        """Put a copy of ``source`` at ``destination`` atomically, through a temporary in ``folder``.

        A copy, not a hard link: writing the output in place (``open(path, "wb")``) must not
        change the stored archive.
        """
        temporary = folder / f"{prefix}{secrets.token_hex(8)}"
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, destination)
            return True
        except OSError:
            return False
        finally:
            temporary.unlink(missing_ok=True)

    def _keep_archive(self, output: Path, sha256: str) -> None:
        blob = self.blobs / sha256
        if blob.exists():
            return
        self.blobs.mkdir(parents=True, exist_ok=True)
        # A concurrent build may have replaced or removed the output since: keep what is there
        # only if it is still this archive.
        if self._copy(output, self.blobs, f".tmp-{os.getpid()}-", blob) and file_digest(blob) != sha256:
            blob.unlink(missing_ok=True)

    def _evict(self, folder: Path | None) -> None:
        """Keep ``max_records`` per target (``folder``) and ``max_bytes`` of archives in all."""
        if folder is not None:
            for stale in _by_recent_use(folder.glob("*-*.json"))[self.max_records:]:
                stale.unlink(missing_ok=True)
        remove_dead_temporaries(self.blobs, ".tmp-")
        kept: set[str] = set()
        total = 0
        for path in _by_recent_use(self.actions.glob("*/*-*.json")):
            sha256 = path.stem.rpartition("-")[2]
            if sha256 in kept:
                continue
            try:
                size = (self.blobs / sha256).stat().st_size
            except OSError:
                continue  # a record without its archive still hits while the output is in place
            if total + size > self.max_bytes:
                path.unlink(missing_ok=True)
                continue
            kept.add(sha256)
            total += size
        with contextlib.suppress(OSError):
            for blob in self.blobs.iterdir():
                if not blob.name.startswith(".") and blob.name not in kept:
                    blob.unlink(missing_ok=True)

    # -- clean ---------------------------------------------------------------------------------

    def clear(self) -> tuple[int, int]:
        """Remove every record and stored archive; return (records, bytes of archives) removed."""
        records = len(list(self.actions.glob("*/*-*.json")))
        stored = 0
        with contextlib.suppress(OSError):
            stored = sum(blob.stat().st_size for blob in self.blobs.iterdir())
        shutil.rmtree(self.actions, ignore_errors=True)
        shutil.rmtree(self.blobs, ignore_errors=True)
        for old in self.folder.glob("*.json"):  # one-record-per-target files of older versions
            old.unlink(missing_ok=True)
        return records, stored
