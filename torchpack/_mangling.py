"""Mangled names: how modules loaded from a package are told apart from everything else.

Each PackageImporter owns a unique prefix ``<torch_package_N>``; the modules it creates get
``<torch_package_N>.name`` as ``__name__`` and the same prefix on ``__file__``. The format is
torch.package's, so tools that demangle names (``torch.package`` itself, torch.fx, torch.jit)
understand ours.
"""

from __future__ import annotations

import itertools
import re
import threading

_MANGLE_PATTERN = re.compile(r"^<torch_package_(\d+)>")

# One counter for the whole process: prefixes must never repeat between importers, or two
# packages would share class names, linecache entries and tracebacks. torch.package counts
# its own importers from 0 in the same format, so ours start far above that range and a
# process that loads archives with both never sees two importers with one prefix.
FIRST_INDEX = 1000
_counter = itertools.count(FIRST_INDEX)
_counter_lock = threading.Lock()


class PackageMangler:
    """Adds and strips the unique prefix of one importer."""

    def __init__(self) -> None:
        with _counter_lock:
            self._index = next(_counter)
        self.prefix = f"<torch_package_{self._index}>"

    def mangle(self, name: str) -> str:
        if not name:
            # "<torch_package_N>." would name no module, and demangle could not give "" back.
            raise ValueError("cannot mangle an empty module name")
        return f"{self.prefix}.{name}"

    def demangle(self, mangled: str) -> str:
        """Strip this importer's prefix; names from elsewhere pass through unchanged."""
        if mangled.startswith(self.prefix + "."):
            return mangled[len(self.prefix) + 1 :]
        return mangled

    def parent_name(self) -> str:
        return self.prefix


def is_mangled(name: str) -> bool:
    return _MANGLE_PATTERN.match(name) is not None


def demangle(name: str) -> str:
    """Strip any importer's prefix: ``<torch_package_3>.foo.bar`` -> ``foo.bar``."""
    match = _MANGLE_PATTERN.match(name)
    if match is None:
        return name
    rest = name[match.end() :]
    return rest[1:] if rest.startswith(".") else rest


def get_mangle_prefix(name: str) -> str:
    match = _MANGLE_PATTERN.match(name)
    return match.group(0) if match else name
