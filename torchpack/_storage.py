"""Tensor storages in and out of archive records.

Export hands the writer a zero-copy view of each storage's memory, so the model is never
duplicated. Import builds storages directly on the archive's copy-on-write mapping when the
record is stored and suitably aligned (reading a parameter then only faults its pages in);
otherwise - buffers, unaligned records - it copies the bytes once.
"""

from __future__ import annotations

import collections
import ctypes
import operator
import os
import sys
import warnings
from collections.abc import Callable
from types import FunctionType
from typing import Any, Union

import torch
from torch.serialization import default_restore_location, location_tag

from .errors import PickleDataError

MapLocation = Union[None, str, torch.device, dict, Callable[[Any, str], Any]]

#: Types that are never storages and cannot carry ``__reduce_package__`` (their instances
#: have no ``__dict__``). A pickler asks for the persistent id of every object it meets, and
#: most are of these types - the numbers, sizes and tuples around each tensor - so checking
#: them first keeps the per-object cost of an export with many tensors down.
PLAIN_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None), tuple, list, dict, torch.Size})


#: What the pickler saves as a storage record: ``isinstance(obj, STORAGE_TYPES)``.
STORAGE_TYPES = (torch.UntypedStorage, torch.storage.TypedStorage)


def describe_storage(obj: Any) -> tuple[torch.UntypedStorage, Any, int]:
    """(untyped storage, storage class to pickle, element count) of a typed or untyped storage."""
    if not isinstance(obj, torch.UntypedStorage):  # a TypedStorage, see STORAGE_TYPES
        # The underscored forms: the public ones warn that TypedStorage is deprecated, and
        # silencing that per storage costs more than the rest of this function.
        return obj._untyped_storage, getattr(torch, obj._pickle_storage_type()), obj._size()
    return obj, torch.UntypedStorage, obj.nbytes()


def storage_location(storage: torch.UntypedStorage) -> str:
    return location_tag(storage)


#: torch's (priority, tagger, deserializer) list, kept sorted in place, and its deserializer
#: for "cpu" storages.
_REGISTRY = torch.serialization._package_registry
_CPU_RESTORE = torch.serialization._cpu_deserialize


def cpu_tagged_first() -> bool:
    """Whether torch asks its CPU tagger first, so that every CPU storage's location is "cpu".

    A tagger registered with a lower priority could claim CPU storages; then only
    :func:`storage_location` is sure to say what torch would.
    """
    return bool(_REGISTRY) and _REGISTRY[0][1] is torch.serialization._cpu_tag


class StorageRef:
    """A plain CPU tensor's storage as :func:`plain_tensor_reduction` hands it to the pickler.

    It carries what :func:`describe_storage` would say of the TypedStorage that torch's own
    reduction wraps around the storage, so the exporter's persistent id is the same without
    that object being built (its constructor costs more than the rest of the reduction).
    """

    __slots__ = ("untyped", "storage_class", "count")

    def __init__(self, untyped: torch.UntypedStorage, storage_class: Any, count: int) -> None:
        self.untyped = untyped
        self.storage_class = storage_class
        self.count = count


#: dtype -> the legacy storage class its TypedStorage pickles as; filled as dtypes are met.
_STORAGE_CLASSES: dict[torch.dtype, Any] = {}


def _storage_class(dtype: torch.dtype) -> Any:
    storage_class = _STORAGE_CLASSES.get(dtype)
    if storage_class is None:
        # Asked of a TypedStorage, as the slow path does, so both always agree.
        empty = torch.storage.TypedStorage(wrap_storage=torch.UntypedStorage(0), dtype=dtype, _internal=True)
        storage_class = _STORAGE_CLASSES[dtype] = describe_storage(empty)[1]
    return storage_class


if sys.version_info >= (3, 11):
    _instance_state = operator.methodcaller("__getstate__")
else:  # object.__getstate__ arrived in Python 3.11; before, a tensor's own state is its __dict__
    _instance_state = operator.attrgetter("__dict__")


