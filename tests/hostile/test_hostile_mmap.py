"""Archives that change under a live importer: truncated, rewritten in place, replaced.

The default mapping shows the file as it is now. What torchpack promises (README, "Safety"):
a change made through the file (a write, a truncation) is refused with an IntegrityError
naming the archive before a record not yet used is read from it; tensors already loaded
from a truncated file end the process with SIGBUS when touched, and faulthandler reports
where; replacing the file by a rename changes nothing for the importer; ``mmap=False`` is
immune to all of it. Cases that can kill the process run in a child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from torchpack import IntegrityError, PackageExporter, PackageImporter

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mapping semantics checked on Linux")

#: 4 MiB each: records large enough to be checked one by one, spanning many pages.
FIRST = torch.arange(1 << 20, dtype=torch.float32)
SECOND = torch.full((1 << 20,), 7.0)


def _export(path: Path, first: torch.Tensor = FIRST, second: torch.Tensor = SECOND) -> Path:
    with PackageExporter(path) as exporter:
        exporter.save_pickle("data", "first.pkl", first)
        exporter.save_pickle("data", "second.pkl", second)
        exporter.save_text("data", "note.txt", "hello")
    return path


def _child(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120, check=False
    )


def test_truncation_after_load_is_refused_for_new_records_and_reported_for_mapped_ones(tmp_path: Path) -> None:
    path = _export(tmp_path / "model.pt")
    # One intra-op thread, so that the touch faults on the Python thread alone: when several
    # of torch's workers fault at once, faulthandler's report is cut short (the next test).
    done = _child(
        f"""
        import os
        import torch
        torch.set_num_threads(1)
        from torchpack import IntegrityError, PackageImporter
        importer = PackageImporter({str(path)!r})
        first = importer.load_pickle("data", "first.pkl")
        print("sum", float(first.sum()), flush=True)
        os.truncate({str(path)!r}, 1000)
        try:
            importer.load_pickle("data", "second.pkl")
        except IntegrityError as error:
            print("refused:", error, flush=True)
        print("touching", flush=True)
        print(float(first.sum()), flush=True)  # its pages are gone: SIGBUS
        print("survived", flush=True)
        """
    )
    assert done.returncode == -signal.SIGBUS, done.stdout + done.stderr
    assert f"sum {float(FIRST.sum())}" in done.stdout
    assert f"refused: {path}: the archive file changed after it was opened (its size went from" in done.stdout
    assert "touching" in done.stdout and "survived" not in done.stdout
    # Not silent: faulthandler names the signal and shows where it struck.
    assert "Fatal Python error: Bus error" in done.stderr and "File \"<string>\"" in done.stderr


def test_a_fault_on_several_worker_threads_still_ends_the_process_with_sigbus(tmp_path: Path) -> None:
    """torch sums a 4 MiB tensor on all its threads, and each of them may touch a cut-off page.

    faulthandler puts the default handler back as soon as it starts reporting, so a second
    thread's fault ends the process mid-report, sometimes before its first word: what is
    promised then is the signal, never a process that carries on.
    """
    path = _export(tmp_path / "model.pt")
    done = _child(
        f"""
        import os
        from torchpack import PackageImporter
        first = PackageImporter({str(path)!r}).load_pickle("data", "first.pkl")
        print("sum", float(first.sum()), flush=True)
        os.truncate({str(path)!r}, 1000)
        print(float(first.sum()), flush=True)
        print("survived", flush=True)
        """
    )
    assert done.returncode == -signal.SIGBUS, done.stdout + done.stderr
    assert "survived" not in done.stdout


def test_truncation_after_load_without_mapping_changes_nothing(tmp_path: Path) -> None:
    path = _export(tmp_path / "model.pt")
    importer = PackageImporter(path, mmap=False)
    first = importer.load_pickle("data", "first.pkl")
    os.truncate(path, 1000)
    assert torch.equal(first, FIRST)
    assert torch.equal(importer.load_pickle("data", "second.pkl"), SECOND)


def test_truncation_before_the_first_load_is_refused(tmp_path: Path) -> None:
    path = _export(tmp_path / "model.pt")
    importer = PackageImporter(path)
    os.truncate(path, os.path.getsize(path) // 2)
    with pytest.raises(IntegrityError, match=f"{path}: the archive file changed after it was opened"):
        importer.load_pickle("data", "first.pkl")


def _rewrite_in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as handle:  # same inode, same size, other bytes
        handle.write(data)


def _with_other_tensors(tmp_path: Path, path: Path) -> bytes:
    """An archive the same size as ``path`` whose tensors differ."""
    other = _export(tmp_path / "other.pt", FIRST + 1, SECOND + 1).read_bytes()
    assert len(other) == os.path.getsize(path)
    return other


def test_rewrite_in_place_after_load_is_refused_before_the_next_record(tmp_path: Path) -> None:
    path = _export(tmp_path / "model.pt")
    importer = PackageImporter(path)
    first = importer.load_pickle("data", "first.pkl")
    assert torch.equal(first, FIRST)
    stamp = os.stat(path).st_mtime_ns
    other = _with_other_tensors(tmp_path, path)
    while os.stat(path).st_mtime_ns == stamp:  # coarse file timestamps: see the README
        _rewrite_in_place(path, other)
    for load in (
        lambda: importer.load_pickle("data", "second.pkl"),
        lambda: importer.load_pickle("data", "first.pkl"),  # its pickle is read again: refused too
        lambda: importer.load_text("data", "note.txt"),
    ):
        with pytest.raises(IntegrityError, match=f"{path}: the archive file changed after it was opened \\(it was written in place\\)"):
            load()
    # The hazard the README states: a tensor already loaded shows the new bytes.
    assert torch.equal(first, FIRST + 1)


def test_rewrite_like_torch_save_after_load_is_refused(tmp_path: Path) -> None:
    path = _export(tmp_path / "model.pt")
    importer = PackageImporter(path)
    importer.load_pickle("data", "first.pkl")
    torch.save({"x": torch.ones(3)}, path)  # open(path, "wb"): truncates and rewrites the same inode
    with pytest.raises(IntegrityError, match=f"{path}: the archive file changed after it was opened"):
        importer.load_pickle("data", "second.pkl")


def test_rewrite_in_place_without_mapping_changes_nothing(tmp_path: Path) -> None:
    path = _export(tmp_path / "model.pt")
    importer = PackageImporter(path, mmap=False)
    first = importer.load_pickle("data", "first.pkl")
    _rewrite_in_place(path, _with_other_tensors(tmp_path, path))
    assert torch.equal(first, FIRST)
    assert torch.equal(importer.load_pickle("data", "second.pkl"), SECOND)


def test_replacing_the_file_by_a_rename_leaves_the_importer_its_archive(tmp_path: Path) -> None:
    path = _export(tmp_path / "model.pt")
    importer = PackageImporter(path)
    first = importer.load_pickle("data", "first.pkl")
    replacement = _export(tmp_path / "new.pt", FIRST * 2, SECOND * 2)
    os.replace(replacement, path)
    assert torch.equal(first, FIRST)
    # The importer keeps reading the file it opened, checked as before.
    assert torch.equal(importer.load_pickle("data", "second.pkl"), SECOND)
    assert torch.equal(PackageImporter(path).load_pickle("data", "second.pkl"), SECOND * 2)


def test_deleting_the_file_after_load_leaves_the_importer_its_archive(tmp_path: Path) -> None:
    path = _export(tmp_path / "model.pt")
    importer = PackageImporter(path)
    first = importer.load_pickle("data", "first.pkl")
    path.unlink()
    assert torch.equal(first, FIRST)
    assert torch.equal(importer.load_pickle("data", "second.pkl"), SECOND)
