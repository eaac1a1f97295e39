"""torch.package's ``glob_group`` module name; matching lives in :mod:`torchpack._globbing`."""

from ._globbing import GlobGroup, GlobPattern

__all__ = ["GlobGroup", "GlobPattern"]
