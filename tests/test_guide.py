"""The torch.package user guide (seeds/torch_package.md), point by point, with torchpack in
place of torch.package: every "How do I..." item and every explanation, run as written.

Sample code lives in tests/corpus/guide_pkgs. Archives are real ZIP files on disk or in memory.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
import sys
import textwrap
import warnings
import zipfile

import pytest
import torch
from torch.package.file_structure_representation import (
    _create_directory_from_file_list as torch_directory_from_file_list,
)

import torchpack
from torchpack import (
    Directory,
    EmptyMatchError,
    PackageExporter,
    PackageImporter,
    PackagingError,
    is_from_package,
    sys_importer,
)
from helpers_core import corpus_source, records, top_folder

from guide_pkgs import foo
from guide_pkgs.myclass import MyClass
from guide_pkgs.vision.resnet import TinyResNet

MANGLE = re.compile(r"^<torch_package_\d+>$")


def dot_edges(dot: str) -> set[tuple[str, str]]:
    return set(re.findall(r'"([^"]+)"\s*->\s*"([^"]+)"', dot))


@pytest.fixture
def model_package(tmp_path):
    """The guide's running example: a model whose class is interned, saved as models/model_1.pkl."""
    torch.manual_seed(0)
    mod = TinyResNet()
    path = tmp_path / "my_package.pt"
    with PackageExporter(str(path)) as pe:
        pe.intern("guide_pkgs.**")
        pe.save_pickle("models", "model_1.pkl", mod)
    return path, mod


# ---------------------------------------------------------------------------------------------
# How do I see what is inside a package?
# ---------------------------------------------------------------------------------------------


def test_package_is_a_zip_that_zipfile_reads(model_package):
    path, _ = model_package
    with zipfile.ZipFile(path) as myzip:
        assert myzip.testzip() is None
        names = myzip.namelist()
    data = path.read_bytes()
    top = top_folder(data)
    assert len(names) == len(set(names))
    recs = records(data)
    assert "models/model_1.pkl" in recs
    assert recs["guide_pkgs/vision/resnet.py"].decode() == corpus_source("guide_pkgs/vision/resnet.py")
    assert recs["guide_pkgs/vision/utils.py"].decode() == corpus_source("guide_pkgs/vision/utils.py")
    assert ".data/version" in recs and ".data/extern_modules" in recs
    assert any(re.fullmatch(r"\.data/\d+\.storage", name) for name in recs)
    assert "torch" in recs[".data/extern_modules"].decode().split()
    # reading a source file straight out of the archive, as in the guide's zipfile snippet
    with zipfile.ZipFile(path) as myzip:
        file_bytes = myzip.read(f"{top}/guide_pkgs/vision/resnet.py")
    assert b"class TinyResNet" in file_bytes


def test_unzipped_package_can_be_loaded_from_its_directory(tmp_path):
    # `unzip my_package.pt` gives a folder that PackageImporter accepts, like torch.package's
    path = tmp_path / "my_package.pt"
    with PackageExporter(str(path)) as pe:
        pe.intern("guide_pkgs.**")
        pe.save_pickle("models", "obj.pkl", MyClass(21))
        pe.save_text("notes", "readme.txt", "unzipped")
    top = top_folder(path.read_bytes())
    with zipfile.ZipFile(path) as myzip:
        myzip.extractall(tmp_path / "unzipped")
    importer = PackageImporter(str(tmp_path / "unzipped" / top))
    assert importer.load_pickle("models", "obj.pkl").twice() == 42
    assert importer.load_text("notes", "readme.txt") == "unzipped"
    assert importer.import_module("guide_pkgs.myclass").__name__ == f"{importer.id()}.guide_pkgs.myclass"


def test_file_structure_filters_and_prints_like_torch_package(model_package, capsys):
    path, _ = model_package
    importer = PackageImporter(str(path))
    names = sorted(records(path.read_bytes()))

    filtered = importer.file_structure(include=["**/utils.py", "**/*.pkl"], exclude="**/*.storage")
    print(filtered)
    printed = capsys.readouterr().out
    expected = torch_directory_from_file_list(
        str(path), names, ["**/utils.py", "**/*.pkl"], "**/*.storage"
    )
    assert str(filtered) == str(expected)
    assert printed == str(expected) + "\n"
    assert printed.splitlines()[0] == f"\u2500\u2500\u2500 {path}"
    assert "model_1.pkl" in printed and "utils.py" in printed
    assert "resnet.py" not in printed and ".storage" not in printed

    everything = importer.file_structure()
    assert isinstance(everything, Directory)
    assert str(everything) == str(torch_directory_from_file_list(str(path), names))
    assert ".storage" in str(everything) and "resnet.py" in str(everything)


