"""A package that re-points its spec's submodule search locations at pathlib.Path objects
after import, as transformers does; its ``__path__`` stays a list of str."""

import pathlib

__spec__.submodule_search_locations = [pathlib.Path(p) for p in __path__]

PARENT_MARKER = "resolver_pkgs.__init__ from the package"
