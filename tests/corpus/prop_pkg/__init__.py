"""A small package the property tests intern: a class whose instances get pickled, a
torch.nn.Module subclass, and module-level dict/set state."""

from .models import Point, Tiny
from . import registry

__all__ = ["Point", "Tiny", "registry"]
