"""The resolver and the importer chain behave as torch.package's do (issue 16, sections 2 and 4):
submodules are found through the parent's ``__path__``, an OrderedImporter falls through to
the importer that has the very object, an extern submodule is bound on the package's own
parent, ``save_module`` of a missing module fails at the call, and an empty name cannot be
mangled. Each case runs with real torch.package alongside where it has the behaviour.

Sample code lives in tests/corpus/resolver_pkgs (its ``__init__`` re-points
``__spec__.submodule_search_locations`` at ``pathlib.Path`` objects, as transformers does).
"""

from __future__ import annotations

import importlib
import io
import os
import pathlib
import pickle
import subprocess
import sys
import textwrap
import types

import pytest
import torch.package as torch_package
from torch.package._mangling import PackageMangler as TorchMangler

import torchpack
from torchpack._mangling import PackageMangler
from torchpack._resolution import clear_spec_memo, locate_module, module_exists
from torchpack.importer import sys_importer

import resolver_pkgs
from resolver_pkgs.thing import Thing

LIBS = {"torch.package": torch_package, "torchpack": torchpack}
DIRECTIONS = [("torch.package", "torchpack"), ("torchpack", "torch.package"), ("torchpack", "torchpack")]


def export(lib, build) -> bytes:
    buf = io.BytesIO()
    with lib.PackageExporter(buf) as exporter:
        build(exporter)
    return buf.getvalue()


# -- section 2: submodules through the parent's __path__ -------------------------------------


def test_submodule_of_a_package_whose_spec_holds_path_objects_is_found():
    assert isinstance(resolver_pkgs.__spec__.submodule_search_locations[0], pathlib.Path)
    clear_spec_memo()
    located = locate_module(sys_importer, "resolver_pkgs.child")
    assert located.source == "VALUE = 7\n" and not located.is_package
    namespace = importlib.import_module("resolver_pkgs.nsp")  # its __path__ is a _NamespacePath
    assert type(namespace.__path__).__name__ == "_NamespacePath"
    assert locate_module(sys_importer, "resolver_pkgs.nsp.leaf").source == 'LEAF = "namespace leaf"\n'


@pytest.mark.parametrize("writer", LIBS)
def test_the_submodule_exports_and_loads_with_both_tools(writer):
    data = export(LIBS[writer], lambda pe: (pe.intern("resolver_pkgs.**"), pe.save_module("resolver_pkgs.child")))
    for reader in LIBS.values():
        assert reader.PackageImporter(io.BytesIO(data)).import_module("resolver_pkgs.child").VALUE == 7


def test_search_path_entries_are_coerced_as_far_as_they_are_paths(monkeypatch, tmp_path):
    (tmp_path / "odd_leaf.py").write_text("X = 1\n")
    odd = types.ModuleType("torchpack_odd_parent")
    odd.__path__ = [pathlib.Path(tmp_path), os.fsencode(tmp_path / "nowhere"), 3, None]
    monkeypatch.setitem(sys.modules, "torchpack_odd_parent", odd)
    clear_spec_memo()
    assert locate_module(sys_importer, "torchpack_odd_parent.odd_leaf").source == "X = 1\n"
    not_a_package = types.ModuleType("torchpack_odd_module")
    monkeypatch.setitem(sys.modules, "torchpack_odd_module", not_a_package)
    assert not module_exists(sys_importer, "torchpack_odd_module.odd_leaf")


