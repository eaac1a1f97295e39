"""End to end: building the examples, loading them with both importers, reproducibility across
folders and environments, ``--check``, the action cache, and the Bazel action contract (SPEC §3)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch.package
from build_support import EXAMPLES, build_in_process, cli_env, make_workspace, run_cli, write

import torchpack


@dataclass(frozen=True)
class Built:
    root: Path
    result: dict

    def target(self, name: str) -> dict:
        (entry,) = [t for t in self.result["targets"] if t["label"] == f"//examples/{name}:{name}"]
        return entry

    def archive(self, name: str) -> Path:
        return self.root / "torchpack-out" / "examples" / name / f"{name}.pt"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Every example, built once by `python -m torchpack.build //examples/... --json`."""
    root = make_workspace(tmp_path_factory.mktemp("first") / "ws")
    process = run_cli(root, "//examples/...", "--json", "--jobs", "2")
    assert process.returncode == 0, process.stderr
    return Built(root, json.loads(process.stdout))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(built: Built, destination: Path) -> Path:
    """The built workspace, outputs and cache included, in another folder."""
    shutil.copytree(built.root, destination, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def test_json_lists_every_example_with_digest_size_and_state(built: Built) -> None:
    assert built.result["ok"] is True
    assert sorted(t["label"] for t in built.result["targets"]) == sorted(f"//examples/{n}:{n}" for n in EXAMPLES)
    for name in EXAMPLES:
        entry = built.target(name)
        archive = built.archive(name)
        assert entry["state"] == "built" and entry["error"] is None
        assert entry["output"] == str(archive)
        assert entry["sha256"] == _sha256(archive) and entry["size"] == archive.stat().st_size
    # Dependencies are built first: the composed target comes after the one it loads from.
    labels = [t["label"] for t in built.result["targets"]]
    assert labels.index("//examples/tinynet:tinynet") < labels.index("//examples/composed:composed")


@pytest.mark.parametrize("importer", [torch.package.PackageImporter, torchpack.PackageImporter], ids=["torch.package", "torchpack"])
@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_load_and_give_expected_outputs(built: Built, name: str, importer: type) -> None:
    check = importlib.import_module(f"examples.{name}.check").check
    check(importer(str(built.archive(name))))


def test_composed_reexports_the_dependency_model(built: Built) -> None:
    base = torchpack.PackageImporter(str(built.archive("tinynet"))).load_pickle("tinynet", "model.pkl")
    composed = torchpack.PackageImporter(str(built.archive("composed")))
    for loaded in (composed.load_pickle("composed", "base.pkl"), composed.load_pickle("composed", "calibrated.pkl").base):
        for name, tensor in base.state_dict().items():
            assert (loaded.state_dict()[name] == tensor).all()


def test_no_op_rebuild_starts_no_export(built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In another folder: the cache records workspace-relative paths, so a copy stays cached.
    root = _copy(built, tmp_path / "moved")
    os.utime(root / "examples" / "tinynet" / "model.py")  # a new mtime alone changes nothing
    result = build_in_process(monkeypatch, root, "//examples/...", "--json")
    assert result.code == 0 and result.exports == []
    states = {t["label"]: (t["state"], t["sha256"]) for t in json.loads(result.out)["targets"]}
    assert states == {t["label"]: ("cached", t["sha256"]) for t in built.result["targets"]}
    text = build_in_process(monkeypatch, root / "examples", "...")
    # Indented lines are notes under a target (graphs: the optional modules left out).
    lines = [line for line in text.out.splitlines() if not line.startswith("  ")]
    assert text.exports == [] and len(lines) == 5 and lines[-1].startswith("4 targets: 4 cached in")
    assert all(line.split()[-2] == "cached" for line in lines[:4])


def test_editing_a_file_rebuilds_exactly_its_readers_and_dependants(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(built, tmp_path / "ws")
    digests = {t["label"]: t["sha256"] for t in built.result["targets"]}
    # A leftover from an export killed with SIGKILL is cleaned up by the next build; the
    # temporary of a live process (another build) is not touched.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    leftover = write(root / "torchpack-out" / "examples" / "tinynet" / f".tinynet.pt.tmp-{dead}-x1y2z3", "partial")
    live = write(root / "torchpack-out" / "examples" / "tinynet" / f".tinynet.pt.tmp-{os.getpid()}-a1b2c3", "partial")

    def rebuild() -> dict[str, dict]:
        result = build_in_process(monkeypatch, root, "//examples/...", "--json", "--jobs", "2")
        assert result.code == 0, result.err
        targets = {t["label"]: t for t in json.loads(result.out)["targets"]}
        assert len(result.exports) == sum(t["state"] == "built" for t in targets.values())
        return targets

    # Interned source of tinynet: tinynet and the target composed from it.
    with open(root / "examples" / "tinynet" / "model.py", "a") as source:
        source.write("\nEXTRA = 1  # changes the archived source\n")
    targets = rebuild()
    assert {label for label, t in targets.items() if t["state"] == "built"} == {
        "//examples/tinynet:tinynet", "//examples/composed:composed"}
    assert targets["//examples/tinynet:tinynet"]["sha256"] != digests["//examples/tinynet:tinynet"]
    assert targets["//examples/graphs:graphs"]["sha256"] == digests["//examples/graphs:graphs"]
    assert not leftover.exists() and live.exists()

    # A data file read through importlib.resources and saved as a resource: textclf only.
    with open(root / "examples" / "textclf" / "tokenizer" / "vocab.txt", "a") as vocab:
        vocab.write("snow\n")
    targets = rebuild()
    assert {label for label, t in targets.items() if t["state"] == "built"} == {"//examples/textclf:textclf"}


def test_same_bytes_in_another_folder_and_environment(built: Built, tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "elsewhere with spaces" / "copy")
    process = run_cli(
        root, "//examples/...", "--json", "--jobs", "2", umask=0o077,
        PYTHONHASHSEED="123", TZ="Asia/Kathmandu", LC_ALL="C", LANG="C", SOME_NOISE="1",
    )
    assert process.returncode == 0, process.stderr
    again = {t["label"]: t["sha256"] for t in json.loads(process.stdout)["targets"]}
    assert again == {t["label"]: t["sha256"] for t in built.result["targets"]}


def test_bazel_action_contract_gives_identical_bytes(built: Built, tmp_path: Path) -> None:
    """`python -m torchpack.build.action` with the DEF.json from --list --json, as the Bazel rule runs it."""
    listed = run_cli(built.root, "--list", "--json", "//examples/composed")
    (entry,) = json.loads(listed.stdout)["targets"]
    definition = write(tmp_path / "DEF.json", json.dumps(entry["definition"], sort_keys=True))
    output = tmp_path / "out" / "composed.pt"
    process = subprocess.run(
        [sys.executable, "-m", "torchpack.build.action", "--definition", str(definition),
         "--workspace", str(built.root), "--output", str(output),
         "--dep", f"//examples/tinynet:tinynet={built.archive('tinynet')}"],
        cwd=tmp_path, env=cli_env(PYTHONHASHSEED="0", TZ="UTC", LC_ALL="C.UTF-8"),
        capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, process.stderr
    assert _sha256(output) == built.target("composed")["sha256"]
    assert os.listdir(output.parent) == ["composed.pt"]


def test_check_passes_for_deterministic_targets(built: Built, tmp_path: Path) -> None:
    root = _copy(built, tmp_path / "ws")
    process = run_cli(root, "--check", "--json", "//examples/tinynet")
    assert process.returncode == 0, process.stderr
    (entry,) = json.loads(process.stdout)["targets"]
    assert entry["state"] == "built" and entry["checked"] is True
    assert entry["sha256"] == built.target("tinynet")["sha256"]
    # In words: the line and the summary say "checked", and lines come in label order.
    process = run_cli(root, "--check", "--jobs", "2", "//examples/tinynet", "//examples/graphs")
    assert process.returncode == 0, process.stderr
    lines = [line for line in process.stdout.splitlines() if line.startswith("//")]
    assert [line.split()[0] for line in lines] == ["//examples/graphs:graphs", "//examples/tinynet:tinynet"]
    assert all(" checked " in f"{line} " for line in lines)
    assert "2 targets: 2 checked in" in process.stdout


def test_check_names_the_record_that_differs(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    # Set order follows PYTHONHASHSEED: fixed at 0 by a normal build, varied by --check.
    write(root / "flaky" / "__init__.py", "def words():\n    return list({f'word{i}' for i in range(32)})\n")
    write(root / "flaky" / "BUILD.toml", """
        [flaky.pickle."flaky/words.pkl"]
        call = "flaky:words"
    """)
    first = run_cli(root, "//flaky")
    assert first.returncode == 0, first.stderr
    digest = _sha256(root / "torchpack-out" / "flaky" / "flaky.pt")

    checked = run_cli(root, "--check", "//flaky")
    assert checked.returncode == 1
    assert "error: flaky/BUILD.toml: target 'flaky': not reproducible: two builds differ in " in checked.stderr
    assert "package/flaky/words.pkl (content)" in checked.stderr
    assert "Traceback" not in checked.stderr
    # No artifact and no cache entry survive the failed check...
    assert sorted(p.name for p in (root / "torchpack-out").rglob("*") if p.is_file()) == []
    # ...and a normal build still gives the bytes of the first one.
    assert run_cli(root, "//flaky").returncode == 0
    assert _sha256(root / "torchpack-out" / "flaky" / "flaky.pt") == digest
