"""Loading many small tensors: the per-tensor fast paths keep every check and torch's meaning."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
import torch.package
from archive_surgery import flip_byte

from torchpack import IntegrityError, PackageExporter, PackageImporter


def _export(path: Path, obj: object) -> Path:
    with PackageExporter(path) as exporter:
        exporter.save_pickle("data", "obj.pkl", obj)
    return path


def _storage_records(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = [info.filename.partition("/")[2] for info in archive.infolist()]
    return [name for name in names if name.startswith(".data/") and name.endswith(".storage")]


@pytest.mark.parametrize("position", [0, 30, 59])
def test_a_tampered_record_among_many_small_ones_is_named(tmp_path: Path, position: int) -> None:
    tensors = [torch.full((16,), float(i)) for i in range(60)]
    data = _export(tmp_path / "many.pt", tensors).read_bytes()
    records = _storage_records(data)
    assert len(records) == 60
    victim = records[position]
    tampered = tmp_path / "tampered.pt"  # a new file: nothing is remembered of it
    tampered.write_bytes(flip_byte(data, victim, index=5))  # CRC-32 fixed up: only the digest sees it
    with pytest.raises(IntegrityError, match=rf"tampered\.pt: record '{victim}' does not match its integrity digest"):
        PackageImporter(tampered).load_pickle("data", "obj.pkl")
    # From memory too (no file identity, nothing remembered), and with the records it used before.
    with pytest.raises(IntegrityError, match=victim):
        PackageImporter(tampered.read_bytes()).load_pickle("data", "obj.pkl")
    untouched = tmp_path / "copy.pt"
    shutil.copyfile(tmp_path / "many.pt", untouched)
    assert all(torch.equal(a, b) for a, b in zip(PackageImporter(untouched).load_pickle("data", "obj.pkl"), tensors))


def test_a_pickle_larger_than_the_unpicklers_chunks_loads_intact(tmp_path: Path) -> None:
    # 2.5 MiB of pickle around 3,000 tensors: opcodes and large byte strings cross the
    # 1 MiB chunks the unpickler is handed; torch.package reads the same archive the same.
    blobs = [bytes([i]) * (700 << 10) for i in range(3)]
    tensors = [torch.arange(i, i + 8, dtype=torch.float64) for i in range(3000)]
    obj = {"blobs": blobs, "tensors": tensors, "tail": "end" * 1000}
    path = _export(tmp_path / "big_pickle.pt", obj)
    for loaded in (PackageImporter(path).load_pickle("data", "obj.pkl"), PackageImporter(path, mmap=False).load_pickle("data", "obj.pkl")):
        assert loaded["blobs"] == blobs and loaded["tail"] == obj["tail"]
        assert all(torch.equal(a, b) for a, b in zip(loaded["tensors"], tensors))
    theirs = torch.package.PackageImporter(str(path)).load_pickle("data", "obj.pkl")
    assert theirs["blobs"] == blobs and all(torch.equal(a, b) for a, b in zip(theirs["tensors"], tensors))


def test_loaded_tensors_start_without_hooks_and_take_new_ones(tmp_path: Path) -> None:
    weight = torch.nn.Parameter(torch.ones(4))
    path = _export(tmp_path / "grad.pt", {"weight": weight, "plain": torch.ones(3, requires_grad=True)})
    loaded = PackageImporter(path).load_pickle("data", "obj.pkl")
    plain = loaded["plain"]
    assert plain.requires_grad and plain.is_leaf and not plain._backward_hooks
    seen: list[torch.Tensor] = []
    plain.register_hook(lambda grad: seen.append(grad) or grad * 2)
    (plain * 3).sum().backward()
    assert torch.equal(seen[0], torch.full((3,), 3.0)) and torch.equal(plain.grad, torch.full((3,), 6.0))
    assert isinstance(loaded["weight"], torch.nn.Parameter) and loaded["weight"].requires_grad


def test_a_deserializer_registered_before_torchs_cpu_one_is_still_asked(tmp_path: Path) -> None:
    # Without map_location a "cpu" storage is kept as it is only while torch's own CPU
    # deserializer comes first in its registry; one registered ahead of it is asked, as torch.load would.
    path = _export(tmp_path / "restore.pt", [torch.ones(2), torch.zeros(3)])
    asked: list[str] = []

    def deserialize(storage: object, location: str) -> object:
        asked.append(location)
        return storage

    registry = torch.serialization._package_registry
    torch.serialization.register_package(1, lambda obj: None, deserialize)
    try:
        loaded = PackageImporter(path).load_pickle("data", "obj.pkl")
    finally:
        registry[:] = [entry for entry in registry if entry[2] is not deserialize]
    assert asked == ["cpu", "cpu"] and torch.equal(loaded[1], torch.zeros(3))
    asked.clear()
    PackageImporter(path).load_pickle("data", "obj.pkl")
    assert asked == []
