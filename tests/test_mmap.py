"""Loading tensors from a file archive maps them instead of copying (when the record allows).

Where a tensor's memory comes from is read off ``/proc/self/maps``: a mapped tensor lies in
a mapping of the archive file itself, a copied one does not. These tests look at behaviour
only; how fast it is, is the benchmark's business (benchmarks/bench.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from torchpack import PackageExporter, PackageImporter

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc/self/maps")


def _sample() -> dict[str, object]:
    torch.manual_seed(0)
    base = torch.randn(8, 8)
    return {
        "float": torch.randn(3, 5),
        "double": torch.randn(4, dtype=torch.float64),
        "long": torch.arange(10),
        "bool": torch.tensor([True, False, True]),
        "half": torch.randn(6).half(),
        "bfloat": torch.randn(6).bfloat16(),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "view": base[2:5, 1:],  # an offset, non-contiguous view...
        "base": base,  # ...sharing its storage with this one
        "linear": torch.nn.Linear(4, 3),
    }


def _export(path: Path, obj: object) -> Path:
    with PackageExporter(path) as exporter:
        exporter.save_pickle("data", "obj.pkl", obj)
    return path


def _file_mappings(path: Path) -> list[tuple[int, int, str]]:
    """(start, end, permissions) of every mapping of ``path`` in this process."""
    inode = os.stat(path).st_ino
    found = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and int(fields[4]) == inode and fields[5] == str(path.resolve()):
            start, end = (int(part, 16) for part in fields[0].split("-"))
            found.append((start, end, fields[1]))
    return found


def _mapping_of(tensor: torch.Tensor, path: Path) -> str | None:
    """The permissions of the mapping of ``path`` that holds ``tensor``'s data, if any."""
    address = tensor.untyped_storage().data_ptr()
    for start, end, permissions in _file_mappings(path):
        if start <= address < end:
            return permissions
    return None


def _tensors(obj: dict[str, object]) -> dict[str, torch.Tensor]:
    tensors = {name: value for name, value in obj.items() if isinstance(value, torch.Tensor)}
    linear = obj["linear"]
    assert isinstance(linear, torch.nn.Linear)
    tensors.update({f"linear.{name}": parameter.data for name, parameter in linear.named_parameters()})
    return tensors


def _assert_same(loaded: dict[str, object], expected: dict[str, object]) -> None:
    got, want = _tensors(loaded), _tensors(expected)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        assert got[name].stride() == want[name].stride(), name
        assert torch.equal(got[name], want[name]), name


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_archive_tensors_are_mapped_from_the_file(tmp_path: Path) -> None:
    path = _export(tmp_path / "sample.pt", _sample())
    loaded = PackageImporter(path).load_pickle("data", "obj.pkl")
    for name, tensor in _tensors(loaded).items():
        if tensor.numel():
            # copy-on-write mappings show as private ("p") and writable.
            assert _mapping_of(tensor, path) == "rw-p", name
    # Views keep sharing one storage, as they did when saved.
    assert loaded["view"].untyped_storage().data_ptr() == loaded["base"].untyped_storage().data_ptr()


@pytest.mark.parametrize("source", ["no-mmap", "bytes", "bytesio"])
def test_copy_paths_give_the_same_tensors(tmp_path: Path, source: str) -> None:
    sample = _sample()
    path = _export(tmp_path / "sample.pt", sample)
    mapped = PackageImporter(path).load_pickle("data", "obj.pkl")
    if source == "no-mmap":
        importer = PackageImporter(path, mmap=False)
    elif source == "bytes":
        importer = PackageImporter(path.read_bytes())
    else:
        importer = PackageImporter(io.BytesIO(path.read_bytes()))
    copied = importer.load_pickle("data", "obj.pkl")
    _assert_same(copied, sample)
    _assert_same(mapped, sample)
    for name, tensor in _tensors(copied).items():
        assert _mapping_of(tensor, path) is None, name


def test_writes_to_loaded_tensors_never_reach_the_archive(tmp_path: Path) -> None:
    sample = _sample()
    path = _export(tmp_path / "sample.pt", sample)
    before = _digest(path)
    importer = PackageImporter(path)
    loaded = importer.load_pickle("data", "obj.pkl")
    with torch.no_grad():
        loaded["float"].add_(1)
        loaded["base"].zero_()
        loaded["linear"].weight.mul_(3)
    assert torch.equal(loaded["float"], sample["float"] + 1)
    assert not loaded["view"].any()  # the write went through the shared storage
    assert _digest(path) == before
    again = PackageImporter(path).load_pickle("data", "obj.pkl")
    _assert_same(again, sample)
    # Within one importer a storage is shared by every pickle, so the write shows there.
    assert not importer.load_pickle("data", "obj.pkl")["base"].any()