def test_directory_has_file(model_package):
    path, _ = model_package
    importer_file_structure = PackageImporter(str(path)).file_structure()
    assert importer_file_structure.has_file("guide_pkgs/vision/utils.py")
    assert importer_file_structure.has_file("models/model_1.pkl")
    assert importer_file_structure.has_file("guide_pkgs/vision")
    assert not importer_file_structure.has_file("guide_pkgs/vision/missing.py")
    assert not importer_file_structure.has_file("package_a/subpackage.py")
    narrowed = PackageImporter(str(path)).file_structure(include="models/**")
    assert narrowed.has_file("models/model_1.pkl")
    assert not narrowed.has_file("guide_pkgs/vision/utils.py")


# ---------------------------------------------------------------------------------------------
# How do I see why a given module was included as a dependency?
# ---------------------------------------------------------------------------------------------


def test_get_rdeps_all_paths_and_dependency_graph_string():
    a, b, c, d = (f"guide_pkgs.chain.{x}" for x in "abcd")
    with PackageExporter(io.BytesIO()) as pe:
        pe.intern("guide_pkgs.**")
        pe.save_module(a)
        pe.save_module(d)
        assert sorted(pe.get_rdeps(c)) == [a, b, d]
        assert pe.get_rdeps(b) == [a]
        assert pe.get_rdeps(a) == []

        paths = pe.all_paths(a, c)
        assert paths.lstrip().startswith("digraph")
        assert dot_edges(paths) == {(a, b), (b, c), (a, c)}

        whole = pe.dependency_graph_string()
        assert whole.lstrip().startswith("digraph")
        assert {(a, b), (b, c), (a, c), (d, c)} <= dot_edges(whole)


# ---------------------------------------------------------------------------------------------
# How do I include arbitrary resources with my package and access them later?
# ---------------------------------------------------------------------------------------------


def test_save_and_load_pickle_text_binary(tmp_path):
    my_tensor = torch.randn(4)
    my_bytes = bytes(range(256)) * 3
    path = tmp_path / "package.pt"
    with PackageExporter(str(path)) as exporter:
        exporter.save_pickle("my_resources", "tensor.pkl", my_tensor)
        exporter.save_text("config_stuff", "words.txt", "a sample string \u00e9\u2713")
        exporter.save_binary("raw_data", "binary", my_bytes)

    importer = PackageImporter(str(path))
    assert torch.equal(importer.load_pickle("my_resources", "tensor.pkl"), my_tensor)
    assert importer.load_text("config_stuff", "words.txt") == "a sample string \u00e9\u2713"
    assert importer.load_binary("raw_data", "binary") == my_bytes
    recs = records(path.read_bytes())
    assert recs["config_stuff/words.txt"] == "a sample string \u00e9\u2713".encode()
    assert recs["raw_data/binary"] == my_bytes


# ---------------------------------------------------------------------------------------------
# How do I customize how a class is packaged?
# ---------------------------------------------------------------------------------------------


def test_reduce_package_foo_example(tmp_path):
    foo_1 = foo.Foo("foo_1 initial string")
    foo_2 = foo.Foo("foo_2 initial string")
    path = tmp_path / "foo_package.pt"
    with PackageExporter(str(path)) as pe:
        # foo.py imports torchpack (the guide's foo.py imports torch.package, implicitly extern)
        pe.extern("torchpack.**")
        pe.intern("guide_pkgs.**")
        # save as normal, no extra work necessary
        pe.save_pickle("foo_collection", "foo1.pkl", foo_1)
        pe.save_pickle("foo_collection", "foo2.pkl", foo_2)

    pi = PackageImporter(str(path))
    structure = pi.file_structure()
    for name in (
        "foo-generated/_0/foo.txt",
        "foo-generated/_1/foo.txt",
        "foo_collection/foo1.pkl",
        "foo_collection/foo2.pkl",
        "guide_pkgs/foo.py",
    ):
        assert structure.has_file(name), name
    imported_foo = pi.load_pickle("foo_collection", "foo1.pkl")
    assert imported_foo.my_string == "foo_1 initial string, with exporter modification!"
    assert isinstance(imported_foo.time_exported, float) and imported_foo.time_exported > 0
    assert imported_foo.time_imported >= imported_foo.time_exported
    assert type(imported_foo).__module__ == f"{pi.id()}.guide_pkgs.foo"
    assert pi.load_pickle("foo_collection", "foo2.pkl").my_string.startswith("foo_2 initial string")
    assert pi.load_text("foo-generated._1", "foo.txt") == "foo_2 initial string, with exporter modification!"


def test_reduce_package_called_once_per_object_and_get_unique_id_counts():
    shared = foo.Foo("shared")
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.extern("torchpack.**")
        pe.intern("guide_pkgs.**")
        assert pe.get_unique_id() == "0"
        pe.save_pickle("c", "pair.pkl", [shared, shared])
        assert pe.get_unique_id() == "2"
    pi = PackageImporter(io.BytesIO(buf.getvalue()))
    first, second = pi.load_pickle("c", "pair.pkl")
    assert first is second
    assert first.my_string == "shared, with exporter modification!"
    assert pi.file_structure().has_file("foo-generated/_1/foo.txt")


