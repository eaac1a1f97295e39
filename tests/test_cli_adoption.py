"""The ``torchpack`` command as a new user drives it (issue 15, sections 7 and 8): a workspace
of one's own outside the repository, torchpack installed from a wheel (not the checkout).

diff and inspect speak in model terms (``head.bias``, shape, dtype) and show a provenance
difference itself; verify takes several archives; why suggests module names; every
subcommand's errors are JSON under ``--json``; query takes ``--out``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from installed_torchpack import MYLAB, installed_torchpack, write_tree

#: A library the tokenizer leaves extern, installed in two versions (two site folders).
FAKELIB = {
    "fakelib/__init__.py": "def split(text):\n    return text.split()\n",
    "fakelib-{version}.dist-info/METADATA": "Metadata-Version: 2.1\nName: fakelib\nVersion: {version}\n",
    "fakelib-{version}.dist-info/top_level.txt": "fakelib\n",
    "fakelib-{version}.dist-info/RECORD": "fakelib/__init__.py,,\n",
}
TOKENIZER = {
    "mylab/text.py": """
        import fakelib


        class Tokenizer:
            def __call__(self, text):
                return fakelib.split(text)


        def build():
            return Tokenizer()
    """,
    "mylab/BUILD.toml": MYLAB["mylab/BUILD.toml"] + """

        [tokenizer]
        intern = ["mylab.**"]
        extern = ["fakelib", "torch.**"]

        [tokenizer.pickle."mylab/tokenizer.pkl"]
        call = "mylab.text:build"
    """,
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    return installed_torchpack(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def lab(installed, tmp_path_factory):
    """`mylab` built three times: seed 1 with fakelib 1.0 and then 1.1 installed, seed 2 with 1.0.

    Builds are hermetic (PYTHONPATH does not reach an export), so fakelib goes into the
    venv's site-packages, as `pip install fakelib==...` would put it, and leaves after.
    """
    root = tmp_path_factory.mktemp("adoption")
    workspace = write_tree(root / "mylab-repo", {**MYLAB, **TOKENIZER})
    purelib = installed.run(root, "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    site_packages = Path(purelib.stdout.strip())
    outs = {"seed1": root / "out-seed1", "fakelib11": root / "out-fakelib11", "seed2": root / "out-seed2"}
    build_file = workspace / "mylab" / "BUILD.toml"
    try:
        builds = (("fakelib11", "1.1", "//..."), ("seed1", "1.0", "//..."), ("seed2", "1.0", "//mylab:cnn"))
        for name, version, targets in builds:
            for stale in site_packages.glob("fakelib*"):
                shutil.rmtree(stale)
            write_tree(site_packages, {path.format(version=version): text.format(version=version)
                                       for path, text in FAKELIB.items()})
            if name == "seed2":
                build_file.write_text(build_file.read_text().replace("seed = 1", "seed = 2"))
            built = installed.run(workspace, "torchpack", "build", targets, "--out", str(outs[name]))
            assert built.returncode == 0, built.stderr
        yield {"workspace": workspace, **outs}
    finally:
        for stale in site_packages.glob("fakelib*"):
            shutil.rmtree(stale)


def torchpack(installed, lab, *arguments: object):
    return installed.run(lab["workspace"], "torchpack", *map(str, arguments))


def test_diff_names_changed_tensors_by_their_place_in_the_model(installed, lab):
    a, b = lab["seed1"] / "mylab" / "cnn.pt", lab["seed2"] / "mylab" / "cnn.pt"
    result = torchpack(installed, lab, "diff", a, b)
    assert result.returncode == 1
    for line in ("body.0.weight in mylab/model.pkl: float32 [2, 1, 3, 3]: 18 elements differ",
                 "body.0.bias in mylab/model.pkl: float32 [2]: 2 elements differ",
                 "head.weight in mylab/model.pkl: float32 [3, 2]: 6 elements differ",
                 "head.bias in mylab/model.pkl: float32 [3]: 3 elements differ"):
        assert f"    {line}, max abs diff " in result.stdout, result.stdout
    assert "storage 3" not in result.stdout
    document = json.loads(torchpack(installed, lab, "diff", "--json", a, b).stdout)
    tensors = [tensor for change in document["changed"] if change["kind"] == "storage" for tensor in change["tensors"]]
    assert [(t["name"], t["shape"], t["dtype"]) for t in tensors] == [
        ("body.0.weight", [2, 1, 3, 3], "float32"), ("body.0.bias", [2], "float32"),
        ("head.weight", [3, 2], "float32"), ("head.bias", [3], "float32"),
    ]


def test_inspect_lists_the_models_parameters_with_names_and_shapes(installed, lab):
    archive = lab["seed1"] / "mylab" / "cnn.pt"
    result = torchpack(installed, lab, "inspect", archive)
    assert result.returncode == 0, result.stderr
    assert ("    tensors (4):\n"
            "      body.0.weight  float32 [2, 1, 3, 3]  (.data/0.storage)\n"
            "      body.0.bias  float32 [2]  (.data/1.storage)\n"
            "      head.weight  float32 [3, 2]  (.data/2.storage)\n"
            "      head.bias  float32 [3]  (.data/3.storage)\n") in result.stdout
    [entry] = json.loads(torchpack(installed, lab, "inspect", "--json", archive).stdout)["pickles"]
    assert entry["tensors"][3] == {"name": "head.bias", "shape": [3], "dtype": "float32", "storage": ".data/3.storage"}


def test_diff_shows_a_difference_only_in_provenance_itself(installed, lab):
    # Same code and seed, another fakelib installed: why the two machines' hashes differ.
    a, b = lab["seed1"] / "mylab" / "tokenizer.pt", lab["fakelib11"] / "mylab" / "tokenizer.pt"
    result = torchpack(installed, lab, "diff", a, b)
    assert result.returncode == 1
    assert result.stdout == (
        "changed .data/torchpack/integrity.json (integrity record, only its provenance differs: "
        "the builds ran in different environments)\n"
        "provenance: recorded build environments differ\n"
        "    fakelib 1.0 \u2192 1.1\n"
        "1 record differs: 0 added, 0 removed, 1 changed\n"
    )
    document = json.loads(torchpack(installed, lab, "diff", "--json", a, b).stdout)
    assert document["provenance"] == [{"key": "extern_distributions.fakelib", "a": "1.0", "b": "1.1"}]
    assert {change["kind"] for change in document["changed"]} == {"derived"}


def test_verify_takes_several_archives_and_fails_if_any_does(installed, lab, tmp_path):
    good = [lab["seed1"] / "mylab" / "cnn.pt", lab["seed2"] / "mylab" / "cnn.pt"]
    result = torchpack(installed, lab, "verify", *good)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("2 archives: 2 OK")
    missing = tmp_path / "missing.pt"
    result = torchpack(installed, lab, "verify", good[0], missing, good[1])
    assert result.returncode == 1
    assert f"{missing}: FAILED: {missing}: no such archive" in result.stdout
    assert result.stdout.rstrip().endswith(f"3 archives: 2 OK, 1 FAILED: {missing}")
    document = json.loads(torchpack(installed, lab, "verify", "--json", good[0], missing).stdout)
    assert document["ok"] is False and document["failed"] == [str(missing)]
    assert [entry["ok"] for entry in document["archives"]] == [True, False]


def test_why_suggests_the_module_meant(installed, lab):
    archive = lab["seed1"] / "mylab" / "cnn.pt"
    result = torchpack(installed, lab, "why", archive, "mylab.cnnn")
    assert result.returncode == 2
    assert "(neither interned, extern nor mocked); did you mean 'mylab.cnn'" in result.stderr  # closest first
    # The last part of the name under the wrong package.
    result = torchpack(installed, lab, "why", archive, "lab.cnn")
    assert "did you mean 'mylab.cnn'" in result.stderr


@pytest.mark.parametrize("command", ["inspect", "why", "verify", "diff", "sign", "clean", "query"])
def test_every_subcommand_prints_its_errors_as_json_under_json(installed, lab, tmp_path, command):
    missing = tmp_path / "missing.pt"
    arguments = {
        "inspect": [missing], "why": [missing, "mylab"], "verify": [missing], "diff": [missing, missing],
        "sign": [missing, "--key", tmp_path / "no.key"], "clean": [], "query": ["//nowhere:nothing"],
    }[command]
    # clean runs outside any workspace: the error is that there is none.
    cwd = tmp_path if command == "clean" else lab["workspace"]
    result = installed.run(cwd, "torchpack", command, "--json", *map(str, arguments))
    assert result.returncode == 2, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is False and document["error"] and document["error_type"]
    assert len(result.stderr.strip().splitlines()) == 1  # the one-line message stays


def test_usage_errors_are_json_under_json(installed, lab):
    result = installed.run(lab["workspace"], "torchpack", "inspect", "--json", "--no-such-flag", "x.pt")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document == {"ok": False, "error": "torchpack: unrecognized arguments: --no-such-flag", "error_type": "UsageError"}


def test_query_takes_out_like_build(installed, lab, tmp_path):
    result = torchpack(installed, lab, "query", "//mylab:cnn", "--out", tmp_path / "elsewhere", "--json")
    assert result.returncode == 0, result.stderr
    [target] = json.loads(result.stdout)["targets"]
    assert target["output"] == str((tmp_path / "elsewhere" / "mylab" / "cnn.pt").resolve())
