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

#: Types that are never storages and cannot carry ``__reduce_package__`` (their instances
#: have no ``__dict__``). A pickler asks for the persistent id of every object it meets, and
#: most are of these types - the numbers, sizes and tuples around each tensor - so checking
#: them first keeps the per-object cost of an export with many tensors down.
PLAIN_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None), tuple, list, dict, torch.Size})


def is_storage(obj: Any) -> bool:
    return isinstance(obj, (torch.UntypedStorage, torch.storage.TypedStorage))


def describe_storage(obj: Any) -> tuple[torch.UntypedStorage, Any, int]:
    """(untyped storage, storage class to pickle, element count) of a typed or untyped storage."""
    if isinstance(obj, torch.storage.TypedStorage):
        # The underscored forms: the public ones warn that TypedStorage is deprecated, and
        # silencing that per storage costs more than the rest of this function.
        return obj._untyped_storage, getattr(torch, obj._pickle_storage_type()), obj._size()
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
    # The view aliases the storage's memory and holds the storage, so that memory outlives
    # every use of the view - a CPU copy made just above included, and the writer hashes
    # large records in helper threads after this call returned.
    array = (ctypes.c_char * size).from_address(storage.data_ptr())
    array.owner = storage  # type: ignore[attr-defined]
    return memoryview(array).cast("B")


def storage_from_record(view: memoryview, *, share: bool) -> torch.UntypedStorage:
    """An untyped CPU storage over ``view`` (shared with it when ``share``, else a copy)."""
    if len(view) == 0:
        return torch.UntypedStorage(0)
    if share:
        # frombuffer keeps the mapping alive for as long as the storage lives.
        if not view.readonly:
            return torch.frombuffer(view, dtype=torch.uint8).untyped_storage()
        with warnings.catch_warnings():
            # torch warns that writing would be undefined; PackageImporter documents it.
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


def rebuild_tensor(
    storage: torch.storage.TypedStorage,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool,
    backward_hooks: Any,
    metadata: Any = None,
) -> torch.Tensor:
    """What ``torch._utils._rebuild_tensor_v2`` does, minus its per-tensor fake-mode search.

    Pickled tensors name that function; loading calls it once per tensor, and its search for
    an active FakeTensorMode costs more than building the tensor. Only with a dispatch mode
    on the stack or a tracing context can there be one, so only then is torch's own used.
    """
    if torch._C._len_torch_dispatch_stack() or torch._guards.TracingContext.try_get() is not None:
        return torch._utils._rebuild_tensor_v2(
            storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata
        )
    untyped = storage._untyped_storage
    tensor = torch.empty((0,), dtype=storage.dtype, device=untyped.device)
    tensor.set_(untyped, storage_offset, size, stride)
    tensor.requires_grad = requires_grad
    if metadata:
        torch._utils.set_tensor_metadata(tensor, metadata)
    tensor._backward_hooks = backward_hooks
    return tensor