# ---------------------------------------------------------------------------------------------
# How do I test in my source code whether or not it is executing inside a package?
# ---------------------------------------------------------------------------------------------


def test_torch_package_attribute_tells_code_it_runs_in_a_package(tmp_path):
    from guide_pkgs.bar import UnpackageableException, is_in_package

    assert is_in_package() is False
    path = tmp_path / "bar.pt"
    with PackageExporter(str(path)) as pe:
        pe.save_module("guide_pkgs.bar")
    importer = PackageImporter(str(path))
    loaded_module = importer.import_module("guide_pkgs.bar")
    assert loaded_module.is_in_package() is True
    assert loaded_module.UserException is Exception
    assert "__torch_package__" in dir(loaded_module)
    assert loaded_module.UnpackageableException is not UnpackageableException
    # every module the importer created carries the attribute
    created = [m for m in importer.modules.values() if MANGLE.match(str(getattr(m, "__name__", "")).split(".")[0])]
    assert created
    assert all(getattr(m, "__torch_package__", False) for m in created)


# ---------------------------------------------------------------------------------------------
# How do I patch code into a package?
# ---------------------------------------------------------------------------------------------


def test_save_source_string_overrides_save_module_and_makes_packages(tmp_path, capsys):
    f = tmp_path / "patched.pt"
    with PackageExporter(str(f)) as exporter:
        exporter.save_module("guide_pkgs.patch_me")
        exporter.save_source_string(
            "guide_pkgs.patch_me",
            textwrap.dedent(
                """\
                def my_function():
                    print('hello world')
                """
            ),
        )
        exporter.save_source_string("guide_pkgs.newpkg", "def foo(): print('hello')\n", is_package=True)

    importer = PackageImporter(str(f))
    importer.import_module("guide_pkgs.patch_me").my_function()
    assert capsys.readouterr().out == "hello world\n"

    newpkg = importer.import_module("guide_pkgs.newpkg")
    assert hasattr(newpkg, "__path__")
    newpkg.foo()
    assert capsys.readouterr().out == "hello\n"

    recs = records(f.read_bytes())
    assert recs["guide_pkgs/patch_me.py"].decode() == "def my_function():\n    print('hello world')\n"
    assert "guide_pkgs/newpkg/__init__.py" in recs and "guide_pkgs/newpkg.py" not in recs
    with zipfile.ZipFile(f) as zf:
        assert len(zf.namelist()) == len(set(zf.namelist()))


def test_save_source_file_directory_and_file(tmp_path):
    from pathlib import Path

    chain_dir = Path(__file__).parent / "corpus" / "guide_pkgs" / "chain"
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.save_source_file("copied_chain", str(chain_dir), dependencies=False)
        pe.save_source_file("single_c", str(chain_dir / "c.py"))
    recs = records(buf.getvalue())
    assert "copied_chain/__init__.py" in recs and "copied_chain/a.py" in recs
    assert recs["single_c.py"].decode() == corpus_source("guide_pkgs/chain/c.py")
    pi = PackageImporter(io.BytesIO(buf.getvalue()))
    assert pi.import_module("single_c").VALUE == 1
    assert hasattr(pi.import_module("copied_chain"), "__path__")


# ---------------------------------------------------------------------------------------------
# How do I access package contents from packaged code?
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def resource_package(tmp_path):
    f = tmp_path / "res.pt"
    with PackageExporter(str(f)) as exporter:
        # saves text to guide_resource/a.txt in the archive
        exporter.save_text("guide_resource", "a.txt", "hello world!")
        exporter.save_binary("guide_resource", "blob.bin", b"\x00\x01binary\xff")
        # saves the tensor to my_pickle/obj.pkl
        exporter.save_pickle("my_pickle", "obj.pkl", torch.ones(2, 2))
        exporter.save_module("guide_pkgs.res_user")
        exporter.save_module("guide_pkgs.res_importer")
    return PackageImporter(str(f))


def test_importlib_resources_files_api_from_packaged_code(resource_package):
    mod = resource_package.import_module("guide_pkgs.res_user")
    assert mod.files_read_text() == "hello world!"
    assert mod.files_read_bytes() == b"\x00\x01binary\xff"
    assert mod.files_names() == ["a.txt", "blob.bin"]
    assert mod.files_is_file("a.txt") is True
    assert mod.files_is_file("nope.txt") is False


def test_importlib_resources_legacy_api_from_packaged_code(resource_package):
    mod = resource_package.import_module("guide_pkgs.res_user")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert mod.get_my_resource() == "hello world!"
        assert mod.legacy_open_binary() == b"\x00\x01binary\xff"
        assert mod.legacy_is_resource("a.txt") is True
        assert mod.legacy_is_resource("nope.txt") is False
        assert mod.legacy_contents() == ["a.txt", "blob.bin"]


def test_import_torch_package_importer_inside_packaged_code(resource_package):
    bar = resource_package.import_module("guide_pkgs.res_importer")
    assert bar.get_my_resource() == "hello world!"
    assert torch.equal(bar.get_my_pickle(), torch.ones(2, 2))
    assert bar.get_importer() is resource_package


