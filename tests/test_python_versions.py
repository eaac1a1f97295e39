"""An archive written under one supported Python loads under the others (Python 3.10, 3.11, 3.13).

The same package (interned code, a source string, a text resource, a pickled conv net with a
tied weight, pickled tensors of three dtypes) is written by torchpack under each Python, in the
venvs `./dev test` makes (.venv for its own Python, .venv-py3.10 and .venv-py3.13 beside it),
by tests/python_versions_worker.py. The three archives hold the same records byte for byte
except the ones that name the writing Python; each loads under every Python, with torchpack
and with torch.package, to equal tensors, outputs and code results.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from helpers_core import records

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "python_versions_worker.py"
#: The oldest supported Python, `./dev test`'s main one, the newest.
VERSIONS = ("3.10", "3.11", "3.13")

#: The records that depend on the writing Python: its version, the serialization id (a digest
#: of every other record's digest, that one's included) and the integrity record (the digests
#: of those two, and the provenance's "python").
PYTHON_DEPENDENT = {".data/python_version", ".data/serialization_id", ".data/torchpack/integrity.json"}


def _version_of(python: Path) -> str | None:
    result = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, timeout=60,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _interpreter(version: str) -> str:
    """The Python ``version`` of the venvs `./dev test` makes (this one, when it is that version)."""
    if "%d.%d" % sys.version_info[:2] == version:
        return sys.executable
    for venv in (REPO / f".venv-py{version}", REPO / ".venv"):
        python = venv / "bin" / "python"
        if python.exists() and _version_of(python) == version:
            return str(python)
    pytest.fail(
        f"no venv with Python {version}: {REPO / f'.venv-py{version}'} is missing; run ./dev test, "
        "which makes .venv-py3.10 and .venv-py3.13 (see the README, Tests)",
        pytrace=False,
    )


def _worker(version: str, *args: str) -> dict:
    result = subprocess.run(
        [_interpreter(version), str(WORKER), *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"Python {version}: {result.stderr[-4000:]}"
    return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    """The package, written by torchpack under each Python: version -> archive."""
    folder = tmp_path_factory.mktemp("python_versions")
    written = {}
    for version in VERSIONS:
        written[version] = folder / f"written-by-{version}.pt"
        assert _worker(version, "write", str(written[version]))["python"].startswith(version + ".")
    return written


def _without_python(integrity: bytes) -> dict:
    """The integrity record less what names the writing Python; the torch version as released.

    torch 2.13.0 for Python 3.11 here is the CPU build, "2.13.0+cpu"; for the others the index
    has the CUDA build, "2.13.0+cu130" (its distribution says "2.13.0"): the local label names
    the build, not a different torch.
    """
    document = json.loads(integrity)
    for name in PYTHON_DEPENDENT - {".data/torchpack/integrity.json"}:
        del document["records"][name]
    provenance = document["provenance"]
    del provenance["python"]
    provenance["torch"] = Version(provenance["torch"]).public
    distributions = provenance["extern_distributions"]
    distributions["torch"] = Version(distributions["torch"]).public
    return document


def test_archives_differ_only_in_the_records_that_name_the_writing_python(archives):
    contents = {version: records(path.read_bytes()) for version, path in archives.items()}
    first, *others = VERSIONS
    for version in others:
        assert contents[version].keys() == contents[first].keys()
        differing = {name for name, data in contents[version].items() if data != contents[first][name]}
        assert differing == PYTHON_DEPENDENT, f"{first} and {version} differ in {sorted(differing)}"
        assert _without_python(contents[version][".data/torchpack/integrity.json"]) == _without_python(
            contents[first][".data/torchpack/integrity.json"]
        )
    for version in VERSIONS:
        assert contents[version][".data/python_version"].decode().startswith(version + ".")
        provenance = json.loads(contents[version][".data/torchpack/integrity.json"])["provenance"]
        assert provenance["python"] == contents[version][".data/python_version"].decode()


def test_each_archive_loads_under_every_python_with_both_importers(archives):
    loads = {version: _worker(version, "load", *map(str, archives.values())) for version in VERSIONS}
    reference = loads[VERSIONS[0]]["loaded"][str(archives[VERSIONS[0]])]["torchpack"]
    assert reference["tied"] and reference["described"] == "XNet:xnet" and reference["text"].startswith("weights")
    for loader, result in loads.items():
        for writer, archive in archives.items():
            for importer, contents in result["loaded"][str(archive)].items():
                assert contents == reference, f"written under {writer}, loaded under {loader} by {importer}"
