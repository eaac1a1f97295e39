"""The ``torchpack`` command (SPEC §5): inspect, why, verify, diff, query and build, on archives
written by torchpack and by torch.package, in text and JSON, with exit codes 0/1/2.

Commands run in-process through ``torchpack.cli.main`` (output captured by capsys); two
tests run the real ``python -m torchpack`` and the installed console script.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import shutil
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
import torch.package

import torchpack
from helpers_core import local_data_offset
from torchpack._pickle_scan import scan_pickle
from torchpack.cli import main

REPO = Path(__file__).resolve().parent.parent
WRITERS = {"torchpack": torchpack, "torch.package": torch.package}

MODEL_SOURCE = """\
import json

import torch

from . import helpers
from .plotting import draw


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.register_buffer("steps", torch.arange(4))

    def forward(self, x):
        return helpers.double(self.fc(x))
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A package `cli_corpus` on sys.path: a model, a helper it imports, a module to mock."""
    root = tmp_path_factory.mktemp("corpus")
    package = root / "cli_corpus"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text(MODEL_SOURCE)
    (package / "helpers.py").write_text("def double(x):\n    return x * 2\n")
    (package / "plotting.py").write_text("def draw(x):\n    raise RuntimeError('needs a display')\n")
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [name for name in sys.modules if name.partition(".")[0] == "cli_corpus"]:
        del sys.modules[name]


def _net(weight: float):
    from cli_corpus.model import Net

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.fc.weight[0, 1] = weight
    return net


def _export(module, path: Path, net, scale: int = 1) -> Path:
    with warnings.catch_warnings(), module.PackageExporter(str(path)) as exporter:
        # torch.package pickles typed storages, which torch reports as deprecated.
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        exporter.intern("cli_corpus.**", exclude="cli_corpus.plotting")
        exporter.mock("cli_corpus.plotting")
        exporter.extern(["torch.**", "json"])
        exporter.save_source_string("cli_corpus.extra", f"SCALE = {scale}\n")
        exporter.save_pickle("model", "net.pkl", net)
        exporter.save_text("model", "config.json", '{"width": 3}')
    return path


@pytest.fixture(scope="module")
def archives(corpus, tmp_path_factory):
    """For each writer: a base archive, one with one weight changed, one with one source changed."""
    out = tmp_path_factory.mktemp("archives")
    built = {}
    for writer, module in WRITERS.items():
        stem = writer.replace(".", "_")
        built[writer] = {
            "base": _export(module, out / f"{stem}_base.pt", _net(1.0)),
            "weight": _export(module, out / f"{stem}_weight.pt", _net(1.75)),
            "source": _export(module, out / f"{stem}_source.pt", _net(1.0), scale=2),
        }
    return built


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, *argv: object) -> tuple[int, dict]:
    code, out, err = run(capsys, *argv, "--json")
    return code, json.loads(out)


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("torchpack: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def zip_record_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(name.partition("/")[2] for name in archive.namelist())


# -- the opcode scan ------------------------------------------------------------------------


def test_scan_follows_memoised_stack_global_strings_without_importing():
    data = pickle.dumps([collections.OrderedDict, collections.Counter, collections.OrderedDict()], protocol=4)
    assert scan_pickle(data).globals == (("collections", "OrderedDict"), ("collections", "Counter"))
    # GLOBAL of a module that does not exist: scanning never imports it.
    scan = scan_pickle(b"\x80\x02cnot_installed_anywhere\nThing\n)\x81.")
    assert scan.globals == (("not_installed_anywhere", "Thing"),)
    with pytest.raises(ValueError):
        scan_pickle(b"\x80\x02t.")  # TUPLE with no mark


# -- inspect --------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_inspect_json_lists_records_modules_globals_and_storages(capsys, archives, writer):
    path = archives[writer]["base"]
    code, document = run_json(capsys, "inspect", path)
    assert code == 0
    assert [entry["name"] for entry in document["records"]] == zip_record_names(path)
    sizes = {entry["name"]: entry["bytes"] for entry in document["records"]}
    assert sizes["model/config.json"] == len('{"width": 3}')
    assert document["format_version"] == "6"
    assert {"cli_corpus.model", "cli_corpus.helpers", "cli_corpus.extra"} <= set(document["interned_modules"])
    assert document["mocked_modules"] == ["cli_corpus.plotting"]
    assert {"json", "torch"} <= set(document["extern_modules"])
    [pickled] = document["pickles"]
    assert pickled["record"] == "model/net.pkl"
    assert {"cli_corpus.model.Net", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage"} <= set(pickled["globals"])
    storages = document["storages"]
    assert storages["count"] == 3 and storages["dtypes"] == {"float32": 2, "int64": 1}
    assert storages["bytes"] == (6 + 2) * 4 + 4 * 8
    assert sorted(entry["numel"] for entry in storages["records"]) == [2, 4, 6]
    if writer == "torchpack":
        assert document["provenance"]["torchpack"] == torchpack.__version__
        assert document["provenance"]["torch"] == torch.__version__
    else:
        assert document["provenance"] is None


@pytest.mark.parametrize("writer", WRITERS)
def test_inspect_text_shows_tree_with_sizes_and_sections(capsys, archives, writer):
    code, out, _ = run(capsys, "inspect", archives[writer]["base"])
    assert code == 0
    assert "│   ├── helpers.py  (" in out and "config.json  (12 B)" in out
    assert "mocked modules (1)\n  cli_corpus.plotting\n" in out
    assert "    cli_corpus.model.Net\n" in out
    assert "storages (3): 64 B; dtypes: float32 x2, int64 x1" in out
    expected = "built with torchpack" if writer == "torchpack" else "provenance: none"
    assert expected in out


def test_inspect_include_exclude_filter_the_tree(capsys, archives):
    path = archives["torchpack"]["base"]
    code, document = run_json(capsys, "inspect", path, "--include", "cli_corpus/**", "--exclude", "**/extra.py")
    assert code == 0
    assert [entry["name"] for entry in document["records"]] == [
        "cli_corpus/__init__.py", "cli_corpus/helpers.py", "cli_corpus/model.py", "cli_corpus/plotting.py",
    ]


# -- why ------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_why_names_the_path_in_text_and_json(capsys, archives, writer):
    path = archives[writer]["base"]
    code, out, _ = run(capsys, "why", path, "cli_corpus.helpers")
    assert code == 0
    assert "cli_corpus.helpers is interned; 1 path leads to it:" in out
    assert "  <model.net.pkl> -> cli_corpus.model -> cli_corpus.helpers\n" in out
    code, document = run_json(capsys, "why", path, "json")
    assert code == 0 and document["kind"] == "extern"
    assert document["paths"] == [["<model.net.pkl>", "cli_corpus.model", "json"]]
    code, document = run_json(capsys, "why", path, "cli_corpus.plotting")
    assert document["kind"] == "mocked"
    assert document["paths"] == [["<model.net.pkl>", "cli_corpus.model", "cli_corpus.plotting"]]
    # A module saved directly, that nothing imports, is its own root.
    code, document = run_json(capsys, "why", path, "cli_corpus.extra")
    assert code == 0 and document["paths"] == [["cli_corpus.extra"]]


def test_why_dot_and_svg(capsys, archives, tmp_path, monkeypatch):
    path = archives["torchpack"]["base"]
    code, out, _ = run(capsys, "why", path, "_mock", "--dot")
    assert code == 0 and out.startswith("digraph G {")
    assert '"cli_corpus.model" -> "cli_corpus.plotting";' in out
    assert '"cli_corpus.plotting" -> "_mock";' in out
    assert "helpers" not in out  # only edges on a path to the module
    assert shutil.which("dot"), "Graphviz's dot is needed (.ci/run installs the graphviz package)"
    code, out, _ = run(capsys, "why", path, "_mock", "--svg", tmp_path / "why.svg")
    assert code == 0 and out == f"wrote {tmp_path / 'why.svg'}\n"
    svg = (tmp_path / "why.svg").read_text()
    assert "<svg" in svg and "cli_corpus.plotting" in svg
    monkeypatch.setenv("PATH", str(tmp_path))  # no Graphviz
    code, out, err = run(capsys, "why", path, "_mock", "--svg", tmp_path / "why.svg")
    assert code == 2
    assert_one_line_error(err, "Graphviz", "dot")


# -- verify ---------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_verify_passes_intact_archives(capsys, archives, writer):
    path = archives[writer]["base"]
    code, out, _ = run(capsys, "verify", path)
    assert code == 0, out
    assert out.rstrip().endswith(": OK")
    if writer == "torch.package":
        assert "no integrity record (torch.package archive): digests not checked" in out
    code, document = run_json(capsys, "verify", path)
    assert code == 0 and document["ok"] is True
    assert document["digests_checked"] is (writer == "torchpack")
    assert document["pickles"] == {"checked": 1, "problems": []}


def _central_entry(data: bytes, filename: str) -> int:
    """Offset of ``filename``'s central directory entry."""
    position = data.find(b"PK\x01\x02")
    while position >= 0:
        name_length = int.from_bytes(data[position + 28 : position + 30], "little")
        if data[position + 46 : position + 46 + name_length] == filename.encode():
            return position
        position = data.find(b"PK\x01\x02", position + 4)
    raise AssertionError(f"no central directory entry for {filename}")


