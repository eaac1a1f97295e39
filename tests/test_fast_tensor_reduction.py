"""The exporter's fast reduction of plain tensors gives the very bytes torch's own reduction gives.

``torchpack._storage.plain_tensor_reduction`` rebuilds what ``Tensor.__reduce_ex__`` returns
for plain CPU tensors; switching it off (so every tensor takes torch's path) must not change
one byte of the archive, whatever the tensors: views, offsets, non-contiguous and expanded
strides, 0-d and empty tensors, Parameters, requires_grad, conj/neg bits, every dtype, and
the same storage or tensor met more than once.
"""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import torchpack._pickling as pickling
from strategies import ALL_DTYPES, GRAD_DTYPES, tensor_pools, tensors
from torchpack import PackageExporter, PackageImporter
from torchpack._storage import plain_tensor_reduction, typed_storage


def _archive(obj: Any, *, fast: bool, protocol: int = 3) -> bytes:
    buffer = io.BytesIO()
    original = pickling.plain_tensor_reduction
    if not fast:
        pickling.plain_tensor_reduction = lambda tensor: None  # every tensor takes torch's path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ComplexHalf is experimental
            with PackageExporter(buffer) as exporter:
                exporter.save_pickle("p", "obj.pkl", obj, pickle_protocol=protocol)
    finally:
        pickling.plain_tensor_reduction = original
    return buffer.getvalue()


def _assert_same_bytes(obj: Any, protocol: int = 3) -> None:
    assert _archive(obj, fast=True, protocol=protocol) == _archive(obj, fast=False, protocol=protocol)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool=tensor_pools(), picks=st.lists(st.integers(0, 50), max_size=8), protocol=st.sampled_from([3, 4]))
def test_fast_and_torch_reductions_write_the_same_bytes(pool: list[torch.Tensor], picks: list[int], protocol: int) -> None:
    # Repeated references to one tensor, and views sharing a storage, in one pickle.
    obj = {"pool": pool, "again": [pool[i % len(pool)] for i in picks]}
    _assert_same_bytes(obj, protocol)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensor=tensors(), requires_grad=st.booleans())
def test_single_tensors_with_and_without_grad(tensor: torch.Tensor, requires_grad: bool) -> None:
    if requires_grad and tensor.dtype in GRAD_DTYPES and not isinstance(tensor, torch.nn.Parameter):
        tensor = tensor.detach().requires_grad_(True)
    _assert_same_bytes([tensor, (tensor, {"t": tensor})])


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_dtype(dtype: torch.dtype) -> None:
    base = torch.zeros(3, 2, dtype=dtype)
    _assert_same_bytes([base, base[1:], base.t(), base[0, 0], torch.empty(0, dtype=dtype)])


def test_the_fast_path_is_taken_only_for_plain_tensors() -> None:
    plain = torch.arange(6.0).reshape(2, 3)
    assert plain_tensor_reduction(plain) is not None
    assert plain_tensor_reduction(plain.t()[1:]) is not None
    assert plain_tensor_reduction(torch.ones(2, requires_grad=True)) is not None  # a leaf
    assert plain_tensor_reduction(torch.ones(2, requires_grad=True) * 2) is None  # not a leaf
    with_state = torch.ones(2)
    with_state.note = "kept"
    assert plain_tensor_reduction(with_state) is None
    assert plain_tensor_reduction(torch.ones(2, dtype=torch.complex64).conj()) is None
    assert plain_tensor_reduction(torch.zeros(2, dtype=torch.float8_e4m3fn)) is None
    assert plain_tensor_reduction(torch.zeros(2, device="meta")) is None
    assert plain_tensor_reduction(torch.zeros(2, 2).to_sparse()) is None
    assert plain_tensor_reduction(torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)) is None
    hooked = torch.ones(2, requires_grad=True)
    hooked.register_hook(lambda grad: grad)
    assert plain_tensor_reduction(hooked) is None


