"""Pausing the cyclic garbage collector around bulk work."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a pickle or an archive's index is built.

    Both create objects that live on (tensors, storages, records, directory entries) by the
    ten thousand, and the collector would walk the whole heap - torch's modules included -
    several times over them: a third of loading a pickle of many small tensors, and most of
    opening an archive of many records. Any garbage made meanwhile is collected later just
    the same. When the collector was already off (another load in progress, or the caller's
    choice), it is left off. Usable as a decorator too.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
