"""Optional dependencies: an import of a module that is not installed, under a guard (``if``,
``try``/``except ImportError``) or in a function, does not block the export. The module is
left out, listed by the exporter and in the archive, and named by the error if packaged code
imports it after all. Unconditional top-level imports of missing modules still fail.

Sample code lives in tests/corpus/optional_pkgs; no ``torchpack_absent_*`` module exists.
"""

from __future__ import annotations

import io
import zipfile

import pytest
import torch.package as torch_package

from build_support import build_in_process, make_workspace, write
from torchpack import PackageExporter, PackageImporter, PackagingError
from torchpack._source_scan import ImportSite, scan_source
from torchpack.errors import BrokenReason

LEFT_OUT = [
    "torchpack_absent_deferred",
    "torchpack_absent_exception.sub",
    "torchpack_absent_if.api",
    "torchpack_absent_method",
    "torchpack_absent_try",
]
RECORD = ".data/torchpack/optional_missing"


def export_guarded() -> tuple[bytes, list[str]]:
    buf = io.BytesIO()
    with PackageExporter(buf) as exporter:
        exporter.intern("optional_pkgs.**")
        exporter.save_module("optional_pkgs.guarded")
        left_out = exporter.optional_missing_modules()
    return buf.getvalue(), left_out


def test_scanner_records_the_site_of_each_import():
    source = (
        "import top\n"
        "if flag:\n    import in_if\nelse:\n    import in_else\n"
        "try:\n    import in_try\nexcept (ImportError, OSError):\n    import in_handler\n"
        "else:\n    import in_try_else\n"
        "try:\n    import in_value_try\nexcept ValueError:\n    pass\n"
        "def f():\n    import in_function\n    if flag:\n        import in_function_if\n"
        "class C:\n    import in_class\n    def m(self):\n        from . import in_method\n"
        "for item in items:\n    import in_loop\n"
        "import twice\n"
        "def g():\n    import twice\n"
        "def h():\n    importlib.import_module('dynamic_deferred')\n"
    )
    sites = {(r.module, r.name): r.site for r in scan_source(source, "pkg")}
    assert sites == {
        ("top", None): ImportSite.TOP_LEVEL,
        ("in_if", None): ImportSite.GUARDED,
        ("in_else", None): ImportSite.GUARDED,
        ("in_try", None): ImportSite.GUARDED,
        ("in_handler", None): ImportSite.GUARDED,
        ("in_try_else", None): ImportSite.TOP_LEVEL,  # the handlers do not cover `else`
        ("in_value_try", None): ImportSite.TOP_LEVEL,  # ValueError is no ImportError
        ("in_function", None): ImportSite.DEFERRED,
        ("in_function_if", None): ImportSite.DEFERRED,
        ("in_class", None): ImportSite.TOP_LEVEL,  # a class body runs on import
        ("pkg", "in_method"): ImportSite.DEFERRED,
        ("in_loop", None): ImportSite.TOP_LEVEL,
        ("twice", None): ImportSite.TOP_LEVEL,  # the surest site wins
        ("dynamic_deferred", None): ImportSite.DEFERRED,
    }


def test_missing_optional_modules_are_left_out_and_listed():
    data, left_out = export_guarded()
    assert left_out == LEFT_OUT
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = {name.partition("/")[2] for name in archive.namelist()}
        record = archive.read(f"package/{RECORD}").decode()
    assert record.splitlines() == LEFT_OUT
    assert not any("torchpack_absent" in name for name in names - {RECORD})

    module = PackageImporter(io.BytesIO(data)).import_module("optional_pkgs.guarded")
    assert module.value() == 42


@pytest.mark.parametrize(
    "call, missing",
    [("accelerated()", "torchpack_absent_deferred"), ("Model().fast_path()", "torchpack_absent_method")],
)
def test_importing_a_left_out_module_at_load_names_it(call, missing):
    data, _ = export_guarded()
    module = PackageImporter(io.BytesIO(data)).import_module("optional_pkgs.guarded")
    with pytest.raises(ModuleNotFoundError) as caught:
        eval(call, vars(module))
    assert caught.value.name == missing
    message = str(caught.value)
    assert f"No module named '{missing}'" in message
    assert "left out at export, as an optional import of a module that was not installed" in message