def _torch_package_archive(path: Path, obj: object) -> Path:
    from torch.package import PackageExporter as TorchPackageExporter

    with TorchPackageExporter(str(path)) as exporter:
        exporter.save_pickle("data", "obj.pkl", obj)
    return path


def _data_offsets(path: Path) -> dict[str, int]:
    """Where each record's data starts, read from the local headers as any ZIP reader would."""
    offsets = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        for info in archive.infolist():
            handle.seek(info.header_offset + 26)
            name_length, extra_length = int.from_bytes(handle.read(2), "little"), int.from_bytes(handle.read(2), "little")
            offsets[info.filename] = info.header_offset + 30 + name_length + extra_length
    return offsets


def _repack_unaligned(source: Path, target: Path) -> Path:
    """``source``'s records in a plain ZIP (no alignment padding), with the first storage
    record's data starting off a 64-byte boundary - as a ZIP tool rewriting it would leave it."""
    with zipfile.ZipFile(source) as archive:
        contents = [(info.filename, archive.read(info)) for info in archive.infolist()]
    top = contents[0][0].partition("/")[0]
    for padding in range(64):
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(f"{top}/.data/padding", b"x" * padding)
            for name, data in contents:
                archive.writestr(name, data)
        offsets = _data_offsets(target)
        if any(name.endswith(".storage") and offsets[name] % 64 for name in offsets):
            return target
    raise AssertionError("could not misalign a storage record")


def test_torch_package_archives_load_mapped_or_copied(tmp_path: Path) -> None:
    sample = _sample()
    written = _torch_package_archive(tmp_path / "torch.pt", sample)
    as_written = PackageImporter(written).load_pickle("data", "obj.pkl")
    _assert_same(as_written, sample)
    # torch.package's writer aligns its records too, so these are mapped.
    assert _mapping_of(as_written["float"], written) == "rw-p"

    unaligned = _repack_unaligned(written, tmp_path / "unaligned.pt")
    offsets = {name.partition("/")[2]: offset for name, offset in _data_offsets(unaligned).items()}
    importer = PackageImporter(unaligned)
    loaded = importer.load_pickle("data", "obj.pkl")
    _assert_same(loaded, sample)
    misaligned = 0
    for tensor in _tensors(loaded).values():
        if not tensor.numel():
            continue
        # Which record holds this tensor: the one whose bytes it was loaded from.
        record = next(name for name in offsets if name.endswith(".storage") and importer.zip_reader.has_record(name)
                      and _record_holds(importer, name, tensor))
        if offsets[record] % 64:
            misaligned += 1
            assert _mapping_of(tensor, unaligned) is None  # copied: an unaligned mapping is unusable
        else:
            assert _mapping_of(tensor, unaligned) == "rw-p"
    assert misaligned


def _record_holds(importer: PackageImporter, record: str, tensor: torch.Tensor) -> bool:
    storage = tensor.untyped_storage()
    data = importer.zip_reader.read(record)
    return len(data) == storage.nbytes() and data == bytes(storage)


def test_read_only_mapping(tmp_path: Path) -> None:
    sample = _sample()
    path = _export(tmp_path / "sample.pt", sample)
    loaded = PackageImporter(path, mmap="read-only").load_pickle("data", "obj.pkl")
    _assert_same(loaded, sample)
    for name, tensor in _tensors(loaded).items():
        if tensor.numel():
            assert _mapping_of(tensor, path) in ("r--p", "r--s"), name  # no write permission
    # An explicit spelling of the default.
    cow = PackageImporter(path, mmap="copy-on-write").load_pickle("data", "obj.pkl")
    assert _mapping_of(cow["float"], path) == "rw-p"


