"""Cross-compatibility with the real torch.package, in both directions:
torch.package writes -> torchpack reads, and torchpack writes -> torch.package reads.

Sample code lives in tests/corpus/xcompat_pkgs.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
import torch.package as torch_package

import torchpack
from helpers_core import records

from xcompat_pkgs.net import XNet
from xcompat_pkgs.record import Record

LIBS = {"torch.package": torch_package, "torchpack": torchpack}
DIRECTIONS = [("torch.package", "torchpack"), ("torchpack", "torch.package")]
DIRECTION_IDS = ["torch_writes-torchpack_reads", "torchpack_writes-torch_reads"]


@pytest.fixture(params=DIRECTIONS, ids=DIRECTION_IDS)
def libs(request):
    writer, reader = request.param
    return LIBS[writer], LIBS[reader]


def write(writer, build, sink="bytesio", tmp_path=None):
    """Export with ``writer``'s PackageExporter into ``sink``; return what a reader should open."""
    if sink == "bytesio":
        buf = io.BytesIO()
        with writer.PackageExporter(buf) as pe:
            build(pe)
        return io.BytesIO(buf.getvalue())
    path = tmp_path / "pkg.pt"
    with writer.PackageExporter(str(path) if sink == "str" else path) as pe:
        build(pe)
    return str(path) if sink == "str" else path


def raw_bytes(source) -> bytes:
    if isinstance(source, io.BytesIO):
        return source.getvalue()
    return Path(source).read_bytes()


def is_mangled_by(importer, name: str) -> bool:
    return name.startswith(importer.id() + ".")


@pytest.mark.parametrize("sink", ["str", "path", "bytesio"])
def test_interned_nn_module_gives_same_outputs(libs, sink, tmp_path):
    writer, reader = libs
    torch.manual_seed(0)
    model = XNet().eval()
    x = torch.randn(2, 1, 6, 6)
    expected = model(x)

    def build(pe):
        pe.intern("xcompat_pkgs.**")
        pe.save_pickle("model", "model.pkl", model)

    source = write(writer, build, sink, tmp_path)
    importer = reader.PackageImporter(source)
    loaded = importer.load_pickle("model", "model.pkl")
    assert torch.equal(loaded(x), expected)
    assert is_mangled_by(importer, type(loaded).__module__)
    assert type(loaded).__module__.endswith("xcompat_pkgs.net")
    assert loaded.tied.weight is loaded.head.weight
    assert loaded.label == "xnet" and not loaded.training
    assert set(loaded.state_dict()) == set(model.state_dict())


DTYPES = [
    torch.float16,
    torch.float32,
    torch.float64,
    torch.bfloat16,
    torch.complex64,
    torch.complex128,
    torch.bool,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
]


def _sample(dtype):
    g = torch.Generator().manual_seed(1)
    if dtype == torch.bool:
        return torch.rand(3, 5, generator=g) > 0.5
    if dtype.is_complex:
        return torch.randn(3, 5, dtype=dtype, generator=g)
    if dtype.is_floating_point:
        return torch.randn(3, 5, generator=g).to(dtype)
    return torch.randint(0, 100, (3, 5), generator=g).to(dtype)


def test_tensors_of_every_dtype_and_layout(libs):
    writer, reader = libs
    tensors = {str(dtype): _sample(dtype) for dtype in DTYPES}
    tensors["empty"] = torch.empty(0, 3)
    tensors["scalar"] = torch.tensor(3.5)
    tensors["transposed"] = torch.arange(12.0).reshape(3, 4).t()
    tensors["strided"] = torch.arange(20).reshape(4, 5)[:, ::2]
    tensors["offset"] = torch.arange(10, dtype=torch.int16)[3:7]
    param = torch.nn.Parameter(torch.randn(2, 2))
    frozen = torch.nn.Parameter(torch.randn(3), requires_grad=False)

    source = write(writer, lambda pe: pe.save_pickle("t", "tensors.pkl", {"tensors": tensors, "p": param, "f": frozen}))
    loaded = reader.PackageImporter(source).load_pickle("t", "tensors.pkl")
    for key, original in tensors.items():
        got = loaded["tensors"][key]
        assert got.dtype == original.dtype, key
        assert got.shape == original.shape, key
        assert got.stride() == original.stride(), key
        assert torch.equal(got, original), key
    assert isinstance(loaded["p"], torch.nn.Parameter) and loaded["p"].requires_grad
    assert torch.equal(loaded["p"].detach(), param.detach())
    assert isinstance(loaded["f"], torch.nn.Parameter) and not loaded["f"].requires_grad
    assert torch.equal(loaded["f"], frozen)


