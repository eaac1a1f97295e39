"""Names and contents of the framework records under ``.data/``."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import sys
from collections.abc import Iterable, Mapping

#: The record format version torch.package writes and reads (PyTorch's "version 6").
FORMAT_VERSION = 6
#: Versions whose layout this reader understands.
SUPPORTED_FORMAT_VERSIONS = range(1, 11)
INTEGRITY_SCHEMA = 1

VERSION = ".data/version"
EXTERN_MODULES = ".data/extern_modules"
PYTHON_VERSION = ".data/python_version"
SERIALIZATION_ID = ".data/serialization_id"
INTEGRITY = ".data/torchpack/integrity.json"
BYTEORDER = "byteorder"


def storage_record(key: str) -> str:
    return f".data/{key}.storage"


def module_filename(module_name: str, is_package: bool) -> str:
    path = module_name.replace(".", "/")
    return f"{path}/__init__.py" if is_package else f"{path}.py"


def serialization_id(digests: Mapping[str, str]) -> str:
    """40 decimal digits derived from the content, in the shape torch.package uses."""
    blob = "".join(f"{name}\0{digest}\n" for name, digest in sorted(digests.items()))
    return str(int(hashlib.sha256(blob.encode()).hexdigest(), 16) % 10**40).zfill(40)


def integrity_document(
    records: Mapping[str, tuple[int, str]], provenance: Mapping[str, object]
) -> bytes:
    """The integrity record: every other record's size and SHA-256, and the build provenance."""
    document = {
        "schema": INTEGRITY_SCHEMA,
        "digest": "sha256",
        "records": {name: {"sha256": digest, "size": size} for name, (size, digest) in sorted(records.items())},
        "provenance": provenance,
    }
    return (json.dumps(document, sort_keys=True, indent=1) + "\n").encode()


@functools.lru_cache(maxsize=1)
def _distributions_by_package() -> Mapping[str, list[str]]:
    """Top-level import name -> distributions; scanning every installed package is slow, once."""
    import importlib.metadata

    return importlib.metadata.packages_distributions()


def provenance(extern_modules: Iterable[str]) -> dict[str, object]:
    """Versions of the tools and of every extern top-level distribution, for the integrity record."""
    import importlib.metadata

    import torch

    from . import __version__

    distributions: dict[str, str] = {}
    packages_to_dists = _distributions_by_package()
    for top in sorted({name.partition(".")[0] for name in extern_modules}):
        for dist in packages_to_dists.get(top, ()):
            try:
                distributions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return {
        "torchpack": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "extern_distributions": dict(sorted(distributions.items())),
    }
