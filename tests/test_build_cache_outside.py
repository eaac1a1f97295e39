"""The action cache keys code imported from outside both the workspace and site-packages'
distributions by its content: an editable install (a real ``pip install -e``), a folder a
``.pth`` file or PYTHONPATH puts on the path, a library in site-packages without distribution
metadata.  Editing such a module that a factory imported rebuilds with new bytes; editing one
it did not import does not; the standard library never enters the key."""

from __future__ import annotations

import hashlib
import importlib
import json
import py_compile
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from build_support import REPO, cli_env, make_workspace, relocated_venv, write

from torchpack.build.cache import ActionCache, toolchain_fingerprint
from torchpack.build.inputs import ReadRecorder, export_inputs
from torchpack.build.labels import parse_label
from torchpack.build.schema import parse_build_file

LABEL = "//lab:lab"
BUILD_TOML = """
    [lab]
    intern = "lab.**"
    extern = "torch.**"
    [lab.pickle."lab/model.pkl"]
    call = "lab.model:build"
"""


def _workspace(tmp_path: Path, library: str) -> Path:
    """A workspace whose factory scales its weights by ``{library}.weights.SCALE`` (imported while
    it runs, as a factory's helper library would be) and also uses some of the standard library."""
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / "lab" / "__init__.py", "")
    write(root / "lab" / "BUILD.toml", BUILD_TOML)
    write(root / "lab" / "model.py", f"""
        import torch

        def build():
            import csv, decimal, json  # first imported here: the interpreter's, never keyed by path
            from {library}.weights import SCALE
            layer = torch.nn.Linear(3, 2)
            layer.weight.data = torch.arange(6, dtype=torch.float32).reshape(2, 3) * SCALE
            return layer
    """)
    return root


def _write_library(folder: Path, name: str, scale: int) -> None:
    write(folder / name / "__init__.py", "")
    write(folder / name / "weights.py", f"SCALE = {scale}\n")
    write(folder / name / "unused.py", "VALUE = 1\n")


