"""torch.package's ``package_importer`` module name; the importer lives in :mod:`torchpack._package_import`."""

from ._package_import import PackageImporter
from .file_structure_representation import Directory
from .importer import Importer

__all__ = ["Directory", "Importer", "PackageImporter"]
