"""Build layer pieces that need no export: labels, workspaces, BUILD.toml validation, graph,
cache keys, ``--list``, and the messages of input errors (SPEC §3)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from build_support import REPO, build_in_process, make_workspace, write
from hypothesis import given
from hypothesis import strategies as st

from torchpack.build.action import _one_line
from torchpack.build.cache import ActionCache, file_digest
from torchpack.build.graph import TargetError, load_graph
from torchpack.build.labels import Label, LabelError, Recursive, parse_label, parse_pattern
from torchpack.build.runner import Progress, describe_differences, hermetic_env
from torchpack.build.schema import BuildFileError, parse_build_file, target_from_definition
from torchpack.build.workspace import Workspace, WorkspaceError, find_root, open_workspace
from torchpack.errors import BrokenModule, BrokenReason, PackagingError

# -- labels ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "current", "expected"),
    [
        ("//a/b:c", "", Label("a/b", "c")),
        ("//a/b", "x", Label("a/b", "b")),
        ("//:top", "x", Label("", "top")),
        (":name", "a/b", Label("a/b", "name")),
        ("sub", "a", Label("a/sub", "sub")),
        ("sub:t", "a", Label("a/sub", "t")),
        ("//a/...", "x", Recursive("a")),
        ("//...", "x", Recursive("")),
        ("...", "a", Recursive("a")),
        ("sub/...", "a", Recursive("a/sub")),
    ],
)
def test_label_forms(text: str, current: str, expected: object) -> None:
    assert parse_pattern(text, current) == expected


@pytest.mark.parametrize("text", ["", "//", "/abs:x", "//a:b:c", "//a:", "//a/../b", "//a//b", "// a", "//a:b/c"])
def test_bad_labels(text: str) -> None:
    with pytest.raises(LabelError):
        parse_pattern(text)


def test_labels_in_build_files() -> None:
    assert parse_label("name", "pkg", in_build_file=True) == Label("pkg", "name")  # Bazel: "x" == ":x"
    with pytest.raises(LabelError):
        parse_label("sub/x", "pkg", in_build_file=True)
    with pytest.raises(LabelError, match="pattern"):
        parse_label("//a/...")


_segment = st.from_regex(r"[a-z_][a-z0-9_.-]{0,8}", fullmatch=True).filter(lambda s: s not in (".", ".."))


@given(st.lists(_segment, max_size=4), _segment)
def test_label_text_round_trips(folders: list[str], name: str) -> None:
    label = Label("/".join(folders), name)
    assert parse_label(str(label), "elsewhere") == label


# -- workspace -------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["WORKSPACE", "WORKSPACE.bazel", "MODULE.bazel"])
def test_root_markers(tmp_path: Path, marker: str) -> None:
    (tmp_path / marker).write_text("")
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert find_root(tmp_path / "a" / "b") == tmp_path.resolve()


def test_pyproject_marks_root_only_with_tool_torchpack(tmp_path: Path) -> None:
    (tmp_path / "WORKSPACE").write_text("")
    inner = tmp_path / "inner"
    (inner / "pkg").mkdir(parents=True)
    (inner / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert find_root(inner / "pkg") == tmp_path.resolve()
    (inner / "pyproject.toml").write_text("[project]\nname = 'x'\n[tool.torchpack]\n")
    assert find_root(inner / "pkg") == inner.resolve()


def test_no_root(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match=r"\[tool.torchpack\]"):
        find_root(tmp_path)


def test_repository_is_a_workspace() -> None:
    assert find_root(REPO / "examples" / "tinynet") == REPO


def test_build_files_skip_outputs_and_hidden_folders(tmp_path: Path) -> None:
    workspace = open_workspace(make_workspace(tmp_path, examples=False))
    for folder in ["a", "a/b", "torchpack-out/a", ".hidden", "bazel-out/x", "venv/lib"]:
        write(tmp_path / folder / "BUILD.toml", "")
    (tmp_path / "venv" / "pyvenv.cfg").write_text("")
    assert list(workspace.build_files("")) == ["a", "a/b"]
    assert list(workspace.build_files("a/b")) == ["a/b"]
    assert workspace.output_of("a/b", "t.pt") == tmp_path.resolve() / "torchpack-out" / "a" / "b" / "t.pt"


# -- BUILD.toml ------------------------------------------------------------------------------

FULL = """
    # Every key, in every spelling.
    [model]
    deps = ["//other", ":sibling"]
    seed = 42
    out = "model-v1.pt"
    intern = ["pkg.**", "pkg"]
    extern = [{ include = "torch.**" }, { include = ["numpy.**"], exclude = "numpy.testing.**", allow_empty = false }]
    mock = "matplotlib.**"
    deny = { include = "os" }
    modules = ["pkg.extra"]
    sources = { "pkg.generated" = "VALUE = 1\\n", "pkg.sub" = { source = "", package = true } }
    text = { "pkg/config.json" = "config.json" }
    binary = { "pkg/blob.bin" = "../data/blob.bin" }

    [model.pickle."model/model.pkl"]
    call = "pkg.factory:build"
    args = { hidden = 16, names = ["a", "b"], options = { dropout = 0.5 } }
    dep_args = { encoder = { from = "//other", record = "enc/enc.pkl" } }

    [model.pickle."model/constant.pkl"]
    attr = "pkg.consts:TABLE"

    [model.pickle."model/reexported.pkl"]
    from = ":sibling"
    record = "s/s.pkl"

    [sibling]
