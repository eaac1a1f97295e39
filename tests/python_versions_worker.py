"""Writes and loads the package of tests/test_python_versions.py, under whichever Python runs it.

    python python_versions_worker.py write ARCHIVE     export the package with torchpack
    python python_versions_worker.py load ARCHIVE...   load each with torchpack and with
                                                       torch.package; print what they hold (JSON)

A script, not a test module: the test runs it under each tested Python's venv.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "corpus"))

import torch  # noqa: E402

PACKAGE = "model"
TEXT = "weights from the same seed under every Python\n"


def write(archive: str) -> None:
    import torchpack
    from xcompat_pkgs.net import XNet
    from xcompat_pkgs.record import Record

    torch.manual_seed(0)
    net = XNet().eval()
    record = Record("stats", {"ints": torch.arange(12, dtype=torch.int64).view(3, 4), "half": torch.randn(5).half()})
    with torchpack.PackageExporter(archive) as exporter:
        exporter.intern("xcompat_pkgs.**")
        exporter.extern("torch.**")
        exporter.save_source_string("helpers.describe", "def describe(net):\n    return type(net).__name__ + ':' + net.label\n")
        exporter.save_text(PACKAGE, "notes.txt", TEXT)
        exporter.save_pickle(PACKAGE, "net.pkl", net)
        exporter.save_pickle(PACKAGE, "record.pkl", record)
    print(json.dumps({"python": platform.python_version()}))


def _digest(tensor: torch.Tensor) -> str:
    raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
    return hashlib.sha256(bytes(raw.tolist())).hexdigest()


def _contents(importer) -> dict[str, object]:
    """What a loaded package holds, in a form equal across processes: tensor bytes by digest."""
    net = importer.load_pickle(PACKAGE, "net.pkl")
    record = importer.load_pickle(PACKAGE, "record.pkl")
    torch.manual_seed(1)
    with torch.no_grad():
        output = net(torch.randn(2, 1, 6, 6))
    return {
        "state": {name: [str(t.dtype), list(t.shape), _digest(t)] for name, t in net.state_dict().items()},
        "tied": net.tied.weight is net.head.weight,
        "record": {name: [str(t.dtype), list(t.shape), _digest(t)] for name, t in record.tensors.items()},
        "total": record.total(),
        "described": importer.import_module("helpers.describe").describe(net),
        "text": importer.load_text(PACKAGE, "notes.txt"),
        "output": _digest(output),
    }


def load(archives: list[str]) -> None:
    import torch.package

    import torchpack

    loaded = {
        archive: {
            "torchpack": _contents(torchpack.PackageImporter(archive)),
            "torch.package": _contents(torch.package.PackageImporter(archive)),
        }
        for archive in archives
    }
    print(json.dumps({"python": platform.python_version(), "loaded": loaded}))


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    write(*paths) if command == "write" else load(paths)
