"""From a PackagingError, the first chain of dependencies that reaches each broken module."""

from __future__ import annotations

from ..errors import PackagingError


def find_first_use_of_broken_modules(exc: PackagingError) -> dict[str, list[str]]:
    """Map each broken module of ``exc`` to a path from a saved object or module to it."""
    if not isinstance(exc, PackagingError):
        raise TypeError(f"expected a PackagingError, got {type(exc).__name__}")
    return {module.name: list(module.import_path) for module in exc.broken}
