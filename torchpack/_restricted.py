"""Restricted loading: which pickle globals an importer may resolve.

Unpickling calls whatever a pickle names - ``os.system`` as readily as a model class - so an
archive from an untrusted source must not be loaded with the ordinary unpickler. In restricted
mode every global a pickle references is checked *before* its module is imported: it must live
in one of the package's own (interned) modules, or match the allow-list. The default allow-list
covers what tensors, storages, parameters and the standard containers need; each of its entries
only rebuilds data from arguments that are themselves checked.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

import torch

from ._globbing import GlobGroup
from .errors import RestrictedLoadError

#: Globals that rebuild tensors and plain containers, as ``module.name`` globs.
DEFAULT_ALLOWED_GLOBALS: tuple[str, ...] = (
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._tensor._rebuild_from_type_v2",
    "torch.*Storage",
    "torch.storage.UntypedStorage",
    "torch.Size",
    "torch.device",
    *sorted(
        f"torch.{name}"
        for name, value in vars(torch).items()
        if isinstance(value, (torch.dtype, torch.memory_format, torch.qscheme))
    ),
    "torch.serialization._get_layout",  # how a layout pickles: a lookup by its name
    "collections.OrderedDict",
    "collections.defaultdict",
    "collections.deque",
    "builtins.set",
    "builtins.frozenset",
    "builtins.complex",
    "builtins.slice",
    "builtins.range",
    "builtins.bytearray",
)


class GlobalPolicy:
    """Decides whether a pickle may reference ``module.name``."""

    def __init__(self, package_modules: Collection[str], allowed: Iterable[str] = ()) -> None:
        self._package_modules = package_modules
        self._allowed = GlobGroup([*DEFAULT_ALLOWED_GLOBALS, *allowed], separator=".")

    def is_allowed(self, module: str, name: str) -> bool:
        return module in self._package_modules or self._allowed.matches(f"{module}.{name}")

    def checker(self, archive: str, record: str) -> Callable[[str, str], None]:
        """The ``allow_global`` hook for unpickling ``record``: raises on a global not allowed."""

        def check(module: str, name: str) -> None:
            if not self.is_allowed(module, name):
                raise RestrictedLoadError(
                    f"{archive}: {record} references the global {module}.{name}, which restricted "
                    f"loading does not allow (add it to allowed_globals if it is trusted)"
                )

        return check