def test_shared_storages_and_views_stay_shared(libs):
    writer, reader = libs
    base = torch.arange(12.0)
    obj = {
        "base": base,
        "slice": base[2:6],
        "grid": base.view(3, 4),
        "grid_t": base.view(3, 4).t(),
        "other": torch.arange(3),
        "again": base,
    }
    source = write(writer, lambda pe: pe.save_pickle("v", "views.pkl", obj))
    storages = [n for n in records(raw_bytes(source)) if n.startswith(".data/") and n.endswith(".storage")]
    assert len(storages) == 2
    loaded = reader.PackageImporter(source).load_pickle("v", "views.pkl")
    ptr = loaded["base"].untyped_storage().data_ptr()
    for key in ("slice", "grid", "grid_t", "again"):
        assert loaded[key].untyped_storage().data_ptr() == ptr, key
    assert loaded["other"].untyped_storage().data_ptr() != ptr
    assert loaded["again"] is loaded["base"]
    assert loaded["slice"].storage_offset() == 2
    assert loaded["grid_t"].stride() == (1, 4)
    loaded["base"][3] = 100.0
    assert loaded["slice"][1] == 100.0 and loaded["grid"][0, 3] == 100.0


@pytest.mark.parametrize("sink", ["str", "path", "bytesio"])
def test_text_binary_and_plain_pickles(libs, sink, tmp_path):
    writer, reader = libs
    blob = bytes(range(256)) * 4
    text = "weights: \u00e9\u00e8 \u2713\nline 2\n"

    def build(pe):
        pe.save_text("config", "notes.txt", text)
        pe.save_binary("raw", "blob.bin", blob)
        pe.save_pickle("obj", "plain.pkl", {"a": [1, 2.5, None], "b": ("x", b"y"), "c": {3, 4}})

    source = write(writer, build, sink, tmp_path)
    importer = reader.PackageImporter(source)
    assert importer.load_text("config", "notes.txt") == text
    assert importer.load_binary("raw", "blob.bin") == blob
    assert importer.load_pickle("obj", "plain.pkl") == {"a": [1, 2.5, None], "b": ("x", b"y"), "c": {3, 4}}
    assert importer.file_structure().has_file("config/notes.txt")


def test_mocked_modules(libs):
    writer, reader = libs

    def build(pe):
        pe.mock("xcompat_pkgs.mocked_dep")
        pe.intern("xcompat_pkgs.**")
        pe.save_module("xcompat_pkgs.uses_mock")
        assert pe.mocked_modules() == ["xcompat_pkgs.mocked_dep"]

    source = write(writer, build)
    mod = reader.PackageImporter(source).import_module("xcompat_pkgs.uses_mock")
    assert mod.ok() == "ok"
    with pytest.raises(NotImplementedError):
        mod.call_thing()
    with pytest.raises(NotImplementedError):
        mod.read_constant()


def test_reexport_through_importer_and_sys_importer(libs):
    """lib1 writes, lib2 loads and re-exports with importer=(importer, sys_importer), lib1 reads."""
    lib1, lib2 = libs
    torch.manual_seed(0)
    model = XNet().eval()
    rec = Record("r", {"w": torch.ones(2, 3), "b": torch.arange(4.0)})
    x = torch.randn(1, 1, 5, 5)

    def build(pe):
        pe.intern("xcompat_pkgs.**")
        pe.save_pickle("model", "model.pkl", model)
        pe.save_pickle("rec", "rec.pkl", rec)

    first = write(lib1, build)
    importer = lib2.PackageImporter(first)
    model2, rec2 = importer.load_pickle("model", "model.pkl"), importer.load_pickle("rec", "rec.pkl")

    buf = io.BytesIO()
    with lib2.PackageExporter(buf, importer=(importer, lib2.sys_importer)) as pe:
        pe.intern("xcompat_pkgs.**")
        pe.save_pickle("model", "model.pkl", model2)
        pe.save_pickle("rec", "rec.pkl", rec2)
        pe.save_text("meta", "origin.txt", "re-exported")

    final = lib1.PackageImporter(io.BytesIO(buf.getvalue()))
    model3 = final.load_pickle("model", "model.pkl")
    rec3 = final.load_pickle("rec", "rec.pkl")
    assert torch.equal(model3(x), model(x))
    assert rec3.total() == rec.total() and rec3.name == "r"
    assert is_mangled_by(final, type(model3).__module__)
    assert final.load_text("meta", "origin.txt") == "re-exported"
    before, after = records(raw_bytes(first)), records(buf.getvalue())
    for name in ("xcompat_pkgs/net.py", "xcompat_pkgs/layers.py", "xcompat_pkgs/record.py"):
        assert after[name] == before[name], name