"""


def _workspace_with(tmp_path: Path, build_toml: str, package: str = "proj") -> Workspace:
    root = make_workspace(tmp_path / "ws", examples=False)
    write(root / package / "BUILD.toml", build_toml)
    write(root / package / "config.json", "{}")
    write(root / "data" / "blob.bin", "blob")
    write(root / "other" / "BUILD.toml", "[other]\n")
    return open_workspace(root)


def test_full_schema_normalises(tmp_path: Path) -> None:
    workspace = _workspace_with(tmp_path, FULL)
    target = parse_build_file(workspace.root, "proj")["model"]
    definition = target.definition()
    assert definition == {
        "label": "//proj:model",
        "out": "model-v1.pt",
        "seed": 42,
        "deps": ["//other:other", "//proj:sibling"],
        "deny": [{"include": ["os"], "exclude": [], "allow_empty": True}],
        "mock": [{"include": ["matplotlib.**"], "exclude": [], "allow_empty": True}],
        "extern": [
            {"include": ["torch.**"], "exclude": [], "allow_empty": True},
            {"include": ["numpy.**"], "exclude": ["numpy.testing.**"], "allow_empty": False},
        ],
        "intern": [{"include": ["pkg.**", "pkg"], "exclude": [], "allow_empty": True}],
        "modules": ["pkg.extra"],
        "sources": {"pkg.generated": {"source": "VALUE = 1\n", "package": False}, "pkg.sub": {"source": "", "package": True}},
        "text": {"pkg/config.json": "proj/config.json"},
        "binary": {"pkg/blob.bin": "data/blob.bin"},
        "pickle": {
            "model/constant.pkl": {"attr": "pkg.consts:TABLE"},
            "model/model.pkl": {
                "call": "pkg.factory:build",
                "args": {"hidden": 16, "names": ["a", "b"], "options": {"dropout": 0.5}},
                "dep_args": {"encoder": {"from": "//other:other", "record": "enc/enc.pkl"}},
            },
            "model/reexported.pkl": {"from": "//proj:sibling", "record": "s/s.pkl"},
        },
    }
    # Registration order: the narrow lists first, intern last.
    assert [kind for kind, _ in target.actions()] == ["deny", "mock", "extern", "extern", "intern"]
    # DEF.json: canonical, and read back through the same validation.
    text = target.definition_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert target_from_definition(json.loads(text), file="DEF.json").definition_json() == text


def test_mixed_action_lists_keep_their_order(tmp_path: Path) -> None:
    workspace = _workspace_with(tmp_path, "[a]\nextern = ['a', 'b', { include = 'c', exclude = 'c.x' }, 'd']\n")
    target = parse_build_file(workspace.root, "proj")["a"]
    assert [(a.include, a.exclude) for a in target.extern] == [(("a", "b"), ()), (("c",), ("c.x",)), (("d",), ())]


def test_defaults(tmp_path: Path) -> None:
    workspace = _workspace_with(tmp_path, "[plain]\n")
    assert parse_build_file(workspace.root, "proj")["plain"].definition() == {
        "label": "//proj:plain", "out": "plain.pt", "seed": 0, "deps": [], "deny": [], "mock": [], "extern": [],
        "intern": [], "modules": [], "sources": {}, "text": {}, "binary": {}, "pickle": {},
    }


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[a]\nintern = [\n", "proj/BUILD.toml:2:11: TOML syntax error: Invalid value at the end of the file"),
        ("[a]\n\nseed = = 1\n", "proj/BUILD.toml:3:8: TOML syntax error: Invalid value"),
        ("[a]\nseed = 1\nseed = 2\n", "proj/BUILD.toml:3:9: TOML syntax error: Cannot overwrite a value"),
        ("[a]\nintern = 'x'\ninterns = 'y'\n", "proj/BUILD.toml:3: target 'a': key 'interns': unknown key (did you mean 'intern'?)"),
        ("[a]\n\nseed = '1'\n", "proj/BUILD.toml:3: target 'a': key 'seed': expected an integer, got a string (\"1\")"),
        ("[a]\nseed = true\n", "target 'a': key 'seed': expected an integer, got a boolean (true)"),
        ("[a]\nseed = -1\n", "target 'a': key 'seed': must be between 0 and 4294967295"),
        ("[a]\nintern = [1]\n", "target 'a': key 'intern[0]': expected a module glob or a table, got an integer (1)"),
        ("[a]\nextern = { include = 'x', excludes = 'y' }\n", "key 'extern.excludes': unknown key (did you mean 'exclude'?)"),
        ("[a]\nmock = [{ exclude = 'y' }]\n", "key 'mock[0].include': missing"),
        ("[a]\nout = 'sub/x.pt'\n", "key 'out': 'sub/x.pt' must be a plain file name"),
        ("[a]\n[b]\nout = 'a.pt'\n", "proj/BUILD.toml:3: target 'b': key 'out': 'a.pt' is also the output of target 'a'"),
        ("[a]\ntext = { 'flat.txt' = 'config.json' }\n", "key 'text.\"flat.txt\"': record path 'flat.txt' needs a folder"),
        ("[a]\ntext = { 'p/x.txt' = 'missing.txt' }\n", "key 'text.\"p/x.txt\"': file proj/missing.txt does not exist"),
        ("[a]\nbinary = { 'p/x' = '../../etc/passwd' }\n", "must be a path inside the workspace"),
        ("[a]\ntext = { '.data/x' = 'config.json' }\n", "'.data/' is reserved"),
        ("[a]\ntext = { 'a.b/x' = 'config.json' }\n", "folders must not contain '.'"),
        ("[a.pickle.'p/x.pkl']\ncall = 'm:f'\nattr = 'm:x'\n", "key 'pickle.\"p/x.pkl\"': needs exactly one of call"),
        ("[a.pickle.'p/x.pkl']\nattr = 'm:x'\nargs = {}\n", "key 'pickle.\"p/x.pkl\".args': not allowed together with 'attr'"),
        ("[a.pickle.'p/x.pkl']\ncall = 'no colon'\n", "key 'pickle.\"p/x.pkl\".call': 'no colon' is not of the form"),
        ("[a.pickle.'p/x.pkl']\nfrom = '//other'\nrecord = 'r/r.pkl'\n", "key 'pickle.\"p/x.pkl\".from': //other:other is not in deps"),
        ("[a.pickle.'p/x.pkl']\ncall = 'm:f'\nargs = { when = 1979-05-27 }\n", "key 'pickle.\"p/x.pkl\".args.when': dates and times"),
        ("[a.pickle.'p/x.pkl']\ncall = 'm:f'\nargs = { x = nan }\n", "nan and inf are not supported"),
        ("[a]\ndeps = ['//a:b:c']\n", "target 'a': key 'deps': label '//a:b:c' has more than one ':'"),
        ("[a]\nsources = { 'not a module' = '' }\n", "key 'sources.\"not a module\"': 'not a module' is not a dotted module name"),
        ("seed = 1\n", "proj/BUILD.toml:1: top-level key 'seed' is not a target"),
        ("['bad name']\n", "target 'bad name': invalid target name"),
    ],
)
def test_build_file_errors_name_file_target_and_key(tmp_path: Path, toml: str, expected: str) -> None:
    workspace = _workspace_with(tmp_path, toml)
    with pytest.raises(BuildFileError) as info:
        parse_build_file(workspace.root, "proj")
    assert expected in str(info.value)


def test_error_in_nested_table_points_at_its_line(tmp_path: Path) -> None:
    toml = '[a]\nintern = "x"\n\n[a.pickle."p/x.pkl"]\ncall = "m:f"\nargs = { n = 1 }\ndep_args = 3\n'
    workspace = _workspace_with(tmp_path, toml)
    with pytest.raises(BuildFileError) as info:
        parse_build_file(workspace.root, "proj")
    assert str(info.value).startswith("proj/BUILD.toml:7: target 'a': key 'pickle.\"p/x.pkl\".dep_args': expected a table")


# -- graph -----------------------------------------------------------------------------------


def test_order_deps_first(tmp_path: Path) -> None:
    workspace = _workspace_with(tmp_path, "[top]\ndeps = [':mid', '//other']\n[mid]\ndeps = ['//other']\n[alone]\n")
    graph = load_graph(workspace, [parse_pattern("//proj:top")])
    assert [str(label) for label in graph.order] == ["//other:other", "//proj:mid", "//proj:top"]
    everything = load_graph(workspace, [parse_pattern("//...")])
    assert set(everything.requested) == {Label("other", "other"), *(Label("proj", n) for n in ("top", "mid", "alone"))}


def test_cycle_is_printed(tmp_path: Path) -> None:
    workspace = _workspace_with(tmp_path, "[a]\ndeps = [':b']\n[b]\n\ndeps = [':c']\n[c]\ndeps = [':a']\n")
    with pytest.raises(BuildFileError) as info:
        load_graph(workspace, [parse_pattern("//proj:b")])
    assert str(info.value) == (
        "proj/BUILD.toml:2: target 'a': key 'deps': dependency cycle: //proj:a -> //proj:b -> //proj:c -> //proj:a"
    )


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    workspace = _workspace_with(tmp_path, "[a]\ndeps = ['a']\n")
    with pytest.raises(BuildFileError, match=r"dependency cycle: //proj:a -> //proj:a"):
        load_graph(workspace, [parse_pattern("//proj:a")])


def test_unknown_labels(tmp_path: Path) -> None:
    workspace = _workspace_with(tmp_path, "[a]\nintern = 'x'\ndeps = ['//other:nope']\n[b]\ndeps = ['//missing']\n")
    with pytest.raises(BuildFileError) as info:
        load_graph(workspace, [parse_pattern("//proj:a")])
    assert str(info.value) == (
        "proj/BUILD.toml:3: target 'a': key 'deps': unknown label //other:nope: "
        "other/BUILD.toml declares no target 'nope' (it declares: other)"
    )
    with pytest.raises(BuildFileError, match="there is no missing/BUILD.toml"):
        load_graph(workspace, [parse_pattern("//proj:b")])
    with pytest.raises(TargetError, match="unknown label //proj:zzz"):
        load_graph(workspace, [parse_pattern("//proj:zzz")])
    with pytest.raises(TargetError, match="matches no target"):
        load_graph(workspace, [parse_pattern("//data/...")])


# -- cache -----------------------------------------------------------------------------------


def test_cache_key_tracks_inputs_definition_deps_and_distributions(tmp_path: Path) -> None:
    workspace = _workspace_with(tmp_path, "[a]\nseed = 1\n[b]\nseed = 2\n")
    targets = parse_build_file(workspace.root, "proj")
    cache = ActionCache(workspace.out, workspace.root, toolchain="t1")
    source = write(workspace.root / "proj" / "mod.py", "x = 1\n")
    output = write(workspace.out / "proj" / "a.pt", "archive")
    inputs = cache.digest_inputs(["proj/mod.py"])
    assert inputs == {"proj/mod.py": file_digest(source)}
    key = cache.key(targets["a"], inputs, {}, {"torch": "1"})
    cache.store(targets["a"], {}, ["proj/mod.py"], ["torch"], output, file_digest(output), output.stat().st_size, 1.0)

    assert cache.lookup(targets["a"], {}, output) is not None
    assert cache.lookup(targets["b"], {}, output) is None  # no record for b
    assert cache.key(targets["b"], inputs, {}, {"torch": "1"}) != key  # another definition
    assert cache.key(targets["a"], inputs, {Label("x", "x"): "d"}, {"torch": "1"}) != key  # deps' digests
    assert cache.key(targets["a"], inputs, {}, {"torch": "2"}) != key  # a used distribution's version
    assert ActionCache(workspace.out, workspace.root, toolchain="t2").lookup(targets["a"], {}, output) is None
    source.write_text("x = 2\n")
    assert cache.lookup(targets["a"], {}, output) is None  # an input changed
    source.write_text("x = 1\n")
    assert cache.lookup(targets["a"], {}, output) is not None
    # Another archive in place of the output: the stored one is restored.
    output.unlink()
    write(output, "tampered")
    assert cache.lookup(targets["a"], {}, output) is not None and output.read_text() == "archive"
    source.unlink()
    assert cache.digest_inputs(["proj/mod.py"]) is None
    cache.forget(targets["a"].label)
    assert cache.records(targets["a"].label) == []
    assert list(cache.blobs.iterdir()) == []  # nothing refers to the stored archive any more


def test_corrupt_cache_record_is_a_miss(tmp_path: Path) -> None:
    workspace = _workspace_with(tmp_path, "[a]\n")
    cache = ActionCache(workspace.out, workspace.root, toolchain="t")
    target = parse_build_file(workspace.root, "proj")["a"]
    output = write(workspace.out / "proj" / "a.pt", "archive")
    cache.store(target, {}, [], [], output, file_digest(output), output.stat().st_size, 0.0)
    assert cache.lookup(target, {}, output) is not None
    next(cache.actions.glob("*/*-*.json")).write_text("{not json")
    assert cache.records(target.label) == [] and cache.lookup(target, {}, output) is None


# -- runner pieces ---------------------------------------------------------------------------


def test_hermetic_env_is_complete_and_perturbable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    env = hermetic_env(tmp_path)
    assert env["PYTHONHASHSEED"] == "0" and env["TZ"] == "UTC" and env["LC_ALL"] == "C.UTF-8"
    assert env["SOURCE_DATE_EPOCH"] == "1700000000" and "PYTHONPATH" not in env
    perturbed = hermetic_env(tmp_path, perturbed=True)
    assert {k for k in env if env[k] != perturbed[k]} >= {"PYTHONHASHSEED", "TZ", "LC_ALL"}


def _zip(path: Path, records: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records.items():
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return path


def test_describe_differences_names_records(tmp_path: Path) -> None:
    a = _zip(tmp_path / "a.zip", {"p/x.pkl": b"1", "p/same": b"s", "p/only_a": b""})
    b = _zip(tmp_path / "b.zip", {"p/x.pkl": b"2", "p/same": b"s"})
    assert describe_differences(a, b) == "p/only_a (only in one build), p/x.pkl (content)"
    (tmp_path / "junk").write_bytes(b"not a zip")
    assert "cannot compare" in describe_differences(a, tmp_path / "junk")


def test_progress_bar_only_for_slow_exports() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    import time

    now = time.monotonic()
    progress.draw(0, 2, [(Label("a", "a"), now, None)])
    assert stream.getvalue() == ""
    progress.draw(1, 2, [(Label("a", "a"), now - 5, 10.0)])
    assert "1/2 building //a:a" in stream.getvalue() and "#" in stream.getvalue()
    progress.clear()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_packaging_error_on_one_line() -> None:
    error = PackagingError([BrokenModule("foo", BrokenReason.NO_ACTION), BrokenModule("bar", BrokenReason.NO_ACTION)])
    line = _one_line(error)
    assert "\n" not in line and line.startswith("foo, bar: Module did not match against any action pattern")
    assert _one_line(ValueError("a\n  b")) == "ValueError: a b"


# -- CLI without exports ---------------------------------------------------------------------


def test_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "ws")
    result = build_in_process(monkeypatch, root / "examples", "--list", "...")
    assert result.code == 0 and not result.exports
    assert "//examples/composed:composed  ->  ../torchpack-out/examples/composed/composed.pt  (deps: //examples/tinynet:tinynet)" in result.out
    listed = json.loads(build_in_process(monkeypatch, root, "--list", "--json", "//examples/tinynet").out)
    (entry,) = listed["targets"]
    assert entry["label"] == "//examples/tinynet:tinynet"
    assert entry["definition"]["pickle"]["tinynet/model.pkl"]["call"] == "examples.tinynet.model:build"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name at least one target"),
        (("--jobs", "0", "//..."), "--jobs must be at least 1"),
        (("//other:nope",), "error: unknown label //other:nope: other/BUILD.toml declares no target 'nope'"),
        (("//a:b:c",), "error: label '//a:b:c' has more than one ':'"),
        (("//proj:a",), "error: proj/BUILD.toml:2: target 'a': key 'seed': expected an integer"),
    ],
)
def test_usage_and_input_errors_exit_2_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], message: str
) -> None:
    workspace = _workspace_with(tmp_path, "[a]\nseed = 'x'\n")
    result = build_in_process(monkeypatch, workspace.root, *args)
    assert result.code == 2 and message in result.err
    assert "Traceback" not in result.err and not result.exports
    assert not workspace.out.exists()


def test_verbose_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = _workspace_with(tmp_path, "[a]\nseed = 'x'\n")
    result = build_in_process(monkeypatch, workspace.root, "-v", "//proj:a")
    assert result.code == 2 and "Traceback" in result.err


def test_json_error_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = _workspace_with(tmp_path, "[a]\n")
    result = build_in_process(monkeypatch, workspace.root, "--json", "//proj:zz")
    assert result.code == 2
    assert json.loads(result.out) == {"ok": False, "error": result.err.strip().removeprefix("error: "), "targets": []}


def test_no_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = build_in_process(monkeypatch, tmp_path, "//...")
    assert result.code == 2 and "no workspace root" in result.err
