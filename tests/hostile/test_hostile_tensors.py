"""Hostile archives against tensor rebuilding, for ordinary and restricted loads alike: storage
records too short (or empty) for the tensors over them, odd geometry, odd persistent ids and
odd arguments to torch's rebuild functions.

Each case builds its own archive. Every one must raise a PickleDataError (an
ArchiveFormatError) naming the archive and the record before torch builds the tensor - never a
raw IndexError/TypeError/RuntimeError, never a storage grown past its record.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.package import PackageImporter as TorchPackageImporter

from hostile_pickles import PICKLE, STORAGE, Call, Global, PersistentId, hostile_archive, storage, tensor
from torchpack import PackageExporter, PackageImporter
from torchpack.errors import PickleDataError


def _refused_in_both_modes(archive: Path, expected: str) -> PickleDataError:
    for restricted in (False, True):
        with pytest.raises(PickleDataError) as raised:
            PackageImporter(archive, restricted=restricted).load_pickle("data", "x.pkl")
        message = str(raised.value)
        assert str(archive) in message and PICKLE in message and expected in message, (restricted, message)
    return raised.value


# -- 5. storage records too short for their tensors ----------------------------------------------


def test_an_empty_storage_record_cannot_be_grown_by_a_tensor(tmp_path: Path) -> None:
    archive = hostile_archive(tmp_path / "empty.pt", tensor(size=(1 << 20,)), replace={STORAGE: b""})
    _refused_in_both_modes(archive, "reaches byte 4194304 of a storage record of 0 bytes")
    with pytest.raises(Exception):  # noqa: B017 - torch.package refuses this archive too, in its own words
        TorchPackageImporter(str(archive)).load_pickle("data", "x.pkl")


@pytest.mark.parametrize(
    "geometry, expected",
    [
        ((10, (10,), (1,)), "reaches byte 80 of a storage record of 48 bytes"),
        ((0, (4, 4), (4, 1)), "reaches byte 64"),
        ((0, (1 << 33,), (1 << 31,)), "of a storage record of 48 bytes"),  # 2**64: wraps to 0 in int64
        ((0, (3,), (-1,)), "odd tensor size"),
        ((0, (-3,), (1,)), "odd tensor size"),
        ((0, (2, 3), (1 << 62, 1 << 62)), "reaches byte 55340232221128654852"),
        ((0, (3, 4), (1,)), "differ in length"),
        (("0", (3,), (1,)), "odd tensor geometry"),
        ((-1, (3,), (1,)), "odd tensor geometry"),
        ((0, (3.0,), (1,)), "odd tensor size"),
    ],
    ids=["past-end", "2d-past-end", "int64-wrap", "negative-stride", "negative-size", "huge-strides",
         "rank-mismatch", "str-offset", "negative-offset", "float-size"],
)
def test_tensor_geometry_outside_its_storage_record(tmp_path: Path, geometry: tuple, expected: str) -> None:
    offset, size, stride = geometry
    archive = hostile_archive(tmp_path / "geometry.pt", tensor(offset, size, stride))
    _refused_in_both_modes(archive, expected)


def test_a_quantized_tensor_cannot_allocate_more_than_its_storage(tmp_path: Path) -> None:
    # torch allocates an empty quantized tensor of the full size before viewing the storage;
    # zero strides keep the extent at one element while the size asks for 2**40.
    rebuild = Global("torch._utils", "_rebuild_qtensor")
    qparams = (Global("torch", "per_tensor_affine"), 0.5, 0)
    archive = hostile_archive(
        tmp_path / "qtensor.pt",
        Call(rebuild, storage(storage_class=Global("torch", "QUInt8Storage")), 0, (1 << 20, 1 << 20), (0, 0), qparams, False, {}),
    )
    _refused_in_both_modes(archive, "larger than its storage record")


def test_genuine_empty_and_expanded_tensors_load_on_storages_that_never_grow(tmp_path: Path) -> None:
    archive = tmp_path / "fine.pt"
    with PackageExporter(archive) as exporter:
        exporter.save_pickle("data", "x.pkl", {"empty": torch.empty(0, 3), "wide": torch.ones(1).expand(1000)})
    # An empty tensor reads nothing, whatever its offset: torch keeps a slice's past the end.
    far = hostile_archive(tmp_path / "far.pt", tensor(1 << 40, (0, 3), (3, 1)))
    for restricted in (False, True):
        empty = PackageImporter(far, restricted=restricted).load_pickle("data", "x.pkl")
        assert empty.shape == (0, 3) and empty.untyped_storage().nbytes() == 48
    for restricted in (False, True):
        loaded = PackageImporter(archive, restricted=restricted).load_pickle("data", "x.pkl")
        assert loaded["empty"].shape == (0, 3) and torch.equal(loaded["wide"], torch.ones(1000))
        for value in loaded.values():
            assert not value.untyped_storage().resizable()
        with pytest.raises(RuntimeError, match="not resizable"):
            loaded["empty"].resize_(1 << 20)


# -- 4. odd persistent ids and rebuild arguments -------------------------------------------------


@pytest.mark.parametrize(
    "saved_id, expected",
    [
        (7, "is not a tuple"),
        (("storage", Global("torch", "FloatStorage"), "0", "cpu"), "has not 5 fields"),
        (("storage", Global("torch", "FloatStorage"), 0.5, "cpu", 12), "odd key or location"),
        (("storage", Global("torch", "float32"), "0", "cpu", 12), "no storage class"),
        (("storage", Global("torch", "FloatStorage"), "0", "nowhere", 12), "nowhere"),
        (("storage", Global("torch", "FloatStorage"), "../0", "cpu", 12), "missing"),
        (("pickled_code", "x"), "unknown persistent id kind"),
        (("reduce_package", "x"), "has not 3 or 4 fields"),
    ],
    ids=["int", "short", "float-key", "dtype-as-class", "odd-location", "dotted-key", "unknown-kind", "short-reduce"],
)
def test_odd_persistent_ids(tmp_path: Path, saved_id: tuple, expected: str) -> None:
    archive = hostile_archive(tmp_path / "pid.pt", tensor(on=PersistentId(saved_id)))
    for restricted in (False, True):
        with pytest.raises(PickleDataError if expected != "missing" else Exception) as raised:
            PackageImporter(archive, restricted=restricted).load_pickle("data", "x.pkl")
        message = str(raised.value)
        assert str(archive) in message and PICKLE in message and expected in message, message


@pytest.mark.parametrize(
    "payload, expected, cause",
    [
        (Call(Global("torch._utils", "_rebuild_tensor_v2"), 5, 0, (3,), (1,), False, {}), "not on a storage", None),
        (Call(Global("torch._utils", "_rebuild_parameter"), "weights", False, {}), "_rebuild_parameter", AttributeError),
        (Call(Global("torch._utils", "_rebuild_tensor_v2"), storage(), 0, (3,), (1,)), "takes 6 or 7 arguments", None),
        (Call(Global("torch._utils", "_rebuild_meta_tensor_no_storage"), "f", (2,), (1,), False), "meta", TypeError),
    ],
    ids=["int-storage", "str-parameter", "too-few-arguments", "str-dtype"],
)
def test_odd_rebuild_arguments(tmp_path: Path, payload: object, expected: str, cause: type | None) -> None:
    archive = hostile_archive(tmp_path / "args.pt", payload)
    error = _refused_in_both_modes(archive, expected)
    # What torch raised is kept as the cause, so that a fault in torchpack stays visible.
    assert type(error.__cause__) is cause or (cause is None and error.__cause__ is None)


def test_odd_arguments_to_other_default_callables_in_restricted_mode(tmp_path: Path) -> None:
    archive = hostile_archive(tmp_path / "device.pt", Call(Global("torch", "device"), "no-such-device"))
    with pytest.raises(PickleDataError, match="no-such-device") as raised:
        PackageImporter(archive, restricted=True).load_pickle("data", "x.pkl")
    assert str(archive) in str(raised.value) and PICKLE in str(raised.value)
