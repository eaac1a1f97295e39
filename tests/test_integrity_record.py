"""The integrity record (.data/torchpack/integrity.json): what it lists, that it is
deterministic, that torch.package ignores it, and the extern-version check built on it."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import platform
import shutil
import sys
import warnings
import zipfile
from pathlib import Path

import blake3
import pytest
import torch

from archive_surgery import INTEGRITY, rebuild, valid_archive
from helpers_core import records, zip_infos
from torchpack import ExternVersionError, ExternVersionWarning, IntegrityError, PackageExporter, PackageImporter, __version__
from torchpack._archive_reader import open_archive
from torchpack._integrity import extern_version_mismatches, read_integrity, verify_records


def test_lists_every_other_record_with_size_and_blake3() -> None:
    contents = records(valid_archive())
    document = json.loads(contents[INTEGRITY])
    assert set(document["records"]) == set(contents) - {INTEGRITY}
    for name, entry in document["records"].items():
        assert entry == {"blake3": blake3.blake3(contents[name]).hexdigest(), "size": len(contents[name])}
    assert document["schema"] == 1 and document["digest"] == "blake3"


@pytest.mark.parametrize("algorithm", ["md5", ["blake3"], None])
def test_an_unknown_digest_algorithm_is_a_format_error(algorithm: object) -> None:
    from torchpack import ArchiveFormatError

    document = json.loads(records(valid_archive())[INTEGRITY])
    document["digest"] = algorithm
    edited = rebuild(valid_archive(), replace={INTEGRITY: json.dumps(document).encode()}, refresh_integrity=False)
    with pytest.raises(ArchiveFormatError, match=r"integrity\.json: unsupported digest"):
        PackageImporter(edited)


def test_sha256_integrity_records_are_read_and_checked() -> None:
    """The record names its algorithm; SHA-256 ones (torchpack before BLAKE3) still load."""
    archive = rebuild(valid_archive(), digest="sha256")
    document = json.loads(records(archive)[INTEGRITY])
    assert document["digest"] == "sha256" and all("sha256" in entry for entry in document["records"].values())
    assert verify_records(open_archive(archive)) == []
    assert PackageImporter(archive).load_text("zoo", "readme.txt") == "hello"
    tampered = rebuild(archive, replace={"zoo/readme.txt": b"HELLO"}, refresh_integrity=False)
    with pytest.raises(IntegrityError, match=r"'zoo/readme\.txt' does not match its integrity digest \(sha256 "):
        PackageImporter(tampered).load_text("zoo", "readme.txt")


def test_provenance_names_tool_versions_and_extern_distributions(tmp_path: Path) -> None:
    path = tmp_path / "graph.pt"
    with PackageExporter(path) as exporter:
        exporter.extern("networkx.**")
        exporter.save_source_string("uses_nx", "import networkx\n")
    provenance = read_integrity(open_archive(path)).provenance
    assert provenance["torchpack"] == __version__
    assert provenance["torch"] == torch.__version__
    assert provenance["python"] == platform.python_version()
    assert provenance["extern_distributions"] == {"networkx": importlib.metadata.version("networkx")}


def test_record_is_deterministic_and_free_of_paths_and_times(tmp_path: Path) -> None:
    first = records(valid_archive())[INTEGRITY]
    assert records(valid_archive())[INTEGRITY] == first
    text = first.decode()
    assert str(tmp_path) not in text and "/tmp" not in text and str(Path.home()) not in text
    assert json.dumps(json.loads(text), sort_keys=True, indent=1) + "\n" == text


def test_torch_package_loads_an_archive_with_an_integrity_record(tmp_path: Path) -> None:
    from torch.package import PackageImporter as TorchImporter

    path = tmp_path / "valid.pt"
    path.write_bytes(valid_archive())
    loaded = TorchImporter(str(path)).load_pickle("data", "tensors.pkl")
    assert torch.equal(loaded["a"], torch.arange(12, dtype=torch.float32))


def test_verify_records_is_clean_on_a_valid_archive_and_checks_the_serialization_id() -> None:
    data = valid_archive()
    assert verify_records(open_archive(data)) == []
    forged = rebuild(data, replace={".data/serialization_id": b"1" * 40}, refresh_integrity=True)
    problems = verify_records(open_archive(forged))
    assert [problem.record for problem in problems] == [".data/serialization_id"]


def _with_recorded_versions(data: bytes, versions: dict[str, str]) -> bytes:
    document = json.loads(records(data)[INTEGRITY])
    document["provenance"]["extern_distributions"] = versions
    edited = (json.dumps(document, sort_keys=True, indent=1) + "\n").encode()
    return rebuild(data, replace={INTEGRITY: edited}, refresh_integrity=False)


def test_extern_version_change_warns_with_both_versions_and_errors_when_strict(tmp_path: Path) -> None:
    installed = importlib.metadata.version("networkx")
    path = tmp_path / "graph.pt"
    with PackageExporter(path) as exporter:
        exporter.extern("networkx.**")
        exporter.save_source_string("uses_nx", "import networkx\nNAME = networkx.__name__\n")
    older = tmp_path / "older.pt"
    older.write_bytes(_with_recorded_versions(path.read_bytes(), {"networkx": "1.0.fake"}))

    with pytest.warns(ExternVersionWarning) as caught:
        importer = PackageImporter(older)
    message = str(caught[0].message)
    assert "networkx" in message and "1.0.fake" in message and installed in message and str(older) in message
    assert importer.import_module("uses_nx").NAME == "networkx"  # a warning, not a refusal

    with pytest.raises(ExternVersionError, match=r"'networkx' was 1\.0\.fake at export but is .* here"):
        PackageImporter(older, strict_versions=True)


def test_version_warning_points_at_the_callers_line_once_per_archive(tmp_path: Path) -> None:
    path = tmp_path / "graph.pt"
    with PackageExporter(path) as exporter:
        exporter.extern("networkx.**")
        exporter.save_source_string("uses_nx", "import networkx\n")
    older = tmp_path / "older-once.pt"
    older.write_bytes(_with_recorded_versions(path.read_bytes(), {"networkx": "1.0.once", "torch": "0.0.once"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = sys._getframe().f_lineno + 1
        PackageImporter(older)
        PackageImporter(older)  # the same archive again: nothing new to say
    assert [w.category for w in caught] == [ExternVersionWarning, ExternVersionWarning]
    assert {(w.filename, w.lineno) for w in caught} == {(__file__, line)}
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["networkx", "torch"]


def test_extern_distribution_missing_here_is_reported(tmp_path: Path) -> None:
    data = _with_recorded_versions(valid_archive(), {"torchpack-test-no-such-dist": "2.0"})
    mismatches = extern_version_mismatches(read_integrity(open_archive(data)))
    assert [(m.distribution, m.recorded, m.installed) for m in mismatches] == [("torchpack-test-no-such-dist", "2.0", None)]
    with pytest.raises(ExternVersionError, match="is not installed"):
        PackageImporter(data, strict_versions=True)


def test_matching_versions_load_silently(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    path = tmp_path / "graph.pt"
    with PackageExporter(path) as exporter:
        exporter.extern("networkx.**")
        exporter.save_source_string("uses_nx", "import networkx\n")
    PackageImporter(path, strict_versions=True)
    assert not [w for w in recwarn if issubclass(w.category, ExternVersionWarning)]


def test_archives_written_by_zipfile_roundtrip_keep_their_integrity() -> None:
    # Re-zipping with another tool keeps every record's bytes, so the digests still hold.
    data = valid_archive()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    assert verify_records(open_archive(out.getvalue())) == []
    assert PackageImporter(out.getvalue()).load_text("zoo", "readme.txt") == "hello"


def _big_archive(path: Path) -> Path:
    with PackageExporter(path) as exporter:
        exporter.save_pickle("data", "big.pkl", {"w": torch.arange(1 << 19, dtype=torch.float32)})  # 2 MiB
    return path


def test_large_mapped_records_are_hashed_once_per_unchanged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchpack._integrity as integrity

    monkeypatch.setenv("TORCHPACK_CACHE_DIR", str(tmp_path / "cache"))
    hashed: list[str] = []
    original = integrity.digest_problem
    monkeypatch.setattr(integrity, "digest_problem", lambda name, *rest: hashed.append(name) or original(name, *rest))
    # A copy is a new file (new inode): nothing is remembered of it.
    path = tmp_path / "copy.pt"
    shutil.copyfile(_big_archive(tmp_path / "big.pt"), path)

    first = PackageImporter(path).load_pickle("data", "big.pkl")["w"]
    assert ".data/0.storage" in hashed
    hashed.clear()
    second = PackageImporter(path).load_pickle("data", "big.pkl")["w"]
    assert ".data/0.storage" not in hashed  # remembered: the file is the one checked before
    assert torch.equal(first, second)
    assert list((tmp_path / "cache" / "verified").rglob("*"))


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count every digest computed from now on (the list's length)."""
    import torchpack._digest as digest_module

    hashed: list[int] = []
    original = digest_module.HEX_DIGESTS["blake3"]
    monkeypatch.setitem(digest_module.HEX_DIGESTS, "blake3", lambda data: hashed.append(len(data)) or original(data))
    # Small records are hashed through the hasher class itself.
    hasher = digest_module.HASHERS["blake3"]
    monkeypatch.setitem(digest_module.HASHERS, "blake3", lambda data: hashed.append(len(data)) or hasher(data))
    return hashed