def test_tensors_that_keep_torchs_path_still_write_the_same_bytes() -> None:
    with_state = torch.ones(3)
    with_state.note = "kept"
    tensors_ = [
        torch.ones(2, requires_grad=True) * 2,  # not a leaf
        with_state,
        torch.ones(2, dtype=torch.complex64).conj(),
        torch.nn.Parameter(torch.ones(2)),
        collections.OrderedDict(a=torch.ones(1)),
    ]
    _assert_same_bytes(tensors_)


def test_the_fast_reduction_is_what_torch_returns() -> None:
    tensor = torch.arange(12.0).reshape(3, 4)[1:, ::2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = tensor.__reduce_ex__(3)
    ours = plain_tensor_reduction(tensor)
    assert ours is not None
    assert ours[0] is theirs[0]
    reference, *rest = ours[1]
    storage, *their_rest = theirs[1]
    assert rest == their_rest
    assert reference.untyped.data_ptr() == storage._untyped_storage.data_ptr()
    assert reference.count == storage._size()
    assert reference.storage_class is getattr(torch, storage._pickle_storage_type())


def test_loaded_tensors_match() -> None:
    base = torch.arange(10.0)
    obj = [base, base[2:], base[::3], torch.ones(2, requires_grad=True), torch.tensor(7)]
    loaded = PackageImporter(_archive(obj, fast=True)).load_pickle("p", "obj.pkl")
    for original, copy in zip(obj, loaded):
        assert torch.equal(original, copy)
        assert (original.stride(), original.storage_offset(), original.requires_grad) == (
            copy.stride(),
            copy.storage_offset(),
            copy.requires_grad,
        )
    assert loaded[1].untyped_storage().data_ptr() == loaded[0].untyped_storage().data_ptr()


def test_plain_pickle_of_the_reduction_matches_torch() -> None:
    # Outside any archive: the pickler sees the same reduction, so even a bare pickle agrees.
    tensor = torch.arange(4.0)
    assert pickle.dumps(tensor.__reduce_ex__(3)[1][1:]) == pickle.dumps(plain_tensor_reduction(tensor)[1][1:])


class _OrderedDictSubclass(collections.OrderedDict):
    pass


def _ordered_dicts() -> list[Any]:
    with_attribute = collections.OrderedDict()
    with_attribute.note = "kept"  # part of the reduction's state
    shared = collections.OrderedDict()
    return [
        collections.OrderedDict(),
        with_attribute,
        collections.OrderedDict(a=1, b=[2]),
        _OrderedDictSubclass(),
        [shared, shared, {"again": shared}],  # one object met three times: memo references
    ]


@pytest.mark.parametrize("obj", _ordered_dicts(), ids=["empty", "attribute", "items", "subclass", "shared"])
@pytest.mark.parametrize("protocol", [3, 4])
def test_ordered_dicts_pickle_as_the_standard_pickler_writes_them(obj: Any, protocol: int) -> None:
    # The exporter's pickler shortcuts the empty OrderedDict every tensor carries (its hooks);
    # the bytes must stay the standard pickler's for every OrderedDict.
    data, _ = pickling.pickle_object(
        obj, importer=pickling.sys_importer, protocol=protocol, persistent_id=lambda _: None
    )
    assert data == pickle.dumps(obj, protocol=protocol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool, torch.complex64])
def test_the_loaders_typed_storage_is_torchs(dtype: torch.dtype) -> None:
    untyped = torch.zeros(4, dtype=dtype).untyped_storage()
    ours = typed_storage(untyped, dtype)
    theirs = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
    assert type(ours) is type(theirs)
    assert ours.__dict__.keys() == theirs.__dict__.keys()
    assert ours.dtype == theirs.dtype and ours._untyped_storage is theirs._untyped_storage
    assert ours._size() == theirs._size() and ours._pickle_storage_type() == theirs._pickle_storage_type()


def test_the_loaders_typed_storage_leaves_odd_arguments_to_torch() -> None:
    with pytest.raises(TypeError, match="must be UntypedStorage"):
        typed_storage(torch.zeros(2), torch.float32)  # a map_location returning a tensor
    with pytest.raises(TypeError, match="must be torch.dtype"):
        typed_storage(torch.UntypedStorage(4), "float32")
