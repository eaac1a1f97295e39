"""PackageImporter(materialize=...): packaged code that lists and opens its own files.

The package `walker` lists its own `plugins` folder at import, as transformers lists
`transformers/models`, and imports each plugin it finds. Without a materialized view that
folder does not exist; with one, it does, extracted into torchpack's cache, verified on each
use, and the modules are still the package's own (mangled, isolated).
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import torchpack
from torchpack import PackageExporter, PackageImporter
from torchpack.errors import MaterializedViewWarning

WALKER_INIT = """
import importlib, os
here = os.path.dirname(__file__)
PLUGINS = sorted(
    importlib.import_module(f"{__name__}.plugins.{name[:-3]}").NAME
    for name in os.listdir(os.path.join(here, "plugins"))
    if name.endswith(".py") and name != "__init__.py"
)
with open(os.path.join(here, "data.txt")) as handle:
    DATA = handle.read()
"""


def _archive(path: Path, plugin_b: str = "NAME = 'b'\n") -> Path:
    with PackageExporter(str(path)) as exporter:
        exporter.save_source_string("walker", WALKER_INIT, is_package=True)
        exporter.save_source_string("walker.plugins", "", is_package=True)
        exporter.save_source_string("walker.plugins.a", "NAME = 'a'\n")
        exporter.save_source_string("walker.plugins.b", plugin_b)
        exporter.save_text("walker", "data.txt", "resource text")
        exporter.save_source_string("other", "import os\nFILE = __file__\n")
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("TORCHPACK_CACHE_DIR", str(folder))
    return folder


def _views(cache: Path) -> list[Path]:
    return [path for path in (cache / "materialized").iterdir() if not path.name.startswith(".")]


def test_packaged_code_lists_its_own_folder_in_the_view(tmp_path, cache):
    archive = _archive(tmp_path / "walker.pt")
    before = archive.read_bytes()
    importer = PackageImporter(str(archive), materialize=True)
    walker = importer.import_module("walker")
    assert walker.PLUGINS == ["a", "b"] and walker.DATA == "resource text"
    # Still the package's module, under its mangled name; only its file view is real.
    assert walker.__name__ == importer.id() + ".walker"
    assert "walker" not in sys.modules
    (view,) = _views(cache)
    assert walker.__file__ == str(view / "walker" / "__init__.py")
    assert walker.__path__ == [str(view / "walker")]
    assert walker.plugins.a.__file__ == str(view / "walker" / "plugins" / "a.py")
    assert stat.S_IMODE(os.stat(walker.__file__).st_mode) == 0o444
    assert archive.read_bytes() == before  # loading never touches the archive


def test_default_mode_keeps_archive_paths(tmp_path, cache):
    archive = _archive(tmp_path / "walker.pt")
    importer = PackageImporter(str(archive))
    with pytest.raises(FileNotFoundError):
        importer.import_module("walker")
    other = importer.import_module("other")
    assert other.FILE == f"{importer.id()}.other.py"
    assert not (cache / "materialized").exists()


def test_a_glob_materializes_only_the_modules_it_names(tmp_path, cache):
    archive = _archive(tmp_path / "walker.pt")
    importer = PackageImporter(str(archive), materialize=["walker.**"])
    assert importer.import_module("walker").PLUGINS == ["a", "b"]
    assert importer.import_module("other").FILE == f"{importer.id()}.other.py"
    (view,) = _views(cache)
    assert not (view / "other.py").exists()


def test_a_tampered_view_is_detected_and_extracted_again(tmp_path, cache):
    archive = _archive(tmp_path / "walker.pt")
    PackageImporter(str(archive), materialize=True).import_module("walker")
    (view,) = _views(cache)
    planted = view / "walker" / "plugins" / "b.py"
    os.chmod(planted, 0o644)
    planted.write_text("NAME = 'attacker'\n")
    with pytest.warns(MaterializedViewWarning, match=r"walker/plugins/b\.py was changed"):
        walker = PackageImporter(str(archive), materialize=True).import_module("walker")
    assert walker.PLUGINS == ["a", "b"]
    assert planted.read_text() == "NAME = 'b'\n"


def test_a_file_added_to_the_view_is_detected(tmp_path, cache):
    archive = _archive(tmp_path / "walker.pt")
    PackageImporter(str(archive), materialize=True)
    (view,) = _views(cache)
    (view / "walker" / "plugins" / "evil.py").write_text("NAME = 'evil'\n")
    with pytest.warns(MaterializedViewWarning, match="holds files the archive does not"):
        walker = PackageImporter(str(archive), materialize=True).import_module("walker")
    assert walker.PLUGINS == ["a", "b"]
    assert not (view / "walker" / "plugins" / "evil.py").exists()


def test_an_intact_view_is_reused_silently(tmp_path, cache):
    archive = _archive(tmp_path / "walker.pt")
    PackageImporter(str(archive), materialize=True)
    (view,) = _views(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PackageImporter(str(archive), materialize=True).import_module("walker")
    assert _views(cache) == [view]
    # Another archive content is another view: the digest names the folder.
    other = _archive(tmp_path / "walker2.pt", plugin_b="NAME = 'c'\n")
    assert PackageImporter(str(other), materialize=True).import_module("walker").PLUGINS == ["a", "c"]
    assert len(_views(cache)) == 2


def test_concurrent_processes_extract_one_view(tmp_path, cache):
    # Two processes that both find no view extract it at once; one rename wins, both use it.
    archive = _archive(tmp_path / "walker.pt")
    script = (
        "import sys\nfrom torchpack import PackageImporter\n"
        "print(PackageImporter(sys.argv[1], materialize=True).import_module('walker').PLUGINS)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(Path(torchpack.__file__).parents[1])}
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(archive)], stdout=subprocess.PIPE, text=True, env=environment)
        for _ in range(2)
    ]
    outputs = [process.communicate()[0].strip() for process in processes]
    assert [process.returncode for process in processes] == [0] * 2
    assert outputs == ["['a', 'b']"] * 2
    assert len(_views(cache)) == 1
    assert not [path for path in (cache / "materialized").iterdir() if path.name.startswith(".")]


def test_without_a_cache_the_view_is_a_folder_of_the_process(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHPACK_CACHE_DIR", "")
    archive = _archive(tmp_path / "walker.pt")
    walker = PackageImporter(str(archive), materialize=True).import_module("walker")
    assert walker.PLUGINS == ["a", "b"]
    assert "torchpack-views-" in walker.__file__


def test_torch_package_archives_materialize_too(tmp_path, cache):
    from torch.package import PackageExporter as TorchExporter

    buffer = io.BytesIO()
    with TorchExporter(buffer) as exporter:
        exporter.save_source_string("walker", WALKER_INIT, is_package=True)
        exporter.save_source_string("walker.plugins", "", is_package=True)
        exporter.save_source_string("walker.plugins.a", "NAME = 'a'\n")
        exporter.save_text("walker", "data.txt", "from torch.package")
    path = tmp_path / "torch.pt"
    path.write_bytes(buffer.getvalue())
    walker = PackageImporter(str(path), materialize=True).import_module("walker")
    assert walker.PLUGINS == ["a"] and walker.DATA == "from torch.package"
