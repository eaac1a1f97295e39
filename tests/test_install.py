"""torchpack as a user installs it: the wheel, a workspace of one's own, the CI recipe, ./dev.

Everything runs in folders outside the repository, with torchpack installed from a wheel of
this checkout into a fresh venv (tests/installed_torchpack.py), never from the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from installed_torchpack import MYLAB, REPO, installed_torchpack, write_tree


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    return installed_torchpack(tmp_path_factory.getbasetemp())


def test_building_the_wheel_leaves_the_checkout_as_it_was(installed):
    # setuptools left build/ and torchpack.egg-info/ here; the hatchling backend writes nothing.
    assert installed.tree_changes == []
    assert not (REPO / "build").exists() and not list(REPO.glob("*.egg-info"))


def test_the_wheel_holds_the_torchpack_package_only(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    assert {name.partition("/")[0] for name in names} == {"torchpack", "torchpack-0.1.0.dist-info"}
    assert "torchpack/cli/diff.py" in names and not any("__pycache__" in name for name in names)
    # An SPDX expression, not the deprecated license table.
    assert "License-Expression: BSD-3-Clause" in metadata.splitlines()


def _ci_steps() -> tuple[dict[str, str], list[str], list[str]]:
    """The workflow's runnable steps by id, and the paths its cache and upload steps name."""
    workflow = yaml.safe_load((REPO / "examples" / "ci" / "github-actions.yml").read_text())
    [job] = workflow["jobs"].values()
    runnable = {step["id"]: step["run"] for step in job["steps"] if "id" in step}
    cached = [step["with"]["path"] for step in job["steps"] if step.get("uses", "").startswith("actions/cache@")]
    uploaded = [step["with"]["path"] for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")]
    return runnable, cached, uploaded


@pytest.fixture(scope="module")
def ci_workspace(installed, tmp_path_factory):
    """`mylab` after the workflow's build step (--check) ran in it."""
    workspace = write_tree(tmp_path_factory.mktemp("ci") / "mylab-repo", MYLAB)
    steps, _, _ = _ci_steps()
    result = installed.run(workspace, "bash", "-euo", "pipefail", "-c", steps["build"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "//mylab:cnn" in result.stdout and "checked" in result.stdout
    return workspace


def test_the_ci_recipe_caches_the_action_cache_folder_and_verifies(installed, ci_workspace):
    steps, cached, uploaded = _ci_steps()
    assert list(steps) == ["build", "verify"]
    result = installed.run(ci_workspace, "bash", "-euo", "pipefail", "-c", steps["verify"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "torchpack-out/mylab/cnn.pt: OK" in result.stdout
    # The folder the workflow caches is the one the build keeps its action cache in, and the
    # upload leaves it out.
    assert cached == ["torchpack-out/.cache"] and (ci_workspace / cached[0] / "actions").is_dir()
    assert uploaded == ["torchpack-out/\n!torchpack-out/.cache/\n"]


def test_a_damaged_archive_fails_the_ci_verify_step(installed, ci_workspace, tmp_path):
    workspace = tmp_path / "copy"
    shutil.copytree(ci_workspace, workspace)
    archive = workspace / "torchpack-out" / "mylab" / "cnn.pt"
    data = bytearray(archive.read_bytes())
    data[data.index(b"class Net")] ^= 0x20  # one byte of the interned source
    archive.write_bytes(bytes(data))
    result = installed.run(workspace, "bash", "-euo", "pipefail", "-c", _ci_steps()[0]["verify"])
    assert result.returncode != 0 and "torchpack-out/mylab/cnn.pt: FAILED" in result.stdout


def test_the_installed_package_and_its_console_script_serve_the_workspace(installed, ci_workspace):
    where = installed.run(ci_workspace, "python", "-c", "import torchpack; print(torchpack.__file__)")
    assert where.stdout.strip().startswith(str(installed.venv)), where.stdout + where.stderr
    # From a subfolder too: the empty [tool.torchpack] table marks the workspace root.
    built = installed.run(ci_workspace / "mylab", str(installed.venv / "bin" / "torchpack"), "build", "//...")
    assert built.returncode == 0, built.stderr
    inspected = installed.run(ci_workspace, "torchpack", "inspect", "torchpack-out/mylab/cnn.pt")
    assert inspected.returncode == 0, inspected.stderr
    assert "      head.bias  float32 [3]  (.data/3.storage)" in inspected.stdout


def _dev_checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of ./dev whose .venv exists (this interpreter), and an empty folder of tools to
    make its whole PATH."""
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    shutil.copy2(REPO / "dev", checkout / "dev")
    (checkout / ".venv" / "bin" / "python").symlink_to(sys.executable)
    tools = tmp_path / "bin"
    tools.mkdir()
    return checkout, tools


def test_dev_test_without_root_prints_the_install_command_and_stops(tmp_path):
    # A copy of ./dev whose .venv exists, on a PATH without bazel, dot or nginx, as a user
    # that is not root: it must name the exact command and not run the tests.
    checkout, tools = _dev_checkout(tmp_path)
    (tools / "id").write_text("#!/bin/sh\necho 1000\n")
    (tools / "id").chmod(0o755)
    (tools / "dirname").symlink_to(shutil.which("dirname"))
    result = subprocess.run(
        ["/bin/bash", str(checkout / "dev"), "test", "--version"],
        env={"PATH": str(tools), "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "sudo apt-get update && sudo apt-get install -y bazel-bootstrap nginx graphviz" in result.stderr
    assert result.stdout == ""  # pytest --version never ran


def test_dev_test_without_the_other_pythons_names_them_and_how_to_provide_them(tmp_path):
    # A copy of ./dev whose .venv exists and whose test tools are there, with no other Python
    # on PATH or under ~/.pyenv: it must say which Pythons are missing, how to name one, and
    # not make a venv or run the tests. One of them is named, wrongly.
    checkout, tools = _dev_checkout(tmp_path)
    for tool in ("bazel", "dot", "nginx"):
        (tools / tool).write_text("#!/bin/sh\nexit 0\n")
        (tools / tool).chmod(0o755)
    for tool in ("dirname", "sort"):
        (tools / tool).symlink_to(shutil.which(tool))
    this = "%d.%d" % sys.version_info[:2]
    named, *missing = [version for version in ("3.10", "3.11", "3.13") if version != this]
    named_variable = "TORCHPACK_PYTHON" + named.replace(".", "_")
    result = subprocess.run(
        ["/bin/bash", str(checkout / "dev"), "test", "--version"],
        env={"PATH": str(tools), "HOME": str(tmp_path), named_variable: "/bin/false"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"./dev test: {named_variable}=/bin/false is not a working Python {named}" in result.stderr
    for version in missing:
        variable = "TORCHPACK_PYTHON" + version.replace(".", "_")
        assert f"./dev test: no Python {version} found" in result.stderr
        assert f"name one with {variable}=/path/to/python{version}" in result.stderr
    assert f'TORCHPACK_TEST_PYTHONS="{this}" ./dev test' in result.stderr
    assert result.stdout == "" and sorted(path.name for path in checkout.iterdir()) == [".venv", "dev"]