def _build(root: Path, python: Path) -> str:
    done = subprocess.run([str(python), "-m", "torchpack.build", "--json", LABEL], cwd=root, env=cli_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (target,) = json.loads(done.stdout)["targets"]
    return target["state"]


def _record_inputs(root: Path) -> dict[str, str]:
    """The inputs of the target's most recent cache record."""
    cache = ActionCache(root / "torchpack-out", root, toolchain_fingerprint())
    return cache.records(parse_label(LABEL))[0].inputs


def _stdlib_folder() -> str:
    return str(Path(sysconfig.get_path("stdlib", vars={"base": sys.base_prefix, "installed_base": sys.base_prefix})).resolve())


def _assert_edits_rebuild_only_when_imported(root: Path, python: Path, library: Path) -> None:
    """Built, then cached; an edit of a module the export did not import keeps it cached; an edit
    of the one it imported rebuilds, with other bytes."""
    output = root / "torchpack-out" / "lab" / "lab.pt"
    assert _build(root, python) == "built"
    first = hashlib.sha256(output.read_bytes()).hexdigest()
    inputs = _record_inputs(root)
    assert str((library / "weights.py").resolve()) in inputs
    assert str((library / "unused.py").resolve()) not in inputs
    outside = [path for path in inputs if Path(path).is_absolute()]
    assert not [path for path in outside if path.startswith(_stdlib_folder())], outside
    assert _build(root, python) == "cached"

    (library / "unused.py").write_text("VALUE = 2\n")
    assert _build(root, python) == "cached"

    (library / "weights.py").write_text("SCALE = 3\n")
    assert _build(root, python) == "built"
    assert hashlib.sha256(output.read_bytes()).hexdigest() != first


def test_editing_an_editable_installed_library_rebuilds(tmp_path: Path) -> None:
    """A real ``pip install -e`` (setuptools' ``__editable__`` finder): the library's version
    stays 0.1 while its source changes, so its files are keyed by content."""
    root = _workspace(tmp_path, "otherlib")
    python = relocated_venv(tmp_path / "venv")
    project = tmp_path / "otherlib"
    _write_library(project, "otherlib", 2)
    write(project / "pyproject.toml", """
        [project]
        name = "otherlib"
        version = "0.1"
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
    """)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation", "-e", str(project)],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    (site_packages,) = (tmp_path / "venv" / "lib").glob("python*/site-packages")
    assert list(site_packages.glob("__editable__*otherlib*.pth")) and list(site_packages.glob("otherlib-0.1.dist-info"))
    _assert_edits_rebuild_only_when_imported(root, python, project / "otherlib")


def test_editing_a_module_on_a_pth_folder_rebuilds(tmp_path: Path) -> None:
    """A ``.pth`` line naming a folder puts it on every export's path, as PYTHONPATH would if
    builds were not hermetic (it does not reach an export; see the action test below)."""
    root = _workspace(tmp_path, "pathlib_helpers")
    python = relocated_venv(tmp_path / "venv")
    folder = tmp_path / "on-the-path"
    _write_library(folder, "pathlib_helpers", 2)
    (site_packages,) = (tmp_path / "venv" / "lib").glob("python*/site-packages")
    (site_packages / "helpers.pth").write_text(f"{folder}\n")
    _assert_edits_rebuild_only_when_imported(root, python, folder / "pathlib_helpers")


def test_editing_a_library_without_distribution_metadata_in_site_packages_rebuilds(tmp_path: Path) -> None:
    """Files copied into site-packages with no ``.dist-info``: no version stands for them."""
    root = _workspace(tmp_path, "nometalib")
    python = relocated_venv(tmp_path / "venv")
    (site_packages,) = (tmp_path / "venv" / "lib").glob("python*/site-packages")
    _write_library(site_packages, "nometalib", 2)
    _assert_edits_rebuild_only_when_imported(root, python, site_packages / "nometalib")


def test_the_action_reports_a_pythonpath_folders_module_by_path_and_no_standard_library(tmp_path: Path) -> None:
    """Run as Bazel runs it, the action sees PYTHONPATH: the module a factory imported from a
    PYTHONPATH folder is an input (absolute path), the one it did not is not, and neither are
    the standard library's modules nor torch's and torchpack's files (keyed by the toolchain)."""
    root = _workspace(tmp_path, "pathlib_helpers")
    folder = tmp_path / "on-the-path"
    _write_library(folder, "pathlib_helpers", 2)
    definition = tmp_path / "def.json"
    definition.write_text(parse_build_file(root, "lab")["lab"].definition_json())
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "torchpack.build.action", "--definition", str(definition), "--workspace", str(root),
         "--output", str(tmp_path / "lab.pt"), "--report", str(report)],
        cwd=tmp_path, env=cli_env(PYTHONPATH=f"{REPO}:{folder}"), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(report.read_text())
    outside = sorted(path for path in document["inputs"] if Path(path).is_absolute())
    assert outside == [str((folder / "pathlib_helpers" / name).resolve()) for name in ("__init__.py", "weights.py")]
    assert "torch" in document["distributions"]


def _inputs_of_this_process(root: Path, imported: str) -> tuple[list[str], list[str]]:
    """:func:`export_inputs` here, as if only ``imported`` had been imported during an export."""
    preloaded = frozenset(name.partition(".")[0] for name in sys.modules) - {imported}
    return export_inputs(root, [], set(), ReadRecorder(), set(), preloaded)


def test_a_module_imported_from_bytecode_alone_is_keyed_by_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "on-the-path"
    source = write(folder / "sourceless_helper.py", "SCALE = 2\n")
    bytecode = folder / "sourceless_helper.pyc"
    py_compile.compile(str(source), cfile=str(bytecode), doraise=True)
    source.unlink()
    monkeypatch.syspath_prepend(str(folder))
    try:
        importlib.import_module("sourceless_helper")
        inputs, _ = _inputs_of_this_process(make_workspace(tmp_path / "ws", examples=False), "sourceless_helper")
    finally:
        sys.modules.pop("sourceless_helper", None)
    assert inputs == [str(bytecode.resolve())]


def test_standard_library_modules_first_imported_during_the_export_are_not_inputs(tmp_path: Path) -> None:
    """The interpreter's own modules are keyed by its version (the toolchain), never by path:
    a stdlib module, a stdlib package's submodule and an extension module of lib-dynload."""
    for name in ("graphlib", "xml.dom.minidom", "_lsprof"):  # each in Python 3.10 to 3.13
        before = set(sys.modules)
        importlib.import_module(name)
        try:
            assert _inputs_of_this_process(make_workspace(tmp_path / "ws", examples=False), name.partition(".")[0]) == ([], [])
        finally:
            for fresh in set(sys.modules) - before:
                sys.modules.pop(fresh, None)
