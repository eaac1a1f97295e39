"""``importlib`` and ``importlib.resources`` as packaged code sees them: bound to its importer.

Packaged code that names a module by string - ``importlib.import_module("pkg.mod")``,
``importlib.resources.files("pkg.data")`` - would otherwise reach the *environment's* import
system: it gets the installed copy of a module it was packaged with, or fails where that copy
is not installed, which defeats packaging it (networkx reads its atlas data this way). Each
PackageImporter therefore gives its modules facades of these two modules: every attribute is
the real module's, except the functions that resolve a module name, which resolve it through
the importer. Nothing outside the package changes.
"""

from __future__ import annotations

import functools
import importlib
import importlib.resources
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: The modules packaged code gets a facade of, instead of the environment's.
FACADE_MODULES = ("importlib", "importlib.resources")

#: ``importlib.resources`` functions besides ``files`` whose first argument may name a package by string.
_ANCHORED_FUNCTIONS = ("read_text", "read_binary", "open_text", "open_binary", "path", "contents", "is_resource")


def _facade_of(real: ModuleType) -> ModuleType:
    facade = ModuleType(real.__name__, real.__doc__)
    # PEP 562: attributes the facade does not define itself come from the real module, read
    # at access time (so submodules imported later, like importlib.util, are seen too).
    facade.__getattr__ = functools.partial(getattr, real)  # type: ignore[attr-defined]
    for name in ("__spec__", "__path__", "__file__", "__package__"):
        if hasattr(real, name):
            setattr(facade, name, getattr(real, name))
    return facade


def _anchored(real_function: Callable[..., Any], resolve: Callable[[Any], Any]) -> Callable[..., Any]:
    @functools.wraps(real_function)
    def through_the_importer(*args: Any, **kwargs: Any) -> Any:
        if args:
            args = (resolve(args[0]), *args[1:])
        for keyword in ("anchor", "package"):
            if keyword in kwargs:
                kwargs[keyword] = resolve(kwargs[keyword])
        return real_function(*args, **kwargs)

    return through_the_importer


def _files(real_files: Callable[..., Any], resolve: Callable[[Any], Any]) -> Callable[..., Any]:
    @functools.wraps(real_files)
    def files(anchor: Any = None) -> Any:
        if anchor is None:
            # files() without an anchor means the caller's package; the real function would
            # take this wrapper for the caller, so the caller is named here.
            return real_files(sys.modules[sys._getframe(1).f_globals["__name__"]])
        return real_files(resolve(anchor))

    return files


def make_facades(import_module: Callable[..., ModuleType]) -> dict[str, ModuleType]:
    """Facades of :data:`FACADE_MODULES` whose name-taking functions use ``import_module``."""

    def resolve(anchor: Any) -> Any:
        return import_module(anchor) if isinstance(anchor, str) else anchor

    package = _facade_of(importlib)
    resources = _facade_of(importlib.resources)
    package.import_module = import_module  # type: ignore[attr-defined]
    package.resources = resources  # type: ignore[attr-defined]
    resources.files = _files(importlib.resources.files, resolve)  # type: ignore[attr-defined]
    for name in _ANCHORED_FUNCTIONS:
        real_function = getattr(importlib.resources, name, None)
        if real_function is not None:
            setattr(resources, name, _anchored(real_function, resolve))
    return {"importlib": package, "importlib.resources": resources}