# ---------------------------------------------------------------------------------------------
# How do I distinguish between packaged code and non-packaged code?
# ---------------------------------------------------------------------------------------------


def test_is_from_package(tmp_path):
    f = tmp_path / "f.pt"
    with PackageExporter(str(f)) as pe:
        pe.intern("guide_pkgs.**")
        pe.save_pickle("model", "model.pkl", MyClass(5))
        pe.save_pickle("model", "tensor.pkl", torch.ones(3))
        pe.save_text("text", "my_test.txt", "some text")
    importer = PackageImporter(str(f))
    mod = importer.import_module("guide_pkgs.myclass")
    obj = importer.load_pickle("model", "model.pkl")
    txt = importer.load_text("text", "my_test.txt")

    assert is_from_package(mod)
    assert is_from_package(obj)
    assert not is_from_package(txt)  # str is from stdlib, so this will return False
    assert not is_from_package(importer.load_pickle("model", "tensor.pkl"))  # torch is extern
    assert not is_from_package(MyClass(1))
    assert not is_from_package(sys.modules["guide_pkgs.myclass"])
    from torchpack.analyze.is_from_package import is_from_package as analyze_is_from_package

    assert analyze_is_from_package(obj) and not analyze_is_from_package(txt)
    assert obj.twice() == 10


# ---------------------------------------------------------------------------------------------
# How do I re-export an imported object?
# ---------------------------------------------------------------------------------------------


def test_reexport_with_importer_and_sys_importer(model_package, tmp_path):
    f, mod = model_package
    importer = PackageImporter(str(f))
    obj = importer.load_pickle("models", "model_1.pkl")

    f2 = tmp_path / "reexported.pt"
    with PackageExporter(str(f2), importer=(importer, sys_importer)) as exporter:
        exporter.intern("guide_pkgs.**")
        exporter.save_pickle("model", "model.pkl", obj)

    importer2 = PackageImporter(str(f2))
    obj2 = importer2.load_pickle("model", "model.pkl")
    x = torch.randn(2, 4)
    assert torch.equal(obj2(x), mod(x))
    assert type(obj2).__module__ == f"{importer2.id()}.guide_pkgs.vision.resnet"
    assert type(obj2) is not type(obj)
    assert records(f2.read_bytes())["guide_pkgs/vision/resnet.py"] == records(f.read_bytes())["guide_pkgs/vision/resnet.py"]


def test_reexport_without_the_importer_is_refused(model_package):
    f, _ = model_package
    obj = PackageImporter(str(f)).load_pickle("models", "model_1.pkl")
    with pytest.raises((pickle.PicklingError, torchpack.ObjMismatchError, torchpack.ObjNotFoundError)):
        with PackageExporter(io.BytesIO()) as exporter:
            exporter.intern("guide_pkgs.**")
            exporter.save_pickle("model", "model.pkl", obj)


# ---------------------------------------------------------------------------------------------
# Explanation: format overview (framework files under .data/, user files as a package tree)
# ---------------------------------------------------------------------------------------------


def test_format_framework_files_and_user_files(model_package):
    path, _ = model_package
    recs = records(path.read_bytes())
    framework = {n for n in recs if n.startswith(".data/")}
    assert {".data/version", ".data/extern_modules"} <= framework
    assert int(recs[".data/version"].decode().strip()) >= 1
    user = set(recs) - framework
    assert {"models/model_1.pkl", "guide_pkgs/vision/resnet.py", "guide_pkgs/vision/utils.py"} <= user
    assert PackageImporter(str(path)).python_version() == "{}.{}.{}".format(*sys.version_info[:3])


# ---------------------------------------------------------------------------------------------
# Explanation: how dependencies are found (pickle GLOBALs and module ASTs)
# ---------------------------------------------------------------------------------------------


def test_pickle_globals_and_module_imports_become_dependencies():
    with PackageExporter(io.BytesIO()) as pe:
        pe.intern("guide_pkgs.**")
        pe.save_pickle("models", "model_1.pkl", TinyResNet())
        interned = pe.interned_modules()
        assert "guide_pkgs.vision.resnet" in interned  # from the pickle's GLOBAL opcode
        assert "guide_pkgs.vision.utils" in interned  # from resnet.py's `from ... import double`
        assert "torch" in pe.externed_modules()  # torch is always extern


@pytest.mark.parametrize("protocol", [3, 4])
def test_pickle_protocols_3_and_4(protocol):
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.intern("guide_pkgs.**")
        pe.save_pickle("obj", "o.pkl", {"a": MyClass(2), "b": [MyClass(3)]}, pickle_protocol=protocol)
        assert "guide_pkgs.myclass" in pe.interned_modules()
    loaded = PackageImporter(io.BytesIO(buf.getvalue())).load_pickle("obj", "o.pkl")
    assert loaded["a"].twice() == 4 and loaded["b"][0].value == 3


