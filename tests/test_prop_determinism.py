"""Property tests: determinism (SPEC §2 "Reproducible", §7 "same inputs -> same bytes").

In-process: the same inputs give the same bytes whatever the output (BytesIO, str path,
pathlib.Path, other folder, other file name), whatever the order of resource writes, and
for a deep copy of the inputs (other addresses, same content). Across processes: the
same export script run under different PYTHONHASHSEED / TZ / umask / locale / cwd /
output file name gives archives with the same SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import assert_equivalent, nested_objects, resource_sets, structural_copy
from torchpack import PackageExporter, PackageImporter

warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
warnings.filterwarnings("ignore", message=".*ComplexHalf support is experimental.*")

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "corpus"

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _export(f, objects, resources, with_module=True):
    with PackageExporter(f) as e:
        e.intern("prop_pkg.**")
        if with_module:
            e.save_module("prop_pkg")
        for i, obj in enumerate(objects):
            e.save_pickle("data", f"obj{i}.pkl", obj)
        for kind, pkg, res, content in resources:
            if kind == "text":
                e.save_text(pkg, res, content)
            else:
                e.save_binary(pkg, res, content)


def _export_bytes(objects, resources, with_module=True):
    buf = io.BytesIO()
    _export(buf, objects, resources, with_module)
    return buf.getvalue()


@settings(SETTINGS, max_examples=8)
@given(
    objs=st.lists(nested_objects(with_points=True, max_leaves=8), max_size=2),
    resources=resource_sets(max_size=4),
    with_module=st.booleans(),
)
def test_same_inputs_same_bytes_whatever_the_output(objs, resources, with_module):
    reference = _export_bytes(objs, resources, with_module)
    with tempfile.TemporaryDirectory() as d:
        p1 = os.path.join(d, "one", "model.pt")
        p2 = Path(d) / "two" / "deeper" / "a different name.zip"
        os.makedirs(os.path.dirname(p1))
        p2.parent.mkdir(parents=True)
        _export(p1, objs, resources, with_module)
        _export(p2, objs, resources, with_module)
        with open(os.path.join(d, "handle.bin"), "wb") as fh:
            _export(fh, objs, resources, with_module)
        assert Path(p1).read_bytes() == reference
        assert p2.read_bytes() == reference
        assert Path(d, "handle.bin").read_bytes() == reference
    assert _export_bytes(objs, resources, with_module) == reference


@SETTINGS
@given(
    obj=nested_objects(with_points=True, max_leaves=8),
    resources=resource_sets(max_size=5),
    data=st.data(),
)
def test_resource_write_order_does_not_matter(obj, resources, data):
    # Entries are sorted by name, so the order of save_text/save_binary calls is invisible.
    shuffled = data.draw(st.permutations(resources))
    assert _export_bytes([obj], resources) == _export_bytes([obj], shuffled)


@SETTINGS
@given(obj=nested_objects(with_points=True), resources=resource_sets(max_size=3))
def test_equal_copy_gives_same_bytes(obj, resources):
    # Same content and sharing structure at other addresses: storage ids come from a
    # counter in pickling order and serialization_id from content, never from memory
    # addresses.
    twin = structural_copy(obj)
    assert_equivalent(obj, twin)  # the copy really is equal, sharing included
    assert _export_bytes([obj], resources) == _export_bytes([twin], resources)


def _local_data_offset(raw: bytes, info: zipfile.ZipInfo) -> int:
    off = info.header_offset
    assert raw[off : off + 4] == b"PK\x03\x04"
    name_len, extra_len = struct.unpack("<HH", raw[off + 26 : off + 30])
    return off + 30 + name_len + extra_len


@SETTINGS
@given(
    objs=st.lists(nested_objects(with_points=True, max_leaves=8), max_size=2),
    resources=resource_sets(max_size=4),
)
def test_archive_layout_is_canonical(objs, resources):
    raw = _export_bytes(objs, resources)
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
    assert names == sorted(names), "entries are not sorted by name"
    assert len(set(names)) == len(names), "duplicate entries"
    tops = {n.split("/", 1)[0] for n in names}
    assert len(tops) == 1, f"more than one top-level folder: {sorted(tops)}"
    (top,) = tops
    assert {i.date_time for i in infos} == (
        {(1980, 1, 1, 0, 0, 0)} if "SOURCE_DATE_EPOCH" not in os.environ else {infos[0].date_time}
    )
    assert len({(i.external_attr, i.create_system) for i in infos}) == 1
    for kind, pkg, res, _ in resources:
        assert f"{top}/{pkg.replace('.', '/')}/{res}" in names
    storages = sorted(
        n.rsplit("/", 1)[1] for n in names if n.startswith(f"{top}/.data/") and n.endswith(".storage")
    )
    ids = sorted(int(s.split(".")[0]) for s in storages)
    assert ids == list(range(len(ids))), f"storage ids are not a counter: {storages}"
    for info in infos:
        if info.filename.endswith(".storage") and "/.data/" in info.filename:
            assert info.compress_type == zipfile.ZIP_STORED
            assert _local_data_offset(raw, info) % 64 == 0, info.filename


# ---------------------------------------------------------------------------------------
# Across processes
# ---------------------------------------------------------------------------------------

EXPORT_SCRIPT = textwrap.dedent(
    """
    import sys
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    import prop_pkg
    from prop_pkg.models import Point, Tiny
    from torchpack import PackageExporter

    torch.manual_seed(1234)
    model = Tiny(4)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {
        "model": model,
        "points": [Point(1, 2, payload=base[1:, ::2]), Point(-1, 0, payload={"t": base.t()})],
        "tensors": {
            "base": base,
            "bf16": torch.linspace(0, 1, 7).to(torch.bfloat16),
            "cplx": torch.randn(3, dtype=torch.complex64),
            "mask": torch.tensor([True, False, True]),
            "param": torch.nn.Parameter(torch.randn(2, 3)),
            "empty": torch.empty(0, 5),
        },
        "tags": prop_pkg.registry.sorted_tags(),
        "defaults": dict(prop_pkg.registry.DEFAULTS),
        "ints": frozenset(range(20)),
        "colliding": {-50, -34, -49, 7, 15, 23},
        "tag_set": set(prop_pkg.registry.TAGS),  # str order depends on PYTHONHASHSEED
        "frozen_tags": frozenset(prop_pkg.registry.TAGS),
        "blob": bytes(range(16)),
    }
    with PackageExporter(sys.argv[1]) as e:
        e.intern("prop_pkg.**")
        e.save_module("prop_pkg")
        e.save_pickle("model", "obj.pkl", obj)
        e.save_pickle("model", "tiny.pkl", model)
        e.save_text("notes", "readme.txt", "h\\u00e9llo\\n")
        e.save_binary("notes", "blob.bin", bytes(range(256)))
    """
)


def _run_exports(tmp: Path, runs):
    """Start every run at once (they are independent) and wait for all of them."""
    script = tmp / "export_script.py"
    script.write_text(EXPORT_SCRIPT)
    procs = []
    for i, (env_over, umask, cwd, out) in enumerate(runs):
        env = {k: v for k, v in os.environ.items() if k not in ("SOURCE_DATE_EPOCH", "PYTHONHASHSEED", "TZ")}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(CORPUS)])
        env.update(env_over)
        cwd.mkdir(parents=True, exist_ok=True)

        def pre(umask=umask):
            os.umask(umask)

        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(out)],
                cwd=cwd,
                env=env,
                preexec_fn=pre,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
        time.sleep(1.1)  # a different wall clock (second) for each run
    outputs = []
    for p, (_, _, cwd, out) in zip(procs, runs):
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr.decode(errors="replace")
        outputs.append((cwd / out).read_bytes())
    return outputs


def test_subprocess_exports_are_byte_identical():
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = [
            ({"PYTHONHASHSEED": "0", "TZ": "UTC", "LC_ALL": "C"}, 0o022, tmp / "a", Path("model.pt")),
            (
                {"PYTHONHASHSEED": "4242", "TZ": "Asia/Kolkata", "LC_ALL": "C.UTF-8",
                 "PYTHONDONTWRITEBYTECODE": "1"},
                0o077,
                tmp / "b" / "deep" / "er",
                Path("..") / "other name.zip",
            ),
            (
                {"PYTHONHASHSEED": "random", "TZ": "America/St_Johns", "LANG": "en_US.UTF-8"},
                0o002,
                tmp / "c",
                tmp / "elsewhere-abs.bin",
            ),
        ]
        (tmp / "b" / "deep").mkdir(parents=True)
        outputs = _run_exports(tmp, runs)
        digests = [hashlib.sha256(o).hexdigest() for o in outputs]
        if len(set(digests)) != 1:
            raise AssertionError(
                f"SHA-256 differ across environments: {digests}\n" + _zip_diff(outputs[0], outputs[1:])
            )

        # and the archive is usable
        imp = PackageImporter(io.BytesIO(outputs[0]))
        obj = imp.load_pickle("model", "obj.pkl")
        assert obj["tags"] == ["alpha", "beta", "delta", "epsilon", "gamma"]
        assert obj["tag_set"] == {"alpha", "beta", "delta", "epsilon", "gamma"}
        assert type(obj["points"][0]).__module__.endswith("prop_pkg.models")
        assert imp.load_text("notes", "readme.txt") == "h\u00e9llo\n"
        tiny = imp.load_pickle("model", "tiny.pkl")
        assert type(tiny).__name__ == "Tiny"


def test_source_date_epoch_sets_timestamps():
    epoch = 1700000000  # 2023-11-14 22:13:20 UTC (even seconds: exact in DOS time)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = [
            ({"PYTHONHASHSEED": "0", "TZ": "UTC"}, 0o022, tmp / "a", Path("plain.pt")),
            ({"PYTHONHASHSEED": "1", "TZ": "Asia/Kolkata", "SOURCE_DATE_EPOCH": str(epoch)},
             0o022, tmp / "b", Path("dated.pt")),
        ]
        plain, dated = _run_exports(tmp, runs)
    with zipfile.ZipFile(io.BytesIO(plain)) as zp, zipfile.ZipFile(io.BytesIO(dated)) as zd:
        assert {i.date_time for i in zp.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.date_time for i in zd.infolist()} == {time.gmtime(epoch)[:6]}
        # only the timestamps differ: same records, same contents
        assert zp.namelist() == zd.namelist()
        for n in zp.namelist():
            assert zp.read(n) == zd.read(n), n


def _zip_diff(ref: bytes, others) -> str:
    lines = []
    with zipfile.ZipFile(io.BytesIO(ref)) as zr:
        rn = {i.filename: (i.CRC, i.file_size, i.date_time, i.external_attr) for i in zr.infolist()}
    for k, o in enumerate(others, 1):
        with zipfile.ZipFile(io.BytesIO(o)) as zo:
            on = {i.filename: (i.CRC, i.file_size, i.date_time, i.external_attr) for i in zo.infolist()}
        for name in sorted(set(rn) | set(on)):
            if rn.get(name) != on.get(name):
                lines.append(f"run {k}: {name}: {rn.get(name)} vs {on.get(name)}")
    return "\n".join(lines) or "(same records; difference in zip framing)"
