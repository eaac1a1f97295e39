"""The newer BUILD.toml keys under Bazel (issue 15): python-path, data, requires, main and
compat pass through `torch_package` with the same values and give the CLI's bytes, and a
failing export tells the user, in Bazel's terms, where the target is and what to change.
Where the two front ends could differ (requirements as typed, data globs reaching into a
sub-package, a python_path other than pyproject.toml's) they either agree or fail loudly.

One Bazel server (its own output root and workspace copy, as in tests/test_bazel.py) builds a
src-layout workspace (`[tool.torchpack] python-path = ["src"]` for the CLI, `python_path`
for Bazel) whose BUILD.toml and BUILD.bazel declare the same targets.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from test_bazel import COMMAND_TIMEOUT, _canonical, bazel_server

# The workspace's src layout: src/mylab is the package `mylab`, //src/mylab in labels.
SOURCES = {
    "pyproject.toml": '[tool.torchpack]\npython-path = ["src"]\n',
    "src/mylab/__init__.py": "",
    "src/mylab/model.py": """\
        import torch


        def build(hidden):
            return torch.nn.Linear(2, hidden)
        """,
    "src/mylab/serve.py": """\
        import importlib.resources
        import sys

        import mylab.text


        def main():
            words = importlib.resources.files(mylab.text).joinpath("vocab.txt").read_text()
            print("served", sys.argv[1:], words.split())
        """,
    "src/mylab/numeric.py": """\
        import numpy


        def build():
            return numpy.arange(3)
        """,
    "src/mylab/text/__init__.py": "",
    "src/mylab/text/vocab.txt": "cat dog\n",
    "src/mylab/text/labels.txt": "0 1\n",
    "src/mylab/BUILD.toml": """\
        [model]
        intern = ["mylab.**"]
        extern = "torch.**"
        data = "text/*.txt"
        requires = ["torch >= 2", "numpy"]  # normalised, by the CLI and by Bazel alike
        main = "mylab.serve:main"
        compat = "torch.package"
        seed = 3

        [model.pickle."mylab/model.pkl"]
        call = "mylab.model:build"
        args = { hidden = 4 }

        [globbed]
        intern = ["mylab.**"]
        data = ["**/*.txt"]
        binary = { "mylab/extra/model.py" = "model.py" }
        """,
    "src/mylab/BUILD.bazel": """\
        load("//rules:defs.bzl", "torch_package")

        package(default_visibility = ["//visibility:public"])

        PYTHON_PATH = ["src"]  # pyproject.toml's [tool.torchpack] python-path

        py_library(
            name = "lib",
            srcs = glob(["**/*.py"]),
            data = glob(["text/*.txt"]),
        )

        torch_package(
            name = "model",
            srcs = [":lib"],
            python_path = PYTHON_PATH,
            intern = ["mylab.**"],
            extern = "torch.**",
            data = "text/*.txt",
            requires = ["torch >= 2", "numpy"],
            main = "mylab.serve:main",
            compat = "torch.package",
            seed = 3,
            pickle = {"mylab/model.pkl": {"call": "mylab.model:build", "args": {"hidden": 4}}},
        )

        torch_package(
            name = "globbed",
            srcs = [":lib"],
            python_path = PYTHON_PATH,
            intern = ["mylab.**"],
            data = ["**/*.txt"],
            binary = {"mylab/extra/model.py": "model.py"},
        )
        """,
    # Targets that must fail, each with the fix in the message.
    "src/failing/BUILD.bazel": """\
        load("//rules:defs.bzl", "torch_package")

        torch_package(
            name = "unmet",
            python_path = ["src"],
            sources = {"mylab.version": "V = 1\\n"},
            requires = "torch>=999",
        )

        torch_package(
            name = "no_extern",
            srcs = ["//src/mylab:lib"],
            python_path = ["src"],
            intern = ["mylab.**"],
            pickle = {"mylab/numbers.pkl": {"call": "mylab.numeric:build"}},
        )

        torch_package(
            name = "missing_src",
            srcs = ["//src/mylab:__init__.py"],
            python_path = ["src"],
            intern = ["mylab.**"],
            extern = "torch.**",
            pickle = {"mylab/model.pkl": {"call": "mylab.model:build", "args": {"hidden": 2}}},
        )

        torch_package(
            name = "bad_requirement",
            python_path = ["src"],
            sources = {"mylab.version": "V = 1\\n"},
            requires = "numpy >>> 2",
        )

        torch_package(
            name = "twice",
            python_path = ["src"],
            data = "notes.txt",
            binary = {"failing/notes.txt": "notes.txt"},
        )
        """,
    "src/failing/notes.txt": "saved twice\n",
    # A data glob over a folder with a sub-package: Bazel's glob leaves inner/ out, the CLI
    # refuses the glob; neither packages inner/skipped.txt.
    "src/nested/top.txt": "top\n",
    "src/nested/inner/skipped.txt": "skipped\n",
    "src/nested/inner/BUILD.bazel": "",
    "src/nested/BUILD.toml": """\
        [notes]
        data = "**/*.txt"
        sources = { "nested.version" = "V = 1\\n" }
        """,
    "src/nested/BUILD.bazel": """\
        load("//rules:defs.bzl", "torch_package")

        torch_package(
            name = "notes",
            python_path = ["src"],
            data = "**/*.txt",
            sources = {"nested.version": "V = 1\\n"},
        )
        """,
    # python_path must be pyproject.toml's [tool.torchpack] python-path (["src"] here).
    "src/unset/BUILD.bazel": """\
        load("//rules:defs.bzl", "torch_package")

        torch_package(
            name = "unset",
            sources = {"unset.version": "V = 1\\n"},
        )
        """,
    "src/other/BUILD.bazel": """\
        load("//rules:defs.bzl", "torch_package")

        torch_package(
            name = "other",
            python_path = ["src", "."],
            sources = {"other.version": "V = 1\\n"},
        )
        """,
    # A data glob that matches nothing fails when the package loads, as BUILD.toml's does.
    "src/emptyglob/BUILD.bazel": """\
        load("//rules:defs.bzl", "torch_package")

        torch_package(
            name = "weights",
            python_path = ["src"],
            data = ["*.bin"],
        )
        """,
}


def _write_tree(root: Path) -> None:
    for name, text in SOURCES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture(scope="module")
def bazel(tmp_path_factory):
    with bazel_server(tmp_path_factory.mktemp("bazel-keys"), _write_tree) as server:
        yield server


@pytest.fixture(scope="module")
def cli_build(bazel, tmp_path_factory) -> dict[str, dict]:
    """``python -m torchpack.build //src/mylab/...`` on the same workspace copy: label -> its
    ``--list --json`` entry (output path and definition)."""
    out = tmp_path_factory.mktemp("cli-keys-out")
    base = [sys.executable, "-m", "torchpack.build", "//src/mylab/...", "--out", str(out), "--json"]
    # Run from a subfolder: python-path comes from the root's pyproject.toml, not the cwd.
    run = dict(
        cwd=bazel.workspace / "src" / "mylab" / "text",
        # The copy's torchpack, as the Bazel builder runs it.
        env={**os.environ, "PYTHONPATH": str(bazel.workspace)},
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )
    listed = subprocess.run([*base, "--list"], **run)
    assert listed.returncode == 0, listed.stderr
    built = subprocess.run([*base, "--no-cache"], **run)
    assert built.returncode == 0, built.stdout + built.stderr
    return {target["label"]: target for target in json.loads(listed.stdout)["targets"]}


@pytest.fixture(scope="module")
def bazel_bin(bazel) -> Path:
    bazel.build("//src/mylab:all").check()
    return Path(bazel.info("bazel-bin"))


@pytest.mark.bazel
def test_every_key_gives_the_cli_bytes(bazel_bin, cli_build):
    assert sorted(cli_build) == ["//src/mylab:globbed", "//src/mylab:model"]
    for label, listed in cli_build.items():
        definition = listed["definition"]
        archive = bazel_bin / "src" / "mylab" / definition["out"]
        assert archive.read_bytes() == Path(listed["output"]).read_bytes(), f"{label}: Bazel and CLI archives differ"
        assert archive.with_name(archive.name + ".def.json").read_text(encoding="utf-8") == _canonical(definition), label
    model = cli_build["//src/mylab:model"]["definition"]
    # data is binary shorthand: records named below the python-path folder.
    assert model["binary"] == {"mylab/text/labels.txt": "src/mylab/text/labels.txt", "mylab/text/vocab.txt": "src/mylab/text/vocab.txt"}
    assert (model["requires"], model["main"], model["compat"]) == (["torch>=2", "numpy"], "mylab.serve:main", "torch.package")
    assert set(cli_build["//src/mylab:globbed"]["definition"]["binary"]) == {
        "mylab/extra/model.py", "mylab/text/labels.txt", "mylab/text/vocab.txt",
    }


@pytest.mark.bazel
def test_entry_point_of_the_bazel_archive_runs(bazel_bin):
    archive = bazel_bin / "src" / "mylab" / "model.pt"
    ran = subprocess.run(
        [sys.executable, "-m", "torchpack", "run", str(archive), "--", "--port", "8"],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT, cwd=archive.parent,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "served ['--port', '8'] ['cat', 'dog']\n"


def _target_lines(build_file: Path) -> dict[str, int]:
    """Name -> line of the `torch_package(` call that declares it."""
    lines = build_file.read_text().splitlines()
    found = {}
    for number, line in enumerate(lines, 1):
        name = re.match(r'\s+name = "([^"]+)"', line)
        if name:
            found[name.group(1)] = number - 1
    return found


@pytest.mark.bazel
def test_failing_exports_name_the_target_line_and_the_fix(bazel):
    result = bazel.build("//src/failing:all", "--keep_going")
    assert result.returncode != 0
    output = result.stderr
    assert "Traceback" not in output, output
    build_file = bazel.workspace / "src" / "failing" / "BUILD.bazel"
    fixes = {
        "unmet": "error: src/failing/BUILD.bazel: //src/failing:unmet: attribute 'requires[0]': requirement "
        f"'torch>=999' is not satisfied: torch {__import__('torch').__version__} is installed; "
        "install a version it allows, or change requires",
        # numpy's submodules first (the pickle's reduce function), then numpy.
        "no_extern": "error: src/failing/BUILD.bazel: //src/failing:no_extern: attribute 'extern': numpy.",
        "missing_src": "error: src/failing/BUILD.bazel: //src/failing:missing_src: attribute "
        "'pickle.\"mylab/model.pkl\".call': cannot import module mylab.model: ModuleNotFoundError: "
        "No module named 'mylab.model'; under Bazel the export sees only declared files: if it is "
        "workspace code, list src/mylab/model.py (or src/mylab/model/__init__.py) in srcs",
        # The CLI's check of a requirement, and of a record saved twice, in Bazel's terms.
        "bad_requirement": "error: src/failing/BUILD.bazel: //src/failing:bad_requirement: attribute 'requires[0]': "
        "'numpy >>> 2' is not a PEP 508 requirement",
        "twice": "error: src/failing/BUILD.bazel: //src/failing:twice: attribute 'data.\"failing/notes.txt\"': "
        "record is also saved by 'binary'",
    }
    for name, line in _target_lines(build_file).items():
        # Bazel's own prefix locates the target; ours names the label, the attribute and the fix.
        assert re.search(rf"^ERROR: {re.escape(str(build_file))}:{line}:\d+: .*//src/failing:{name}", output, re.M), (name, output)
        assert fixes[name] in output, f"{fixes[name]!r} not in:\n{output}"
    assert 'numpy matches no pattern: add "numpy.**" to extern of //src/failing:no_extern' in output, output
    for name in fixes:
        assert not (Path(bazel.info("bazel-bin")) / "src" / "failing" / f"{name}.pt").exists(), name


@pytest.mark.bazel
def test_a_data_glob_matching_nothing_fails_the_package(bazel):
    result = bazel.build("//src/emptyglob:all")
    assert result.returncode != 0
    build_file = bazel.workspace / "src" / "emptyglob" / "BUILD.bazel"
    assert f'File "{build_file}", line 3' in result.stderr, result.stderr
    assert 'Error in fail: //src/emptyglob:weights: data: glob "*.bin" matches no file in src/emptyglob/' in result.stderr


@pytest.mark.parametrize(
    ("requires", "args", "message"),
    [
        # A definition the action refuses: the BUILD.bazel, the label and the attribute.
        (["numpy >>> 2"], [], "error: src/mylab/BUILD.bazel: //src/mylab:bad: attribute 'requires[0]': "
         "'numpy >>> 2' is not a PEP 508 requirement"),
        # A module left out of srcs: its file under the first python_path folder.
        ([], ["--python-path=src"], "error: src/mylab/BUILD.bazel: //src/mylab:bad: attribute "
         "'pickle.\"mylab/model.pkl\".call': cannot import module mylab.model: ModuleNotFoundError: No module named "
         "'mylab'; under Bazel the export sees only declared files: if it is workspace code, list src/mylab.py "
         "(or src/mylab/__init__.py) in srcs"),
    ],
)
def test_builder_speaks_of_the_bazel_target(tmp_path, requires, args, message):
    """The builder alone (as the rule runs it), on an empty sandbox-like workspace."""
    from build_support import REPO, cli_env

    typed = tmp_path / "bad.pt.typed.json"
    typed.write_text(json.dumps({
        "label": "//src/mylab:bad", "requires": requires,
        "pickle": {"mylab/model.pkl": {"call": "mylab.model:build"}},
    }))
    done = subprocess.run(
        [sys.executable, str(REPO / "rules" / "private" / "builder.py"),
         "--archive", str(tmp_path / "bad.pt"), "--digest", str(tmp_path / "bad.pt.sha256"),
         "--extern-modules", str(tmp_path / "bad.pt.extern_modules"), "--build-file", "src/mylab/BUILD.bazel",
         "--workspace", str(tmp_path), "--typed-definition", str(typed),
         "--", "--definition", str(tmp_path / "bad.pt.def.json"), "--output", str(tmp_path / "bad.pt"), *args],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "bad.pt").exists()


def test_builder_suggests_an_undeclared_resource_in_starlark(tmp_path):
    """A resource the export read but the target does not declare: the fix is written the way a
    BUILD.bazel writes a dict, not as BUILD.toml's inline table."""
    from build_support import REPO, cli_env, write

    write(tmp_path / "mylab" / "__init__.py", "")
    write(tmp_path / "mylab" / "vocab.txt", "the quick fox\n")
    write(tmp_path / "mylab" / "tokenizer.py", """
        import importlib.resources

        import mylab

        VOCAB = importlib.resources.files(mylab).joinpath("vocab.txt").read_text().split()
    """)
    out = tmp_path / "bazel-out"  # as in an execroot: outputs in their own folder
    out.mkdir()
    typed = out / "bad.pt.typed.json"
    typed.write_text(json.dumps({
        "label": "//mylab:bad", "intern": [{"include": ["mylab.**"], "exclude": [], "allow_empty": True}],
        "modules": ["mylab.tokenizer"],
    }))
    done = subprocess.run(
        [sys.executable, str(REPO / "rules" / "private" / "builder.py"),
         "--archive", str(out / "bad.pt"), "--digest", str(out / "bad.pt.sha256"),
         "--extern-modules", str(out / "bad.pt.extern_modules"), "--build-file", "mylab/BUILD.bazel",
         "--workspace", str(tmp_path), "--typed-definition", str(typed),
         "--", "--definition", str(out / "bad.pt.def.json"), "--output", str(out / "bad.pt")],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )
    assert done.returncode != 0
    assert "error: mylab/BUILD.bazel: //mylab:bad: attribute 'text': the export read mylab/vocab.txt" in done.stderr, done.stderr
    assert 'add "mylab/vocab.txt" to text of //mylab:bad: text = {"mylab/vocab.txt": "vocab.txt"}' in done.stderr
    assert 'data = ["vocab.txt"]' in done.stderr
    assert "Traceback" not in done.stderr and not (out / "bad.pt").exists()