# ---------------------------------------------------------------------------------------------
# Dependency management: intern / extern / mock / deny, patterns, allow_empty
# ---------------------------------------------------------------------------------------------

ROOT = "guide_pkgs.actions.root"
LEAF = "guide_pkgs.actions.leaf"
HELPER = "guide_pkgs.actions.helper"
OTHER = "guide_pkgs.actions.other"


def _export_root(configure) -> tuple[bytes, dict]:
    buf = io.BytesIO()
    lists = {}
    with PackageExporter(buf) as pe:
        configure(pe)
        pe.save_module(ROOT)
        lists = {
            "intern": pe.interned_modules(),
            "extern": pe.externed_modules(),
            "mock": pe.mocked_modules(),
            "deny": pe.denied_modules(),
        }
    return buf.getvalue(), lists


def test_intern_packages_module_source():
    data, lists = _export_root(lambda pe: pe.intern("guide_pkgs.**"))
    assert {ROOT, LEAF, HELPER, OTHER} <= set(lists["intern"])
    recs = records(data)
    assert recs["guide_pkgs/actions/leaf.py"].decode() == corpus_source("guide_pkgs/actions/leaf.py")
    root = PackageImporter(io.BytesIO(data)).import_module(ROOT)
    assert root.run() == 42 and root.other_value() == "other"
    assert MANGLE.match(root.compute.__module__.split(".")[0])


def test_extern_uses_the_loading_environment():
    def configure(pe):
        pe.extern(HELPER)
        pe.intern("guide_pkgs.**")

    data, lists = _export_root(configure)
    assert HELPER in lists["extern"] and HELPER not in lists["intern"]
    recs = records(data)
    assert "guide_pkgs/actions/helper.py" not in recs
    assert HELPER in recs[".data/extern_modules"].decode().splitlines()
    pi = PackageImporter(io.BytesIO(data))
    assert HELPER in pi.extern_modules
    root = pi.import_module(ROOT)
    assert root.compute is sys.modules[HELPER].compute
    assert pi.import_module(HELPER) is sys.modules[HELPER]
    assert root.run() == 42


def test_extern_module_missing_when_loading_raises_module_not_found(tmp_path, monkeypatch):
    # the extern module exists when exporting, and is gone from the loading environment
    (tmp_path / "guide_ext_only_at_export.py").write_text("X = 1\n")
    with monkeypatch.context() as mp:
        mp.syspath_prepend(str(tmp_path))
        buf = io.BytesIO()
        with PackageExporter(buf) as pe:
            pe.extern("guide_ext_only_at_export.**")
            pe.save_source_string("guide_ext_user", "import guide_ext_only_at_export\n")
    sys.modules.pop("guide_ext_only_at_export", None)
    (tmp_path / "guide_ext_only_at_export.py").unlink()
    importlib.invalidate_caches()
    pi = PackageImporter(io.BytesIO(buf.getvalue()))
    assert "guide_ext_only_at_export" in pi.extern_modules
    with pytest.raises(ModuleNotFoundError) as excinfo:
        pi.import_module("guide_ext_user")
    assert excinfo.value.name == "guide_ext_only_at_export"


def test_module_allowed_rejects_packages_needing_a_disallowed_extern():
    def configure(pe):
        pe.extern(HELPER)
        pe.intern("guide_pkgs.**")

    data, _ = _export_root(configure)
    with pytest.raises(ImportError):
        PackageImporter(io.BytesIO(data), module_allowed=lambda name: name != HELPER)
    allowed = PackageImporter(io.BytesIO(data), module_allowed=lambda name: True)
    assert allowed.import_module(ROOT).run() == 42


def test_mock_stubs_module_and_use_raises_not_implemented():
    def configure(pe):
        pe.mock(HELPER)
        pe.intern("guide_pkgs.**")

    data, lists = _export_root(configure)
    assert lists["mock"] == [HELPER]
    assert HELPER not in lists["intern"]
    pi = PackageImporter(io.BytesIO(data))
    root = pi.import_module(ROOT)  # `from ...helper import compute` does not error
    assert root.leaf_value() == 41
    with pytest.raises(NotImplementedError):
        root.run()
    helper = pi.import_module(HELPER)
    with pytest.raises(NotImplementedError):
        helper.Helper()
    with pytest.raises(NotImplementedError):
        helper.anything_at_all + 1
    assert corpus_source("guide_pkgs/actions/helper.py") not in records(data)["guide_pkgs/actions/helper.py"].decode()


def test_deny_raises_packaging_error_naming_the_module():
    def configure(pe):
        pe.deny(OTHER)
        pe.intern("guide_pkgs.**")

    with pytest.raises(PackagingError) as excinfo:
        _export_root(configure)
    assert OTHER in str(excinfo.value)
    assert "denied" in str(excinfo.value).lower()