def _many_records_archive(path: Path) -> Path:
    with PackageExporter(path) as exporter:
        exporter.save_pickle("data", "w.pkl", [torch.full((4,), float(i)) for i in range(20)])
        exporter.save_pickle("data", "big.pkl", torch.arange(1 << 19, dtype=torch.float32))  # 2 MiB
    return path


def test_an_archive_this_machine_just_wrote_is_not_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHPACK_CACHE_DIR", str(tmp_path / "cache"))
    path = _many_records_archive(tmp_path / "many.pt")
    hashed = _count_hashes(monkeypatch)
    importer = PackageImporter(path)
    importer.load_pickle("data", "w.pkl"), importer.load_pickle("data", "big.pkl")
    assert hashed == []  # the exporter hashed these very bytes as it wrote them: small records too
    os.utime(path)  # any change of the file's identity voids what the exporter remembered
    importer = PackageImporter(path)
    importer.load_pickle("data", "w.pkl"), importer.load_pickle("data", "big.pkl")
    # Each storage, the big one, the two pickles, and the two framework records read on opening.
    assert len(hashed) == 20 + 1 + 2 + 2


def test_a_file_verified_on_opening_is_not_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHPACK_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "copy.pt"  # a copy: nothing is remembered of a new file
    shutil.copyfile(_many_records_archive(tmp_path / "many.pt"), path)
    hashed = _count_hashes(monkeypatch)
    PackageImporter(path, integrity="eager")
    assert len(hashed) == len(zip_infos(path.read_bytes())) - 1  # every record but the integrity record
    hashed.clear()
    PackageImporter(path).load_pickle("data", "w.pkl")
    assert hashed == []
    # Checking only what one load uses vouches for nothing else.
    other = tmp_path / "other.pt"
    shutil.copyfile(path, other)
    PackageImporter(other).load_pickle("data", "w.pkl")
    hashed.clear()
    PackageImporter(other).load_pickle("data", "big.pkl")
    assert 4 << 19 in hashed  # big.pkl's storage: checked now, not vouched for by the earlier load


def test_a_file_changed_after_its_check_is_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from archive_surgery import flip_byte

    monkeypatch.setenv("TORCHPACK_CACHE_DIR", str(tmp_path / "cache"))
    path = _big_archive(tmp_path / "big.pt")
    PackageImporter(path).load_pickle("data", "big.pkl")
    # Tamper in place (same inode, same size, CRC fixed up): the write moves the file's ctime.
    path.write_bytes(flip_byte(path.read_bytes(), ".data/0.storage", 12345))
    with pytest.raises(IntegrityError, match=r"'\.data/0\.storage' does not match its integrity digest"):
        PackageImporter(path).load_pickle("data", "big.pkl")
