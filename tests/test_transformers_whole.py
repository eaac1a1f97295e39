"""Issue 16 section 5: transformers packaged whole, loaded in a venv without transformers.

A tiny GPT-2 with seeded random weights (no download) is exported with transformers,
huggingface_hub and their pure-Python helpers interned and the compiled libraries extern
(the patterns are in tests/transformers_case.py), then loaded by a second interpreter whose
venv holds only torch with its requirements, torchpack's dependencies and the compiled
externs. Its logits must equal the original's bit for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import torchpack
import transformers_case

REPOSITORY = Path(torchpack.__file__).resolve().parents[1]
CASE_SCRIPT = Path(transformers_case.__file__).resolve()


def run_case(python: Path | str, action: str, archive: Path, reference: Path, cache: Path | None = None) -> dict:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY),  # torchpack itself, never the tests' site-packages
        "HF_HUB_OFFLINE": "1",
    }
    if cache is not None:
        environment["TORCHPACK_CACHE_DIR"] = str(cache)
    completed = subprocess.run(
        [str(python), str(CASE_SCRIPT), action, str(archive), str(reference)],
        capture_output=True, text=True, env=environment, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transformers")
    archive, reference = folder / "gpt2.pt", folder / "logits.pt"
    result = run_case(sys.executable, "export", archive, reference)
    return archive, reference, result


@pytest.fixture(scope="module")
def load_python(tmp_path_factory):
    return transformers_case.make_load_venv(tmp_path_factory.mktemp("load-venv") / "venv")


def test_the_load_venv_has_no_transformers(load_python):
    probe = "import importlib.util as u; print([u.find_spec(n) is None for n in ('transformers', 'huggingface_hub', 'torch', 'blake3')])"
    out = subprocess.run([str(load_python), "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[True, True, False, False]"


def test_gpt2_packaged_whole_runs_where_transformers_is_not_installed(exported, load_python, tmp_path):
    archive, reference, export_result = exported
    assert export_result["interned"] > 2000  # transformers and huggingface_hub whole
    cache = tmp_path / "cache"
    result = run_case(load_python, "load", archive, reference, cache)
    assert result["installed"] == {"transformers": False, "huggingface_hub": False}
    assert result["equal"] is True
    assert result["model_module"].startswith("<torch_package_") and result["model_module"].endswith(
        ".transformers.models.gpt2.modeling_gpt2"
    )
    assert result["model_file"].startswith(str(cache / "materialized"))
