"""PyTorch's three backward-compatibility packages (SPEC §2; seeds/generate_bc_packages.md):
an nn.Module, a TorchScript module and an fx GraphModule, each saved with ``intern("**")``.

They are written at test time exactly as PyTorch's generate_bc_packages.py does - with the real
torch.package - and read with torchpack, from the files and from unzipped folders; and the same
three written by torchpack are read by torch.package. Loaded modules must compute what the
originals compute.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
import torch.package as torch_package
from torch.fx import symbolic_trace

import torchpack
from torchpack.errors import TorchpackError

import package_a.test_nn_module as bc_source  # `TestNnModule` itself would look like a test class to pytest

KINDS = ("nn_module", "torchscript_module", "fx_module")


def make_originals() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "nn_module": bc_source.TestNnModule(),
        "torchscript_module": torch.jit.script(bc_source.TestNnModule()),
        "fx_module": symbolic_trace(bc_source.TestNnModule()),
    }


def write_bc_packages(package_exporter: type, folder: Path, originals: dict[str, torch.nn.Module]) -> dict[str, Path]:
    """generate_bc_packages.py, with the exporter class and the output folder as parameters."""
    paths = {kind: folder / f"test_{kind}.pt" for kind in KINDS}
    with package_exporter(str(paths["nn_module"])) as pe1:
        pe1.intern("**")
        pe1.save_pickle("nn_module", "nn_module.pkl", originals["nn_module"])
    with package_exporter(str(paths["torchscript_module"])) as pe2:
        pe2.intern("**")
        pe2.save_pickle("torchscript_module", "torchscript_module.pkl", originals["torchscript_module"])
    with package_exporter(str(paths["fx_module"])) as pe3:
        pe3.intern("**")
        pe3.save_pickle("fx_module", "fx_module.pkl", originals["fx_module"])
    return paths


@pytest.fixture(scope="module")
def originals() -> dict[str, torch.nn.Module]:
    return {kind: module.eval() for kind, module in make_originals().items()}


@pytest.fixture(scope="module")
def torch_written(tmp_path_factory, originals) -> dict[str, Path]:
    with pytest.MonkeyPatch.context() as mp:
        # As the generator script does: torch.package gates TorchScript behind this flag.
        mp.setattr(torch_package.package_exporter, "_gate_torchscript_serialization", False)
        return write_bc_packages(torch_package.PackageExporter, tmp_path_factory.mktemp("torch_bc"), originals)


@pytest.fixture(scope="module")
def torchpack_written(tmp_path_factory, originals) -> dict[str, Path]:
    return write_bc_packages(torchpack.PackageExporter, tmp_path_factory.mktemp("torchpack_bc"), originals)


def assert_same_outputs(loaded: torch.nn.Module, original: torch.nn.Module) -> None:
    loaded.eval()
    torch.manual_seed(1)
    for batch in (1, 3):
        x = torch.randn(batch, 6, 1, 1)
        with torch.no_grad():
            expected = original(x)
            actual = loaded(x)
        assert actual.shape == expected.shape == (batch, 3, 64, 64)
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def unzip(archive: Path, into: Path) -> Path:
    """Extract ``archive``; return its single top-level folder, the unzipped package."""
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)
        (top,) = {name.split("/", 1)[0] for name in zf.namelist()}
    return into / top


@pytest.mark.parametrize("kind", KINDS)
def test_torchpack_loads_the_packages_torch_package_wrote(kind, torch_written, originals):
    importer = torchpack.PackageImporter(str(torch_written[kind]))
    loaded = importer.load_pickle(kind, f"{kind}.pkl")
    assert_same_outputs(loaded, originals[kind])


def test_loaded_kinds_are_what_was_saved(torch_written):
    def load(kind: str) -> torch.nn.Module:
        return torchpack.PackageImporter(str(torch_written[kind])).load_pickle(kind, f"{kind}.pkl")

    nn_module, script_module, fx_module = (load(kind) for kind in KINDS)
    assert type(nn_module).__name__ == "TestNnModule" and torchpack.is_from_package(nn_module)
    assert isinstance(script_module, torch.jit.RecursiveScriptModule)
    assert isinstance(fx_module, torch.fx.GraphModule)
    assert script_module.original_name == "TestNnModule"


@pytest.mark.parametrize("kind", ["nn_module", "fx_module"])
def test_torchpack_loads_unzipped_packages(kind, torch_written, originals, tmp_path):
    folder = unzip(torch_written[kind], tmp_path)
    loaded = torchpack.PackageImporter(str(folder)).load_pickle(kind, f"{kind}.pkl")
    assert_same_outputs(loaded, originals[kind])


def test_torchscript_from_an_unzipped_package_is_a_clear_error(torch_written, tmp_path):
    folder = unzip(torch_written["torchscript_module"], tmp_path)
    importer = torchpack.PackageImporter(str(folder))
    with pytest.raises(TorchpackError, match="unzipped archive folder.*archive file"):
        importer.load_pickle("torchscript_module", "torchscript_module.pkl")


@pytest.mark.parametrize("kind", KINDS)
def test_torch_package_loads_the_packages_torchpack_wrote(kind, torchpack_written, originals):
    importer = torch_package.PackageImporter(str(torchpack_written[kind]))
    loaded = importer.load_pickle(kind, f"{kind}.pkl")
    assert_same_outputs(loaded, originals[kind])


@pytest.mark.parametrize("kind", KINDS)
def test_torchpack_reads_back_what_it_wrote(kind, torchpack_written, originals):
    importer = torchpack.PackageImporter(str(torchpack_written[kind]), integrity="eager")
    assert_same_outputs(importer.load_pickle(kind, f"{kind}.pkl"), originals[kind])
    from_bytes = torchpack.PackageImporter(torchpack_written[kind].read_bytes())
    assert_same_outputs(from_bytes.load_pickle(kind, f"{kind}.pkl"), originals[kind])
