"""``verify --compat torch.package`` and ``compat = "torch.package"``: packaged code that looks a
packaged module up by name loads in torchpack but not in torch.package; the check finds it
statically, and the portable idiom it suggests loads in both."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch.package

import torchpack
from build_support import cli_env, make_workspace, run_cli, write
from torchpack.analyze.compat import torch_package_findings
from torchpack._archive_reader import open_archive

BY_NAME = """
import importlib.resources


class Tokenizer:
    def __init__(self):
        self.vocab = importlib.resources.files("mylab.text").joinpath("vocab.txt").read_text().split()
"""
BY_MODULE_FILES = """
import importlib.resources

import mylab.text


class Tokenizer:
    def __init__(self):
        self.vocab = importlib.resources.files(mylab.text).joinpath("vocab.txt").read_text().split()
"""
BY_MODULE_READ_TEXT = BY_MODULE_FILES.replace('files(mylab.text).joinpath("vocab.txt").read_text()', 'read_text(mylab.text, "vocab.txt")')
BY_MODULE_READ_BINARY = BY_MODULE_FILES.replace('files(mylab.text).joinpath("vocab.txt").read_text()', 'read_binary(mylab.text, "vocab.txt").decode()')
# torch.package's resource reader has no files(): Python 3.11's files() adapts it, 3.10's fails.
PORTABLE = BY_MODULE_FILES if sys.version_info >= (3, 11) else BY_MODULE_READ_BINARY
PORTABLE_HINT = "importlib.resources.files(mylab.text)" if sys.version_info >= (3, 11) else 'importlib.resources.read_binary(mylab.text, "vocab.txt").decode()'
BUILD = """
[tokenizer]
intern = ["mylab.**"]
modules = ["mylab.text.tokenizer"]
text = {{ "mylab/text/vocab.txt" = "text/vocab.txt" }}
{compat}
"""


def _workspace(tmp_path: Path, tokenizer: str, compat: str = "") -> Path:
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / "mylab/__init__.py", "")
    write(root / "mylab/text/__init__.py", "")
    write(root / "mylab/text/vocab.txt", "the quick fox\n")
    write(root / "mylab/text/tokenizer.py", tokenizer)
    write(root / "mylab/BUILD.toml", BUILD.format(compat=compat))
    return root


def _build(root: Path) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    result = run_cli(root, "//mylab:tokenizer")
    return result, sorted(p for p in root.rglob("tokenizer.pt"))


def _verify(*archives: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torchpack", "verify", "--compat", "torch.package", *map(str, archives)],
        cwd=archives[0].parent, env=cli_env(), capture_output=True, text=True, timeout=300,
    )


def _vocab(importer_class: type, archive: Path) -> list[str]:
    return importer_class(str(archive)).import_module("mylab.text.tokenizer").Tokenizer().vocab


def test_by_name_lookup_is_found_and_really_fails_in_torch_package(tmp_path: Path) -> None:
    result, archives = _build(_workspace(tmp_path, BY_NAME))
    assert result.returncode == 0, result.stderr
    [archive] = archives
    verified = _verify(archive)
    assert verified.returncode == 1, verified.stdout
    assert "mylab.text.tokenizer:6: importlib.resources.files('mylab.text')" in verified.stdout
    assert PORTABLE_HINT in verified.stdout
    assert "Traceback" not in verified.stderr
    # What the check predicts: torchpack resolves the name in the package, torch.package does not
    # (the test process has no workspace on its path, as on a machine that only has the archive).
    assert _vocab(torchpack.PackageImporter, archive) == ["the", "quick", "fox"]
    with pytest.raises(ModuleNotFoundError, match="mylab"):
        _vocab(torch.package.PackageImporter, archive)


def test_portable_idiom_passes_and_loads_in_both(tmp_path: Path) -> None:
    result, [archive] = _build(_workspace(tmp_path, PORTABLE, 'compat = "torch.package"'))
    assert result.returncode == 0, result.stderr
    verified = _verify(archive)
    assert verified.returncode == 0, verified.stdout
    assert "torch.package compat: loads the same in torch.package" in verified.stdout
    assert _vocab(torchpack.PackageImporter, archive) == _vocab(torch.package.PackageImporter, archive) == ["the", "quick", "fox"]


def test_files_of_a_module_is_reported_where_torch_package_fails_it(tmp_path: Path) -> None:
    """The check speaks for torch.package on the Python it runs on: files(module) loads there
    from 3.11 on and is not reported; on 3.10 it fails there, and the check says so."""
    result, [archive] = _build(_workspace(tmp_path, BY_MODULE_FILES))
    assert result.returncode == 0, result.stderr
    verified = _verify(archive)
    if sys.version_info >= (3, 11):
        assert verified.returncode == 0, verified.stdout
        assert _vocab(torch.package.PackageImporter, archive) == ["the", "quick", "fox"]
    else:
        assert verified.returncode == 1, verified.stdout
        assert "mylab.text.tokenizer:8: importlib.resources.files(...)" in verified.stdout
        assert PORTABLE_HINT in verified.stdout
        with pytest.raises(Exception):  # noqa: B017 - whatever 3.10's importlib raises
            _vocab(torch.package.PackageImporter, archive)
    assert _vocab(torchpack.PackageImporter, archive) == ["the", "quick", "fox"]


@pytest.mark.parametrize("source", [BY_MODULE_READ_TEXT, BY_MODULE_READ_BINARY], ids=["read_text", "read_binary"])
def test_older_resource_calls_are_reported_where_torch_package_fails_them(tmp_path: Path, source: str) -> None:
    """read_binary(module, name) loads in both on every Python; read_text(module, name) fails in
    torch.package on 3.13 (it passes errors= to paths that take none), and the check says so there."""
    result, [archive] = _build(_workspace(tmp_path, source))
    assert result.returncode == 0, result.stderr
    verified = _verify(archive)
    if source is BY_MODULE_READ_TEXT and sys.version_info >= (3, 13):
        assert verified.returncode == 1, verified.stdout
        assert "mylab.text.tokenizer:8: importlib.resources.read_text(...)" in verified.stdout
        assert 'read_binary(mylab.text, "vocab.txt").decode()' in verified.stdout
        with pytest.raises(TypeError, match="errors"):
            _vocab(torch.package.PackageImporter, archive)
    else:
        assert verified.returncode == 0, verified.stdout
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.11 and 3.12 deprecate them
            assert _vocab(torch.package.PackageImporter, archive) == ["the", "quick", "fox"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert _vocab(torchpack.PackageImporter, archive) == ["the", "quick", "fox"]


def test_build_with_compat_key_fails_with_file_line_and_finding(tmp_path: Path) -> None:
    root = _workspace(tmp_path, BY_NAME, 'compat = "torch.package"')
    result, archives = _build(root)
    assert result.returncode == 1
    assert archives == []  # no artifact of a failed target
    line = next(n for n, text in enumerate((root / "mylab/BUILD.toml").read_text().splitlines(), 1) if text.startswith("compat"))
    assert f"mylab/BUILD.toml:{line}: target 'tokenizer': key 'compat'" in result.stderr + result.stdout
    assert "mylab.text.tokenizer:6: importlib.resources.files('mylab.text')" in result.stderr + result.stdout


def test_unknown_compat_loader_is_a_build_file_error(tmp_path: Path) -> None:
    root = _workspace(tmp_path, PORTABLE, 'compat = "torch"')
    result, _ = _build(root)
    assert result.returncode != 0
    assert "mylab/BUILD.toml:5: target 'tokenizer': key 'compat': unknown loader 'torch'" in result.stderr + result.stdout


def _archive_of(tmp_path: Path, sources: dict[str, str]) -> Path:
    archive = tmp_path / "sources.pt"
    with torchpack.PackageExporter(str(archive)) as exporter:
        for name, source in sources.items():
            exporter.save_source_string(name, source, is_package=name == "mylab", dependencies=False)
    return archive


def test_other_constructs_and_extern_names(tmp_path: Path) -> None:
    source = """