@pytest.mark.parametrize("map_location", ["cpu", torch.device("cpu"), None])
def test_load_pickle_map_location_cpu(libs, map_location):
    writer, reader = libs
    torch.manual_seed(0)
    model = XNet().eval()

    def build(pe):
        pe.intern("xcompat_pkgs.**")
        pe.save_pickle("model", "model.pkl", model)
        pe.save_pickle("t", "t.pkl", torch.arange(5.0))

    importer = reader.PackageImporter(write(writer, build))
    loaded = importer.load_pickle("model", "model.pkl", map_location=map_location)
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    t = importer.load_pickle("t", "t.pkl", map_location=map_location)
    assert t.device == torch.device("cpu") and torch.equal(t, torch.arange(5.0))


def test_archives_are_zip_files_with_one_top_level_folder(libs):
    writer, _ = libs
    source = write(writer, lambda pe: pe.save_text("a", "b.txt", "c"))
    with zipfile.ZipFile(io.BytesIO(raw_bytes(source))) as zf:
        tops = {name.split("/", 1)[0] for name in zf.namelist()}
        assert len(tops) == 1
        assert zf.testzip() is None


MIXED_SCRIPT = textwrap.dedent(
    """
    import inspect, io, traceback
    import torch.package as tp
    import torchpack

    def build(lib, body):
        buf = io.BytesIO()
        with lib.PackageExporter(buf) as pe:
            pe.save_source_string("xmix_mod", body)
        return io.BytesIO(buf.getvalue())

    a = tp.PackageImporter(build(tp, "def f():\\n    raise ValueError('from torch.package archive')\\n"))
    b = torchpack.PackageImporter(build(torchpack, "def f():\\n    raise ValueError('from torchpack archive')\\n"))
    fa = a.import_module("xmix_mod").f
    fb = b.import_module("xmix_mod").f
    assert "torch.package archive" in inspect.getsource(fa), inspect.getsource(fa)
    assert "torchpack archive" in inspect.getsource(fb), inspect.getsource(fb)
    try:
        fb()
    except ValueError:
        tb = traceback.format_exc()
    assert "raise ValueError('from torchpack archive')" in tb, tb
    print("OK", a.id(), b.id())
    """
)


def test_torch_package_and_torchpack_importers_in_one_process_keep_their_sources_apart(tmp_path):
    # Both libraries mangle with <torch_package_N>; loading packages with both in one process
    # must not make one importer's source (linecache, inspect, tracebacks) shadow the other's.
    script = tmp_path / "mixed.py"
    script.write_text(MIXED_SCRIPT)
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo)] + [p for p in sys.path if p]))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=repo, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK")


def test_sparse_tensors_and_layouts_cross_both_ways(tmp_path):
    """A layout pickles through copyreg (``torch.serialization._get_layout``), not by name."""
    tp = torch_package
    sparse = torch.sparse_coo_tensor([[0, 1], [1, 0]], [1.0, 2.0], (2, 2))
    data = {"sparse": sparse, "layout": torch.sparse_csr}
    ours, theirs = tmp_path / "ours.pt", tmp_path / "theirs.pt"
    with torchpack.PackageExporter(ours) as exporter:
        exporter.save_pickle("data", "sparse.pkl", data)
    with tp.PackageExporter(str(theirs)) as exporter:
        exporter.save_pickle("data", "sparse.pkl", data)
    for loaded in (
        tp.PackageImporter(str(ours)).load_pickle("data", "sparse.pkl"),
        torchpack.PackageImporter(theirs).load_pickle("data", "sparse.pkl"),
        torchpack.PackageImporter(ours, restricted=True).load_pickle("data", "sparse.pkl"),
    ):
        assert torch.equal(loaded["sparse"].to_dense(), sparse.to_dense())
        assert loaded["layout"] is torch.sparse_csr