def test_deny_with_exclude_only_denies_what_is_not_excluded():
    def configure(pe):
        pe.deny("guide_pkgs.actions.*", exclude=[LEAF, HELPER, OTHER])
        pe.intern("guide_pkgs.**")

    data, lists = _export_root(configure)
    assert lists["deny"] == []
    assert {LEAF, HELPER, OTHER} <= set(lists["intern"])

    def configure_strict(pe):
        pe.deny("guide_pkgs.actions.*", exclude=[LEAF, HELPER])
        pe.intern("guide_pkgs.**")

    with pytest.raises(PackagingError) as excinfo:
        _export_root(configure_strict)
    assert OTHER in str(excinfo.value)
    assert LEAF not in str(excinfo.value) and HELPER not in str(excinfo.value)


@pytest.mark.parametrize(
    "order, leaf_action",
    [(("intern_leaf", "mock_all"), "intern"), (("mock_all", "intern_leaf"), "mock")],
)
def test_first_matching_action_wins(order, leaf_action):
    def configure(pe):
        for step in order:
            if step == "intern_leaf":
                pe.intern(LEAF)
            else:
                pe.mock("guide_pkgs.actions.*")
        pe.intern("guide_pkgs.**")

    data, lists = _export_root(configure)
    assert LEAF in lists[leaf_action]
    assert HELPER in lists["mock"] and OTHER in lists["mock"]
    root = PackageImporter(io.BytesIO(data)).import_module(ROOT)
    if leaf_action == "intern":
        assert root.leaf_value() == 41
    else:
        with pytest.raises(NotImplementedError):
            root.leaf_value() + 1


def test_include_list_and_exclude_patterns():
    # the guide: exporter.mock("**", exclude=["torchvision.**"]) -- mock everything but ours
    def configure(pe):
        pe.intern([LEAF, ROOT])
        pe.mock("**", exclude=["guide_pkgs.actions.other", "torch.**"])
        pe.extern(OTHER)

    data, lists = _export_root(configure)
    assert {ROOT, LEAF} <= set(lists["intern"])
    assert HELPER in lists["mock"]
    assert OTHER in lists["extern"]


@pytest.mark.parametrize("action", ["intern", "extern", "mock"])
def test_allow_empty_false_raises_empty_match_error_on_close(action):
    with pytest.raises(EmptyMatchError):
        with PackageExporter(io.BytesIO()) as pe:
            getattr(pe, action)("guide_nothing_matches.**", allow_empty=False)
            pe.intern("guide_pkgs.**")
            pe.save_module(ROOT)


@pytest.mark.parametrize("action", ["intern", "extern", "mock"])
def test_allow_empty_default_and_matched_pattern_do_not_raise(action):
    with PackageExporter(io.BytesIO()) as pe:
        getattr(pe, action)("guide_nothing_matches.**")
        getattr(pe, action)(LEAF, allow_empty=False)
        pe.intern("guide_pkgs.**")
        pe.save_module(ROOT)


def test_only_python_source_modules_can_be_interned():
    with pytest.raises(PackagingError) as excinfo:
        with PackageExporter(io.BytesIO()) as pe:
            pe.intern(["guide_pkgs.**", "markupsafe.**"])
            pe.save_module("guide_pkgs.errors.cext_user")
    message = str(excinfo.value)
    assert "markupsafe._speedups" in message
    assert re.search(r"extension|source", message, re.IGNORECASE)


def test_c_extension_module_can_be_externed_instead():
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.extern("markupsafe.**")
        pe.intern("guide_pkgs.**")
        pe.save_module("guide_pkgs.errors.cext_user")
    mod = PackageImporter(io.BytesIO(buf.getvalue())).import_module("guide_pkgs.errors.cext_user")
    assert mod.speedups_module() is sys.modules["markupsafe._speedups"]
    assert mod.escape_inner("<a>") == "&lt;a&gt;"


def test_externed_interned_mocked_denied_modules_lists():
    pe = PackageExporter(io.BytesIO())
    pe.extern(HELPER)
    pe.mock(OTHER)
    pe.deny(LEAF)
    pe.intern("guide_pkgs.**")
    pe.save_module(ROOT)
    assert HELPER in pe.externed_modules()
    assert pe.mocked_modules() == [OTHER]
    assert pe.denied_modules() == [LEAF]
    assert ROOT in pe.interned_modules()
    for listing in (pe.externed_modules(), pe.interned_modules()):
        assert listing == sorted(listing)
    with pytest.raises(PackagingError):
        pe.close()


def test_intern_extern_mock_hooks_and_handle_remove():
    calls = []
    with PackageExporter(io.BytesIO()) as pe:
        pe.extern(HELPER)
        pe.mock(OTHER)
        pe.intern("guide_pkgs.**")
        pe.register_intern_hook(lambda exporter, name: calls.append(("intern", name, exporter is pe)))
        pe.register_extern_hook(lambda exporter, name: calls.append(("extern", name, exporter is pe)))
        pe.register_mock_hook(lambda exporter, name: calls.append(("mock", name, exporter is pe)))
        pe.register_intern_hook(lambda exporter, name: calls.append(("intern-second", name, True)))
        for register in (pe.register_intern_hook, pe.register_extern_hook, pe.register_mock_hook):
            handle = register(lambda exporter, name: calls.append(("removed", name, True)))
            handle.remove()
        pe.save_module(ROOT)
    assert ("intern", LEAF, True) in calls
    assert ("extern", HELPER, True) in calls
    assert ("mock", OTHER, True) in calls
    assert not [c for c in calls if c[0] == "removed"]
    assert calls.index(("intern", LEAF, True)) < calls.index(("intern-second", LEAF, True))


