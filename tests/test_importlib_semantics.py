"""Import semantics inside packaged code follow the import system (SPEC §1, seeds/importlib.rst):
relative imports, ``__import__`` with fromlist/level, ``import_module`` with ``package=``,
circular imports, failed imports, ``ModuleNotFoundError.name``, module attributes, tracebacks,
``inspect``, dataclasses, ``nn.Module`` and ``torch.fx`` with packaged code.

Sample code lives in tests/corpus/imp_sem.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import io
import re
import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.fx

from torchpack import PackageExporter, PackageImporter, sys_importer

CORPUS = Path(__file__).resolve().parent / "corpus"


def demangle(name: str) -> str:
    return re.sub(r"^<torch_package_\d+>\.", "", name)


@pytest.fixture(scope="module")
def archive() -> bytes:
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.intern("imp_sem.**")
        for name in ("imp_sem.rel.a", "imp_sem.circ.a", "imp_sem.circ_mod.x", "imp_sem.tb", "imp_sem.dc", "imp_sem.model.mlp"):
            pe.save_module(name)
        pe.save_source_file("imp_sem.circ_bad", str(CORPUS / "imp_sem" / "circ_bad"))
        pe.save_source_string("imp_sem.boom", "STATE = []\nraise ValueError('boom at import')\n")
        pe.save_source_string("imp_sem.uses_boom", "import imp_sem.boom\n")
        pe.save_source_string(
            "imp_sem.lazy_missing",
            "def f():\n    import imp_sem.not_there\n",
            dependencies=False,
        )
    return buf.getvalue()


@pytest.fixture
def imp(archive) -> PackageImporter:
    return PackageImporter(io.BytesIO(archive))


def test_relative_imports(imp):
    a = imp.import_module("imp_sem.rel.a")
    assert a.get() == ("b", "b", "tool", "deep", "tool+b")
    assert a.b is imp.import_module("imp_sem.rel.b")
    assert a.deep_mod is imp.import_module("imp_sem.rel.sub.deep")
    assert imp.import_module("imp_sem.rel").b is a.b  # submodules are bound on their parent


def test_dunder_import_with_fromlist_and_level(imp):
    prefix = imp.id()
    top = imp.__import__("imp_sem.rel.a")
    assert top.__name__ == f"{prefix}.imp_sem"
    assert top.rel.a.get()[0] == "b"

    rel = imp.__import__("imp_sem.rel", fromlist=["b"])
    assert rel.__name__ == f"{prefix}.imp_sem.rel" and rel.b.B == "b"

    b = imp.__import__("b", globals={"__package__": "imp_sem.rel"}, fromlist=["B"], level=1)
    assert b.__name__ == f"{prefix}.imp_sem.rel.b"

    sub = imp.__import__("sub.deep", globals={"__package__": "imp_sem.rel"}, level=1)
    assert sub.__name__ == f"{prefix}.imp_sem.rel.sub" and sub.deep.DEEP == "deep"

    util = imp.__import__("util", globals={"__package__": "imp_sem.rel.sub"}, fromlist=["tool"], level=3)
    assert util.tool() == "tool"

    # fromlist names that are not submodules are ignored, as in CPython
    assert imp.__import__("imp_sem.rel", fromlist=["no_such_submodule"]) is rel
    with pytest.raises(ImportError):
        imp.__import__("x", globals={"__package__": "imp_sem"}, level=2)


def test_import_module_with_relative_names_and_package(imp):
    assert imp.import_module(".sub", package="imp_sem.rel") is imp.import_module("imp_sem.rel.sub")
    # as importlib: level 1 is the package itself, level 2 its parent
    assert importlib.import_module("..b", package="imp_sem.rel.sub").__name__ == "imp_sem.rel.b"
    assert imp.import_module("..b", package="imp_sem.rel.sub") is imp.import_module("imp_sem.rel.b")
    assert imp.import_module("...util", package="imp_sem.rel.sub") is imp.import_module("imp_sem.util")
    assert imp.import_module(".", package="imp_sem.rel") is imp.import_module("imp_sem.rel")
    with pytest.raises(TypeError):
        imp.import_module(".sub")  # like importlib: package= is required for relative names


def test_circular_import_uses_attribute_later_like_cpython(imp):
    reference = importlib.import_module("imp_sem.circ.a")
    a = imp.import_module("imp_sem.circ.a")
    assert a.a_val() == reference.a_val() == 2
    b = imp.import_module("imp_sem.circ.b")
    assert b.SEEN_A_CONST_AT_IMPORT is sys.modules["imp_sem.circ.b"].SEEN_A_CONST_AT_IMPORT is False
    assert imp.import_module("imp_sem.circ_mod.x").via_y() == "x!"


def test_circular_import_entered_from_the_other_side(archive):
    imp = PackageImporter(io.BytesIO(archive))
    b = imp.import_module("imp_sem.circ.b")  # b imports a, which imports b back (partially initialised)
    assert b.SEEN_A_CONST_AT_IMPORT is True
    assert imp.import_module("imp_sem.circ.a").a_val() == 2
    y = imp.import_module("imp_sem.circ_mod.y")
    assert y.read_x() == "x!"


def test_circular_from_import_of_undefined_name_raises_import_error_like_cpython(imp):
    with pytest.raises(ImportError, match="cannot import name 'A'"):
        importlib.import_module("imp_sem.circ_bad.a")
    for name in ("imp_sem.circ_bad.a", "imp_sem.circ_bad.b"):
        assert name not in sys.modules
    with pytest.raises(ImportError, match="cannot import name 'A'"):
        imp.import_module("imp_sem.circ_bad.a")
    assert "imp_sem.circ_bad.a" not in imp.modules
    assert "imp_sem.circ_bad.b" not in imp.modules


def test_module_raising_on_import_is_removed_and_reimport_raises_again(imp):
    for _ in range(2):
        with pytest.raises(ValueError, match="boom at import"):
            imp.import_module("imp_sem.boom")
        assert "imp_sem.boom" not in imp.modules
    with pytest.raises(ValueError, match="boom at import"):
        imp.import_module("imp_sem.uses_boom")
    assert "imp_sem.uses_boom" not in imp.modules and "imp_sem.boom" not in imp.modules
    assert not hasattr(imp.import_module("imp_sem"), "boom")  # not left bound on the parent


def test_module_not_found_error_carries_the_name(imp):
    with pytest.raises(ModuleNotFoundError) as excinfo:
        imp.import_module("imp_sem.nope")
    assert excinfo.value.name == "imp_sem.nope"
    with pytest.raises(ModuleNotFoundError) as excinfo:
        imp.import_module("imp_sem_totally_missing")
    assert excinfo.value.name == "imp_sem_totally_missing"
    with pytest.raises(ModuleNotFoundError) as excinfo:
        imp.import_module("imp_sem.util.sub")  # util is a module, not a package
    assert excinfo.value.name == "imp_sem.util.sub"
    with pytest.raises(ModuleNotFoundError) as excinfo:
        imp.import_module("imp_sem.lazy_missing").f()  # from an import statement in packaged code
    assert excinfo.value.name == "imp_sem.not_there"


def test_optional_import_guarded_by_try_except_still_exports_and_runs():
    src = (
        "try:\n"
        "    import imp_sem.optional_not_installed as opt\n"
        "except ImportError:\n"
        "    opt = None\n"
        "HAVE_OPT = opt is not None\n"
    )
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.intern("imp_sem.**")
        pe.save_source_string("imp_sem.optional_user", src)
    mod = PackageImporter(io.BytesIO(buf.getvalue())).import_module("imp_sem.optional_user")
    assert mod.HAVE_OPT is False


def test_spec_loader_path_and_package_attributes(imp):
    pkg = imp.import_module("imp_sem.rel")
    mod = imp.import_module("imp_sem.rel.a")
    assert hasattr(pkg, "__path__") and not hasattr(mod, "__path__")
    assert pkg.__spec__.submodule_search_locations is not None
    assert mod.__spec__.submodule_search_locations is None
    assert mod.__loader__ is imp and mod.__spec__.loader is imp
    assert demangle(mod.__spec__.name) == "imp_sem.rel.a"
    assert demangle(mod.__spec__.parent) == "imp_sem.rel"
    assert demangle(mod.__package__) == "imp_sem.rel"
    assert demangle(pkg.__package__) == "imp_sem.rel"
    assert demangle(imp.import_module("imp_sem").__package__) == "imp_sem"
    assert pkg.__file__ == f"{imp.id()}.imp_sem/rel/__init__.py"
    assert mod.__file__ == f"{imp.id()}.imp_sem/rel/a.py"


def test_traceback_shows_packaged_source_lines(imp):
    tb = imp.import_module("imp_sem.tb")
    try:
        tb.nested_caller()
    except ValueError:
        text = traceback.format_exc()
    else:
        pytest.fail("no exception")
    assert 'raise ValueError(f"packaged failure {y}")  # imp_sem traceback marker' in text
    assert "return fail_here(41)" in text
    assert f'File "{imp.id()}.imp_sem/tb.py", line 3, in fail_here' in text
    assert "packaged failure 42" in text


def test_inspect_getsource_of_packaged_function_and_class(imp):
    tb = imp.import_module("imp_sem.tb")
    source = (CORPUS / "imp_sem" / "tb.py").read_text()
    assert inspect.getsource(tb.fail_here) == source.split("\n\n\n")[0] + "\n"
    cls_source = inspect.getsource(tb.Documented)
    assert cls_source.startswith("class Documented:") and '"""A class whose source' in cls_source
    assert inspect.getsource(tb.Documented.method).strip().startswith("def method(self):")
    assert inspect.getsource(tb) == source
    assert inspect.getfile(tb.Documented) == tb.__file__