def plain_tensor_reduction(tensor: torch.Tensor) -> tuple[Any, tuple[Any, ...]] | None:
    """torch's own reduction of a plain CPU tensor, built faster; ``None`` for any other tensor.

    ``Tensor.__reduce_ex__`` costs more than everything else pickling a small tensor takes.
    For an exact ``torch.Tensor`` on the CPU, strided, neither quantized nor nested, without
    Python state, backward hooks or conj/neg bits, of a dtype with a legacy storage class,
    it returns ``(_rebuild_tensor_v2, (TypedStorage, offset, size, stride, requires_grad,
    OrderedDict()))``; this returns the same with a :class:`StorageRef` for the TypedStorage,
    which the exporter gives the same persistent id, so the pickle bytes are identical. A
    fresh OrderedDict per tensor, as torch makes, keeps the pickler's memo numbering the same.
    Non-leaf tensors that require grad keep torch's path.
    """
    if not (tensor.is_cpu and tensor.layout is torch.strided) or tensor.is_quantized or tensor.is_nested:
        return None
    if tensor.requires_grad and not tensor.is_leaf:
        return None
    # What torch._utils._get_obj_state and get_tensor_metadata ask, without their Python layers.
    if tensor._backward_hooks or _instance_state(tensor) or torch._C._get_tensor_metadata(tensor):
        return None
    dtype = tensor.dtype
    if dtype in _NEW_DTYPES:
        return None  # pickled with an UntypedStorage and _rebuild_tensor_v3
    untyped = tensor.untyped_storage()
    reference = StorageRef(untyped, _storage_class(dtype), untyped.nbytes() // tensor.element_size())
    arguments = (
        reference,
        tensor.storage_offset(),
        tuple(tensor.size()),
        tensor.stride(),
        tensor.requires_grad,
        collections.OrderedDict(),
    )
    return torch._utils._rebuild_tensor_v2, arguments


#: dtypes torch pickles with an untyped storage (no legacy storage class): torch's slow path.
_NEW_DTYPES = frozenset(torch.storage._new_dtypes())


#: Storages below this size are copied by :func:`storage_bytes`; the model's large ones never are.
_SMALL_STORAGE = 1 << 12


def storage_bytes(storage: torch.UntypedStorage) -> bytes | memoryview:
    """The storage's bytes; large ones are not copied (see :func:`cpu_storage_bytes`). Storages
    on other devices are copied to the CPU first."""
    if storage.device.type != "cpu":
        storage = storage.cpu()
    return cpu_storage_bytes(storage)


def cpu_storage_bytes(storage: torch.UntypedStorage) -> bytes | memoryview:
    """The bytes of a storage known to be on the CPU (asking costs more than copying 4 KiB):
    a copy below :data:`_SMALL_STORAGE`, a view of the storage's own memory from there up."""
    size = storage.nbytes()
    if size == 0:
        return b""
    if size < _SMALL_STORAGE:
        # A copy of a small storage is made in one call; the aliasing view below takes several.
        return ctypes.string_at(storage.data_ptr(), size)
    # The view aliases the storage's memory and holds the storage, so that memory outlives
    # every use of the view - a CPU copy made just above included, and the writer hashes
    # large records in helper threads after this call returned.
    array = (ctypes.c_char * size).from_address(storage.data_ptr())
    array.owner = storage  # type: ignore[attr-defined]
    return memoryview(array).cast("B")


def storage_from_record(view: memoryview, *, share: bool) -> torch.UntypedStorage:
    """An untyped CPU storage over ``view`` (shared with it when ``share``, else a copy)."""
    if len(view) == 0:
        # UntypedStorage(0) would be resizable: a tensor set on it could grow it to any size
        # (exposing uninitialised memory). A storage over an empty file mapping never grows.
        return torch.UntypedStorage.from_file(os.devnull, False, 0)
    if share:
        # frombuffer keeps the mapping alive for as long as the storage lives.
        if not view.readonly:
            return torch.frombuffer(view, dtype=torch.uint8).untyped_storage()
        with warnings.catch_warnings():
            # torch warns that writing would be undefined; PackageImporter documents it.
            warnings.simplefilter("ignore", UserWarning)
            return torch.frombuffer(view, dtype=torch.uint8).untyped_storage()
    return torch.frombuffer(bytearray(view), dtype=torch.uint8).untyped_storage()


def storage_class_dtype(storage_class: Any) -> torch.dtype:
    """The dtype of the storage class a persistent id names (``UntypedStorage``: bytes)."""
    if storage_class is torch.UntypedStorage:
        return torch.uint8
    if not (isinstance(storage_class, type) and issubclass(storage_class, torch.storage._LegacyStorage)):
        raise PickleDataError(f"the storage persistent id names {storage_class!r:.60}, no storage class")
    # `_dtype`: the public `dtype` of the legacy storage classes warns that they are deprecated.
    return storage_class._dtype


def typed_storage(untyped: torch.UntypedStorage, dtype: torch.dtype) -> torch.storage.TypedStorage:
    """``TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)`` in a quarter of the
    time: loading makes one per tensor. Its argument checks come down to two type tests;
    anything else (a ``map_location`` that returned another kind of object, a pickle naming
    an odd storage class) goes to torch's constructor, and its errors."""
    if type(untyped) is not torch.UntypedStorage or type(dtype) is not torch.dtype:
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
    typed = object.__new__(torch.storage.TypedStorage)
    typed.dtype = dtype
    typed._untyped_storage = untyped
    return typed


def restore_location(storage: torch.UntypedStorage, location: str, map_location: MapLocation) -> Any:
    """Move a loaded storage where ``map_location`` says, with torch.load's meaning of it."""
    if map_location is None:
        if location == "cpu" and _REGISTRY[0][2] is _CPU_RESTORE:
            return storage  # what torch's first deserializer, the CPU one, says: once per tensor
        return default_restore_location(storage, location)
    if isinstance(map_location, dict):
        return default_restore_location(storage, map_location.get(location, location))
    if isinstance(map_location, (str, torch.device)):
        return default_restore_location(storage, str(map_location))
    moved = map_location(storage, location)
    return default_restore_location(storage, location) if moved is None else moved


def fake_mode_possible() -> bool:
    """Whether a FakeTensorMode could be active: only with a dispatch mode or a tracing context."""
    return bool(torch._C._len_torch_dispatch_stack()) or torch._guards.TracingContext.try_get() is not None


#: (dtype, device) -> an empty tensor whose ``new()`` makes the next one: that costs half of
#: what ``torch.empty`` does, and loading makes one per tensor.
_EMPTY_TENSORS: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

#: What a pickled size or stride may be.
_SHAPE_TYPES = (tuple, list, torch.Size)
#: The errors torch raises on arguments it cannot use; raised while rebuilding from archive data
#: they mean the archive is odd, not torchpack (MemoryError, RecursionError are left alone).
DATA_ERRORS = (TypeError, ValueError, IndexError, KeyError, AttributeError, OverflowError, RuntimeError)


def check_extent(nbytes: int, itemsize: int, offset: Any, size: Any, stride: Any) -> None:
    """Refuse a tensor that would read outside the ``nbytes`` of its storage record.

    Done before torch sees the arguments: ``Tensor.set_`` grows a storage too small for them
    (for a resizable one), and torch's own errors do not name the archive. Integers only - no
    torch calls - as a load checks every tensor; Python integers cannot overflow.
    """
    if type(offset) is not int or offset < 0 or type(size) not in _SHAPE_TYPES or type(stride) not in _SHAPE_TYPES:
        raise PickleDataError(f"odd tensor geometry: offset {offset!r:.60}, size {size!r:.60}, stride {stride!r:.60}")
    if len(size) != len(stride):
        raise PickleDataError(f"tensor size {tuple(size)} and stride {tuple(stride)} differ in length")
    end = offset + 1  # one past the last element read
    for extent, step in zip(size, stride):
        if type(extent) is not int or type(step) is not int or extent < 0 or step < 0:
            raise PickleDataError(f"odd tensor size {tuple(size)!r:.80} or stride {tuple(stride)!r:.80}")
        end += (extent - 1) * step
    if 0 in size:
        return  # an empty tensor reads nothing: torch keeps slices' offsets past the end (`x[5:]` of 3)
    if end * itemsize > nbytes:
        raise PickleDataError(
            f"a tensor of size {tuple(size)}, stride {tuple(stride)} at offset {offset} reaches byte "
            f"{end * itemsize} of a storage record of {nbytes} bytes"
        )


def _typed_parts(storage: Any) -> tuple[torch.UntypedStorage, torch.dtype]:
    if not isinstance(storage, torch.storage.TypedStorage):
        raise PickleDataError(f"a tensor is rebuilt on a {type(storage).__name__}, not on a storage")
    return storage._untyped_storage, storage.dtype


_MISSING: Any = object()


def rebuild_tensor(
    storage: torch.storage.TypedStorage,
    storage_offset: int = _MISSING,
    size: tuple[int, ...] = _MISSING,
    stride: tuple[int, ...] = _MISSING,
    requires_grad: bool = _MISSING,
    backward_hooks: Any = _MISSING,
    metadata: Any = None,
    *extra: Any,
) -> torch.Tensor:
    """What ``torch._utils._rebuild_tensor_v2`` does, minus its per-tensor fake-mode search,
    after :func:`check_extent`.

    Pickled tensors name that function; loading calls it once per tensor, and its search for
    an active FakeTensorMode costs more than building the tensor. The unpickler hands out
    this function instead only when :func:`fake_mode_possible` says no such mode can be on.
    """
    if backward_hooks is _MISSING or extra:  # the C unpickler would raise a raw TypeError
        raise PickleDataError("_rebuild_tensor_v2 takes 6 or 7 arguments")
    if type(storage) is torch.storage.TypedStorage:  # _typed_parts, inline: once per tensor
        untyped, dtype = storage._untyped_storage, storage.dtype
    else:
        untyped, dtype = _typed_parts(storage)
    check_extent(untyped.nbytes(), dtype.itemsize, storage_offset, size, stride)
    key = (dtype, untyped.device)
    empty = _EMPTY_TENSORS.get(key)
    if empty is None:
        empty = _EMPTY_TENSORS[key] = torch.empty((0,), dtype=key[0], device=key[1])
    try:
        tensor = empty.new().set_(untyped, storage_offset, size, stride)
        if requires_grad:  # a new tensor does not require grad
            tensor.requires_grad = True
        if metadata:
            torch._utils.set_tensor_metadata(tensor, metadata)
        if backward_hooks or type(backward_hooks) is not collections.OrderedDict:
            # Assigning hooks gives the tensor autograd metadata and a hook calling them, which
            # costs more than the rest of building it: an empty OrderedDict, which torch
            # pickles for every tensor, is left out, as if the tensor had never had hooks.
            tensor._backward_hooks = backward_hooks
    except DATA_ERRORS as error:
        raise PickleDataError(f"_rebuild_tensor_v2: {error}") from error
    return tensor


def _checked_typed(rebuild: Callable[..., Any]) -> Callable[..., Any]:
    """``rebuild(storage, offset, size, stride, ...)`` on a TypedStorage, after :func:`check_extent`."""

    def checked(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> Any:
        untyped, dtype = _typed_parts(storage)
        check_extent(untyped.nbytes(), dtype.itemsize, storage_offset, size, stride)
        return translate_errors(rebuild)(storage, storage_offset, size, stride, *rest)

    return checked


def _rebuild_qtensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *rest: Any) -> Any:
    # torch first allocates an empty quantized tensor of `size`, before viewing the storage:
    # with zero strides a tiny extent could stand for a huge allocation.
    untyped, dtype = _typed_parts(storage)
    check_extent(untyped.nbytes(), dtype.itemsize, storage_offset, size, stride)
    elements = 1
    for extent in size:
        elements *= extent
    if elements * dtype.itemsize > untyped.nbytes():
        raise PickleDataError(f"a quantized tensor of size {tuple(size)} is larger than its storage record")
    return translate_errors(torch._utils._rebuild_qtensor)(storage, storage_offset, size, stride, *rest)


def _rebuild_tensor_v3(
    storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any, backward_hooks: Any, dtype: Any, *rest: Any
) -> Any:
    # The storage comes wrapped as bytes (torch.package wraps every storage); the dtype is given apart.
    untyped, _bytes = _typed_parts(storage)
    if not isinstance(dtype, torch.dtype):
        raise PickleDataError(f"_rebuild_tensor_v3 is given {dtype!r:.60} as its dtype")
    check_extent(untyped.nbytes(), dtype.itemsize, storage_offset, size, stride)
    return translate_errors(torch._utils._rebuild_tensor_v3)(
        storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, *rest
    )


def translate_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, its errors on odd arguments raised as :class:`PickleDataError`."""

    def translated(*args: Any) -> Any:
        try:
            return function(*args)
        except PickleDataError:
            raise
        except RecursionError:
            raise
        except DATA_ERRORS as error:
            raise PickleDataError(f"{getattr(function, '__name__', function)}: {error}") from error

    translated.__name__ = getattr(function, "__name__", "rebuild")
    return translated


#: torch's rebuild functions that view a storage record -> the same after :func:`check_extent`.
CHECKED_REBUILDS: dict[Any, Callable[..., Any]] = {
    torch._utils._rebuild_tensor: _checked_typed(torch._utils._rebuild_tensor),
    torch._utils._rebuild_tensor_v2: _checked_typed(torch._utils._rebuild_tensor_v2),
    torch._utils._rebuild_tensor_v3: _rebuild_tensor_v3,
    torch._utils._rebuild_qtensor: _rebuild_qtensor,
}
#: The other rebuild functions a pickle may name: only their errors are translated.
CHECKED_REBUILDS.update(
    (function, translate_errors(function))
    for function in (
        torch._utils._rebuild_parameter,
        torch._utils._rebuild_parameter_with_state,
        torch._utils._rebuild_sparse_tensor,
        torch._utils._rebuild_meta_tensor_no_storage,
        torch._utils._rebuild_device_tensor_from_cpu_tensor,
        torch._utils._rebuild_wrapper_subclass,
        torch._utils._rebuild_nested_tensor,
        torch._tensor._rebuild_from_type_v2,
    )
)
def checked_rebuild(found: Any) -> Any:
    """What an unpickler should call for the global ``found``: torch's tensor rebuild functions
    are replaced by checked ones (``_rebuild_tensor_v2`` by :func:`rebuild_tensor` when no fake
    mode can be on); any other object is returned as it is."""
    if type(found) is not FunctionType:
        return found
    if found is torch._utils._rebuild_tensor_v2 and not fake_mode_possible():
        return rebuild_tensor
    return CHECKED_REBUILDS.get(found, found)
