"""torchpack: hermetic, byte-reproducible torch.package archives.

A drop-in reimplementation of :mod:`torch.package` - replace the import and the rest of the
code stays the same - plus a declarative build layer (:mod:`torchpack.build`).
"""

__version__ = "0.1.0"

from importlib import import_module
from typing import Any

from .errors import (
    ArchiveFormatError,
    CacheDirectoryWarning,
    EmptyMatchError,
    ExternVersionError,
    ExternVersionWarning,
    IntegrityDowngradeWarning,
    IntegrityError,
    MaterializedViewError,
    MaterializedViewWarning,
    ObjMismatchError,
    ObjNotFoundError,
    PackagingError,
    PickleDataError,
    RecordNotFoundError,
    RestrictedLoadError,
    SignatureError,
    SigningKeyError,
    SigningUnavailableError,
    TorchpackError,
)

# The library half needs torch, whose import takes about a second; the build layer and the
# CLI must not pay for it before they need it. These names are imported on first access.
_LAZY_NAMES = {
    "Directory": "file_structure_representation",
    "GlobGroup": "glob_group",
    "Importer": "importer",
    "OrderedImporter": "importer",
    "sys_importer": "importer",
    "PackageExporter": "package_exporter",
    "PackageImporter": "package_importer",
    "is_from_package": "analyze.is_from_package",
    "save_distribution_metadata": "_distributions",
}
# Submodules that `import torch.package` makes available as attributes, as ours are here.
_LAZY_SUBMODULES = frozenset(
    {
        "analyze",
        "file_structure_representation",
        "find_file_dependencies",
        "glob_group",
        "importer",
        "package_exporter",
        "package_importer",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    elif name in _LAZY_SUBMODULES:
        value = import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES, *_LAZY_SUBMODULES})


__all__ = [
    "ArchiveFormatError",
    "CacheDirectoryWarning",
    "Directory",
    "EmptyMatchError",
    "ExternVersionError",
    "ExternVersionWarning",
    "GlobGroup",
    "Importer",
    "IntegrityDowngradeWarning",
    "IntegrityError",
    "MaterializedViewError",
    "MaterializedViewWarning",
    "ObjMismatchError",
    "ObjNotFoundError",
    "OrderedImporter",
    "PackageExporter",
    "PackageImporter",
    "PackagingError",
    "PickleDataError",
    "RecordNotFoundError",
    "RestrictedLoadError",
    "SignatureError",
    "SigningKeyError",
    "SigningUnavailableError",
    "TorchpackError",
    "analyze",
    "is_from_package",
    "save_distribution_metadata",
    "sys_importer",
]