def test_a_left_out_submodule_is_named_when_its_parent_is_imported():
    data, _ = export_guarded()
    importer = PackageImporter(io.BytesIO(data))
    with pytest.raises(ModuleNotFoundError, match=r"torchpack_absent_if\.api was left out at export") as caught:
        importer.import_module("torchpack_absent_if.api")
    assert caught.value.name == "torchpack_absent_if"


def test_torch_package_loads_the_archive_and_exports_the_same_module():
    data, _ = export_guarded()
    module = torch_package.PackageImporter(io.BytesIO(data)).import_module("optional_pkgs.guarded")
    assert module.value() == 42
    # torch.package drops every import it cannot resolve, guarded or not.
    buf = io.BytesIO()
    with torch_package.PackageExporter(buf) as exporter:
        exporter.intern("optional_pkgs.**")
        exporter.save_module("optional_pkgs.guarded")
    reloaded = torch_package.PackageImporter(io.BytesIO(buf.getvalue())).import_module("optional_pkgs.guarded")
    assert reloaded.value() == 42


def test_unconditional_top_level_import_of_a_missing_module_still_fails():
    exporter = PackageExporter(io.BytesIO())
    exporter.intern("optional_pkgs.**")
    exporter.save_module("optional_pkgs.required")
    with pytest.raises(PackagingError) as caught:
        exporter.close()
    assert [m.name for m in caught.value.by_reason[BrokenReason.NO_ACTION]] == ["torchpack_absent_required"]


def test_a_module_also_imported_unconditionally_is_not_optional():
    exporter = PackageExporter(io.BytesIO())
    exporter.intern("optional_pkgs.**")
    exporter.save_module("optional_pkgs.guarded")
    exporter.save_source_string("optional_pkgs.strict", "import torchpack_absent_try\n")
    assert "torchpack_absent_try" not in exporter.optional_missing_modules()
    with pytest.raises(PackagingError, match="torchpack_absent_try"):
        exporter.close()


def test_an_explicit_extern_keeps_a_missing_optional_module_for_the_loading_environment():
    buf = io.BytesIO()
    with PackageExporter(buf) as exporter:
        exporter.intern("optional_pkgs.**")
        exporter.extern("torchpack_absent_deferred")
        exporter.save_module("optional_pkgs.guarded")
        assert "torchpack_absent_deferred" in exporter.externed_modules()
        assert exporter.optional_missing_modules() == [m for m in LEFT_OUT if m != "torchpack_absent_deferred"]


def test_installed_optional_modules_are_resolved_as_before_and_no_record_is_written():
    buf = io.BytesIO()
    with PackageExporter(buf) as exporter:
        exporter.intern("optional_pkgs.**")
        exporter.save_source_string("optional_pkgs.uses_installed", "def f():\n    import optional_pkgs\n")
        assert exporter.optional_missing_modules() == []
        assert "optional_pkgs" in exporter.interned_modules()
    with zipfile.ZipFile(buf) as archive:
        assert not any(name.endswith(RECORD) for name in archive.namelist())


def test_build_prints_one_summary_line(tmp_path, monkeypatch):
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / "opt" / "__init__.py", "")
    write(root / "opt" / "guarded.py", _GUARDED_SOURCE)
    write(root / "opt" / "BUILD.toml", """
        [guarded]
        intern = "opt.**"
        modules = ["opt.guarded"]
    """)
    quiet = build_in_process(monkeypatch, root, "//opt:guarded")
    assert quiet.code == 0, quiet.err
    assert "  2 optional modules are not installed and were left out; -v lists them" in quiet.out.splitlines()
    verbose = build_in_process(monkeypatch, root, "-v", "//opt:guarded")  # cached: read from the archive
    lines = verbose.out.splitlines()
    start = lines.index("  2 optional modules are not installed and were left out:")
    assert lines[start + 1 : start + 3] == ["    torchpack_absent_a", "    torchpack_absent_b.sub"]


_GUARDED_SOURCE = """
try:
    import torchpack_absent_a
except ImportError:
    torchpack_absent_a = None

def later():
    from torchpack_absent_b.sub import thing
    return thing
"""