def test_real_transformers_submodule_is_found_after_transformers_repoints_its_spec():
    # In a fresh interpreter: importing transformers takes seconds and fills sys.modules.
    script = textwrap.dedent("""
        import pathlib
        import transformers
        from transformers.utils.import_utils import direct_transformers_import

        # What transformers.processing_utils does on import: re-execute transformers' __init__
        # with a spec whose submodule_search_locations holds a pathlib.Path.
        direct_transformers_import(pathlib.Path(transformers.__file__).parent)
        import transformers
        assert any(isinstance(p, pathlib.Path) for p in transformers.__spec__.submodule_search_locations)
        from torchpack._resolution import locate_module
        from torchpack.importer import sys_importer
        located = locate_module(sys_importer, "transformers.video_processing_utils")
        assert "class BaseVideoProcessor" in located.source, located
        print("found")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "found", result.stderr


# -- section 4: the importer chain -------------------------------------------------------------


def package_with_thing(lib):
    """An importer over an archive holding its own resolver_pkgs.thing.Thing class."""
    data = export(lib, lambda pe: (pe.intern("resolver_pkgs.**"), pe.save_module("resolver_pkgs.thing")))
    return lib.PackageImporter(io.BytesIO(data))


def export_with_importers(lib, importers, obj) -> bytes:
    buf = io.BytesIO()
    with lib.PackageExporter(buf, importer=importers) as exporter:
        exporter.intern("resolver_pkgs.**")
        exporter.save_pickle("obj", "obj.pkl", obj)
    return buf.getvalue()


@pytest.mark.parametrize("lib_name", LIBS)
def test_ordered_importer_falls_through_to_the_importer_that_has_the_object(lib_name):
    lib = LIBS[lib_name]
    first = package_with_thing(lib)  # knows another Thing than the environment's
    assert first.import_module("resolver_pkgs.thing").Thing is not Thing
    data = export_with_importers(lib, [first, lib.sys_importer], Thing(5))
    loaded = lib.PackageImporter(io.BytesIO(data)).load_pickle("obj", "obj.pkl")
    assert loaded.value == 5 and type(loaded).__name__ == "Thing"
    # And the package's object, through the same chain in the other order of preference.
    packaged = first.import_module("resolver_pkgs.thing").Thing(6)
    data = export_with_importers(lib, [lib.sys_importer, first], packaged)
    assert lib.PackageImporter(io.BytesIO(data)).load_pickle("obj", "obj.pkl").value == 6


def test_ordered_importer_raises_when_no_importer_has_the_object():
    # A Thing from a third package: neither the chain's package nor the environment has it.
    stranger = package_with_thing(torchpack).import_module("resolver_pkgs.thing").Thing(1)
    with pytest.raises(torchpack.ObjMismatchError, match="different object"):
        export_with_importers(torchpack, [package_with_thing(torchpack), sys_importer], stranger)
    torch_errors = (pickle.PicklingError, torch_package.importer.ObjNotFoundError, torch_package.importer.ObjMismatchError)
    with pytest.raises(torch_errors):
        export_with_importers(torch_package, [package_with_thing(torch_package), torch_package.sys_importer], stranger)


def save_extern_submodule_user(exporter):
    exporter.extern("resolver_pkgs.subpackage")
    exporter.save_source_string(
        "user", "import resolver_pkgs.subpackage\n\ndef marker():\n    return resolver_pkgs.subpackage.SUB_MARKER\n"
    )


@pytest.mark.parametrize("writer, reader", DIRECTIONS)
def test_extern_submodule_is_bound_on_the_packages_own_parent(writer, reader):
    subpackage = importlib.import_module("resolver_pkgs.subpackage")
    importer = LIBS[reader].PackageImporter(io.BytesIO(export(LIBS[writer], save_extern_submodule_user)))
    assert importer.import_module("user").marker() == "resolver_pkgs.subpackage"
    parent = importer.import_module("resolver_pkgs")
    assert parent is not resolver_pkgs and parent.__name__ == f"{importer.id()}.resolver_pkgs"
    assert not hasattr(parent, "PARENT_MARKER")  # not the environment's __init__
    assert parent.subpackage is subpackage


@pytest.mark.parametrize("writer, reader", DIRECTIONS)
def test_extern_submodule_under_an_interned_parent(writer, reader):
    def build(exporter):
        exporter.extern("resolver_pkgs.subpackage")
        exporter.intern("resolver_pkgs.**")
        exporter.save_module("resolver_pkgs.uses_sub")

    importer = LIBS[reader].PackageImporter(io.BytesIO(export(LIBS[writer], build)))
    assert importer.import_module("resolver_pkgs.uses_sub").sub_marker() == "resolver_pkgs.subpackage"
    assert importer.import_module("resolver_pkgs").__name__ == f"{importer.id()}.resolver_pkgs"


@pytest.mark.parametrize("lib_name", LIBS)
def test_save_module_of_a_missing_module_fails_at_the_call(lib_name):
    exporter = LIBS[lib_name].PackageExporter(io.BytesIO())
    with pytest.raises(ModuleNotFoundError) as caught:
        exporter.save_module("no_such_module")
    assert "no_such_module" in str(caught.value)
    exporter.close()  # nothing was recorded: the package closes cleanly


def test_mangling_an_empty_name_fails_in_both():
    with pytest.raises(AssertionError):
        TorchMangler().mangle("")
    with pytest.raises(ValueError, match="empty module name"):
        PackageMangler().mangle("")
    mangler = PackageMangler()
    assert mangler.demangle(mangler.mangle("a.b")) == "a.b"
