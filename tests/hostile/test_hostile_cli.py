"""The ``torchpack`` command on hostile input, run as a user runs it (``python -m torchpack``):
special files, folders that are no archive, removed integrity records, pickles and sources
nested 100,000 deep, texts whose diff is quadratic, BUILD files nested past the recursion
limit. Every case exits with the documented status and at most one line on stderr (no
traceback), within a time limit (a hang fails) and an address-space limit (a memory blow-up
fails: quadratic memory in a 100,000-deep pickle is tens of GiB).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch.package

import torchpack
from archive_surgery import INTEGRITY
from helpers_core import limit_address_space
from torchpack.cli import main

REPO = Path(__file__).resolve().parents[2]
#: Address space for each command beyond what torch and the interpreter hold before any input.
MEMORY_HEADROOM = 5 << 29  # 2.5 GiB
DEPTH = 100_000


def torchpack_cli(*arguments: object, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "torchpack", *map(str, arguments)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, preexec_fn=limit_address_space(MEMORY_HEADROOM),
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchpack: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def small_archive(path: Path, pickle_data: bytes | None = None, source: str | None = None) -> Path:
    with torchpack.PackageExporter(str(path)) as exporter:
        exporter.save_source_string("helper", "X = 1\n")
        exporter.save_pickle("data", "obj.pkl", [1, 2])
        if pickle_data is not None:
            exporter.save_binary("data", "deep.pkl", pickle_data)
        if source is not None:
            exporter.save_binary("deep", "mod.py", source.encode())
    return path


COMMANDS = {
    "inspect": lambda path: ("inspect", path),
    "why": lambda path: ("why", path, "helper"),
    "verify": lambda path: ("verify", path),
    "diff": lambda path: ("diff", path, path),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_fifo_is_refused_with_exit_2_instead_of_hanging(tmp_path, command):
    fifo = tmp_path / "archive.pt"
    os.mkfifo(fifo)
    result = torchpack_cli(*COMMANDS[command](fifo), timeout=60)
    assert_one_line_error(result, f"{fifo} is a FIFO (named pipe), not an archive file or folder")


def test_device_is_refused_with_exit_2(tmp_path):
    assert_one_line_error(torchpack_cli("inspect", "/dev/zero", timeout=60), "/dev/zero is a character device")


def test_inspect_of_an_empty_folder_is_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(torchpack_cli("inspect", tmp_path / "empty"), "the folder holds no records")


def test_folder_with_a_link_out_is_exit_2_naming_the_record(tmp_path):
    archive = small_archive(tmp_path / "a.pt")
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / "package"
    (folder / "data" / "hostname.txt").symlink_to("/etc/hostname")
    result = torchpack_cli("inspect", folder)
    assert_one_line_error(result, f"{folder}: record 'data/hostname.txt' is a symbolic link leading out of the folder")


def _without_integrity(tmp_path: Path) -> Path:
    """A torchpack archive whose integrity record was removed with zipfile (other entries kept as written)."""
    data = small_archive(tmp_path / "intact.pt").read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith(INTEGRITY):
                target.writestr(info, source.read(info))
    stripped = tmp_path / "stripped.pt"
    stripped.write_bytes(out.getvalue())
    return stripped


# Verify's findings need no hang or memory guard: in-process, as most of tests/test_cli.py runs.


def test_verify_points_out_a_removed_integrity_record(tmp_path, capsys):
    code = main(["verify", "--json", str(_without_integrity(tmp_path))])
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert code == 0 and err == ""  # reported once, not warned per pickle
    assert document["integrity_record_removed"] is True and document["digests_checked"] is False
    assert document["note"].startswith("WARNING: written by torchpack, but its integrity record was removed")


@pytest.mark.parametrize("writer", ["torchpack, record removed", "torch.package"])
def test_verify_require_integrity_fails_archives_without_integrity_record(tmp_path, capsys, writer):
    if writer == "torch.package":
        archive = tmp_path / "tp.pt"
        with torch.package.PackageExporter(str(archive)) as exporter:
            exporter.save_pickle("data", "obj.pkl", [1, 2])
    else:
        archive = _without_integrity(tmp_path)
    code = main(["verify", "--require-integrity", str(archive)])
    out, err = capsys.readouterr()
    assert code == 1 and err == ""
    assert f"{INTEGRITY}: no integrity record: --require-integrity fails" in out


#: Pickle bodies nested DEPTH deep (after PROTO 2, before STOP).
DEEP_PICKLES = {
    "marks": b"(" * DEPTH + b"l" * DEPTH,
    "lists": b"]" * DEPTH + b"a" * (DEPTH - 1),
    "dicts": b"}" + b"K\x00}" * DEPTH + b"s" * DEPTH,
}


@pytest.mark.parametrize("shape", sorted(DEEP_PICKLES))
def test_deep_pickle_diff_stays_bounded(tmp_path, shape):
    body = DEEP_PICKLES[shape]
    # The two differ in their first value, before the nesting, so the listings show it.
    a = small_archive(tmp_path / "a.pt", b"\x80\x02K\x01" + body + b"\x86.")
    b = small_archive(tmp_path / "b.pt", b"\x80\x02K\x02" + body + b"\x86.")
    result = torchpack_cli("diff", "--json", a, b)
    assert result.returncode == 1, result.stderr
    [change] = [c for c in json.loads(result.stdout)["changed"] if c["record"] == "data/deep.pkl"]
    # Nesting shows as at most 16 levels of indentation: the diff is a few short lines.
    assert "-K    BININT1    1\n+K    BININT1    2\n" in change["diff"] and len(change["diff"]) < 2000


def test_deep_pickle_differing_past_the_listed_opcodes_says_so(tmp_path):
    body = DEEP_PICKLES["marks"]  # 200,000 opcodes, then the one that differs
    a = small_archive(tmp_path / "a.pt", b"\x80\x02" + body + b"K\x01\x86.")
    b = small_archive(tmp_path / "b.pt", b"\x80\x02" + body + b"K\x02\x86.")
    result = torchpack_cli("diff", a, b)
    assert result.returncode == 1, result.stderr
    assert "(the opcodes differ after the first 200,000, which are all that is listed)" in result.stdout


def test_deep_pickle_inspect_verify_and_why_stay_bounded(tmp_path):
    archive = small_archive(tmp_path / "a.pt", b"\x80\x02" + DEEP_PICKLES["marks"] + b".",
                            source="x = " + "+".join(["1"] * DEPTH) + "\n")
    result = torchpack_cli("inspect", "--json", archive)
    assert result.returncode == 0, result.stderr
    assert "data/deep.pkl" in {entry["record"] for entry in json.loads(result.stdout)["pickles"]}
    result = torchpack_cli("verify", archive)
    assert result.returncode == 0, result.stdout + result.stderr
    result = torchpack_cli("why", archive, "helper")  # parses deep/mod.py, too deep for Python's parser
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_diff_of_texts_with_a_quadratic_line_diff_is_skipped_and_said(tmp_path):
    # Lines that repeat, but too rarely for difflib to skip them: its matching is quadratic.
    a_text = "".join(f"line {i % 300}\n" for i in range(20_000))
    b_text = "".join(f"line {(i * 7) % 300}\n" for i in range(20_000))
    paths = []
    for name, text in (("a.pt", a_text), ("b.pt", b_text)):
        with torchpack.PackageExporter(str(tmp_path / name)) as exporter:
            exporter.save_text("data", "table.txt", text)
        paths.append(tmp_path / name)
    result = torchpack_cli("diff", *paths, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "changed data/table.txt (text," in result.stdout
    assert "lines differ from line 2 on, more than the 2,000,000 line pairs a diff compares" in result.stdout


def test_query_of_a_build_file_nested_past_the_recursion_limit_is_exit_2(tmp_path):
    (tmp_path / "WORKSPACE").write_text("")
    (tmp_path / "BUILD.toml").write_text("[t]\nkind = " + "[" * DEPTH + "]" * DEPTH + "\n")
    result = torchpack_cli("query", "//...", cwd=tmp_path)
    assert_one_line_error(result, "BUILD.toml files nest too deeply to read")
