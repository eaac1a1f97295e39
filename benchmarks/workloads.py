"""The benchmark workloads, written once against the API torch.package and torchpack share.

Each workload has a ``build`` step (make the objects to save; never timed), an ``export``
step (from opening the exporter to a closed archive) and a ``load`` step (open the archive
and use what it holds). ``impl`` is the module ``torch.package`` or ``torchpack``; nothing
below depends on which.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    build: Callable[[bool], Any]  # (quick) -> the object to save, or None
    export: Callable[[ModuleType, str, Any], None]  # (impl, archive path, object)
    load: Callable[..., Any]  # (impl, archive path, **PackageImporter keyword arguments)
    #: Targets, as torchpack time / torch.package time: at most these (None: no target).
    export_target: float | None
    load_target: float | None
    #: Whether the workload reads sources, so the on-disk caches matter (cold vs warm).
    uses_sources: bool = False


def _save_object(impl: ModuleType, path: str, obj: Any) -> None:
    with impl.PackageExporter(path) as exporter:
        exporter.save_pickle("bench", "obj.pkl", obj)


def _load_object(impl: ModuleType, path: str, **importer_options: Any) -> Any:
    return impl.PackageImporter(path, **importer_options).load_pickle("bench", "obj.pkl")


# -- a 1 GiB model -------------------------------------------------------------------------


def model_width(quick: bool) -> int:
    return 2048 if quick else 8192  # 4 x 8192^2 float32 weights: 1 GiB (plus 128 KiB of biases)


def _build_big_model(quick: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    width = model_width(quick)
    with torch.no_grad():
        return torch.nn.Sequential(*(torch.nn.Linear(width, width) for _ in range(4)))


def _load_model_and_read(impl: ModuleType, path: str, **importer_options: Any) -> float:
    model = _load_object(impl, path, **importer_options)
    # The first full read of every parameter: with a mapped archive, pages come in here.
    with torch.no_grad():
        return float(sum(parameter.sum() for parameter in model.parameters()))


# -- many small tensors --------------------------------------------------------------------


def _build_many_tensors(quick: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    # clone() gives every tensor its own storage, so each one is a record of its own.
    return [row.clone() for row in torch.randn(2_000 if quick else 20_000, 64)]


def _load_many_tensors(impl: ModuleType, path: str, **importer_options: Any) -> int:
    return len(_load_object(impl, path, **importer_options))


# -- whole pure-Python libraries -----------------------------------------------------------

NETWORKX = (["networkx.**"], ["numpy.**", "scipy.**", "pandas.**"], "networkx")
SYMPY = (["sympy.**", "mpmath.**"], ["numpy.**", "scipy.**", "sys", "io"], "sympy")


def _export_library(spec: tuple[list[str], list[str], str]) -> Callable[[ModuleType, str, Any], None]:
    intern, extern, root = spec

    def export(impl: ModuleType, path: str, _obj: Any) -> None:
        # The configuration the tests use: intern the library, extern the compiled
        # dependencies, mock optional extras.
        with impl.PackageExporter(path) as exporter:
            exporter.intern(intern)
            exporter.extern(extern)
            exporter.mock("**", allow_empty=True)
            exporter.save_module(root)

    return export


def _import_library(root: str) -> Callable[[ModuleType, str], Any]:
    def load(impl: ModuleType, path: str, **importer_options: Any) -> Any:
        return impl.PackageImporter(path, **importer_options).import_module(root)

    return load


# -- a tiny model, in process --------------------------------------------------------------


def build_tiny_mlp(_quick: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def tiny_round_trip(impl: ModuleType, model: torch.nn.Module) -> torch.nn.Module:
    """Export to memory and load back: the warm in-process cost of a small package."""
    buffer = io.BytesIO()
    with impl.PackageExporter(buffer) as exporter:
        exporter.save_pickle("bench", "obj.pkl", model)
    buffer.seek(0)
    return impl.PackageImporter(buffer).load_pickle("bench", "obj.pkl")


WORKLOADS = {
    w.name: w
    for w in [
        Workload("model_1gib", "4 x nn.Linear(8192, 8192), 1 GiB; load includes a sum of every parameter",
                 _build_big_model, _save_object, _load_model_and_read, 1 / 2, 1 / 10),
        Workload("many_tensors", "a list of 20,000 tensors of 64 floats", _build_many_tensors, _save_object,
                 _load_many_tensors, 1 / 5, 1 / 5),
        Workload("networkx", "intern networkx.**; load = import_module('networkx')", lambda quick: None,
                 _export_library(NETWORKX), _import_library("networkx"), 1 / 3, 1 / 2, uses_sources=True),
        Workload("sympy", "intern sympy.** + mpmath.**; load = import_module('sympy')", lambda quick: None,
                 _export_library(SYMPY), _import_library("sympy"), 1 / 5, None, uses_sources=True),
    ]
}


# -- plain tensors, saved by every tool ------------------------------------------------------
#
# The formats users pick instead of a package: torch.save and safetensors save a dict of
# tensors, torchpack and torch.package pickle the same dict. A load is open + sum of every
# tensor for every tool. "raw write" is the floor: the tensors' bytes written to a file, no
# format at all; its load is BLAKE3 of that file on every core (what checking a never-seen
# archive costs on top of mapping it).

PEER_TOOLS = ("torch.package", "torchpack", "torch.save", "safetensors", "raw write")


@dataclass(frozen=True)
class TensorWorkload:
    name: str
    description: str
    build: Callable[[bool], dict[str, torch.Tensor]]  # (quick) -> the tensors to save


def _build_weights_1gib(quick: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    side = 1024 if quick else 4096  # 16 x 4096^2 float32: 1 GiB
    return {f"layer{i}.weight": torch.randn(side, side) for i in range(16)}


def _build_tensors_20k(quick: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    rows = torch.randn(2_000 if quick else 20_000, 256)
    # clone() gives every tensor its own storage, as safetensors requires.
    return {f"t{i}": row.clone() for i, row in enumerate(rows)}


def _sum_all(tensors: Any) -> float:
    with torch.no_grad():
        return float(sum(tensor.sum() for tensor in tensors))


def save_tensors(tool: str, impl: ModuleType | None, path: str, tensors: dict[str, torch.Tensor]) -> None:
    if tool in ("torch.package", "torchpack"):
        _save_object(impl, path, tensors)
    elif tool == "torch.save":
        torch.save(tensors, path)
    elif tool == "safetensors":
        import safetensors.torch

        safetensors.torch.save_file(tensors, path)
    else:
        with open(path, "wb") as handle:
            for tensor in tensors.values():
                handle.write(memoryview(tensor.numpy()).cast("B"))


def load_tensors(tool: str, impl: ModuleType | None, path: str, **importer_options: Any) -> Any:
    if tool in ("torch.package", "torchpack"):
        return _sum_all(_load_object(impl, path, **importer_options).values())
    if tool == "torch.save":
        return _sum_all(torch.load(path, mmap=True, weights_only=True).values())
    if tool == "safetensors":
        import safetensors.torch

        return _sum_all(safetensors.torch.load_file(path).values())
    import blake3

    return blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(path).hexdigest()


TENSOR_WORKLOADS = {
    w.name: w
    for w in [
        TensorWorkload("weights_1gib", "16 tensors of 4096 x 4096 floats, 1 GiB", _build_weights_1gib),
        TensorWorkload("tensors_20k", "20,000 tensors of 256 floats", _build_tensors_20k),
    ]
}
