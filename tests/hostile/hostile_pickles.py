"""Hand-made pickles and the archives that carry them, for the hostile-archive tests.

An attacker writes pickle bytes directly, so these helpers can name any global (whether or
not it exists), call anything with anything, and forge persistent ids. Each archive is a real
torchpack export (one float32 storage of 12 elements, `.data/0.storage`, 48 bytes) whose
pickle - and, where asked, other records - are then replaced, with the integrity record
refreshed so that only the meaning of the edit is wrong.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import torch

from archive_surgery import rebuild
from torchpack import PackageExporter

PICKLE = "data/x.pkl"
STORAGE = ".data/0.storage"


class Global:
    """A global written as ``GLOBAL module name``, whatever it resolves to (if anything)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Call:
        return Call(self, *args)


class Call:
    """``REDUCE``: ``function(*args)`` on loading."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args


class New:
    """``NEWOBJ``: ``cls.__new__(cls, *args)`` on loading."""

    def __init__(self, cls: Any, *args: Any) -> None:
        self.cls, self.args = cls, args


class Build:
    """``BUILD``: ``obj`` then its state set to ``state``."""

    def __init__(self, obj: Any, state: Any) -> None:
        self.obj, self.state = obj, state


class PersistentId:
    """``BINPERSID`` with ``value`` as the id."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Raw:
    """Opcode bytes written as they are."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def storage(key: Any = "0", storage_class: Any = None, location: Any = "cpu", count: Any = 12) -> PersistentId:
    """The persistent id torch.package gives a float32 storage."""
    return PersistentId(("storage", storage_class or Global("torch", "FloatStorage"), key, location, count))


def tensor(offset: Any = 0, size: Any = (12,), stride: Any = (1,), *, on: Any = None, hooks: Any = None) -> Call:
    """``_rebuild_tensor_v2`` over ``.data/0.storage`` (or ``on``) with any geometry."""
    from collections import OrderedDict

    rebuild = Global("torch._utils", "_rebuild_tensor_v2")
    return rebuild(on or storage(), offset, size, stride, False, hooks if hooks is not None else OrderedDict())


class _Crafter(pickle._Pickler):  # type: ignore[name-defined]
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=3)
        self.dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]
        self.dispatch[Global] = _Crafter.save_raw_global
        self.dispatch[Call] = _Crafter.save_call
        self.dispatch[New] = _Crafter.save_new
        self.dispatch[Build] = _Crafter.save_build
        self.dispatch[Raw] = lambda self, obj: self.write(obj.data)

    def persistent_id(self, obj: Any) -> Any:
        return obj.value if isinstance(obj, PersistentId) else None

    def save_raw_global(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    def save_call(self, obj: Call) -> None:
        self.save(obj.function)
        self.save(obj.args)
        self.write(pickle.REDUCE)

    def save_new(self, obj: New) -> None:
        self.save(obj.cls)
        self.save(obj.args)
        self.write(pickle.NEWOBJ)

    def save_build(self, obj: Build) -> None:
        self.save(obj.obj)
        self.save(obj.state)
        self.write(pickle.BUILD)


def craft(obj: Any) -> bytes:
    """Pickle bytes (protocol 3) for ``obj``, which may hold the markers above anywhere."""
    out = io.BytesIO()
    _Crafter(out).dump(obj)
    return out.getvalue()


def base_archive() -> bytes:
    """A genuine torchpack export: one 12-float tensor in data/x.pkl."""
    out = io.BytesIO()
    with PackageExporter(out) as exporter:
        exporter.save_pickle("data", "x.pkl", torch.arange(12, dtype=torch.float32))
    return out.getvalue()


def hostile_archive(
    path: Path,
    payload: Any,
    *,
    add: dict[str, bytes] | None = None,
    replace: dict[str, bytes] | None = None,
    externs: tuple[str, ...] = (),
) -> Path:
    """``path``: a real export with data/x.pkl replaced by ``payload`` (bytes, or crafted from an
    object), records added or replaced, and ``externs`` added to the extern modules."""
    data = base_archive()
    edits = dict(replace or {})
    edits[PICKLE] = payload if isinstance(payload, bytes) else craft(payload)
    if externs:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            (name,) = [n for n in archive.namelist() if n.endswith(".data/extern_modules")]
            listed = archive.read(name).decode().split()
        edits[".data/extern_modules"] = "".join(f"{m}\n" for m in [*listed, *externs]).encode()
    path.write_bytes(rebuild(data, replace=edits, add=add))
    return path


def run_victim(archive: Path, code: str, *, memory_limit: int = 2 << 30) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (with ``archive`` bound) in a fresh process whose address space may grow by at
    most ``memory_limit`` bytes once torch is imported: an allocation the load should have
    refused fails there with MemoryError, never on this machine."""
    script = textwrap.dedent(
        f"""
        import resource, sys
        import torch
        from torchpack import PackageImporter, TorchpackError
        with open("/proc/self/status") as status:
            vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + {memory_limit}, resource.RLIM_INFINITY))
        archive = {str(archive)!r}
        """
    ) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
