"""`torchpack plan`: a working intern/extern/mock set with reasons, for an object or a target.

On tests/corpus/plan_pkgs the plan is checked entry by entry, then exported with and loaded
from a fresh importer. On the transformers GPT-2 of tests/transformers_case.py the plan must
be exactly the set tests/test_transformers_whole.py exports and loads where transformers is
not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

import torchpack
import transformers_case
from torchpack import PackageExporter, PackageImporter
from torchpack.cli import main

REPOSITORY = Path(torchpack.__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "corpus"


def _plan(*arguments: str, cwd: Path = CORPUS, timeout: int = 600) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), str(cwd)]), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torchpack", "plan", *arguments],
        capture_output=True, text=True, cwd=cwd, env=environment, timeout=timeout,
    )


def test_plan_of_an_object_gives_each_entry_its_reason():
    completed = _plan("plan_pkgs.model:build", "--call", "--format", "json")
    assert completed.returncode == 0, completed.stderr
    plan = json.loads(completed.stdout)
    entries = {entry["pattern"]: (entry["action"], entry["reason"]) for entry in plan["entries"]}
    assert set(entries) == {
        "numpy.**", "typing_extensions.**", "packaging.**", "plan_pkgs.**", "torchpack_absent_plan_required.**",
    }
    assert entries["numpy.**"][0] == "extern" and entries["numpy.**"][1].startswith("compiled extension: numpy ")
    assert entries["typing_extensions.**"][0] == "extern" and "torch requires" in entries["typing_extensions.**"][1]
    assert entries["packaging.**"][0] == "intern" and entries["packaging.**"][1].startswith("installed pure Python: packaging ")
    assert entries["plan_pkgs.**"][0] == "intern"
    assert entries["torchpack_absent_plan_required.**"] == (
        "mock", "not installed; imported unconditionally by plan_pkgs.extras",
    )
    assert plan["left_out"] == ["torchpack_absent_plan_optional"]
    assert plan["distributions"] == ["packaging"]


def test_plan_in_python_form_exports_and_loads(tmp_path):
    completed = _plan("plan_pkgs.model:build", "--call", "--format", "python")
    assert completed.returncode == 0, completed.stderr
    code = completed.stdout
    assert code.splitlines()[-1] == "# 1 optional modules are not installed and were left out; -v lists them"
    sys.path.insert(0, str(CORPUS))
    try:
        from plan_pkgs.model import build

        model = build()
        archive = tmp_path / "plan.pt"
        with PackageExporter(str(archive)) as exporter:
            exec(code, {"exporter": exporter, "torchpack": torchpack})
            exporter.save_pickle("model", "model.pkl", model)
    finally:
        sys.path.remove(str(CORPUS))
    loaded = PackageImporter(str(archive)).load_pickle("model", "model.pkl")
    assert type(loaded).__module__.endswith(".plan_pkgs.model") and type(loaded).__module__.startswith("<torch_package_")
    x = torch.ones(3, 4)
    assert torch.equal(loaded(x), model(x))


def test_plan_of_a_build_target_prints_a_toml_snippet(tmp_path):
    workspace = tmp_path / "ws"
    # The build runs hermetically, with the workspace's own code: the package lives there.
    shutil.copytree(CORPUS / "plan_pkgs", workspace / "plan_pkgs")
    (workspace / "models").mkdir(parents=True)
    (workspace / "pyproject.toml").write_text("[tool.torchpack]\n")
    (workspace / "models" / "BUILD.toml").write_text(
        '[net]\nintern = "nothing.**"\n[net.pickle."net/model.pkl"]\ncall = "plan_pkgs.simple:build"\n'
    )
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    completed = subprocess.run(
        [sys.executable, "-m", "torchpack", "plan", "//models:net"],
        capture_output=True, text=True, cwd=workspace, env=environment, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("# torchpack plan for //models:net: ")
    assert "extern = [" in lines and "intern = [" in lines and "mock = [" not in lines
    assert any(line.startswith('    "plan_pkgs.**",') and "from no distribution" in line for line in lines)
    # The snippet is TOML: pasted into the target, it parses and builds.
    snippet = "\n".join(line for line in lines if not line.startswith("#"))
    (workspace / "models" / "BUILD.toml").write_text(
        f'[net]\n{snippet}\n[net.pickle."net/model.pkl"]\ncall = "plan_pkgs.simple:build"\n'
    )
    built = subprocess.run(
        [sys.executable, "-m", "torchpack.build", "//models:net"],
        capture_output=True, text=True, cwd=workspace, env=environment, timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr


def test_plan_errors_are_one_line(capsys):
    assert main(["plan", "no_such_module_anywhere:thing"]) == 2
    assert "cannot import 'no_such_module_anywhere'" in capsys.readouterr().err
    assert main(["plan", "not-a-subject"]) == 2
    assert "neither a label" in capsys.readouterr().err
    assert main(["plan", "json:loads", "--call"]) == 2
    assert "json:loads() raised TypeError" in capsys.readouterr().err


def test_plan_of_transformers_gpt2_is_the_set_that_loads_without_transformers():
    tests = Path(transformers_case.__file__).resolve().parent
    completed = _plan("transformers_case:tiny_gpt2", "--call", "--format", "json", cwd=tests, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    plan = json.loads(completed.stdout)
    by_action = {action: sorted(e["pattern"] for e in plan["entries"] if e["action"] == action) for action in ("intern", "extern", "mock")}
    # tests/test_transformers_whole.py exports exactly this set and loads it in a venv
    # without transformers: the plan is a working one.
    assert by_action == {
        "intern": sorted(transformers_case.INTERN),
        "extern": sorted(transformers_case.EXTERN),
        "mock": sorted(transformers_case.MOCK),
    }
    assert plan["distributions"] == sorted(transformers_case.DISTRIBUTIONS)
    assert len(plan["left_out"]) > 20  # accelerate, deepspeed, wandb, ...: imported only when available
