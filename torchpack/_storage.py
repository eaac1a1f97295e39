"""Tensor storages in and out of archive records.

Export hands the writer a zero-copy view of each storage's memory, so the model is never
duplicated. Import builds storages directly on the archive's copy-on-write mapping when the
record is stored and suitably aligned (reading a parameter then only faults its pages in);
otherwise - buffers, unaligned records - it copies the bytes once.
"""

from __future__ import annotations

import ctypes
import warnings
from collections.abc import Callable
from typing import Any, Union

import torch
from torch.serialization import default_restore_location, location_tag

MapLocation = Union[None, str, torch.device, dict, Callable[[Any, str], Any]]


def is_storage(obj: Any) -> bool:
    return isinstance(obj, (torch.UntypedStorage, torch.storage.TypedStorage))


def describe_storage(obj: Any) -> tuple[torch.UntypedStorage, Any, int]:
    """(untyped storage, storage class to pickle, element count) of a typed or untyped storage."""
    if isinstance(obj, torch.storage.TypedStorage):
        with warnings.catch_warnings():
            # pickle_storage_type is the public name but warns that TypedStorage is deprecated.
            warnings.simplefilter("ignore", UserWarning)
            storage_class = getattr(torch, obj.pickle_storage_type())
            count = obj.size()
        return obj._untyped_storage, storage_class, count
    return obj, torch.UntypedStorage, obj.nbytes()


def storage_location(storage: torch.UntypedStorage) -> str:
    return location_tag(storage)


def storage_bytes(storage: torch.UntypedStorage) -> memoryview:
    """The storage's bytes without copying them (CPU storages; others are copied to CPU first)."""
    if storage.device.type != "cpu":
        storage = storage.cpu()
    size = storage.nbytes()
    if size == 0:
        return memoryview(b"")
    # The view aliases tensor memory; the caller keeps the storage alive while using it.
    return memoryview((ctypes.c_char * size).from_address(storage.data_ptr())).cast("B")


def storage_from_record(view: memoryview, *, share: bool) -> torch.UntypedStorage:
    """An untyped CPU storage over ``view`` (shared with it when ``share``, else a copy)."""
    if len(view) == 0:
        return torch.UntypedStorage(0)
    if share:
        # frombuffer keeps the mapping alive for as long as the storage lives.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.frombuffer(view, dtype=torch.uint8).untyped_storage()
    return torch.frombuffer(bytearray(view), dtype=torch.uint8).untyped_storage()


def restore_location(storage: torch.UntypedStorage, location: str, map_location: MapLocation) -> Any:
    """Move a loaded storage where ``map_location`` says, with torch.load's meaning of it."""
    if map_location is None:
        return default_restore_location(storage, location)
    if isinstance(map_location, dict):
        return default_restore_location(storage, map_location.get(location, location))
    if isinstance(map_location, (str, torch.device)):
        return default_restore_location(storage, str(map_location))
    moved = map_location(storage, location)
    return default_restore_location(storage, location) if moved is None else moved
