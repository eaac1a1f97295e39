"""The action cache as a user meets it (issue 15 §1): the CLI run in a workspace outside the
repository, by different commands and interpreters, with distributions added, seeds changed
back and forth, and ``torchpack clean``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from build_support import cli_env, make_workspace, relocated_venv, write

from torchpack.build import cache as cache_module
from torchpack.build.cache import ActionCache, toolchain_fingerprint, toolchain_identity
from torchpack.build.labels import parse_label
from torchpack.build.schema import parse_build_file

LABEL = "//lab:lab"


def _workspace(tmp_path: Path, seed: int = 2) -> Path:
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / "lab" / "__init__.py", "")
    write(root / "lab" / "model.py", """
        import torch

        def build():
            return torch.nn.Linear(3, 2)
    """)
    _set_seed(root, seed)
    return root


def _set_seed(root: Path, seed: int) -> None:
    write(root / "lab" / "BUILD.toml", f"""
        [lab]
        seed = {seed}
        intern = "lab.**"
        extern = "torch.**"
        [lab.pickle."lab/model.pkl"]
        call = "lab.model:build"
    """)


def _build(root: Path, command: list[str], **env: str) -> dict:
    """Run a build command line as a user would; the --json document."""
    done = subprocess.run([*command, "--json", LABEL], cwd=root, env=cli_env(**env), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    (target,) = document["targets"]
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


TORCHPACK_BUILD = [sys.executable, "-m", "torchpack", "build"]
PYTHON_M_BUILD = [sys.executable, "-m", "torchpack.build"]


def test_torchpack_build_and_python_m_torchpack_build_share_the_cache(tmp_path: Path) -> None:
    root = _workspace(tmp_path)
    script = Path(sys.executable).parent / "torchpack"  # the console script, if installed
    first = _build(root, [str(script), "build"] if script.exists() else TORCHPACK_BUILD)
    assert first["state"] == "built"
    second = _build(root, PYTHON_M_BUILD)
    assert (second["state"], second["sha256"]) == ("cached", first["sha256"])
    assert _build(root, TORCHPACK_BUILD)["state"] == "cached"


def test_venv_at_another_path_hits(tmp_path: Path) -> None:
    root = _workspace(tmp_path)
    first = _build(root, PYTHON_M_BUILD)
    assert first["state"] == "built"
    moved = relocated_venv(tmp_path / "restored-venv")
    probe = subprocess.run([str(moved), "-c", "import sys, torch; print(sys.executable)"], capture_output=True, text=True, env=cli_env())
    assert probe.returncode == 0 and probe.stdout.strip() == str(moved), probe.stderr
    second = _build(root, [str(moved), "-m", "torchpack.build"])
    assert (second["state"], second["sha256"]) == ("cached", first["sha256"])


def test_key_names_no_interpreter_path(monkeypatch: pytest.MonkeyPatch) -> None:
    identity = json.dumps(toolchain_identity())
    for path in {sys.executable, sys.prefix, os.path.realpath(sys.executable)}:
        assert path not in identity
    assert toolchain_identity()["implementation"] == sys.implementation.name
    before = toolchain_fingerprint()
    monkeypatch.setattr(sys, "executable", "/somewhere/else/bin/python3")
    assert toolchain_fingerprint() == before


def test_unrelated_distribution_keeps_the_key_and_a_used_one_changes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _workspace(tmp_path)
    assert _build(root, PYTHON_M_BUILD)["state"] == "built"
    # `pip install fakepkg`, as far as importlib.metadata can tell.
    extra = tmp_path / "extra"
    write(extra / "fakepkg-1.0.dist-info" / "METADATA", "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    write(extra / "fakepkg" / "__init__.py", "")
    assert _build(root, PYTHON_M_BUILD, PYTHONPATH=f"{extra}{os.pathsep}{cli_env()['PYTHONPATH']}")["state"] == "cached"

    # The record names the distributions the archive externs: torch, and nothing unrelated.
    cache = ActionCache(root / "torchpack-out", root, toolchain_fingerprint())
    (record,) = cache.records(parse_label(LABEL))
    assert set(record.distributions) == {"torch"}
    target = parse_build_file(root, "lab")["lab"]
    output = root / "torchpack-out" / "lab" / "lab.pt"
    assert cache.lookup(target, {}, output) is not None
    real_version = cache_module._installed_version
    monkeypatch.setattr(cache_module, "_installed_version", lambda name: "0.0" if name == "torch" else real_version(name))
    assert cache.lookup(target, {}, output) is None  # another torch: rebuild


def test_seed_2_3_2_hits_the_third_time(tmp_path: Path) -> None:
    root = _workspace(tmp_path, seed=2)
    output = root / "torchpack-out" / "lab" / "lab.pt"
    two = _build(root, PYTHON_M_BUILD)
    _set_seed(root, 3)
    three = _build(root, PYTHON_M_BUILD)
    assert three["state"] == "built" and three["sha256"] != two["sha256"]
    _set_seed(root, 2)
    again = _build(root, TORCHPACK_BUILD)
    assert (again["state"], again["sha256"]) == ("cached", two["sha256"])
    assert _sha256(output) == two["sha256"]  # the seed-2 archive is back in place
    _set_seed(root, 3)
    assert _build(root, PYTHON_M_BUILD)["state"] == "cached"


def test_records_per_target_and_stored_bytes_are_bounded(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / "p" / "BUILD.toml", "[a]\n")
    target = parse_build_file(root, "p")["a"]
    cache = ActionCache(root / "out", root, "t", max_records=3, max_bytes=100)
    output = root / "out" / "p" / "a.pt"
    for version in range(5):
        write(output, f"archive {version}" * (1 if version < 4 else 20))  # the last is over 100 bytes
        write(root / "p" / "input.txt", str(version))
        cache.store(target, {}, ["p/input.txt"], [], output, _sha256(output), output.stat().st_size, 0.0)
    assert len(cache.records(target.label)) == 3
    stored = sorted(p.name for p in cache.blobs.iterdir())
    assert len(stored) == 2 and sum((cache.blobs / name).stat().st_size for name in stored) <= 100


def _clean(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchpack", "clean", *args], cwd=root, env=cli_env(), capture_output=True, text=True, timeout=600)


def test_clean_and_expunge(tmp_path: Path) -> None:
    root = _workspace(tmp_path)
    out = root / "torchpack-out"
    assert _build(root, PYTHON_M_BUILD)["state"] == "built"
    write(out / "notes.txt", "mine")  # not torchpack's: clean leaves it
    cleaned = _clean(root)
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.startswith("removed 1 archive and 1 cache record (")
    assert not (out / "lab" / "lab.pt").exists() and not (out / "lab").exists()
    assert not (out / ".cache" / "actions").exists() and not (out / ".cache" / "cas").exists()
    assert (out / "notes.txt").exists()
    assert _build(root, PYTHON_M_BUILD)["state"] == "built"  # nothing cached any more

    (out / "notes.txt").unlink()
    expunged = _clean(root, "--expunge", "--json")
    assert expunged.returncode == 0, expunged.stderr
    document = json.loads(expunged.stdout)
    assert (document["archives"], document["records"], document["expunged"]) == (1, 1, True)
    assert document["stored_bytes"] > 0
    assert not out.exists()


def test_libraries_a_factory_uses_are_keyed_though_the_archive_names_none(tmp_path: Path) -> None:
    """A factory that draws its weights with an installed library makes bytes that follow that
    library's version, though the archive neither interns nor externs it: upgrading it must
    rebuild, and only the targets that use it.  numpy counts too, though torch imported it
    before the factory ran."""
    root = _workspace(tmp_path)
    python = relocated_venv(tmp_path / "venv")
    (site_packages,) = (tmp_path / "venv" / "lib").glob("python*/site-packages")

    def install_weightlib(version: str, scale: int) -> None:
        write(site_packages / f"weightlib-{version}.dist-info" / "METADATA", f"Metadata-Version: 2.1\nName: weightlib\nVersion: {version}\n")
        write(site_packages / "weightlib" / "__init__.py", f"SCALE = {scale}\n")

    install_weightlib("1.0", 2)
    write(root / "lab" / "model.py", """
        import numpy
        import torch

        def build():
            import weightlib
            rows = numpy.arange(6, dtype=numpy.float32).reshape(2, 3) * weightlib.SCALE
            layer = torch.nn.Linear(3, 2)
            layer.weight.data = torch.from_numpy(rows)
            return layer
    """)
    build = [str(python), "-m", "torchpack.build"]
    output = root / "torchpack-out" / "lab" / "lab.pt"
    assert _build(root, build)["state"] == "built"
    first = _sha256(output)
    cache = ActionCache(root / "torchpack-out", root, toolchain_fingerprint())
    (record,) = cache.records(parse_label(LABEL))
    assert set(record.distributions) == {"torch", "numpy", "weightlib"}
    assert not [path for path in record.inputs if Path(path).is_absolute()]  # the venv's path is no input
    assert _build(root, build)["state"] == "cached"

    # `pip install weightlib==2.0`: another version, other weights.
    (site_packages / "weightlib-1.0.dist-info" / "METADATA").unlink()
    (site_packages / "weightlib-1.0.dist-info").rmdir()
    install_weightlib("2.0", 3)
    assert _build(root, build)["state"] == "built"
    assert _sha256(output) != first
