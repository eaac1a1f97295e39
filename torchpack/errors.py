"""The torchpack exception hierarchy.

Every error torchpack raises on purpose derives from :class:`TorchpackError`, so callers
(the CLI, the build layer) can tell "the input is bad" apart from "torchpack is broken".
The torch.package-compatible names (``PackagingError``, ``EmptyMatchError``,
``ObjNotFoundError``, ``ObjMismatchError``) sit in the same tree.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class TorchpackError(Exception):
    """Base class of every error torchpack raises deliberately."""


class ArchiveFormatError(TorchpackError, ValueError):
    """The archive is not a valid torch.package ZIP (truncated, malformed, unsafe names...)."""


class RecordNotFoundError(TorchpackError, KeyError):
    """The archive has no record of the requested name (a KeyError, as for a mapping)."""

    def __str__(self) -> str:
        # KeyError would show the message in quotes, as if it were the missing key itself.
        return str(self.args[0]) if self.args else ""


class IntegrityError(ArchiveFormatError):
    """A record's bytes do not match the digest or size the archive recorded for it."""


class SignatureError(IntegrityError):
    """The archive is unsigned, or its signature is malformed or not by a trusted key."""


class SigningKeyError(TorchpackError, ValueError):
    """A signing or trusted key cannot be read as an Ed25519 key."""


class SigningUnavailableError(TorchpackError, ImportError):
    """Signing or checking signatures needs ``cryptography`` (``pip install 'torchpack[sign]'``)."""


class RestrictedLoadError(TorchpackError, RuntimeError):
    """Restricted loading refused a pickle: a global outside the allow-list, packaged code not
    trusted, a call or opcode it does not allow, or an allocation over its budget."""


class PickleDataError(ArchiveFormatError):
    """A pickle's data does not describe what it claims: an odd persistent id, odd arguments to
    a tensor rebuild, a tensor reaching outside its storage record."""


class ExternVersionError(TorchpackError, RuntimeError):
    """An extern distribution's installed version differs from the recorded one (strict mode)."""


class ExternVersionWarning(UserWarning):
    """An extern distribution's installed version differs from the one recorded at export."""


class IntegrityDowngradeWarning(UserWarning):
    """An archive written by torchpack has lost its integrity record: only CRC-32s are checked.

    torchpack always writes ``.data/torchpack/integrity.json``; an archive laid out as
    torchpack lays it out but without one was changed after export. Refuse such archives with
    ``PackageImporter(..., require_integrity=True)`` or ``torchpack verify --require-integrity``.
    """


class CacheDirectoryWarning(UserWarning):
    """The on-disk cache folder is unsafe to trust (a symlink, someone else's, writable by others): not used."""


class MaterializedViewError(TorchpackError, OSError):
    """A materialized view (see torchpack._materialize) could not be extracted intact."""


class MaterializedViewWarning(UserWarning):
    """A materialized view on disk did not match its archive and was extracted again."""


class EmptyMatchError(TorchpackError):
    """A pattern passed with ``allow_empty=False`` matched no module by the time the exporter closed."""


class ObjNotFoundError(TorchpackError):
    """An object could not be found under the module and name it claims."""


class ObjMismatchError(TorchpackError):
    """The object found under an object's claimed name is a different object."""


class BrokenReason(enum.Enum):
    """Why a module cannot be packaged, with the fix to suggest to the user."""

    DENIED = ("Module was denied by a pattern.", "remove the dependency, or change the deny pattern")
    NOT_FOUND = ("Module not found.", "install it, fix the import, or mark it extern()/mock()")
    NO_ACTION = (
        "Module did not match against any action pattern. Extern, mock, or intern it.",
        "add an intern(), extern() or mock() pattern that matches it",
    )
    NO_SOURCE = (
        "Module had no Python source: only source modules can be interned.",
        "extern() or mock() it (C extensions and bytecode-only modules cannot be interned)",
    )
    MOCKED_BUT_USED = (
        "Module was mocked out, but is still being used in the package.",
        "extern() or intern() it instead of mock(), or stop pickling objects from it",
    )
    DEPENDENCY_RESOLUTION_FAILED = (
        "Dependency resolution failed.",
        "check the module's source for syntax errors",
    )

    @property
    def description(self) -> str:
        return self.value[0]

    @property
    def hint(self) -> str:
        return self.value[1]


@dataclass(frozen=True)
class BrokenModule:
    """One module the exporter could not package, and why."""

    name: str
    reason: BrokenReason
    context: str | None = None
    #: Import chain from a saved object or module to this module (filled with ``debug=True``).
    import_path: tuple[str, ...] = field(default=())


class PackagingError(TorchpackError):
    """Raised at export time when modules cannot be packaged; lists every one, grouped by reason."""

    def __init__(self, broken: Iterable[BrokenModule] | object = (), debug: bool = False) -> None:
        # torch.package's signature is PackagingError(dependency_graph, debug); ours takes the
        # already-computed broken modules so that the message does not depend on a graph type.
        self.broken: tuple[BrokenModule, ...] = tuple(broken) if isinstance(broken, Iterable) else ()
        self.debug = debug
        super().__init__(self._render())

    @property
    def by_reason(self) -> Mapping[BrokenReason, list[BrokenModule]]:
        grouped: dict[BrokenReason, list[BrokenModule]] = {}
        for module in self.broken:
            grouped.setdefault(module.reason, []).append(module)
        return grouped

    def _render(self) -> str:
        lines = ["\n"]
        for reason, modules in self.by_reason.items():
            lines.append(f"* {reason.description}\n")
            for module in modules:
                lines.append(f"    {module.name}\n")
                if module.context:
                    lines.append(f"      Context: {module.context}\n")
                if module.import_path:
                    lines.append(f"      A path to {module.name}: {' -> '.join(module.import_path)}\n")
            lines.append(f"  Hint: {reason.hint}.\n")
        if not self.debug and any(m.reason is not BrokenReason.DENIED for m in self.broken):
            lines.append("Set debug=True when creating the PackageExporter to see the import path of each module.\n")
        return "".join(lines)