def test_dataclasses_defined_in_packaged_code(imp):
    dc = imp.import_module("imp_sem.dc")
    p = dc.Point(1, -2)
    assert p.norm1() == 3
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "tags"] == dc.fields_of_point()
    assert dc.Point.DIMS == 2
    assert repr(p) == "Point(x=1, y=-2, tags=[])"
    assert dataclasses.asdict(p) == {"x": 1, "y": -2, "tags": []}
    assert dataclasses.replace(p, y=5) == dc.Point(1, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3
    assert sorted([dc.Version(1, 2), dc.Version(0, 9), dc.Version(1, 0)]) == [
        dc.Version(0, 9),
        dc.Version(1, 0),
        dc.Version(1, 2),
    ]


def test_packaged_dataclass_instances_round_trip_through_reexport(imp):
    dc = imp.import_module("imp_sem.dc")
    buf = io.BytesIO()
    with PackageExporter(buf, importer=(imp, sys_importer)) as pe:
        pe.intern("imp_sem.**")
        pe.save_pickle("data", "points.pkl", [dc.Point(3, 4, ["a"]), dc.Version(2, 1)])
    second = PackageImporter(io.BytesIO(buf.getvalue()))
    point, version = second.load_pickle("data", "points.pkl")
    assert (point.x, point.y, point.tags, point.norm1()) == (3, 4, ["a"], 7)
    assert version.major == 2 and type(version).__module__ == f"{second.id()}.imp_sem.dc"


def test_nn_module_subclass_defined_in_packaged_code(imp):
    MLP = imp.import_module("imp_sem.model.mlp").MLP
    torch.manual_seed(0)
    m = MLP()
    assert isinstance(m, torch.nn.Module)
    assert set(m.state_dict()) == {"l1.weight", "l1.bias", "l2.weight", "l2.bias"}
    x = torch.randn(3, 4)
    out = m(x)
    assert out.shape == (3, 2)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    clone = copy.deepcopy(m)
    assert type(clone) is MLP and torch.equal(clone(x), m(x))
    assert "MLP(" in repr(m)


def test_fx_symbolic_trace_of_packaged_module(imp):
    MLP = imp.import_module("imp_sem.model.mlp").MLP
    torch.manual_seed(0)
    m = MLP().eval()
    gm = torch.fx.symbolic_trace(m)
    x = torch.randn(5, 4)
    assert torch.equal(gm(x), m(x))
    assert "relu" in gm.code


def test_fx_graph_module_pickled_in_a_package_round_trips(imp):
    MLP = imp.import_module("imp_sem.model.mlp").MLP
    torch.manual_seed(0)
    gm = torch.fx.symbolic_trace(MLP().eval())
    x = torch.randn(2, 4)
    buf = io.BytesIO()
    with PackageExporter(buf, importer=(imp, sys_importer)) as pe:
        pe.intern("imp_sem.**")
        pe.save_pickle("fx", "gm.pkl", gm)
    loaded = PackageImporter(io.BytesIO(buf.getvalue())).load_pickle("fx", "gm.pkl")
    assert isinstance(loaded, torch.fx.GraphModule)
    assert torch.equal(loaded(x), gm(x))
    assert loaded.code.strip() == gm.code.strip()


def test_fx_graph_module_of_environment_class_round_trips():
    from imp_sem.model.mlp import MLP

    torch.manual_seed(1)
    gm = torch.fx.symbolic_trace(MLP())
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.intern("imp_sem.**")
        pe.save_pickle("fx", "gm.pkl", gm)
    loaded = PackageImporter(io.BytesIO(buf.getvalue())).load_pickle("fx", "gm.pkl")
    x = torch.randn(3, 4)
    assert torch.equal(loaded(x), gm(x))


# -- importlib inside packaged code resolves names through the package ---------------------

_BY_NAME_SOURCE = """
import importlib
import importlib.resources
from importlib import resources, import_module

def data_text():
    return importlib.resources.files("byname.data").joinpath("info.txt").read_text()

def legacy_text():
    return resources.read_text("byname.data", "info.txt")

def sibling():
    return import_module("byname.sibling").WHO

def relative_sibling():
    return importlib.import_module(".sibling", "byname").WHO

def json_module():
    return importlib.import_module("json")

def by_path(name):
    with open(importlib.resources.files("byname.data") / name) as handle:
        return handle.read()
"""


def _by_name_archive() -> bytes:
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.save_source_string("byname", "", is_package=True)
        pe.save_source_string("byname.user", _BY_NAME_SOURCE)
        pe.save_source_string("byname.sibling", "WHO = 'packaged'\n")
        pe.save_source_string("byname.data", "", is_package=True)
        pe.save_text("byname.data", "info.txt", "from the archive")
    return buf.getvalue()


def test_importlib_by_name_finds_packaged_modules_and_resources() -> None:
    # No module named "byname" exists in the environment: every lookup must go to the archive.
    assert importlib.util.find_spec("byname") is None
    user = PackageImporter(_by_name_archive()).import_module("byname.user")
    assert user.data_text() == "from the archive"
    assert user.legacy_text() == "from the archive"
    assert user.sibling() == "packaged"
    assert user.relative_sibling() == "packaged"
    assert user.json_module() is sys.modules["json"]  # extern names still come from the environment
    assert user.by_path("info.txt") == "from the archive"  # a real file, written once by content
    with pytest.raises(FileNotFoundError, match="no resource 'byname/data/missing.txt'"):
        user.by_path("missing.txt")
    assert "byname" not in sys.modules and "byname.sibling" not in sys.modules


def test_the_facade_is_private_to_the_package() -> None:
    importer = PackageImporter(_by_name_archive())
    user = importer.import_module("byname.user")
    assert user.importlib is not importlib and user.importlib.resources is not importlib.resources
    assert user.importlib.util is importlib.util  # everything else is the real module's
    assert importlib.import_module.__module__ == "importlib"  # the environment is untouched


def test_packaged_networkx_runs_where_networkx_is_not_installed(tmp_path: Path) -> None:
    """networkx reads its atlas with importlib.resources.files("networkx.generators")."""
    import subprocess

    archive = tmp_path / "nx.pt"
    with PackageExporter(archive) as pe:
        pe.intern("networkx.**")
        pe.extern(["numpy.**", "scipy.**", "pandas.**"])
        pe.mock("**", allow_empty=True)
        pe.save_module("networkx")
        # Data files are not modules: they travel as resources, saved explicitly.
        atlas = Path(importlib.util.find_spec("networkx").origin).parent / "generators" / "atlas.dat.gz"
        pe.save_binary("networkx.generators", "atlas.dat.gz", atlas.read_bytes())
    script = f"""
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "networkx":
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, NotInstalled())
from torchpack import PackageImporter
nx = PackageImporter({str(archive)!r}).import_module("networkx")
assert nx.path_graph(4).number_of_edges() == 3
assert len(nx.graph_atlas_g()) == 1253
assert "networkx" not in sys.modules
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr[-2000:]


def test_resource_read_text_takes_errors_as_pathlib_does():
    """Python 3.13's ``importlib.resources.read_text(anchor, name, errors=...)`` passes it on."""
    buffer = io.BytesIO()
    with PackageExporter(buffer) as exporter:
        exporter.save_binary("blobs", "latin.txt", "café".encode("latin-1"))
    importer = PackageImporter(io.BytesIO(buffer.getvalue()))
    path = importer.get_resource_reader("blobs").files() / "latin.txt"
    assert path.read_text(errors="replace") == "caf\ufffd"
    assert path.read_text(encoding="latin-1") == "café"
    with pytest.raises(UnicodeDecodeError):
        path.read_text()
