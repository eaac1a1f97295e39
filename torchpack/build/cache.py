"""The action cache: skip an export when nothing it depends on has changed.

A target's key digests (1) its canonical definition, (2) the digest of every file its previous
export actually read (the action's report: interned sources, resources, files factories opened),
(3) the SHA-256 of each dependency's archive and (4) the toolchain: torchpack's own sources, the
Python version and the installed distributions (torch included).  A record under
``<out>/.cache/`` stores the key, the input files and the archive's digest; a lookup recomputes
the key from the files as they are now and hits only if it matches and the archive on disk is
still the one recorded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .labels import Label
from .schema import Target, canonical_json

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def toolchain_fingerprint() -> str:
    """Digest of what besides the inputs shapes an archive: torchpack, Python, installed packages.

    torchpack's sources are hashed rather than its version so that editing torchpack itself
    (development, an editable install) invalidates the cache.  Installed distributions matter
    because the archive records the version of every extern distribution and factories may use
    any library (torch's version is among them).
    """
    import torchpack

    digest = hashlib.sha256()
    digest.update(f"{platform.python_implementation()} {sys.version} {sys.executable}\n".encode())
    digest.update(f"SOURCE_DATE_EPOCH={os.environ.get('SOURCE_DATE_EPOCH', '')}\n".encode())
    distributions = sorted({(d.metadata["Name"] or "", d.version) for d in importlib.metadata.distributions()})
    digest.update(json.dumps(distributions).encode())
    for home in torchpack.__path__:
        for source in sorted(Path(home).rglob("*.py")):
            digest.update(f"{source.relative_to(home).as_posix()} {file_digest(source)}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheRecord:
    """What the last successful build of a target saw and produced."""

    key: str
    inputs: dict[str, str]  # cache-record path -> SHA-256
    sha256: str
    size: int
    mtime_ns: int  # of the archive: unchanged size and mtime spare hashing a large archive
    seconds: float


class ActionCache:
    """Cache records, one JSON file per target under ``<out>/.cache/``."""

    def __init__(self, out: Path, root: Path, toolchain: str) -> None:
        self.folder = out / ".cache"
        self.root = root
        self.toolchain = toolchain

    def _record_path(self, label: Label) -> Path:
        return self.folder / (hashlib.sha256(str(label).encode()).hexdigest()[:32] + ".json")

    def _resolve(self, path: str) -> Path:
        return Path(path) if os.path.isabs(path) else self.root / path

    def digest_inputs(self, inputs: list[str]) -> dict[str, str] | None:
        """SHA-256 of each input file now; ``None`` if one has disappeared."""
        try:
            return {path: file_digest(self._resolve(path)) for path in inputs}
        except OSError:
            return None

    def key(self, target: Target, inputs: dict[str, str], deps: dict[Label, str]) -> str:
        return hashlib.sha256(
            canonical_json(
                {
                    "definition": target.definition(),
                    "inputs": inputs,
                    "deps": {str(label): digest for label, digest in deps.items()},
                    "toolchain": self.toolchain,
                }
            ).encode()
        ).hexdigest()

    def previous(self, label: Label) -> CacheRecord | None:
        try:
            data = json.loads(self._record_path(label).read_text(encoding="utf-8"))
            return CacheRecord(**data)
        except (OSError, ValueError, TypeError):
            # Missing, or written by another torchpack version: a miss, never an error.
            return None

    def lookup(self, target: Target, deps: dict[Label, str], output: Path) -> CacheRecord | None:
        """The record if ``output`` is up to date for ``target``, else ``None``."""
        record = self.previous(target.label)
        if record is None:
            return None
        inputs = self.digest_inputs(sorted(record.inputs))
        if inputs is None or self.key(target, inputs, deps) != record.key:
            return None
        try:
            stat = output.stat()
            if stat.st_size != record.size:
                return None
            if stat.st_mtime_ns != record.mtime_ns and file_digest(output) != record.sha256:
                return None
        except OSError:
            return None
        return record

    def store(self, label: Label, record: CacheRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._record_path(label)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        temporary.write_text(json.dumps(asdict(record), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, path)

    def forget(self, label: Label) -> None:
        """Drop the record before rebuilding, so that a failed build leaves no stale entry."""
        self._record_path(label).unlink(missing_ok=True)
