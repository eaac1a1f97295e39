"""Property tests: archive round-trips (SPEC §7: save -> load gives equal objects and
tensors; §1: re-export through ``importer=(importer, sys_importer)``; §2: reproducible
bytes).

Equality is judged by strategies.assert_equivalent: same types, bit-identical tensors
(dtype, shape, values; strides not compared) and floats, Parameters stay Parameters with
the same requires_grad, an object referenced twice is still one object, and tensors
share a storage after loading exactly when they did before.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from strategies import (
    assert_equivalent,
    base_tensors,
    nested_objects,
    resource_sets,
    tensors,
)
from torchpack import PackageExporter, PackageImporter, sys_importer

warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
warnings.filterwarnings("ignore", message=".*ComplexHalf support is experimental.*")

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PKG = "data"


def export(objects, resources=(), f=None, importer=None, protocol=3, exporter_cls=None):
    """Write ``objects`` (pickles data/obj<i>.pkl) and ``resources`` into an archive.
    Returns the bytes when ``f`` is None (written to a BytesIO)."""
    cls = exporter_cls or PackageExporter
    buf = io.BytesIO() if f is None else f
    kwargs = {} if importer is None else {"importer": importer}
    with cls(buf, **kwargs) as e:
        e.intern("prop_pkg.**")
        for i, obj in enumerate(objects):
            e.save_pickle(PKG, f"obj{i}.pkl", obj, pickle_protocol=protocol)
        for kind, pkg, res, content in resources:
            if kind == "text":
                e.save_text(pkg, res, content)
            else:
                e.save_binary(pkg, res, content)
    if f is None:
        return buf.getvalue()
    return None


def load(src, n, resources=(), importer_cls=None, map_location=None):
    """Open ``src`` (bytes, a path or a file object) and load n pickles and the resources.
    Returns (importer, objects, resources-as-loaded)."""
    cls = importer_cls or PackageImporter
    if isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(src)
    imp = cls(src)
    kw = {} if map_location is None else {"map_location": map_location}
    objs = [imp.load_pickle(PKG, f"obj{i}.pkl", **kw) for i in range(n)]
    res = [
        (
            kind,
            pkg,
            name,
            imp.load_text(pkg, name) if kind == "text" else imp.load_binary(pkg, name),
        )
        for kind, pkg, name, _ in resources
    ]
    return imp, objs, res


# ---------------------------------------------------------------------------------------


@SETTINGS
@given(t=tensors())
@example(t=torch.nn.Parameter(torch.ones(2, 3, dtype=torch.bfloat16)))
@example(t=torch.zeros(0, 3, dtype=torch.complex64).t())
@example(t=torch.tensor(float("nan"), dtype=torch.float16))
@example(t=torch.arange(12, dtype=torch.int64).reshape(3, 4).t()[::2])
@example(t=torch.tensor([True, False, True]))
def test_single_tensor_roundtrip(t):
    data = export([t])
    _, (loaded,), _ = load(data, 1)
    assert_equivalent(t, loaded)


@SETTINGS
@given(
    obj=nested_objects(),
    target=st.sampled_from(["bytesio", "str", "path"]),
    protocol=st.sampled_from([3, 4]),
    map_location=st.sampled_from([None, "cpu", torch.device("cpu")]),
)
def test_pickle_roundtrip(obj, target, protocol, map_location):
    if target == "bytesio":
        data = export([obj], protocol=protocol)
        _, (loaded,), _ = load(data, 1, map_location=map_location)
    else:
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "pkg.pt")
            export([obj], f=p if target == "str" else Path(p), protocol=protocol)
            _, (loaded,), _ = load(p if target == "str" else Path(p), 1, map_location=map_location)
    assert_equivalent(obj, loaded)


@SETTINGS
@given(objs=st.lists(nested_objects(max_leaves=6), min_size=1, max_size=3))
def test_several_pickles_in_one_archive(objs):
    # Each pickle is loaded on its own; sharing is only checked within one pickle.
    _, loaded, _ = load(export(objs), len(objs))
    for a, b in zip(objs, loaded):
        assert_equivalent(a, b)


@SETTINGS
@given(resources=resource_sets(), obj=st.one_of(st.none(), nested_objects(max_leaves=4)))
@example(resources=[("text", "a.b", "x.txt", ""), ("binary", "a", "y.bin", b"")], obj=None)
@example(resources=[("text", "a", "u.txt", "\u00e9\u4e2d\U0001f600\r\n\x00")], obj=None)
def test_text_and_binary_roundtrip(resources, obj):
    objs = [] if obj is None else [obj]
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "res.pt")
        export(objs, resources, f=p)
        for src in (p, Path(p).read_bytes()):
            _, loaded_objs, loaded_res = load(src, len(objs), resources)
            assert loaded_res == list(resources)
            for kind, _, _, content in loaded_res:
                assert isinstance(content, str if kind == "text" else bytes)
            for a, b in zip(objs, loaded_objs):
                assert_equivalent(a, b)


@SETTINGS
@given(obj=nested_objects(with_points=True), resources=resource_sets(max_size=3))
def test_export_same_object_twice_gives_identical_bytes(obj, resources):
    assert export([obj], resources) == export([obj], resources)


@settings(SETTINGS, max_examples=15)
@given(
    obj=nested_objects(with_points=True),
    resources=resource_sets(max_size=3),
    protocol=st.sampled_from([3, 4]),
)
def test_reexport_roundtrip_and_reencode_is_stable(obj, resources, protocol):
    # x -> export -> load (y1) -> re-export through the importer (b2) -> load (y2)
    b1 = export([obj], resources, protocol=protocol)
    imp1, y1, r1 = load(b1, 1, resources)
    b2 = export(y1, r1, importer=(imp1, sys_importer), protocol=protocol)
    assert export(y1, r1, importer=(imp1, sys_importer), protocol=protocol) == b2

    imp2, y2, r2 = load(b2, 1, resources)
    assert r2 == list(resources)
    assert_equivalent(obj, y2[0])

    # export(load(export(x))) == export(load(export(load(export(x)))))
    b3 = export(y2, r2, importer=(imp2, sys_importer), protocol=protocol)
    assert b3 == b2


@SETTINGS
@given(obj=nested_objects(with_points=True))
def test_point_classes_come_from_the_package(obj):
    from prop_pkg.models import Point

    imp, (loaded,), _ = load(export([obj]), 1)
    assert_equivalent(obj, loaded)

    found = []

    def walk(x):
        if type(x).__name__ == "Point":
            found.append(type(x))
            walk(vars(x))
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(loaded)
    if found:
        packaged = imp.import_module("prop_pkg.models").Point
        assert packaged is not Point
        assert all(cls is packaged for cls in found)
        assert packaged.__module__.startswith("<torch_package_")


# ---------------------------------------------------------------------------------------
# Interoperability with torch.package in both directions (SPEC §2), on the same objects.
# ---------------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=15)
@given(obj=nested_objects(with_points=True), resources=resource_sets(max_size=3))
def test_torch_package_reads_torchpack_archives(obj, resources):
    from torch.package import PackageImporter as TorchImporter

    data = export([obj], resources)
    _, (loaded,), res = load(data, 1, resources, importer_cls=TorchImporter)
    assert_equivalent(obj, loaded)
    assert res == list(resources)


@settings(SETTINGS, max_examples=15)
@given(obj=nested_objects(with_points=True), resources=resource_sets(max_size=3))
def test_torchpack_reads_torch_package_archives(obj, resources):
    from torch.package import PackageExporter as TorchExporter

    data = export([obj], resources, exporter_cls=TorchExporter)
    _, (loaded,), res = load(data, 1, resources)
    assert_equivalent(obj, loaded)
    assert res == list(resources)


@SETTINGS
@given(t=base_tensors(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3)))
def test_views_still_share_storage_after_load(t):
    views = [t, t.reshape(-1)[1:], t.unsqueeze(0).expand(2, *t.shape)]
    if t.dim() >= 2:
        views.append(t.transpose(0, 1))
    _, (loaded,), _ = load(export([views]), 1)
    assert_equivalent(views, loaded)
    ptrs = {v.untyped_storage().data_ptr() for v in loaded}
    assert len(ptrs) == 1