def test_packaging_error_lists_every_broken_module_grouped_with_hints():
    import types

    from guide_pkgs.errors.mocked_cls import Config

    # a class whose module cannot be found (it vanishes from sys.modules after pickling)
    fake = types.ModuleType("guide_vanished")
    exec("class Gone:\n    pass\n", fake.__dict__)
    fake.Gone.__module__ = "guide_vanished"

    pe = PackageExporter(io.BytesIO())
    pe.deny(["guide_pkgs.errors.denied_a", "guide_pkgs.errors.denied_b"])
    pe.mock("guide_pkgs.errors.mocked_cls")
    pe.intern(["guide_pkgs.**", "markupsafe.**", "guide_vanished"])
    pe.save_module("guide_pkgs.errors.root")
    pe.save_module("guide_pkgs.errors.cext_user")
    pe.save_pickle("cfg", "cfg.pkl", Config(3))
    sys.modules["guide_vanished"] = fake
    try:
        pe.save_pickle("gone", "gone.pkl", fake.Gone())
    finally:
        del sys.modules["guide_vanished"]
    with pytest.raises(PackagingError) as excinfo:
        pe.close()
    message = str(excinfo.value)
    broken = [
        "guide_pkgs.errors.denied_a",
        "guide_pkgs.errors.denied_b",
        "guide_pkgs.errors.mocked_cls",
        "markupsafe._speedups",
        "guide_vanished",
    ]
    for name in broken:
        assert name in message, name
    # grouped by reason: the two denied modules are listed together, under one reason
    lines = message.splitlines()
    idx = {name: next(i for i, line in enumerate(lines) if name in line) for name in broken}
    between = lines[min(idx[broken[0]], idx[broken[1]]) : max(idx[broken[0]], idx[broken[1]])]
    assert not any(other in line for line in between for other in broken[2:])
    lowered = message.lower()
    assert "denied" in lowered and "mocked" in lowered
    # torchpack extra: a hint of what to do for each reason
    assert lowered.count("hint") >= 3
    assert "extern" in lowered and "intern" in lowered
    # the analysis helper finds every broken module too
    uses = torchpack.analyze.find_first_use_of_broken_modules(excinfo.value)
    assert set(broken) <= set(uses)


def test_packaging_error_debug_shows_the_import_path():
    pe = PackageExporter(io.BytesIO(), debug=True)
    pe.deny("guide_pkgs.errors.denied_b")
    pe.intern("guide_pkgs.**")
    pe.save_module("guide_pkgs.errors.root")
    with pytest.raises(PackagingError) as excinfo:
        pe.close()
    message = str(excinfo.value)
    # root -> mid -> denied_b
    path_line = next(line for line in message.splitlines() if "guide_pkgs.errors.mid" in line)
    assert path_line.index("guide_pkgs.errors.root") < path_line.index("guide_pkgs.errors.mid") < path_line.rindex("guide_pkgs.errors.denied_b")


def test_module_without_findable_source_found_through_a_pickle_is_reported():
    # A pickled object whose class claims a module that cannot be found anywhere.
    import types

    fake = types.ModuleType("guide_vanishing_module")
    exec("class Gone:\n    pass\n", fake.__dict__)
    fake.Gone.__module__ = "guide_vanishing_module"
    sys.modules["guide_vanishing_module"] = fake
    try:
        pe = PackageExporter(io.BytesIO())
        pe.intern("guide_vanishing_module")
        pe.save_pickle("x", "gone.pkl", fake.Gone())
    finally:
        del sys.modules["guide_vanishing_module"]
    with pytest.raises(PackagingError) as excinfo:
        pe.close()
    assert "guide_vanishing_module" in str(excinfo.value)


# ---------------------------------------------------------------------------------------------
# torchpack extras of the dependency scan
# ---------------------------------------------------------------------------------------------


def test_scan_resolves_constant_import_module_and_dunder_import():
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.intern("guide_pkgs.**")
        pe.save_module("guide_pkgs.dyn.user")
        interned = set(pe.interned_modules())
    assert {"guide_pkgs.dyn.target_a", "guide_pkgs.dyn.pkg_b.thing"} <= interned
    recs = records(buf.getvalue())
    assert "guide_pkgs/dyn/target_a.py" in recs and "guide_pkgs/dyn/pkg_b/thing.py" in recs
    pi = PackageImporter(io.BytesIO(buf.getvalue()))
    user = pi.import_module("guide_pkgs.dyn.user")
    assert user.thing_value() == 2
    assert user.pkg_b.__name__ == f"{pi.id()}.guide_pkgs.dyn.pkg_b"
    assert pi.import_module("guide_pkgs.dyn.target_a").A == 1


