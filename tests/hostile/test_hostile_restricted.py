"""Hostile archives against restricted loading: packaged code, names that shadow installed
modules, dotted names that walk into other modules, calls and opcodes beyond the allow-list,
and small pickles that ask for huge allocations.

Every case builds its own archive; each must be refused with a TorchpackError naming the
archive and the record, with no attacker code run (a marker file stays absent).
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import pytest
import torch

from hostile_pickles import PICKLE, Build, Call, Global, New, PersistentId, Raw, craft, hostile_archive, run_victim, tensor
from torchpack import PackageExporter, PackageImporter, RestrictedLoadError, TorchpackError

SYSTEM = Global("os", "system")


def _refused(archive: Path, error: type[TorchpackError] = RestrictedLoadError, **options: object) -> str:
    with pytest.raises(error) as raised:
        PackageImporter(archive, restricted=True, **options).load_pickle("data", "x.pkl")
    message = str(raised.value)
    assert str(archive) in message and PICKLE in message, message
    return message


# -- 1. packaged code -------------------------------------------------------------------------


def _code_archive(tmp_path: Path, marker: Path) -> Path:
    source = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n\nclass Net:\n    pass\n"
    return hostile_archive(
        tmp_path / "code.pt",
        Call(Global("lab.net", "Net")),
        add={"lab/__init__.py": b"", "lab/net.py": source.encode()},
        externs=("pathlib",),
    )


def test_a_pickle_naming_packaged_code_does_not_run_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    archive = _code_archive(tmp_path, marker)
    message = _refused(archive)
    assert "lab.net" in message and "trusted_modules=['lab.net']" in message
    assert not marker.exists()


def test_importing_a_packaged_module_directly_does_not_run_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    archive = _code_archive(tmp_path, marker)
    importer = PackageImporter(archive, restricted=True, trusted_modules=["lab"])
    with pytest.raises(RestrictedLoadError, match=r"lab/net\.py") as raised:
        importer.import_module("lab.net")
    assert str(archive) in str(raised.value) and "trusted_modules=" in str(raised.value)
    assert not marker.exists() and "lab.net" not in importer.modules


def test_allowed_globals_cannot_stand_in_for_trusting_packaged_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    archive = _code_archive(tmp_path, marker)
    _refused(archive, allowed_globals=["lab.**", "lab.net:Net"])
    assert not marker.exists()


def test_trusted_packaged_code_runs_and_loads(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    archive = _code_archive(tmp_path, marker)
    # Net() via REDUCE: the caller trusts lab.**, so its classes are callable.
    loaded = PackageImporter(archive, restricted=True, trusted_modules=["lab.**"]).load_pickle("data", "x.pkl")
    assert type(loaded).__name__ == "Net" and marker.read_text() == "ran"


def test_a_data_only_archive_loads_with_no_option(tmp_path: Path) -> None:
    state = torch.nn.Linear(3, 2).state_dict()
    noted, noted_parameter = torch.ones(2), torch.nn.Parameter(torch.zeros(2))
    noted.note = noted_parameter.note = "attributes pickle through _rebuild_from_type_v2 / _with_state"
    data = {
        "state": state,
        "param": torch.nn.Parameter(torch.ones(2)),
        "view": torch.arange(12.0)[2:8].view(2, 3).t(),
        "empty": torch.empty(0),
        "meta": {"dtype": torch.bfloat16, "layout": torch.strided, "device": torch.device("cpu")},
        "shape": torch.Size([4, 5]),
        "small": {"set": {1, 2, 3}, "frozen": frozenset("ab"), "bytes": bytearray(b"\x00" * 1000)},
        "more": [collections.deque([1, 2], maxlen=5), range(3, 9), slice(1, None, 2), 3 - 1j],
        "ordered": collections.OrderedDict(a=1, b=torch.zeros(3, dtype=torch.int64)),
        "noted": [noted, noted_parameter],
        "counts": collections.defaultdict(set, a={1}),
    }
    archive = tmp_path / "data.pt"
    with PackageExporter(archive) as exporter:
        exporter.save_pickle("data", "x.pkl", data)
    loaded = PackageImporter(archive, restricted=True).load_pickle("data", "x.pkl")
    assert loaded["state"]._metadata == state._metadata and torch.equal(loaded["state"]["weight"], state["weight"])
    assert isinstance(loaded["param"], torch.nn.Parameter) and torch.equal(loaded["view"], data["view"])
    assert loaded["empty"].untyped_storage().nbytes() == 0 and not loaded["empty"].untyped_storage().resizable()
    for key in ("meta", "shape", "small", "more"):
        assert loaded[key] == data[key], key
    assert list(loaded["ordered"]) == ["a", "b"] and loaded["more"][0].maxlen == 5
    assert [value.note for value in loaded["noted"]] == [noted.note] * 2
    assert isinstance(loaded["noted"][1], torch.nn.Parameter) and loaded["counts"]["b"] == set()


# -- 2. names that shadow installed modules -----------------------------------------------------


def test_a_record_named_like_torch_serialization_under_extern_torch(tmp_path: Path) -> None:
    # The archive ships torch/serialization.py and marks torch extern: the name is not the
    # package's own, so it opens nothing - neither the installed module's `os` nor the record.
    marker = tmp_path / "ran"
    evil = f"import os\nos.system('touch {marker}')\n".encode()
    archive = hostile_archive(
        tmp_path / "shadow.pt",
        Call(Global("torch.serialization", "os.system"), f"touch {marker}"),
        add={"torch/serialization.py": evil},
        externs=("torch",),
    )
    message = _refused(archive)
    assert "torch.serialization" in message
    assert not marker.exists()


def test_a_record_named_like_an_installed_module_that_is_also_extern(tmp_path: Path) -> None:
    # collections/__init__.py in the archive, collections also listed extern: a module whose
    # source the archive holds is the archive's (never the installed one under its name), so
    # restricted loading refuses to run it untrusted, and nothing reaches the real module.
    marker = tmp_path / "ran"
    evil = f"import os\nos.system('touch {marker}')\nOrderedDict = dict\n".encode()
    archive = hostile_archive(
        tmp_path / "collections.pt",
        {"ok": Call(Global("collections", "OrderedDict")), "bad": Call(Global("collections", "namedtuple"), "T", "a")},
        add={"collections/__init__.py": evil},
        externs=("collections",),
    )
    message = _refused(archive)
    assert "packaged module collections" in message and "trusted_modules=['collections']" in message
    assert not marker.exists()


def test_an_allowed_name_whose_module_the_archive_ships_does_not_run_the_record(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = f"import os\nos.system('touch {marker}')\nclass Scaler:\n    pass\n".encode()
    archive = hostile_archive(
        tmp_path / "payloads.pt",
        New(Global("restricted_pkgs.payloads", "Scaler")),
        add={"restricted_pkgs/__init__.py": b"", "restricted_pkgs/payloads.py": evil},
        externs=("restricted_pkgs",),
    )
    importer = PackageImporter(archive, restricted=True, allowed_globals=["restricted_pkgs.payloads:Scaler"])
    try:
        loaded = importer.load_pickle("data", "x.pkl")
    except RestrictedLoadError as error:  # the record is the package's own: it needs trust
        assert "trusted_modules" in str(error) and str(archive) in str(error)
    else:  # the name is extern: the installed module's class, not the record's
        assert type(loaded).__module__ == "restricted_pkgs.payloads" and isinstance(loaded, torch.nn.Module)
    assert not marker.exists()


# -- 3. dotted names --------------------------------------------------------------------------


def test_a_qualname_cannot_walk_from_an_allowed_module_into_os(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    walk = Global("torch.nn.modules.module", "torch.serialization.os.system")
    archive = hostile_archive(tmp_path / "walk.pt", Call(walk, f"touch {marker}"))
    # The README's own example, and the explicit module:qualname form with a ** qualname.
    assert "torch.nn.modules.module.torch.serialization.os.system" in _refused(archive, allowed_globals=["torch.nn.modules.**"])
    message = _refused(archive, allowed_globals=["torch.nn.modules.module:**"])
    assert "steps through torch" in message
    assert not marker.exists()


def test_a_global_that_is_a_module_is_refused(tmp_path: Path) -> None:
    archive = hostile_archive(tmp_path / "module.pt", Global("torch", "serialization"))
    assert "module torch.serialization" in _refused(archive, allowed_globals=["torch:*"])


def test_an_alias_is_checked_under_its_own_name(tmp_path: Path) -> None:
    # ctypes._aix does `from subprocess import Popen`: allowing ctypes._aix's names must not
    # allow subprocess.Popen.
    marker = tmp_path / "ran"
    archive = hostile_archive(
        tmp_path / "alias.pt", Call(Global("ctypes._aix", "Popen"), ["touch", str(marker)]), externs=("ctypes",)
    )
    assert "subprocess.Popen" in _refused(archive, allowed_globals=["ctypes._aix.*"])
    assert not marker.exists()


# -- calls and opcodes beyond the allow-list ----------------------------------------------------


@pytest.mark.parametrize(
    "payload, expected",
    [
        (Call(SYSTEM, "true"), "os.system"),
        (Call(Global("torch", "FloatStorage"), 1 << 40), "calls"),  # a storage class is data, not a constructor
        (Build(tensor(), (None, 0, (1 << 30,), (1,))), "state of a Tensor"),  # Tensor.__setstate__ -> set_
        (Raw(b"(ios\nsystem\nX\x04\x00\x00\x00true" + pickle.TUPLE + pickle.STOP), "opcode b'i'"),
        (Raw(pickle.EXT1 + b"\x01"), "opcode b'\\x82'"),
        (Raw(pickle.EMPTY_TUPLE + pickle.NEWOBJ_EX), "IndexError: pop from empty list"),
    ],
    ids=["os.system", "storage-constructor", "tensor-setstate", "INST", "EXT1", "stack-underflow"],
)
def test_calls_and_opcodes_outside_the_allow_list(tmp_path: Path, payload: object, expected: str) -> None:
    archive = hostile_archive(tmp_path / "call.pt", payload)
    with pytest.raises(TorchpackError) as raised:
        PackageImporter(archive, restricted=True).load_pickle("data", "x.pkl")
    assert str(archive) in str(raised.value) and PICKLE in str(raised.value)
    assert expected in str(raised.value), str(raised.value)


def test_items_go_only_into_lists_dicts_and_sets(tmp_path: Path) -> None:
    # APPEND onto a tensor would call its own methods; the pickle may only fill containers.
    tensor_opcodes = craft(tensor())[2:-1]  # without PROTO and STOP
    payload = Raw(tensor_opcodes + pickle.EMPTY_LIST + pickle.APPEND + pickle.STOP)
    archive = hostile_archive(tmp_path / "append.pt", payload)
    assert "adds items to a Tensor" in _refused(archive)


def test_a_reduce_package_id_may_not_call_a_default_constructor(tmp_path: Path) -> None:
    payload = PersistentId(("reduce_package", "id0", Global("builtins", "bytearray"), (1 << 30,)))
    archive = hostile_archive(tmp_path / "reducer.pt", payload)
    assert "through a persistent id" in _refused(archive)


def test_rebuild_from_type_may_not_call_a_constructor(tmp_path: Path) -> None:
    rebuild = Global("torch._tensor", "_rebuild_from_type_v2")
    archive = hostile_archive(tmp_path / "fromtype.pt", Call(rebuild, Global("builtins", "bytearray"), Global("torch", "Tensor"), (10,), {}))
    assert "no tensor rebuild" in _refused(archive)


def test_a_defaultdict_factory_must_be_allowed(tmp_path: Path) -> None:
    archive = hostile_archive(tmp_path / "factory.pt", Call(Global("collections", "defaultdict"), Global("torch", "FloatStorage")))
    assert "makes a defaultdict calling" in _refused(archive)


def test_tensor_attributes_may_not_set_dunders(tmp_path: Path) -> None:
    rebuild = Global("torch._tensor", "_rebuild_from_type_v2")
    v2 = Global("torch._utils", "_rebuild_tensor_v2")
    tensor_args = tensor().args
    archive = hostile_archive(
        tmp_path / "dunder.pt", Call(rebuild, v2, Global("torch", "Tensor"), tensor_args, {"__class__": Global("torch", "Size")})
    )
    assert "odd attributes" in _refused(archive)


def test_tensor_backward_hooks_are_refused(tmp_path: Path) -> None:
    hooks = Call(Global("collections", "OrderedDict"), [(0, Global("builtins", "set"))])
    archive = hostile_archive(tmp_path / "hooks.pt", tensor(hooks=hooks))
    assert "backward hooks" in _refused(archive)


# -- 6. small pickles, huge allocations ---------------------------------------------------------

_HUGE = 3 << 30
_RANGE = Global("builtins", "range")
#: name -> a pickle of under 100 bytes that asks for gigabytes.
_BOMBS = {
    "bytearray": Call(Global("builtins", "bytearray"), _HUGE),
    "set-range": Call(Global("builtins", "set"), Call(_RANGE, 10**8)),
    "Size-range": Call(Global("torch", "Size"), Call(_RANGE, 10**9)),
    "deque-range": Call(Global("collections", "deque"), Call(_RANGE, 10**9), 1),
    "frozenset-newobj": New(Global("builtins", "frozenset"), Call(_RANGE, 10**9)),
    "BYTEARRAY8": Raw(pickle.BYTEARRAY8 + _HUGE.to_bytes(8, "little") + pickle.STOP),
}


def test_small_pickles_cannot_allocate_gigabytes(tmp_path: Path) -> None:
    # One victim process (torch imports once) loads each case's own archive under a 2 GiB
    # address-space bound; the unrestricted load of the first shows the bound is real.
    archives = {name: hostile_archive(tmp_path / f"{name}.pt", bomb, externs=("builtins",)) for name, bomb in _BOMBS.items()}
    assert all(archive.stat().st_size < 4096 for archive in archives.values())
    victim = run_victim(
        archives["bytearray"],
        f"""
        for path in {[str(archive) for archive in archives.values()]!r}:
            try:
                PackageImporter(path, restricted=True).load_pickle("data", "x.pkl")
                print("loaded", path)
            except TorchpackError as error:
                print("refused", type(error).__name__, error)
        try:
            PackageImporter(archive).load_pickle("data", "x.pkl")
        except MemoryError:
            print("unrestricted: MemoryError")
        """,
    )
    assert victim.returncode == 0, victim.stderr[-2000:]
    lines = victim.stdout.splitlines()
    assert lines[-1] == "unrestricted: MemoryError", victim.stdout
    for line, (name, archive) in zip(lines, archives.items()):
        assert line.startswith("refused") and str(archive) in line and PICKLE in line, (name, line)


def test_modest_values_of_the_bounded_constructors_still_load(tmp_path: Path) -> None:
    values = {"set": set(range(10_000)), "bytes": bytearray(range(256)) * 400, "deque": collections.deque(range(5000))}
    archive = tmp_path / "modest.pt"
    with PackageExporter(archive) as exporter:
        exporter.save_pickle("data", "x.pkl", values)
    assert PackageImporter(archive, restricted=True).load_pickle("data", "x.pkl") == values


def test_trusted_modules_without_restricted_is_refused(tmp_path: Path) -> None:
    """Trusting modules means nothing when every module runs: say so instead of pretending."""
    with pytest.raises(ValueError, match="restricted=True"):
        PackageImporter(b"", trusted_modules=["mylab.**"])
