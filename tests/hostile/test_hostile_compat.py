"""``torchpack verify --compat torch.package`` on packaged sources built to break a parser or a
recursive walk: each is one finding naming the module (or none, when Python parses it), never a
traceback, within an address-space limit, and no packaged code runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import torchpack
from helpers_core import limit_address_space

REPO = Path(__file__).resolve().parents[2]
#: Address space for each command beyond what torch and the interpreter hold before any input.
MEMORY_HEADROOM = 5 << 29  # 2.5 GiB

HOSTILE_SOURCES = {
    "parentheses": "(" * 100_000,
    "unary_minus": "x = " + "-" * 200_000 + "1",
    "attribute_chain": "x = " + "a." * 100_000 + "b",
    "nested_lists": "x = " + "[" * 5_000 + "]" * 5_000,
    "call_chain": "x = importlib.import_module('mylab')" + "()" * 100_000,
}


@pytest.mark.parametrize("shape", sorted(HOSTILE_SOURCES))
def test_hostile_source_is_a_clean_finding(tmp_path: Path, shape: str) -> None:
    marker = tmp_path / "ran"
    archive = tmp_path / f"{shape}.pt"
    with torchpack.PackageExporter(str(archive)) as exporter:
        exporter.save_source_string("mylab", "", is_package=True, dependencies=False)
        exporter.save_source_string("mylab.deep", HOSTILE_SOURCES[shape], dependencies=False)
        # Would prove that the check ran packaged code.
        exporter.save_source_string("mylab.marker", f"open({str(marker)!r}, 'w').close()\n", dependencies=False)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "torchpack", "verify", "--compat", "torch.package", str(archive)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, preexec_fn=limit_address_space(MEMORY_HEADROOM),
    )
    assert "Traceback" not in result.stderr and result.stderr == "", result.stderr
    assert not marker.exists()
    compat = result.stdout.split("torch.package compat:")[1]
    if result.returncode == 1:
        assert "mylab.deep" in compat and "mylab.marker" not in compat, result.stdout
    else:
        assert result.returncode == 0 and "loads the same" in compat, result.stdout
