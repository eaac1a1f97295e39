"""Distribution metadata of interned libraries, so that packaged code can ask for its version.

Libraries read their own version, and their dependencies', from installed metadata:
``importlib.metadata.version("httpx2")`` at import, transformers' ``require_version_core``
for each of its dependencies. Where a library is interned and not installed, that metadata
is missing and the import fails. :func:`save_distribution_metadata` stores the metadata of
chosen distributions as ordinary resources of the package ``torchpack_distributions``
(``<name>.dist-info/METADATA``; no new record kind, and archives without them are unchanged),
and :func:`add_metadata_facade` gives packaged code an ``importlib.metadata`` that finds them
first, falling back to the environment's for everything else.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

#: The package whose resources hold the saved metadata.
DISTRIBUTIONS_PACKAGE = "torchpack_distributions"
#: What is saved of each distribution (RECORD would list files of the install, not the archive).
_SAVED_FILES = ("METADATA", "entry_points.txt", "top_level.txt")


def normalized(name: str) -> str:
    """The PEP 503 form of a distribution name, as the saved folders are named."""
    return re.sub(r"[-_.]+", "-", name).lower()


def save_distribution_metadata(exporter: Any, names: Iterable[str]) -> None:
    """Save the installed metadata of the distributions ``names`` into ``exporter``'s package."""
    for name in names:
        distribution = importlib.metadata.distribution(name)  # PackageNotFoundError names it
        for file in _SAVED_FILES:
            text = distribution.read_text(file)
            if text is not None:
                exporter.save_text(DISTRIBUTIONS_PACKAGE, f"{normalized(name)}.dist-info/{file}", text)


def saved_distributions(record_names: Iterable[str]) -> frozenset[str]:
    """Normalized names of the distributions whose metadata an archive holds."""
    prefix = DISTRIBUTIONS_PACKAGE + "/"
    return frozenset(
        name[len(prefix) :].split(".dist-info/")[0]
        for name in record_names
        if name.startswith(prefix) and name.endswith(".dist-info/METADATA")
    )


class ArchiveDistribution(importlib.metadata.Distribution):
    """A distribution whose metadata files are records of an archive."""

    def __init__(self, read_text: Callable[[str], str | None]) -> None:
        self._read_text = read_text

    def read_text(self, filename: str) -> str | None:
        return self._read_text(filename)

    def locate_file(self, path: Any) -> Any:
        raise NotImplementedError("an interned distribution has no installed files")


def add_metadata_facade(
    facades: dict[str, ModuleType], saved: frozenset[str], load_text: Callable[[str, str], str]
) -> None:
    """Give packaged code an ``importlib.metadata`` that knows the saved distributions."""
    real = importlib.metadata
    facade = ModuleType(real.__name__, real.__doc__)
    facade.__getattr__ = functools.partial(getattr, real)  # type: ignore[attr-defined]
    facade.__spec__ = real.__spec__

    def read(folder: str, filename: str) -> str | None:
        try:
            return load_text(DISTRIBUTIONS_PACKAGE, f"{folder}/{filename}")
        except KeyError:  # RecordNotFoundError: a file that distribution did not have
            return None

    def distribution(distribution_name: str) -> importlib.metadata.Distribution:
        key = normalized(distribution_name)
        if key in saved:
            return ArchiveDistribution(functools.partial(read, f"{key}.dist-info"))
        return real.distribution(distribution_name)

    facade.distribution = distribution  # type: ignore[attr-defined]
    facade.version = lambda name: distribution(name).version  # type: ignore[attr-defined]
    facade.metadata = lambda name: distribution(name).metadata  # type: ignore[attr-defined]
    facade.requires = lambda name: distribution(name).requires  # type: ignore[attr-defined]
    facades["importlib.metadata"] = facade
    facades["importlib"].metadata = facade  # type: ignore[attr-defined]
