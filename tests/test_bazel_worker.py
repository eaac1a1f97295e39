"""The builder as a Bazel persistent worker (rules/private/persistent_worker.py): the same
archives and the same errors as the one-shot action, and no state carried between requests.

One Bazel server (its own output root and workspace copy, as in tests/test_bazel.py) builds a
small workspace twice per check: with `--strategy=TorchPackage=worker` and with
`--strategy=TorchPackage=sandboxed` (the one-shot builder in Bazel's sandbox).  The tests that
drive Bazel carry the `bazel` marker; the protocol's encoding is checked without Bazel.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_bazel import COMMAND_TIMEOUT, Bazel, Result, bazel_server

REPO = Path(__file__).resolve().parents[1]

WORKER = "--strategy=TorchPackage=worker"
SANDBOXED = "--strategy=TorchPackage=sandboxed"

SOURCES = {
    "wk/__init__.py": "",
    "wk/model.py": """\
        import torch


        def build(hidden):
            return torch.nn.Linear(2, hidden)
        """,
    "wk/compose.py": """\
        def wrap(inner):
            return {"inner": inner}
        """,
    "wk/BUILD.toml": """\
        [small]
        intern = ["wk.**"]
        extern = "torch.**"
        seed = 1
        pickle = { "wk/model.pkl" = { call = "wk.model:build", args = { hidden = 3 } } }

        [large]
        intern = ["wk.**"]
        extern = "torch.**"
        seed = 2
        pickle = { "wk/model.pkl" = { call = "wk.model:build", args = { hidden = 5 } } }

        [composed]
        deps = [":small"]
        intern = ["wk.**"]
        extern = "torch.**"

        [composed.pickle."wk/both.pkl"]
        call = "wk.compose:wrap"
        dep_args = { inner = { from = ":small", record = "wk/model.pkl" } }
        """,
    "wk/BUILD.bazel": """\
        load("//rules:defs.bzl", "torch_package")

        package(default_visibility = ["//visibility:public"])

        torch_package(
            name = "small",
            srcs = glob(["*.py"]),
            intern = ["wk.**"],
            extern = "torch.**",
            seed = 1,
            pickle = {"wk/model.pkl": {"call": "wk.model:build", "args": {"hidden": 3}}},
        )

        torch_package(
            name = "large",
            srcs = glob(["*.py"]),
            intern = ["wk.**"],
            extern = "torch.**",
            seed = 2,
            pickle = {"wk/model.pkl": {"call": "wk.model:build", "args": {"hidden": 5}}},
        )

        torch_package(
            name = "composed",
            srcs = glob(["*.py"]),
            deps = [":small"],
            intern = ["wk.**"],
            extern = "torch.**",
            pickle = {"wk/both.pkl": {
                "call": "wk.compose:wrap",
                "dep_args": {"inner": {"from": ":small", "record": "wk/model.pkl"}},
            }},
        )
        """,
    # Each fails in the export; wk/model.py is in the execroot (where a worker runs) but
    # not in missing_src's srcs, so only a view of the declared inputs makes it fail.
    "wkfail/BUILD.bazel": """\
        load("//rules:defs.bzl", "torch_package")

        torch_package(
            name = "missing_src",
            srcs = ["//wk:__init__.py"],
            intern = ["wk.**"],
            extern = "torch.**",
            pickle = {"wk/model.pkl": {"call": "wk.model:build", "args": {"hidden": 2}}},
        )

        torch_package(
            name = "unmet",
            srcs = ["//wk:__init__.py", "//wk:model.py"],
            intern = ["wk.**"],
            requires = "torch>=999",
        )

        torch_package(
            name = "bad_glob",
            srcs = ["//wk:__init__.py"],
            intern = ["wk.**x"],
        )
        """,
}

ARCHIVES = ("small", "large", "composed")


def _write_tree(root: Path) -> None:
    for name, text in SOURCES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    # Bazel exports the sources of //wk to //wkfail.
    with open(root / "wk" / "BUILD.bazel", "a", encoding="utf-8") as build:
        build.write('\nexports_files(glob(["*.py"]))\n')


@pytest.fixture(scope="module")
def bazel(tmp_path_factory):
    with bazel_server(tmp_path_factory.mktemp("bazel-worker"), _write_tree) as server:
        yield server


def _runners(result: Result) -> set[str]:
    return {spawn.get("runner", "") for spawn in result.spawns()}


def _archives(bazel: Bazel) -> dict[str, bytes]:
    bin_dir = Path(bazel.info("bazel-bin"))
    return {name: (bin_dir / "wk" / f"{name}.pt").read_bytes() for name in ARCHIVES}


def _cli_archives(bazel: Bazel, out: Path) -> dict[str, bytes]:
    built = subprocess.run(
        [sys.executable, "-m", "torchpack.build", "//wk/...", "--out", str(out), "--no-cache"],
        cwd=bazel.workspace, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return {name: next(out.rglob(f"{name}.pt")).read_bytes() for name in ARCHIVES}


def _worker_logs(bazel: Bazel) -> list[Path]:
    """One log per TorchPackage worker process Bazel started on this output base."""
    return sorted(Path(bazel.info("output_base")).glob("bazel-workers/*TorchPackage*.log"))


def _errors(stderr: str) -> list[str]:
    return sorted(line for line in stderr.splitlines() if line.startswith("error: "))


@pytest.mark.bazel
def test_worker_writes_the_bytes_of_the_sandboxed_action_and_of_the_cli(bazel, tmp_path):
    with_worker = bazel.build("//wk:all", WORKER).check()
    assert _runners(with_worker) == {"worker"}, with_worker.spawns()
    assert len(with_worker.spawns()) == len(ARCHIVES)
    worker_bytes = _archives(bazel)
    # Side files of the provider, written by the worker into the execroot.
    bin_dir = Path(bazel.info("bazel-bin"))
    assert all((bin_dir / "wk" / f"{name}.pt.sha256").stat().st_size == 65 for name in ARCHIVES)

    bazel.run("clean").check()
    sandboxed = bazel.build("//wk:all", SANDBOXED).check()
    assert _runners(sandboxed) and "worker" not in _runners(sandboxed), sandboxed.spawns()
    assert _archives(bazel) == worker_bytes
    assert _cli_archives(bazel, tmp_path / "cli") == worker_bytes


@pytest.mark.bazel
def test_failing_exports_read_the_same_under_the_worker(bazel):
    results = {}
    for strategy in (WORKER, SANDBOXED):
        result = bazel.build("//wkfail:all", "--keep_going", strategy)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr, result.stderr
        assert ("worker" in _runners(result)) == (strategy == WORKER), result.spawns()
        results[strategy] = _errors(result.stderr)
    assert results[WORKER] == results[SANDBOXED]
    expected = [
        "error: wkfail/BUILD.bazel: //wkfail:missing_src: attribute 'pickle.\"wk/model.pkl\".call': cannot import "
        "module wk.model: ModuleNotFoundError: No module named 'wk.model'; under Bazel the export sees only declared "
        "files: if it is workspace code, list wk/model.py (or wk/model/__init__.py) in srcs",
        "error: wkfail/BUILD.bazel: //wkfail:unmet: attribute 'requires[0]': requirement 'torch>=999' is not satisfied",
        "error: wkfail/BUILD.bazel: //wkfail:bad_glob: attribute 'intern': ",
    ]
    for line in expected:
        assert any(error.startswith(line) for error in results[WORKER]), (line, results[WORKER])
    assert not list(Path(bazel.info("bazel-bin")).glob("wkfail/*.pt"))


@pytest.mark.bazel
def test_a_rebuild_after_an_edit_uses_the_new_source(bazel, tmp_path):
    bazel.build("//wk:all", WORKER).check()
    workers = _worker_logs(bazel)
    assert workers
    model = bazel.workspace / "wk" / "model.py"
    original = model.read_text()
    model.write_text(original.replace("torch.nn.Linear(2, hidden)", "torch.nn.Linear(2, hidden + 1)"))
    try:
        edited = bazel.build("//wk:all", WORKER).check()
        assert _runners(edited) == {"worker"} and len(edited.spawns()) == len(ARCHIVES)
        # The same workers served the rebuild: each request is a fresh fork, not a reused import.
        assert _worker_logs(bazel) == workers
        assert _archives(bazel) == _cli_archives(bazel, tmp_path / "cli")
        from torchpack import PackageImporter

        small = Path(bazel.info("bazel-bin")) / "wk" / "small.pt"
        assert PackageImporter(str(small)).load_pickle("wk", "model.pkl").out_features == 4
    finally:
        model.write_text(original)

    # Editing torchpack (a tool file of the worker) starts new workers.
    errors = bazel.workspace / "torchpack" / "errors.py"
    errors.write_text(errors.read_text() + "\n# edited by test_bazel_worker\n")
    rebuilt = bazel.build("//wk:all", WORKER).check()
    assert _runners(rebuilt) == {"worker"} and len(rebuilt.spawns()) == len(ARCHIVES)
    assert set(_worker_logs(bazel)) > set(workers)


def test_work_requests_and_responses_are_protocol_buffers(monkeypatch):
    """Bytes as Bazel's protobuf library writes them (length-delimited, fields in any order,
    unknown fields skipped), and the response's encoding field by field."""
    monkeypatch.syspath_prepend(str(REPO / "rules" / "private"))
    import persistent_worker as protocol

    path = "bazel-out/k8/bin/wk/\u00e9.py".encode()
    request = (
        b"\x0a\x03--a"                                           # arguments: "--a"
        + b"\x12" + bytes([len(path) + 6]) + b"\x0a" + bytes([len(path)]) + path + b"\x12\x02\x01\x02"  # inputs
        + b"\x3d\x00\x00\x00\x00"                                # field 7, fixed32: not ours
        + b"\x0a\x00"                                             # arguments: ""
        + b"\x18\xac\x02"                                         # request_id: 300
    )
    stream = io.BytesIO(bytes([len(request)]) + request + b"\x00")
    assert protocol.read_request(stream) == protocol.WorkRequest(["--a", ""], ["bazel-out/k8/bin/wk/\u00e9.py"], 300)
    assert protocol.read_request(stream) == protocol.WorkRequest()  # an empty message: all defaults
    assert protocol.read_request(stream) is None
    with pytest.raises(protocol.ProtocolError):
        protocol.read_request(io.BytesIO(b"\x05\x0a\x03"))

    assert protocol.encode_response(0, "", 0) == b"\x00"
    assert protocol.encode_response(1, "error: x\n", 0) == b"\x0d\x08\x01\x12\x09error: x\n"
    # A negative int32 is ten bytes of varint; request_id 300 is two.
    assert protocol.encode_response(-1, "", 300) == b"\x0e\x08" + b"\xff" * 9 + b"\x01\x18\xac\x02"


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.py", "wk/../../outside.py", ""])
def test_an_input_outside_the_execroot_is_refused_before_any_link_is_made(monkeypatch, tmp_path, path):
    """A request naming an input that is absolute or climbs out of the execroot would place a
    link outside the request's folder: it is refused, and nothing is created anywhere."""
    monkeypatch.syspath_prepend(str(REPO / "rules" / "private"))
    import persistent_worker as protocol

    execroot = tmp_path / "execroot"
    execroot.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    monkeypatch.setattr(protocol.tempfile, "tempdir", None)
    with pytest.raises(protocol.ProtocolError, match="not a path inside the execroot"):
        protocol.declared_tree(execroot, ["wk/__init__.py", path])
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["execroot", "scratch"]
