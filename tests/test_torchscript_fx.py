"""TorchScript modules and torch.fx GraphModules in packages (SPEC §1-§2).

ScriptModules go through torch's own serializer into torchpack's archive: code under
``.data/ts_code/``, tensors under ``.data/<key>.storage`` in the one key namespace that eager
tensors use, so a storage both share is one record and one storage after loading. fx
GraphModules save their generated code as a module of the package. Models used here live in
tests/corpus/tsfx_pkgs.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
import torch.fx
import torch.package as torch_package

import torchpack
from helpers_core import local_data_offset, records, top_folder, zip_infos
from torchpack.errors import TorchpackError

from tsfx_pkgs.models import GatedNet, Holder, trace_with_gate_leaf

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
STORAGE = re.compile(r"\.data/\d+\.storage")


def export(build) -> bytes:
    buf = io.BytesIO()
    with torchpack.PackageExporter(buf) as pe:
        build(pe)
    return buf.getvalue()


def load(data: bytes, resource: str, package: str = "p", **kwargs):
    return torchpack.PackageImporter(data).load_pickle(package, resource, **kwargs)


def storage_records(data: bytes) -> list[str]:
    return sorted(name for name in records(data) if STORAGE.fullmatch(name))


def same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@pytest.fixture
def scripted() -> torch.jit.ScriptModule:
    torch.manual_seed(0)
    return torch.jit.script(torch.nn.Linear(3, 3))


# -- TorchScript -------------------------------------------------------------------------


@pytest.mark.parametrize("script_first", [True, False], ids=["script_first", "eager_first"])
def test_storage_shared_by_script_and_eager_is_one_record_and_one_storage(scripted, script_first):
    eager_view = scripted.weight[1:]  # an eager tensor over the script module's weight storage
    obj = {"s": scripted, "e": eager_view} if script_first else {"e": eager_view, "s": scripted}
    data = export(lambda pe: pe.save_pickle("p", "both.pkl", obj))
    assert storage_records(data) == [".data/0.storage", ".data/1.storage"]  # weight and bias, once each
    loaded = load(data, "both.pkl")
    assert same_storage(loaded["e"], loaded["s"].weight)
    assert loaded["e"].untyped_storage()._cdata == loaded["s"].weight.untyped_storage()._cdata
    torch.testing.assert_close(loaded["e"], eager_view)
    x = torch.randn(2, 3)
    torch.testing.assert_close(loaded["s"](x), scripted(x))


def test_sharing_survives_in_torch_package_too(scripted):
    data = export(lambda pe: pe.save_pickle("p", "both.pkl", {"e": scripted.bias, "s": scripted}))
    loaded = torch_package.PackageImporter(io.BytesIO(data)).load_pickle("p", "both.pkl")
    assert same_storage(loaded["e"], loaded["s"].bias)


def test_two_script_modules_with_the_same_code_in_one_archive():
    torch.manual_seed(0)
    first, second = torch.jit.script(torch.nn.Linear(3, 2)), torch.jit.script(torch.nn.Linear(3, 2))
    data = export(lambda pe: pe.save_pickle("p", "pair.pkl", [first, second]))
    names = records(data)
    assert {n.split("/")[2] for n in names if n.endswith("/data.pkl")} == {"0", "1"}
    # One class, so its code is saved once (under a mangled name if Linear was scripted before).
    assert len([n for n in names if n.startswith(".data/ts_code/code/") and n.endswith(".py")]) == 1
    assert len(storage_records(data)) == 4
    a, b = load(data, "pair.pkl")
    x = torch.randn(4, 3)
    torch.testing.assert_close(a(x), first(x))
    torch.testing.assert_close(b(x), second(x))
    assert not same_storage(a.weight, b.weight)


def test_script_module_inside_an_interned_nn_module(scripted):
    holder = Holder(scripted)

    def build(pe):
        pe.intern("tsfx_pkgs.**")
        pe.save_pickle("p", "holder.pkl", {"model": holder, "weight": scripted.weight})

    data = export(build)
    assert "tsfx_pkgs/models.py" in records(data)
    loaded = load(data, "holder.pkl")
    model = loaded["model"]
    assert torchpack.is_from_package(model) and type(model).__name__ == "Holder"
    assert isinstance(model.scripted, torch.jit.RecursiveScriptModule)
    assert same_storage(model.scripted.weight, loaded["weight"])
    x = torch.randn(5, 3)
    torch.testing.assert_close(model(x), holder(x))


def test_script_module_shared_between_pickles_is_serialized_once(scripted):
    def build(pe):
        pe.save_pickle("p", "one.pkl", scripted)
        pe.save_pickle("p", "two.pkl", {"again": scripted})

    data = export(build)
    assert {n.split("/")[2] for n in records(data) if n.endswith("/data.pkl")} == {"0"}
    importer = torchpack.PackageImporter(data)
    one, two = importer.load_pickle("p", "one.pkl"), importer.load_pickle("p", "two.pkl")["again"]
    x = torch.randn(1, 3)
    torch.testing.assert_close(one(x), scripted(x))
    torch.testing.assert_close(two(x), scripted(x))


@pytest.mark.parametrize("map_location", ["cpu", torch.device("cpu")])
def test_script_module_loads_with_map_location(scripted, map_location):
    data = export(lambda pe: pe.save_pickle("p", "s.pkl", {"s": scripted, "w": scripted.weight}))
    loaded = load(data, "s.pkl", map_location=map_location)
    assert loaded["s"].weight.device.type == "cpu"
    assert same_storage(loaded["s"].weight, loaded["w"])


def test_script_module_from_an_unzipped_archive_is_a_clear_error(scripted, tmp_path):
    data = export(lambda pe: pe.save_pickle("p", "s.pkl", scripted))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(tmp_path)
    importer = torchpack.PackageImporter(str(tmp_path / top_folder(data)))
    with pytest.raises(TorchpackError, match="unzipped archive folder"):
        importer.load_pickle("p", "s.pkl")


def test_archives_with_torchscript_keep_torchpacks_format(scripted):
    holder = Holder(scripted)

    def build(pe):
        pe.intern("tsfx_pkgs.**")
        pe.save_pickle("p", "holder.pkl", holder)
        pe.save_pickle("p", "eager.pkl", torch.arange(10))

    data = export(build)
    top_folder(data)
    infos = zip_infos(data)
    names = [info.filename for info in infos]
    assert names == sorted(names) and len(names) == len(set(names))
    assert all(info.compress_type == zipfile.ZIP_STORED and info.extra == b"" for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    storages = [info for info in infos if STORAGE.fullmatch(info.filename.split("/", 1)[1])]
    assert len(storages) == 4
    assert all(local_data_offset(data, info) % 64 == 0 for info in storages)
    recs = records(data)
    # Only torchpack's own framework records: none of the in-memory serializer's leak in.
    assert not any(name.startswith(("version", ".data/ts_code/version")) for name in recs)
    assert any(name.startswith(".data/ts_code/code/__torch__") for name in recs)
    importer = torchpack.PackageImporter(data, integrity="eager")
    x = torch.randn(2, 3)
    torch.testing.assert_close(importer.load_pickle("p", "holder.pkl")(x), holder(x))


# -- torch.fx ----------------------------------------------------------------------------


def test_graph_module_code_is_saved_as_a_generated_module():
    torch.manual_seed(0)
    traced = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()))

    def build(pe):
        pe.save_pickle("p", "a.pkl", traced)
        pe.save_pickle("p", "b.pkl", traced)  # same object: its code is saved once

    data = export(build)
    assert [name for name in records(data) if name.startswith("fx-generated/")] == ["fx-generated/_0.py"]
    for resource in ("a.pkl", "b.pkl"):
        loaded = load(data, resource)
        assert isinstance(loaded, torch.fx.GraphModule)
        x = torch.randn(3, 4)
        torch.testing.assert_close(loaded(x), traced(x))
    torch_loaded = torch_package.PackageImporter(io.BytesIO(data)).load_pickle("p", "a.pkl")
    torch.testing.assert_close(torch_loaded(torch.ones(1, 4)), traced(torch.ones(1, 4)))


def test_traced_model_with_packaged_leaf_modules_re_exports():
    torch.manual_seed(0)
    original = GatedNet()

    def build(pe):
        pe.intern("tsfx_pkgs.**")
        pe.save_pickle("p", "net.pkl", original)

    first = torchpack.PackageImporter(export(build))
    net = first.load_pickle("p", "net.pkl")
    # Trace with the packaged tracer: the packaged Gate class stays a leaf module.
    tracer_module = first.import_module("tsfx_pkgs.models")
    traced = tracer_module.trace_with_gate_leaf(net)
    assert [n.target for n in traced.graph.nodes if n.op == "call_module"] == ["linear", "gate"]

    buf = io.BytesIO()
    with torchpack.PackageExporter(buf, importer=(first, torchpack.sys_importer)) as pe:
        pe.intern("tsfx_pkgs.**")
        pe.save_pickle("p", "traced.pkl", traced)
    data = buf.getvalue()
    assert "tsfx_pkgs/models.py" in records(data)
    for x in (torch.randn(2, 4), -torch.ones(2, 4) * 10):  # both branches of the leaf
        expected = original(x)
        again = load(data, "traced.pkl")
        assert isinstance(again, torch.fx.GraphModule) and torchpack.is_from_package(again.gate)
        torch.testing.assert_close(again(x), expected)
        in_torch = torch_package.PackageImporter(io.BytesIO(data)).load_pickle("p", "traced.pkl")
        torch.testing.assert_close(in_torch(x), expected)
    # A loaded GraphModule re-exports too.
    buf2 = io.BytesIO()
    second = torchpack.PackageImporter(data)
    with torchpack.PackageExporter(buf2, importer=(second, torchpack.sys_importer)) as pe:
        pe.intern("tsfx_pkgs.**")
        pe.save_pickle("p", "again.pkl", second.load_pickle("p", "traced.pkl"))
    x = torch.randn(3, 4)
    torch.testing.assert_close(load(buf2.getvalue(), "again.pkl")(x), original(x))


def test_environment_traced_model_with_leaf_module():
    torch.manual_seed(0)
    original = GatedNet()
    traced = trace_with_gate_leaf(original)

    def build(pe):
        pe.intern("tsfx_pkgs.**")
        pe.save_pickle("p", "traced.pkl", traced)

    loaded = load(export(build), "traced.pkl")
    x = torch.randn(2, 4)
    torch.testing.assert_close(loaded(x), original(x))


# -- reproducibility -----------------------------------------------------------------------

REPRO_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {corpus!r})
    import torch
    import torchpack
    from tsfx_pkgs.models import GatedNet, Holder, trace_with_gate_leaf

    torch.manual_seed(0)
    net = GatedNet()
    scripted = torch.jit.script(torch.nn.Linear(3, 3))
    with torchpack.PackageExporter(sys.argv[1]) as pe:
        pe.intern("tsfx_pkgs.**")
        pe.save_pickle("p", "holder.pkl", {{"holder": Holder(scripted), "w": scripted.weight}})
        pe.save_pickle("p", "script.pkl", torch.jit.script(net.linear))
        pe.save_pickle("p", "fx.pkl", trace_with_gate_leaf(net))
        pe.save_pickle("p", "plain_fx.pkl", torch.fx.symbolic_trace(torch.nn.Sequential(net.linear, torch.nn.Tanh())))
    """
)


def test_script_and_fx_exports_are_byte_identical_across_processes(tmp_path):
    script = tmp_path / "export.py"
    script.write_text(REPRO_SCRIPT.format(corpus=str(CORPUS)))
    outputs = []
    for seed in ("0", "4242"):
        out = tmp_path / f"out{seed}" / "model.pt"
        out.parent.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        env.update({"PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)})
        proc = subprocess.run(
            [sys.executable, str(script), str(out)], cwd=out.parent, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs.append(out.read_bytes())
    first, second = outputs
    if first != second:
        ra, rb = records(first), records(second)
        pytest.fail(f"records differ: {sorted(n for n in set(ra) | set(rb) if ra.get(n) != rb.get(n))}")
    recs = records(first)
    assert any(n.startswith(".data/ts_code/") for n in recs) and any(n.startswith("fx-generated/") for n in recs)
    importer = torchpack.PackageImporter(first)
    x = torch.randn(2, 4)
    gated, linear = importer.load_pickle("p", "fx.pkl"), importer.load_pickle("p", "script.pkl")
    torch.testing.assert_close(gated.linear(x), linear(x))  # the same weights, saved twice
    assert gated(x).shape == (2, 4)