@pytest.mark.bazel
def test_data_glob_over_a_sub_package_packages_the_same_or_fails(bazel, bazel_bin):
    """Bazel's glob leaves out the files of src/nested/inner (it has a BUILD.bazel); the CLI,
    whose glob would match them, refuses instead, naming the file and the sub-package."""
    bazel.build("//src/nested:notes").check()
    with zipfile.ZipFile(bazel_bin / "src" / "nested" / "notes.pt") as archive:
        resources = {name.partition("/")[2] for name in archive.namelist() if name.endswith(".txt")}
    assert resources == {"nested/top.txt"}
    cli = subprocess.run(
        [sys.executable, "-m", "torchpack.build", "//src/nested:notes", "--out", str(bazel.scratch / "cli-nested")],
        cwd=bazel.workspace, env={**os.environ, "PYTHONPATH": str(bazel.workspace)},
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )
    assert cli.returncode == 2
    assert ("error: src/nested/BUILD.toml:2: target 'notes': key 'data': glob '**/*.txt' matches "
            "src/nested/inner/skipped.txt, which belongs to the sub-package of src/nested/inner/BUILD.bazel") in cli.stderr, cli.stderr
    assert not (bazel.scratch / "cli-nested" / "src" / "nested" / "notes.pt").exists()


@pytest.mark.bazel
@pytest.mark.parametrize(
    ("package", "said"),
    [("unset", "not set (the workspace root)"), ("other", '["src","."]')],
)
def test_python_path_other_than_pyproject_fails_the_package(bazel, package, said):
    result = bazel.build(f"//src/{package}:all")
    assert result.returncode != 0
    build_file = bazel.workspace / "src" / package / "BUILD.bazel"
    assert f'File "{build_file}", line 3' in result.stderr, result.stderr
    assert (f"Error in fail: //src/{package}:{package}: python_path is {said}, but pyproject.toml's "
            '[tool.torchpack] python-path is ["src"]: write python_path = ["src"] on the target') in result.stderr, result.stderr