def _damage(source: Path, target: Path, record: str, *, fix_crc: bool = False) -> Path:
    """A copy of ``source`` with one byte of ``record`` flipped (and, optionally, its CRCs redone)."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = next(i for i in archive.infolist() if i.filename.partition("/")[2] == record)
    assert info.compress_type == zipfile.ZIP_STORED
    offset = local_data_offset(bytes(data), info)
    data[offset + info.file_size // 2] ^= 0x01
    if fix_crc:
        crc = zlib.crc32(data[offset : offset + info.file_size]).to_bytes(4, "little")
        data[info.header_offset + 14 : info.header_offset + 18] = crc  # local header
        central = _central_entry(bytes(data), info.filename)
        data[central + 16 : central + 20] = crc
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize(
    ("writer", "record", "fix_crc"),
    [
        ("torchpack", "cli_corpus/helpers.py", False),
        ("torchpack", ".data/1.storage", False),
        ("torchpack", ".data/1.storage", True),  # CRC made to match: only the digest tells
        ("torch.package", "cli_corpus/helpers.py", False),
        ("torch.package", ".data/1.storage", False),
    ],
)
def test_verify_names_a_record_with_one_flipped_byte(capsys, archives, tmp_path, writer, record, fix_crc):
    damaged = _damage(archives[writer]["base"], tmp_path / "damaged.pt", record, fix_crc=fix_crc)
    code, out, _ = run(capsys, "verify", damaged)
    assert code == 1
    assert f"FAIL  integrity:\n        {record}: " in out
    assert out.rstrip().endswith(": FAILED")
    code, document = run_json(capsys, "verify", damaged)
    assert code == 1 and document["ok"] is False
    assert record in [problem["record"] for problem in document["integrity"]]
    if fix_crc:
        assert any("integrity digest" in problem["message"] for problem in document["integrity"])


# -- diff -----------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_diff_reports_the_changed_tensor_with_its_max_abs_diff(capsys, archives, writer):
    base, changed = archives[writer]["base"], archives[writer]["weight"]
    code, document = run_json(capsys, "diff", base, changed)
    assert code == 1 and document["identical"] is False
    assert document["added"] == [] and document["removed"] == []
    [storage] = [change for change in document["changed"] if change["kind"] != "derived"]
    assert storage["kind"] == "storage"
    [tensor] = storage["tensors"]
    assert tensor["pickle"] == "model/net.pkl" and tensor["dtype"] == "float32" and tensor["numel"] == 6
    assert storage["record"] == f".data/{tensor['storage_key']}.storage"
    assert tensor["changed_elements"] == 1 and tensor["max_abs_diff"] == 0.75
    # Named where it lives in the module, as in its state_dict(), with its shape.
    assert tensor["name"] == "fc.weight" and tensor["shape"] == [2, 3]
    code, out, _ = run(capsys, "diff", base, changed)
    assert code == 1
    assert "    fc.weight in model/net.pkl: float32 [2, 3]: 1 element differs, max abs diff 0.75\n" in out


@pytest.mark.parametrize("writer", WRITERS)
def test_diff_shows_a_unified_diff_of_a_changed_source(capsys, archives, writer):
    base, changed = archives[writer]["base"], archives[writer]["source"]
    code, document = run_json(capsys, "diff", base, changed)
    assert code == 1
    [source] = [change for change in document["changed"] if change["kind"] != "derived"]
    assert source["record"] == "cli_corpus/extra.py" and source["kind"] == "source"
    assert "-SCALE = 1\n+SCALE = 2\n" in source["diff"]
    code, out, _ = run(capsys, "diff", base, changed)
    assert "changed cli_corpus/extra.py (source, 10 -> 10 bytes)" in out
    assert "    -SCALE = 1\n    +SCALE = 2\n" in out


def test_diff_of_pickles_lists_globals_and_opcodes(capsys, tmp_path):
    paths = []
    for name, obj in (("a.pt", [1, 2]), ("b.pt", [1, collections.OrderedDict(x=3)])):
        with torchpack.PackageExporter(str(tmp_path / name)) as exporter:
            exporter.save_pickle("data", "obj.pkl", obj)
        paths.append(tmp_path / name)
    code, document = run_json(capsys, "diff", *paths)
    assert code == 1
    [change] = [change for change in document["changed"] if change["record"] == "data/obj.pkl"]
    assert change["kind"] == "pickle"
    assert change["globals_added"] == ["collections.OrderedDict"] and change["globals_removed"] == []
    # Opcodes without byte offsets: only the changed element differs.
    assert "-K        BININT1    2\n+c        GLOBAL     'collections OrderedDict'\n" in change["diff"]
    assert " e        APPENDS    (MARK at 5)\n" in change["diff"]
    assert {".data/extern_modules"} <= {c["record"] for c in document["changed"]}


def test_diff_of_identical_archives_exits_0(capsys, archives, tmp_path):
    copy_path = tmp_path / "copy.pt"
    copy_path.write_bytes(archives["torchpack"]["base"].read_bytes())
    code, out, _ = run(capsys, "diff", archives["torchpack"]["base"], copy_path)
    assert code == 0 and "are identical" in out


# -- query and build ------------------------------------------------------------------------


def test_query_lists_targets_outputs_and_deps(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, _ = run(capsys, "query", "//examples/...")
    assert code == 0
    assert "//examples/tinynet:tinynet  ->  torchpack-out/examples/tinynet/tinynet.pt\n" in out
    assert "//examples/composed:composed  ->  torchpack-out/examples/composed/composed.pt  (deps: //examples/tinynet:tinynet)" in out
    code, document = run_json(capsys, "query", "--deps", "//examples/composed")
    assert code == 0
    assert [target["label"] for target in document["targets"]] == [
        "//examples/tinynet:tinynet", "//examples/composed:composed",
    ]
    assert document["targets"][1]["deps"] == ["//examples/tinynet:tinynet"]


def test_build_delegates_to_the_build_layer(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, _ = run(capsys, "build", "--list", "//examples/tinynet")
    assert code == 0 and out.startswith("//examples/tinynet:tinynet  ->  ")
    code, _, err = run(capsys, "build", "//examples/nope:x")
    assert code == 2 and "unknown label //examples/nope:x" in err
    code, out, _ = run(capsys, "build", "--help")
    assert code == 0 and out.startswith("usage: torchpack build")


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_is_one_line_and_exit_2(capsys, archives, tmp_path, monkeypatch):
    missing = tmp_path / "missing.pt"
    for command in ("inspect", "verify", "why"):
        extra = ["torch"] if command == "why" else []
        code, _, err = run(capsys, command, missing, *extra)
        assert code == 2
        assert_one_line_error(err, f"{missing}: no such archive")
    not_archive = tmp_path / "notes.txt"
    not_archive.write_text("just text, not a zip\n")
    code, _, err = run(capsys, "inspect", not_archive)
    assert code == 2
    assert_one_line_error(err, str(not_archive), "not a ZIP archive")
    plain_zip = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("top/readme.txt", "a zip, but no package")
    code, _, err = run(capsys, "verify", plain_zip)
    assert code == 2
    assert_one_line_error(err, str(plain_zip), "not a torch.package archive")
    code, _, err = run(capsys, "diff", archives["torchpack"]["base"], not_archive)
    assert code == 2
    assert_one_line_error(err, "not a ZIP archive")
    code, _, err = run(capsys, "why", archives["torch.package"]["base"], "cli_corpus.nothere")
    assert code == 2
    assert_one_line_error(err, "cli_corpus.nothere", "not in the archive")
    monkeypatch.chdir(REPO)
    code, _, err = run(capsys, "query", "//examples/nope:x")
    assert code == 2
    assert_one_line_error(err, "unknown label //examples/nope:x")
    # -v shows the traceback behind the same message.
    for argv in (["-v", "inspect", missing], ["inspect", missing, "-v"]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "Traceback" in err and err.rstrip().endswith("no such archive")
    code, _, err = run(capsys, "inspect", "--no-such-flag", missing)
    assert code == 2 and "unrecognized arguments: --no-such-flag" in err


def test_colour_only_on_a_terminal_without_no_color(monkeypatch):
    from torchpack.cli._output import paint

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert paint("FAIL", "red") == "FAIL"  # pytest's captured stdout is no terminal
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert paint("FAIL", "red") == "\033[31mFAIL\033[0m"
    monkeypatch.setenv("NO_COLOR", "1")
    assert paint("FAIL", "red") == "FAIL"


# -- the real command -----------------------------------------------------------------------


def test_python_dash_m_torchpack_runs(archives):
    result = subprocess.run(
        [sys.executable, "-m", "torchpack", "inspect", "--json", str(archives["torch.package"]["base"])],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mocked_modules"] == ["cli_corpus.plotting"]


def test_console_script_runs(archives, tmp_path):
    script = Path(sys.executable).parent / "torchpack"
    assert script.exists(), "the torchpack console script comes with `pip install -e .`"
    result = subprocess.run([str(script), "why", str(tmp_path / "missing.pt"), "x"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"torchpack: error: {tmp_path / 'missing.pt'}: no such archive\n"
