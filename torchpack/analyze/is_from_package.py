"""Whether an object or module came out of a package."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._mangling import is_mangled


def is_from_package(obj: Any) -> bool:
    """True for packaged modules and for instances of classes defined in packaged code.

    Objects of extern or standard-library types (a ``str`` loaded from a package, say) are not.
    """
    if isinstance(obj, ModuleType):
        return is_mangled(obj.__name__)
    return is_mangled(type(obj).__module__)