def test_writing_to_a_read_only_mapping_kills_the_process_not_the_file(tmp_path: Path) -> None:
    path = _export(tmp_path / "sample.pt", _sample())
    before = _digest(path)
    script = textwrap.dedent(
        f"""
        import torch
        from torchpack import PackageImporter
        loaded = PackageImporter({str(path)!r}, mmap="read-only").load_pickle("data", "obj.pkl")
        print(float(loaded["float"].sum()), flush=True)
        loaded["float"].add_(1)
        print("survived", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -11, done.stderr  # SIGSEGV, as documented
    assert "survived" not in done.stdout
    assert _digest(path) == before


def test_unknown_mmap_mode_is_refused(tmp_path: Path) -> None:
    path = _export(tmp_path / "sample.pt", {"x": torch.ones(2)})
    with pytest.raises(ValueError, match="mmap"):
        PackageImporter(path, mmap="shared")


# -- torchpack's writers never change a file an importer maps ------------------------------
#
# Each writes a temporary file next to the target and renames it over the target, so a live
# importer keeps the old file (inode) whole. Were one to write in place (open(path, "wb"), as
# torch.save does), the tensors below would change, or the process die of SIGBUS.


def _mapped_sum(path: Path, record: str) -> tuple[PackageImporter, torch.Tensor, float]:
    importer = PackageImporter(path)
    package, _, resource = record.rpartition("/")
    tensor = importer.load_pickle(package.replace("/", "."), resource)
    assert _mapping_of(tensor, path) == "rw-p"
    return importer, tensor, float(tensor.double().sum())


def _assert_old_inode_kept(path: Path, inode: int, tensor: torch.Tensor, total: float) -> None:
    assert os.stat(path).st_ino != inode, "the writer must replace the file, not rewrite it"
    assert float(tensor.double().sum()) == total


def test_exporter_replaces_a_mapped_archive_without_changing_it(tmp_path: Path) -> None:
    path = _export(tmp_path / "model.pt", torch.arange(1 << 16, dtype=torch.float32))
    inode = os.stat(path).st_ino
    importer, tensor, total = _mapped_sum(path, "data/obj.pkl")
    _export(path, torch.zeros(1 << 16))
    _assert_old_inode_kept(path, inode, tensor, total)
    assert float(importer.load_pickle("data", "obj.pkl").sum()) == total  # still the file it opened
    assert float(PackageImporter(path).load_pickle("data", "obj.pkl").sum()) == 0


def _weights_workspace(root: Path, seed: int) -> Path:
    from build_support import make_workspace, write

    make_workspace(root, examples=False)
    write(root / "weights_maker.py", "import torch\n\n\ndef make():\n    return torch.randn(1 << 16)\n")
    write(root / "BUILD.toml", f'[weights]\nseed = {seed}\n\n[weights.pickle."w/t.pkl"]\ncall = "weights_maker:make"\n')
    return root


def test_build_replaces_a_mapped_archive_without_changing_it(tmp_path: Path) -> None:
    from build_support import run_cli

    root = _weights_workspace(tmp_path / "ws", seed=1)
    built = run_cli(root, "//:weights")
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = (root / "torchpack-out").glob("weights*.pt")
    inode = os.stat(path).st_ino
    _, tensor, total = _mapped_sum(path, "w/t.pkl")
    _weights_workspace(root, seed=2)
    rebuilt = run_cli(root, "//:weights")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    _assert_old_inode_kept(path, inode, tensor, total)
    assert float(PackageImporter(path).load_pickle("w", "t.pkl").double().sum()) != total


def test_bazel_builder_replaces_a_mapped_archive_without_changing_it(tmp_path: Path) -> None:
    from build_support import REPO, cli_env
    from torchpack.build.graph import load_graph
    from torchpack.build.labels import parse_label
    from torchpack.build.workspace import open_workspace

    root = tmp_path / "ws"
    out = tmp_path / "bazel-out"
    out.mkdir()
    archive = out / "weights.pt"

    def build(seed: int) -> None:
        _weights_workspace(root, seed)
        label = parse_label("//:weights")
        definition = out / f"weights-{seed}.json"
        definition.write_text(load_graph(open_workspace(root), [label]).targets[label].definition_json())
        done = subprocess.run(
            [sys.executable, str(REPO / "rules" / "private" / "builder.py"),
             "--archive", str(archive), "--digest", str(out / "weights.sha256"),
             "--extern-modules", str(out / "weights.extern_modules"), "--build-file", "BUILD.bazel",
             "--workspace", str(root), "--typed-definition", str(definition),
             "--", "--definition", str(out / f"weights-{seed}.def.json"), "--output", str(archive)],
            cwd=root, env=cli_env(), capture_output=True, text=True, timeout=600, check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    build(seed=1)
    inode = os.stat(archive).st_ino
    _, tensor, total = _mapped_sum(archive, "w/t.pkl")
    build(seed=2)
    _assert_old_inode_kept(archive, inode, tensor, total)
    assert float(PackageImporter(archive).load_pickle("w", "t.pkl").double().sum()) != total
