"""The archive format (SPEC §2): a reproducible ZIP with sorted records, fixed metadata, one
top-level folder whatever the output name, 64-byte aligned uncompressed tensor records, and
the framework records torch.package writes under ``.data/``."""

from __future__ import annotations

import io
import os
import platform
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

import torchpack
from helpers_core import local_data_offset, records, top_folder, zip_infos

from xcompat_pkgs.net import XNet

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"


def build_sample(pe):
    torch.manual_seed(0)
    pe.intern("xcompat_pkgs.**")
    pe.save_pickle("model", "model.pkl", XNet())
    pe.save_pickle("odd", "sizes.pkl", [torch.ones(3, dtype=torch.uint8), torch.ones(7, dtype=torch.float16), torch.arange(5)])
    pe.save_text("zeta", "last.txt", "z")
    pe.save_text("Alpha", "upper.txt", "A")
    pe.save_binary("meta", "blob.bin", b"\x00" * 33)


def export(target, build=build_sample):
    with torchpack.PackageExporter(target) as pe:
        build(pe)


def export_bytes(build=build_sample) -> bytes:
    buf = io.BytesIO()
    export(buf, build)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _no_source_date_epoch(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


@pytest.fixture(scope="module")
def sample() -> bytes:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        return export_bytes()


def test_central_directory_names_are_sorted(sample):
    with zipfile.ZipFile(io.BytesIO(sample)) as zf:
        names = zf.namelist()
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_fixed_timestamp(sample):
    assert {info.date_time for info in zip_infos(sample)} == {(1980, 1, 1, 0, 0, 0)}


def test_timestamp_from_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # 2023-11-14 22:13:20 UTC
    data = export_bytes(lambda pe: pe.save_text("a", "b.txt", "c"))
    assert {info.date_time for info in zip_infos(data)} == {(2023, 11, 14, 22, 13, 20)}
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert {info.date_time for info in zip_infos(export_bytes(lambda pe: pe.save_text("a", "b.txt", "c")))} == {
        (1980, 1, 1, 0, 0, 0)
    }


def test_single_top_level_folder_independent_of_output_name(tmp_path, sample):
    a = tmp_path / "a.pt"
    other = tmp_path / "b" / "other.pt"
    other.parent.mkdir()
    export(str(a))
    export(other)
    assert a.read_bytes() == other.read_bytes() == sample
    top_folder(sample)
    renamed = tmp_path / "renamed.pt"
    a.rename(renamed)
    importer = torchpack.PackageImporter(str(renamed))
    assert importer.load_text("zeta", "last.txt") == "z"


def test_open_file_object_path_and_buffer_give_the_same_bytes(tmp_path, sample):
    with open(tmp_path / "handle.pt", "wb") as handle:
        export(handle)
    assert (tmp_path / "handle.pt").read_bytes() == sample


def test_fixed_modes_and_create_system_and_no_extra_fields(sample):
    infos = zip_infos(sample)
    assert len({(i.create_system, i.external_attr) for i in infos}) == 1
    assert all(i.extra == b"" for i in infos)  # central directory carries no extra fields
    assert all(not i.filename.endswith("/") for i in infos)  # no directory entries


def test_tensor_records_are_stored_and_64_byte_aligned(sample):
    storage_infos = [i for i in zip_infos(sample) if re.fullmatch(r"[^/]+/\.data/\d+\.storage", i.filename)]
    assert len(storage_infos) >= 5
    for info in storage_infos:
        assert info.compress_type == zipfile.ZIP_STORED, info.filename
        offset = local_data_offset(sample, info)
        assert offset % 64 == 0, (info.filename, offset)
        # the bytes sit right there, ready to be memory-mapped
        with zipfile.ZipFile(io.BytesIO(sample)) as zf:
            assert sample[offset : offset + info.file_size] == zf.read(info.filename)


def test_storage_ids_count_up_in_pickling_order():
    t0 = torch.tensor([1, 2, 3], dtype=torch.uint8)
    t1 = torch.tensor([4.0, 5.0], dtype=torch.float64)
    t2 = torch.tensor([True, False, True, True])
    t3 = torch.arange(6, dtype=torch.int16)

    def build(pe):
        pe.save_pickle("a", "first.pkl", [t0, {"x": t1, "y": t2}])
        pe.save_pickle("a", "second.pkl", (t3, t0))  # t0 already written: no new record

    recs = records(export_bytes(build))
    storages = sorted(n for n in recs if re.fullmatch(r"\.data/\d+\.storage", n))
    assert storages == [f".data/{i}.storage" for i in range(4)]
    for i, t in enumerate((t0, t1, t2, t3)):
        assert recs[f".data/{i}.storage"] == bytes(t.untyped_storage().tolist()), i


def test_framework_records(sample):
    recs = records(sample)
    assert int(recs[".data/version"].decode().strip()) >= 1
    assert recs[".data/python_version"].decode().strip() == platform.python_version()
    extern = recs[".data/extern_modules"].decode().splitlines()
    assert "torch" in extern
    assert ".data/serialization_id" in recs
    assert ".data/byteorder" in recs or "byteorder" in recs
    byteorder = recs.get(".data/byteorder", recs.get("byteorder")).decode().strip()
    assert byteorder == sys.byteorder
    # user files are laid out as a package tree
    assert "xcompat_pkgs/net.py" in recs and "model/model.pkl" in recs


def test_serialization_id_is_derived_from_content(sample):
    again = export_bytes()
    assert records(again)[".data/serialization_id"] == records(sample)[".data/serialization_id"]
    different = export_bytes(lambda pe: pe.save_text("a", "b.txt", "other content"))
    assert records(different)[".data/serialization_id"] != records(sample)[".data/serialization_id"]


def test_torch_package_reads_the_archive(sample):
    import torch.package

    importer = torch.package.PackageImporter(io.BytesIO(sample))
    assert importer.load_text("Alpha", "upper.txt") == "A"
    sizes = importer.load_pickle("odd", "sizes.pkl")
    assert torch.equal(sizes[2], torch.arange(5))


# ---------------------------------------------------------------------------------------------
# Reproducibility across processes and environments
# ---------------------------------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {corpus!r})
    import torch
    import torchpack
    from xcompat_pkgs.net import XNet

    torch.manual_seed(0)
    with torchpack.PackageExporter(sys.argv[1]) as pe:
        pe.mock("xcompat_pkgs.mocked_dep")
        pe.intern("xcompat_pkgs.**")
        pe.save_pickle("model", "model.pkl", XNet())
        pe.save_pickle("meta", "cfg.pkl", {{"b": 1, "a": [1.5, "x"], "t": torch.arange(4)}})
        pe.save_text("meta", "info.txt", "hello")
        pe.save_module("xcompat_pkgs.uses_mock")

    with torchpack.PackageExporter(sys.argv[2]) as pe:
        pe.save_pickle("s", "sets.pkl", {{"tags": {{f"tag{{i}}" for i in range(40)}}, "frozen": frozenset("abcdefgh")}})
    """
)

VARIANTS = [
    {"PYTHONHASHSEED": "0", "TZ": "UTC", "LC_ALL": "C", "umask": 0o022, "name": "a.pt"},
    {"PYTHONHASHSEED": "12345", "TZ": "Asia/Kolkata", "LC_ALL": "C.UTF-8", "umask": 0o077, "name": "deep/other name.pt"},
    {"PYTHONHASHSEED": "random", "TZ": "America/Los_Angeles", "LC_ALL": "C", "umask": 0o002, "name": "x.zip"},
]


@pytest.fixture(scope="module")
def outputs_from_separate_processes(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    script = root / "export.py"
    script.write_text(SCRIPT.format(corpus=str(CORPUS)))
    results = []
    for i, variant in enumerate(VARIANTS):
        workdir = root / f"cwd{i}"
        out = workdir / variant["name"]
        out.parent.mkdir(parents=True, exist_ok=True)
        sets_out = workdir / f"sets{i}.pt"
        env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        env.update({k: variant[k] for k in ("PYTHONHASHSEED", "TZ", "LC_ALL")})
        env["PYTHONPATH"] = str(REPO)
        mask = variant["umask"]
        proc = subprocess.run(
            [sys.executable, str(script), str(out.relative_to(workdir)), str(sets_out)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=lambda mask=mask: os.umask(mask),
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results.append((out.read_bytes(), sets_out.read_bytes()))
    return results


def _differing_records(a: bytes, b: bytes) -> list[str]:
    ra, rb = records(a), records(b)
    return sorted(n for n in set(ra) | set(rb) if ra.get(n) != rb.get(n))


def test_identical_bytes_across_processes_seeds_timezones_umasks_and_cwds(outputs_from_separate_processes):
    first = outputs_from_separate_processes[0][0]
    for data, _ in outputs_from_separate_processes[1:]:
        assert data == first, _differing_records(first, data)
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_pickled_sets_of_strings_give_identical_bytes_across_hash_seeds(outputs_from_separate_processes):
    first = outputs_from_separate_processes[0][1]
    for _, data in outputs_from_separate_processes[1:]:
        assert data == first, _differing_records(first, data)
    loaded = torchpack.PackageImporter(io.BytesIO(first)).load_pickle("s", "sets.pkl")
    assert loaded["tags"] == {f"tag{i}" for i in range(40)} and loaded["frozen"] == frozenset("abcdefgh")


def test_in_process_export_matches_a_fresh_process(outputs_from_separate_processes):
    # Same inputs as the subprocess script, built here: the bytes do not depend on the process.
    def build(pe):
        torch.manual_seed(0)
        pe.mock("xcompat_pkgs.mocked_dep")
        pe.intern("xcompat_pkgs.**")
        pe.save_pickle("model", "model.pkl", XNet())
        pe.save_pickle("meta", "cfg.pkl", {"b": 1, "a": [1.5, "x"], "t": torch.arange(4)})
        pe.save_text("meta", "info.txt", "hello")
        pe.save_module("xcompat_pkgs.uses_mock")

    data = export_bytes(build)
    first = outputs_from_separate_processes[0][0]
    assert data == first, _differing_records(first, data)