import importlib, os, pkgutil
from importlib import import_module
from importlib.resources import files

a = importlib.import_module("mylab.util")
b = import_module(".util", __package__)
c = pkgutil.get_data("mylab", "vocab.txt")
d = open(os.path.join(os.path.dirname(__file__), "vocab.txt"))
e = files(__package__)
f = importlib.import_module("json")        # extern: the same in both
g = files("numpy")                         # not packaged: the same in both
"""
    archive = _archive_of(tmp_path, {"mylab": "", "mylab.util": "", "mylab.user": source})
    found = [(f.line, f.construct) for f in torch_package_findings(open_archive(str(archive)))]
    assert found == [
        (6, "importlib.import_module('mylab.util')"),
        (7, "import_module('.util')"),
        (8, "pkgutil.get_data('mylab', ...)"),
        (9, "open(... __file__ ...)"),
        (10, "files(__package__)"),
    ]


def test_deeply_nested_source_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    # More hostile shapes, through the CLI under a memory limit: tests/hostile/test_hostile_compat.py.
    archive = _archive_of(tmp_path, {"mylab": "", "mylab.deep": "x = " + "-" * 200_000 + "1"})
    [finding] = torch_package_findings(open_archive(str(archive)))
    assert (finding.module, finding.construct) == ("mylab.deep", "source that cannot be analysed")
    assert finding.why.startswith(("RecursionError", "MemoryError", "SyntaxError"))
