"""Many threads calling load_pickle on one importer get the right objects.

torch.package shares per-load state across threads and can hand one thread another thread's
tensor; torchpack keeps per-call state per call (and map_location per thread) and loads each
storage once under a lock.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from torchpack import PackageExporter, PackageImporter

PICKLES = 24


def _expected(index: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(index)
    return {"w": torch.randn(64, 8, generator=generator), "index": torch.tensor(index)}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("threads") / "many.pt"
    shared = torch.arange(32.0)
    with PackageExporter(path) as exporter:
        for index in range(PICKLES):
            exporter.save_pickle("data", f"p{index}.pkl", {**_expected(index), "shared": shared[index:]})
    return path


@pytest.mark.parametrize("mmap", [True, False])
def test_concurrent_load_pickle_gets_the_right_objects(archive: Path, mmap: bool) -> None:
    importer = PackageImporter(archive, mmap=mmap)
    barrier = threading.Barrier(8)

    def load(job: int) -> tuple[int, dict[str, torch.Tensor]]:
        index = job % PICKLES
        if job < 8:
            barrier.wait()  # start the first wave together, to maximise interleaving
        location = "cpu" if job % 2 else None
        return index, importer.load_pickle("data", f"p{index}.pkl", map_location=location)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(load, range(PICKLES * 8)))
    for index, loaded in results:
        expected = _expected(index)
        assert int(loaded["index"]) == index
        assert torch.equal(loaded["w"], expected["w"])
        assert torch.equal(loaded["shared"], torch.arange(32.0)[index:])
    # Storages are loaded once per importer, whichever thread got there first: every pickle's
    # view of the shared tensor sits on the same memory.
    pointers = {loaded["shared"].untyped_storage().data_ptr() for _, loaded in results}
    assert len(pointers) == 1


def test_concurrent_imports_of_one_module_run_it_once(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    with PackageExporter(path) as exporter:
        exporter.save_source_string("counter", "import time\nRUNS = []\nRUNS.append(1)\ntime.sleep(0.05)\n")
    importer = PackageImporter(path)
    with ThreadPoolExecutor(max_workers=6) as pool:
        modules = list(pool.map(lambda _: importer.import_module("counter"), range(12)))
    assert all(module is modules[0] for module in modules)
    assert modules[0].RUNS == [1]
