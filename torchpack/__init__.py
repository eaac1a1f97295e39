"""torchpack: hermetic, byte-reproducible torch.package archives.

A drop-in reimplementation of :mod:`torch.package` - replace the import and the rest of the
code stays the same - plus a declarative build layer (:mod:`torchpack.build`).
"""

__version__ = "0.1.0"

from . import analyze
from .analyze.is_from_package import is_from_package
from .errors import (
    ArchiveFormatError,
    EmptyMatchError,
    ExternVersionError,
    ExternVersionWarning,
    IntegrityError,
    ObjMismatchError,
    ObjNotFoundError,
    PackagingError,
    RecordNotFoundError,
    RestrictedLoadError,
    TorchpackError,
)
from .file_structure_representation import Directory
from .glob_group import GlobGroup
from .importer import Importer, OrderedImporter, sys_importer
from .package_exporter import PackageExporter
from .package_importer import PackageImporter

__all__ = [
    "ArchiveFormatError",
    "Directory",
    "EmptyMatchError",
    "ExternVersionError",
    "ExternVersionWarning",
    "GlobGroup",
    "Importer",
    "IntegrityError",
    "ObjMismatchError",
    "ObjNotFoundError",
    "OrderedImporter",
    "PackageExporter",
    "PackageImporter",
    "PackagingError",
    "RecordNotFoundError",
    "RestrictedLoadError",
    "TorchpackError",
    "analyze",
    "is_from_package",
    "sys_importer",
]
