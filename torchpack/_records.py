"""Names and contents of the framework records under ``.data/``."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

from . import _digest as digest
from ._stdlib import is_stdlib_module

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
#: Modules left out at export as optional and not installed, one per line (torchpack only).
OPTIONAL_MISSING = ".data/torchpack/optional_missing"
#: ``module:function`` and a newline: what ``torchpack run`` calls (BUILD.toml ``main``).
ENTRY_POINT = ".data/torchpack/entry_point"
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
    """The integrity record: every other record's size and digest, and the build provenance.

    The text is ``json.dumps(document, sort_keys=True, indent=1)``. With ``indent`` json
    encodes in pure Python, which costs seconds for 100,000 records, so the records part is
    formatted here in exactly that shape and spliced in.
    """
    document = {
        "schema": INTEGRITY_SCHEMA,
        "digest": digest.WRITTEN,
        "records": _RECORDS_PLACEHOLDER,
        "provenance": provenance,
    }
    text = json.dumps(document, sort_keys=True, indent=1)
    quote = json.encoder.encode_basestring_ascii  # what json.dumps uses for keys and strings
    algorithm = quote(digest.WRITTEN)
    entries = [
        f'  {quote(name)}: {{\n   {algorithm}: {quote(hex_digest)},\n   "size": {int(size)}\n  }}'
        for name, (size, hex_digest) in sorted(records.items())
    ]
    block = "{\n" + ",\n".join(entries) + "\n }" if entries else "{}"
    return (text.replace(quote(_RECORDS_PLACEHOLDER), block, 1) + "\n").encode()


#: Stands for the records in the document until they are spliced in; no real value contains it.
_RECORDS_PLACEHOLDER = "\0torchpack-records\0"


@functools.lru_cache(maxsize=1)
def distributions_by_package() -> Mapping[str, list[str]]:
    """Top-level import name -> distributions; scanning every installed package is slow, once.

    Python 3.10's ``importlib.metadata.packages_distributions`` reads only ``top_level.txt``,
    which only setuptools writes: numpy's wheel, for one, has none, so numpy would come from
    no distribution. From 3.11 on it names a distribution's top levels from its file list when
    that file is missing; on 3.10 this does the same.
    """
    import importlib.metadata

    if sys.version_info >= (3, 11):
        return importlib.metadata.packages_distributions()
    by_package: dict[str, list[str]] = {}
    for distribution in importlib.metadata.distributions():
        declared = (distribution.read_text("top_level.txt") or "").split()
        for top in declared or _top_levels_of_files(distribution.files or ()):
            by_package.setdefault(top, []).append(distribution.metadata["Name"])
    return by_package


def _top_levels_of_files(files: Iterable[PurePosixPath]) -> set[str]:
    """The importable top-level names among a distribution's files: a folder's name, or a
    module's at the top (``six.py``, ``_cffi_backend.cpython-310-x86_64-linux-gnu.so``)."""
    tops = set()
    for file in files:
        first, *rest = file.parts
        name = first if rest else inspect.getmodulename(first)
        if name and "." not in name:
            tops.add(name)
    return tops


@functools.lru_cache(maxsize=None)
def _distributions_providing(top: str) -> tuple[str, ...]:
    """The distributions that install the top-level module ``top``.

    Most are named after the module they install (torch, numpy, networkx): looking one up by
    name reads one folder. Finding any other means reading every installed distribution's
    file list, over 100 ms, which an export of a model that only externs torch should not pay.
    """
    import importlib.metadata

    if is_stdlib_module(top):
        return ()
    try:
        return (importlib.metadata.distribution(top).metadata["Name"],)
    except importlib.metadata.PackageNotFoundError:
        return tuple(distributions_by_package().get(top, ()))


@functools.lru_cache(maxsize=None)
def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (``None``: not installed), once per process.

    Each lookup parses the distribution's metadata, which costs more than exporting or
    loading a small model; and the code this process runs is what was installed when it
    imported it, so a later upgrade on disk would not describe it better.
    """
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(extern_modules: Iterable[str], requires: Iterable[str] = ()) -> dict[str, object]:
    """Versions of the tools and of every extern top-level distribution, for the integrity record;
    ``requires``, the build's PEP 508 pins, only when there are some (other archives keep their bytes)."""
    import torch

    from . import __version__

    distributions: dict[str, str] = {}
    for top in sorted({name.partition(".")[0] for name in extern_modules}):
        for dist in _distributions_providing(top):
            version = installed_version(dist)
            if version is not None:
                distributions[dist] = version
    pins = list(requires)
    return {
        **({"requires": pins} if pins else {}),
        "torchpack": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "extern_distributions": dict(sorted(distributions.items())),
    }