def test_scan_does_not_import_modules_it_only_mocks():
    for name in ("guide_pkgs.lazy.heavy", "guide_pkgs.lazy.heavy_pkg"):
        sys.modules.pop(name, None)
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.mock(["guide_pkgs.lazy.heavy", "guide_pkgs.lazy.heavy_pkg"], allow_empty=False)
        pe.intern("guide_pkgs.**")
        pe.save_module("guide_pkgs.lazy.user")
        assert pe.mocked_modules() == ["guide_pkgs.lazy.heavy", "guide_pkgs.lazy.heavy_pkg"]
    assert "guide_pkgs.lazy.heavy" not in sys.modules
    assert "guide_pkgs.lazy.heavy_pkg" not in sys.modules
    recs = records(buf.getvalue())
    assert "guide_pkgs/lazy/heavy.py" in recs
    assert "guide_pkgs/lazy/heavy_pkg/__init__.py" in recs  # still a package, found without running it
    user = PackageImporter(io.BytesIO(buf.getvalue())).import_module("guide_pkgs.lazy.user")
    assert user.value() == 7
    with pytest.raises(NotImplementedError):
        user.use_heavy()


# ---------------------------------------------------------------------------------------------
# Sharp edges: types are not shared; isolation; mangling
# ---------------------------------------------------------------------------------------------


def test_types_are_not_shared_between_packages_and_environment(tmp_path):
    my_class_instance = MyClass()
    f = tmp_path / "types.pt"
    with PackageExporter(str(f)) as exporter:
        exporter.save_module("guide_pkgs.myclass")
    importer = PackageImporter(str(f))
    imported_MyClass = importer.import_module("guide_pkgs.myclass").MyClass

    assert isinstance(my_class_instance, MyClass)
    assert not isinstance(my_class_instance, imported_MyClass)
    assert imported_MyClass is not MyClass
    assert MyClass.__module__ == "guide_pkgs.myclass"
    assert MANGLE.match(importer.id())
    assert imported_MyClass.__module__ == f"{importer.id()}.guide_pkgs.myclass"
    assert imported_MyClass.__module__.startswith("<torch_package_")
    assert imported_MyClass().twice() == 6  # duck typing works


def test_two_importers_of_one_package_are_isolated(model_package):
    path, _ = model_package
    first, second = PackageImporter(str(path)), PackageImporter(str(path))
    assert first.id() != second.id()
    m1 = first.import_module("guide_pkgs.vision.resnet")
    m2 = second.import_module("guide_pkgs.vision.resnet")
    assert m1 is not m2 and m1.TinyResNet is not m2.TinyResNet
    m1.GLOBAL_STATE = "first only"
    assert not hasattr(m2, "GLOBAL_STATE")
    o1, o2 = first.load_pickle("models", "model_1.pkl"), second.load_pickle("models", "model_1.pkl")
    assert type(o1) is m1.TinyResNet and type(o2) is m2.TinyResNet
    assert not isinstance(o1, m2.TinyResNet)
    # a module is loaded once per importer
    assert first.import_module("guide_pkgs.vision.resnet") is m1


def test_unmangled_names_never_enter_sys_modules():
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.save_source_string("guide_iso_only", "", is_package=True)
        pe.save_source_string("guide_iso_only.mod", "import guide_iso_only.sub\nX = guide_iso_only.sub.Y + 1\n")
        pe.save_source_string("guide_iso_only.sub", "Y = 1\n")
    before = set(sys.modules)
    pi = PackageImporter(io.BytesIO(buf.getvalue()))
    assert pi.import_module("guide_iso_only.mod").X == 2
    added = set(sys.modules) - before
    assert not [name for name in added if name.split(".")[0] == "guide_iso_only"]
    assert all(name.startswith("<torch_package_") for name in added if "guide_iso_only" in name)
    assert "guide_iso_only.mod" in pi.modules and "guide_iso_only.sub" in pi.modules


def test_mangled_name_and_file():
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.intern("guide_pkgs.**")
        pe.save_module("guide_pkgs.vision")
        pe.save_module("guide_pkgs.vision.resnet")
    pi = PackageImporter(io.BytesIO(buf.getvalue()))
    prefix = pi.id()
    mod = pi.import_module("guide_pkgs.vision.resnet")
    assert mod.__name__ == f"{prefix}.guide_pkgs.vision.resnet"
    assert mod.__file__ == f"{prefix}.guide_pkgs/vision/resnet.py"
    pkg = pi.import_module("guide_pkgs.vision")
    assert pkg.__name__ == f"{prefix}.guide_pkgs.vision"
    assert pkg.__file__ == f"{prefix}.guide_pkgs/vision/__init__.py"
    assert mod.TinyResNet.__module__ == mod.__name__
    # mangled names from this importer are accepted back
    assert pi.import_module(mod.__name__) is mod
