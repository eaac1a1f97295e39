"""torch.package's ``package_exporter`` module name; the exporter lives in :mod:`torchpack._exporter`."""

from ._exporter import ActionHook, PackageExporter
from ._resolution import ModuleAction as _ModuleProviderAction
from .errors import BrokenReason as PackagingErrorReason
from .errors import EmptyMatchError, PackagingError
from .importer import Importer, OrderedImporter, sys_importer

__all__ = [
    "ActionHook",
    "EmptyMatchError",
    "Importer",
    "OrderedImporter",
    "PackageExporter",
    "PackagingError",
    "PackagingErrorReason",
    "sys_importer",
]
