"""torch.package's ``find_file_dependencies`` module name, over :mod:`torchpack._source_scan`."""

from __future__ import annotations

from ._source_scan import ImportReference, scan_source


def find_files_source_depends_on(src: str, package: str) -> list[tuple[str, str | None]]:
    """``(module, name)`` pairs imported by ``src`` (``name`` is None for ``import module``)."""
    return [(ref.module, ref.name) for ref in scan_source(src, package)]


class _ExtractModuleReferences:
    """torch.package's spelling of the same scan: ``_ExtractModuleReferences.run(src, package)``."""

    @classmethod
    def run(cls, src: str, package: str) -> list[tuple[str, str | None]]:
        return find_files_source_depends_on(src, package)


__all__ = ["ImportReference", "find_files_source_depends_on"]
