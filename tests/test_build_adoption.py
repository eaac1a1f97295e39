"""What a team needs to adopt the build in CI (issue 15), driven through the CLI as a user
would, in a workspace outside the repository: undeclared resources, ``data``, resources of
dependencies, src layouts, pinned externs, errors in BUILD.toml terms, runnable archives."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from build_support import cli_env, make_workspace, run_cli, write

import torchpack
from torchpack import _records as records

TOKENIZER = """
    from importlib import resources


    def vocabulary():
        return (resources.files(__package__) / "vocab.txt").read_text().split()


    class Tokenizer:
        def __init__(self):
            self.size = len(vocabulary())

        def encode(self, text):
            words = vocabulary()  # read again at load, from the archive
            return [words.index(word) for word in text.split()]


    def build():
        return Tokenizer()
"""
SERVE = """
    import sys


    def main():
        print("serving", " ".join(sys.argv[1:]))
        return int(sys.argv[1]) if len(sys.argv) > 1 else None


    def fail():
        raise SystemExit("bad flag")
"""


def _lab(root: Path, build_toml: str, package: str = "mylab") -> Path:
    base = root / package
    write(base / "__init__.py", "")
    write(base / "text" / "__init__.py", "")
    write(base / "text" / "tokenizer.py", TOKENIZER)
    write(base / "text" / "vocab.txt", "hello world\n")
    write(base / "serve.py", SERVE)
    write(base / "BUILD.toml", build_toml)
    return base


def _encode(archive: Path, record: str = "mylab/tok.pkl") -> list[int]:
    package, _, resource = record.rpartition("/")
    tokenizer = torchpack.PackageImporter(archive).load_pickle(package.replace("/", "."), resource)
    return tokenizer.encode("world hello")


def _records(archive: Path) -> dict[str, bytes]:
    """Record name (without the archive's top folder) -> bytes."""
    with zipfile.ZipFile(archive) as archive_zip:
        return {name.partition("/")[2]: archive_zip.read(name) for name in archive_zip.namelist()}


def _errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


TOK = """
    [tok]
    intern = "mylab.**"
    {extra}
    [tok.pickle."mylab/tok.pkl"]
    call = "mylab.text.tokenizer:build"
"""


def test_undeclared_resource_is_a_build_error(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    _lab(root, TOK.format(extra=""))
    result = run_cli(root, "//mylab:tok")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert _errors(result) == [
        "error: mylab/BUILD.toml:1: target 'tok': key 'text': the export read mylab/text/vocab.txt, a resource of "
        "the interned package mylab.text, which the archive would not contain (loading would fail): add "
        '"mylab/text/vocab.txt" to text of //mylab:tok: text = { "mylab/text/vocab.txt" = "text/vocab.txt" } '
        '(or data = ["text/vocab.txt"] for its bytes as they are)'
    ]
    assert not (root / "torchpack-out" / "mylab" / "tok.pt").exists()

    # The fix the message gives, verbatim, builds an archive that loads.
    _lab(root, TOK.format(extra='text = { "mylab/text/vocab.txt" = "text/vocab.txt" }'))
    assert run_cli(root, "//mylab:tok").returncode == 0
    assert _encode(root / "torchpack-out" / "mylab" / "tok.pt") == [1, 0]


def test_data_shorthand_and_resources_of_deps(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    _lab(root, TOK.format(extra='data = ["text/*.txt"]') + """
        # Re-exports the tokenizer: its code comes from tok's archive, and so must its vocabulary.
        [bundle]
        deps = [":tok"]
        intern = "mylab.**"
        pickle."bundle/tok.pkl" = { from = ":tok", record = "mylab/tok.pkl" }
    """)
    result = run_cli(root, "//mylab/...")
    assert result.returncode == 0, result.stderr
    out = root / "torchpack-out" / "mylab"
    for archive, record in (("tok.pt", "mylab/tok.pkl"), ("bundle.pt", "bundle/tok.pkl")):
        assert _records(out / archive)["mylab/text/vocab.txt"] == b"hello world\n"
        assert _encode(out / archive, record) == [1, 0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('data = ["text/*.csv"]', "key 'data[0]': glob 'text/*.csv' matches no file in mylab/"),
        ('data = "../x/*.txt"', "key 'data': glob '../x/*.txt' must be relative to the BUILD file, without '..'"),
        ("data = 3", "key 'data': expected a file glob or an array of them, got an integer (3)"),
        ('data = ["text/vocab.txt"]\ntext = { "mylab/text/vocab.txt" = "text/vocab.txt" }',
         "key 'data.\"mylab/text/vocab.txt\"': record is also saved by 'text'"),
        ('requires = ["numpy>>2"]', "key 'requires[0]': 'numpy>>2' is not a PEP 508 requirement"),
        ('main = "mylab.serve"', "key 'main': 'mylab.serve' is not of the form 'package.module:function'"),
    ],
    ids=["no-match", "dotdot", "type", "twice", "requirement", "main"],
)
def test_new_keys_are_validated(tmp_path: Path, data: str, message: str) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    _lab(root, TOK.format(extra=data))
    result = run_cli(root, "//mylab:tok")
    assert result.returncode == 2 and not (root / "torchpack-out").exists()
    [error] = _errors(result)
    assert error.startswith("error: mylab/BUILD.toml:3: target 'tok': " + message), error


@pytest.mark.parametrize("marker", ["BUILD.bazel", "BUILD", "BUILD.toml"])
def test_data_glob_refuses_files_of_a_sub_package(tmp_path: Path, marker: str) -> None:
    """Bazel's glob does not enter a folder with its own BUILD file: rather than package files
    that the same target under Bazel would silently leave out, the CLI names the file and the
    sub-package."""
    root = make_workspace(tmp_path / "ws", examples=False)
    _lab(root, TOK.format(extra='data = ["*.txt", "**/*.txt"]'))
    write(root / "mylab" / "readme.txt", "top\n")
    write(root / "mylab" / "text" / marker, "")
    result = run_cli(root, "//mylab:tok")
    assert result.returncode == 2 and not (root / "torchpack-out").exists()
    assert _errors(result) == [
        "error: mylab/BUILD.toml:3: target 'tok': key 'data[1]': glob '**/*.txt' matches mylab/text/vocab.txt, "
        f"which belongs to the sub-package of mylab/text/{marker}: Bazel's glob does not enter sub-packages, so a "
        "target packages only files of its own package; narrow the glob, or list the file under binary"
    ]

    # The file named under binary (as BUILD.bazel names it by label) is packaged.
    _lab(root, TOK.format(extra='data = ["*.txt"]\nbinary = { "mylab/text/vocab.txt" = "text/vocab.txt" }'))
    write(root / "mylab" / "text" / marker, "")
    result = run_cli(root, "//mylab:tok")
    assert result.returncode == 0, result.stderr
    packaged = _records(root / "torchpack-out" / "mylab" / "tok.pt")
    assert (packaged["mylab/readme.txt"], packaged["mylab/text/vocab.txt"]) == (b"top\n", b"hello world\n")


SRC_BUILD = """
    [tok]
    intern = "mylab.**"
    data = ["text/*.txt"]
    [tok.pickle."mylab/tok.pkl"]
    call = "mylab.text.tokenizer:build"
"""


def test_src_layout_from_any_folder(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write(root / "pyproject.toml", '[project]\nname = "proj"\n\n[tool.torchpack]\npython-path = ["src"]\n')
    _lab(root, SRC_BUILD, package="src/mylab")
    from_root = run_cli(root, "//src/mylab:tok", "--out", str(tmp_path / "a"))
    assert from_root.returncode == 0, from_root.stderr
    from_sub = run_cli(root / "src" / "mylab" / "text", "//src/mylab:tok", "--out", str(tmp_path / "b"), "--no-cache")
    assert from_sub.returncode == 0, from_sub.stderr
    first, second = (tmp_path / side / "src" / "mylab" / "tok.pt" for side in "ab")
    assert first.read_bytes() == second.read_bytes()
    assert _encode(first) == [1, 0]
    assert "mylab/text/vocab.txt" in _records(first)  # the package path, not src/...

    write(root / "pyproject.toml", '[tool.torchpack]\n\npython-path = ["lib"]\n')
    result = run_cli(root, "//src/mylab:tok")
    assert result.returncode == 2
    assert _errors(result) == [f"error: pyproject.toml:3: [tool.torchpack] python-path: 'lib': there is no folder {root / 'lib'}"]


def test_requires(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    numpy_version = pytest.importorskip("numpy").__version__
    _lab(root, TOK.format(extra='data = "text/vocab.txt"\nrequires = ["numpy>=2", "torch>=2.1"]') + """
        [old]
        intern = "mylab.**"
        requires = ["torch>=2.1", "numpy<2"]
    """)
    result = run_cli(root, "//mylab/...")
    assert result.returncode == 1
    assert _errors(result) == [
        f"error: mylab/BUILD.toml:10: target 'old': key 'requires[1]': requirement 'numpy<2' is not satisfied: "
        f"numpy {numpy_version} is installed; install a version it allows, or change requires"
    ]
    integrity = json.loads(_records(root / "torchpack-out" / "mylab" / "tok.pt")[records.INTEGRITY])
    assert integrity["provenance"]["requires"] == ["numpy>=2", "torch>=2.1"]


def test_plain_archives_keep_their_bytes(tmp_path: Path) -> None:
    """Without requires and main, nothing new is written: no provenance key, no record."""
    root = make_workspace(tmp_path / "ws", examples=False)
    _lab(root, TOK.format(extra='data = "text/vocab.txt"'))
    assert run_cli(root, "//mylab:tok").returncode == 0
    saved = _records(root / "torchpack-out" / "mylab" / "tok.pt")
    provenance = json.loads(saved[records.INTEGRITY])["provenance"]
    assert "requires" not in provenance and records.ENTRY_POINT not in saved
    assert sorted(provenance) == ["extern_distributions", "python", "python_implementation", "torch", "torchpack"]


def test_missing_extern_in_build_terms(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / "mylab" / "__init__.py", "")
    write(root / "mylab" / "cnn.py", """
        import numpy


        class CNN:
            scale = float(numpy.float32(2))


        def build():
            return CNN()
    """)
    write(root / "mylab" / "BUILD.toml", """
        [cnn]
        extern = "torch.**"
        intern = "mylab.**"
        pickle."mylab/cnn.pkl" = { call = "mylab.cnn:build" }
    """)
    expected = (
        "error: mylab/BUILD.toml:2: target 'cnn': key 'extern': numpy matches no pattern: add \"numpy.**\" to "
        "extern of //mylab:cnn (mylab/BUILD.toml:2) (import chain: <mylab.cnn.pkl> -> mylab.cnn -> numpy)"
    )
    quiet = run_cli(root, "//mylab:cnn")
    assert quiet.returncode == 1 and _errors(quiet) == [expected]
    verbose = run_cli(root, "-v", "//mylab:cnn", "--no-cache")
    assert verbose.returncode == 1 and _errors(verbose) == [expected]
    assert "Traceback" in verbose.stderr and "debug=True" not in verbose.stderr


def _torchpack(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchpack", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=300)


def test_run_entry_point(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", examples=False)
    _lab(root, TOK.format(extra='data = "text/vocab.txt"\nmain = "mylab.serve:main"') + """
        [failing]
        intern = "mylab.**"
        main = "mylab.serve:fail"
    """)
    assert run_cli(root, "//mylab/...").returncode == 0
    out = root / "torchpack-out" / "mylab"
    saved = _records(out / "tok.pt")
    assert saved[records.ENTRY_POINT] == b"mylab.serve:main\n" and "mylab/serve.py" in saved

    elsewhere = tmp_path / "elsewhere"  # the workspace's code is not importable from here
    elsewhere.mkdir()
    served = _torchpack(elsewhere, "run", str(out / "tok.pt"), "--", "3", "--port", "80")
    assert (served.returncode, served.stdout) == (3, "serving 3 --port 80\n"), served.stderr
    assert _torchpack(elsewhere, "run", str(out / "tok.pt")).returncode == 0
    failing = _torchpack(elsewhere, "run", str(out / "failing.pt"))
    assert (failing.returncode, failing.stderr) == (1, "bad flag\n")

    write(root / "plain" / "BUILD.toml", '[plain]\nsources = { "plain.m" = "X = 1\\n" }\n')
    assert run_cli(root, "//plain").returncode == 0
    plain = _torchpack(elsewhere, "run", str(root / "torchpack-out" / "plain" / "plain.pt"))
    assert plain.returncode == 2 and "no entry point" in plain.stderr and "Traceback" not in plain.stderr