@pytest.mark.bazel
def test_an_edited_pyproject_is_seen_by_the_next_build(bazel):
    """pyproject.toml is read through its label: Bazel re-reads it when it changes, so the
    check never holds a stale python-path."""
    pyproject = bazel.workspace / "pyproject.toml"
    original = pyproject.read_text(encoding="utf-8")
    try:
        pyproject.write_text('[tool.torchpack]\npython-path = ["src", "."]\n', encoding="utf-8")
        bazel.build("//src/other:all").check()
        mylab = bazel.build("//src/mylab:model")
        assert mylab.returncode != 0
        assert ('//src/mylab:model: python_path is ["src"], but pyproject.toml\'s [tool.torchpack] python-path is '
                '["src","."]') in mylab.stderr, mylab.stderr
    finally:
        pyproject.write_text(original, encoding="utf-8")
    bazel.build("//src/mylab:model").check()


def _run_builder(tmp_path: Path, out: Path, typed: dict, *action_args: str) -> subprocess.CompletedProcess[str]:
    """The builder as the rule runs it, writing into ``out`` (as Bazel, a fresh folder)."""
    from build_support import REPO, cli_env

    out.mkdir()
    (out / "t.pt.typed.json").write_text(json.dumps(typed))
    return subprocess.run(
        [sys.executable, str(REPO / "rules" / "private" / "builder.py"),
         "--archive", str(out / "t.pt"), "--digest", str(out / "t.pt.sha256"),
         "--extern-modules", str(out / "t.pt.extern_modules"), "--build-file", "src/mylab/BUILD.bazel",
         "--workspace", str(tmp_path), "--typed-definition", str(out / "t.pt.typed.json"),
         "--", "--definition", str(out / "t.pt.def.json"), "--output", str(out / "t.pt"), *action_args],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )


def test_builder_writes_the_clis_definition_from_the_typed_one(tmp_path):
    """Without Bazel: the rule's typed target (requirements as typed, data as matched files)
    becomes the definition the CLI makes of the same BUILD.toml table, and a data file outside
    every python_path folder is an error in Bazel's terms."""
    from build_support import write

    write(tmp_path / "src" / "mylab" / "text" / "vocab.txt", "cat dog\n")
    write(tmp_path / "lib" / "stray.txt", "stray\n")
    typed = {
        "label": "//src/mylab:t", "requires": ["NumPy >= 1"],
        "sources": {"mylab.version": {"source": "V = 1\n", "package": False}},
        "data": ["src/mylab/text/vocab.txt"],
    }
    done = _run_builder(tmp_path, tmp_path / "good", typed, "--python-path=src")
    assert done.returncode == 0, done.stderr
    definition = json.loads((tmp_path / "good" / "t.pt.def.json").read_text())
    assert definition["requires"] == ["NumPy>=1"]
    assert definition["binary"] == {"mylab/text/vocab.txt": "src/mylab/text/vocab.txt"}
    with zipfile.ZipFile(tmp_path / "good" / "t.pt") as archive:
        [name] = [name for name in archive.namelist() if name.partition("/")[2] == "mylab/text/vocab.txt"]
        assert archive.read(name) == b"cat dog\n"

    done = _run_builder(tmp_path, tmp_path / "bad", {**typed, "data": ["lib/stray.txt"]}, "--python-path=src")
    assert done.returncode == 2
    assert ("error: src/mylab/BUILD.bazel: //src/mylab:t: attribute 'data': lib/stray.txt is in no "
            "python-path folder (src)") in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(path.name for path in (tmp_path / "bad").iterdir()) == ["t.pt.typed.json"]  # no DEF.json, no archive
