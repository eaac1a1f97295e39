"""BUILD.toml parsing and validation into typed target definitions.

Every top-level table of a BUILD.toml is one target, named after the table::

    [tinynet]
    intern = ["examples.tinynet.**"]
    extern = ["torch.**"]
    text = { "tinynet/config.json" = "config.json" }

    [tinynet.pickle."tinynet/model.pkl"]
    call = "examples.tinynet.model:build"
    args = { hidden = 16 }

The README's "Build targets" section documents every key.  A :class:`Target` has one
canonical JSON form (:meth:`.targets.Target.definition`): defaults filled in, labels absolute, resource
paths workspace-relative.  That form is the cache key's basis and the ``DEF.json`` that
``torchpack.build.action`` (and the Bazel rule) consume, and :func:`target_from_definition`
reads it back through the same validation as BUILD.toml.
"""

from __future__ import annotations

import datetime
import difflib
import json
import math
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

from .labels import Label, LabelError, parse_label
from .targets import ACTION_KINDS, Action, Attr, Call, Loaded, PickleSource, Source, Target
from .toml_positions import locate_key, syntax_position

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

TARGET_KEYS = (
    *ACTION_KINDS, "deps", "seed", "out", "modules", "sources", "text", "binary", "data", "pickle", "requires", "main", "sign",
    "compat",
)
_ACTION_KEYS = ("include", "exclude", "allow_empty")
_PICKLE_KEYS = ("call", "args", "dep_args", "attr", "from", "record")
_SOURCE_KEYS = ("source", "package")
_LOADED_KEYS = ("from", "record")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_RE = re.compile(rf"{_IDENT}(\.{_IDENT})*")
_OBJECT_RE = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_SEED_MAX = 2**32 - 1  # numpy.random.seed's limit


class BuildFileError(Exception):
    """A BUILD.toml (or DEF.json) problem, located by file, line, target and key."""

    def __init__(
        self,
        file: str,
        message: str,
        *,
        target: str | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.file, self.message, self.target, self.key = file, message, target, key
        self.line, self.column = line, column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file + "".join(f":{n}" for n in (self.line, self.column) if n is not None)
        parts = [where]
        if self.target is not None:
            parts.append(f"target '{self.target}'")
        if self.key is not None:
            parts.append(f"key '{self.key}'")
        return ": ".join(parts) + f": {self.message}"


def format_key(path: tuple[str | int, ...]) -> str:
    """A key path in TOML's dotted syntax (``pickle."a/b.pkl".call``, ``intern[1].include``)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if _BARE_KEY_RE.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            text += f".{shown}" if text else shown
    return text


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({json.dumps(shown, ensure_ascii=False)})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date/time"
    return type(value).__name__


class _Checker:
    """Raises :class:`BuildFileError`\\ s for one target, locating keys in the file's text."""

    def __init__(self, file: str, target: str, text: str | None) -> None:
        self.file, self.target, self.text = file, target, text

    def error(self, path: tuple[str | int, ...], message: str) -> BuildFileError:
        line = locate_key(self.text, (self.target, *path)) if self.text is not None else None
        return BuildFileError(self.file, message, target=self.target, key=format_key(path) or None, line=line)

    def expect(self, value: Any, kind: type | tuple[type, ...], what: str, path: tuple[str | int, ...]) -> Any:
        # bool is an int subclass in Python but not in TOML: `seed = true` must be an error.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise self.error(path, f"expected {what}, got {_describe(value)}")
        return value

    def table(self, value: Any, allowed: tuple[str, ...], path: tuple[str | int, ...]) -> dict[str, Any]:
        self.expect(value, dict, "a table", path)
        for key in value:
            if key not in allowed:
                raise self.error((*path, key), _unknown_key_message(key, allowed))
        return value

    def strings(self, value: Any, what: str, path: tuple[str | int, ...]) -> tuple[str, ...]:
        """A string or an array of strings, as a tuple."""
        items = [value] if isinstance(value, str) else self.expect(value, list, f"{what} or an array of them", path)
        for index, item in enumerate(items):
            self.expect(item, str, what, (*path, index) if not isinstance(value, str) else path)
            if not item:
                raise self.error(path, f"empty {what}")
        return tuple(items)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _unknown_key_message(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(allowed)})"
    return f"unknown key{hint}"


def _parse_actions(check: _Checker, value: Any, kind: str) -> tuple[Action, ...]:
    # A glob, a list of globs (one call), a table (one call with exclude/allow_empty), or a
    # list mixing both: consecutive globs make one call, each table another.
    path: tuple[str | int, ...] = (kind,)
    if isinstance(value, str):
        return (Action(check.strings(value, "a module glob", path)),)
    entries = [value] if isinstance(value, dict) else check.expect(value, list, "globs or tables", path)
    actions: list[Action] = []
    globs: list[str] = []
    for index, entry in enumerate(entries):
        entry_path = (kind, index) if isinstance(value, list) else path
        if not isinstance(entry, dict):
            if not check.expect(entry, str, "a module glob or a table", entry_path):
                raise check.error(entry_path, "empty module glob")
            globs.append(entry)
            continue
        if globs:
            actions.append(Action(tuple(globs)))
            globs = []
        check.table(entry, _ACTION_KEYS, entry_path)
        if "include" not in entry:
            raise check.error((*entry_path, "include"), "missing: each entry needs an include glob list")
        actions.append(
            Action(
                include=check.strings(entry["include"], "a module glob", (*entry_path, "include")),
                exclude=check.strings(entry.get("exclude", []), "a module glob", (*entry_path, "exclude")),
                allow_empty=check.expect(entry.get("allow_empty", True), bool, "a boolean", (*entry_path, "allow_empty")),
            )
        )
    if globs:
        actions.append(Action(tuple(globs)))
    return tuple(actions)


def _parse_record(check: _Checker, record: str, path: tuple[str | int, ...]) -> str:
    parts = record.split("/")
    problem = None
    if len(parts) < 2:
        problem = "needs a folder, e.g. 'model/weights.pkl' (records live in packages)"
    elif any(p in ("", ".", "..") for p in parts) or "\\" in record:
        problem = "must be a relative path without empty, '.' or '..' parts"
    elif parts[0] == ".data":
        problem = "'.data/' is reserved for the archive's framework records"
    elif any("." in p for p in parts[:-1]):
        problem = "folders must not contain '.' (the folder path is a dotted package name)"
    if problem:
        raise check.error(path, f"record path {record!r} {problem}")
    return record


def _parse_files(check: _Checker, value: Any, key: str, base: str, root: Path | None) -> dict[str, str]:
    files: dict[str, str] = {}
    for record, file in check.expect(value, dict, "a table of record = file", (key,)).items():
        path = (key, record)
        _parse_record(check, record, path)
        check.expect(file, str, "a file path", path)
        normal = posixpath.normpath(posixpath.join(base, file)) if file else ""
        if not file or file.startswith("/") or normal == ".." or normal.startswith("../"):
            raise check.error(path, f"file {file!r} must be a path inside the workspace, relative to the BUILD file")
        if root is not None and not (root / normal).is_file():
            raise check.error(path, f"file {normal} does not exist")
        files[record] = normal
    return files


def _parse_data(
    check: _Checker, value: Any, base: str, root: Path | None, python_path: tuple[str, ...], matched: bool
) -> dict[str, str]:
    from .data_files import DataGlobError, data_records, expand_data

    if matched:
        # The files a front end's glob matched (Bazel's, in the torch_package macro): only
        # their records are named here, as for the CLI's own matches.
        try:
            expanded = data_records(check.strings(value, "a file path", ("data",)), python_path)
        except ValueError as exc:
            raise check.error(("data",), str(exc)) from None
        return {_parse_record(check, record, ("data",)): file for record, file in expanded.items()}
    globs = check.strings(value, "a file glob", ("data",))
    if root is None:
        raise check.error(("data",), "not allowed in a definition: list the files in 'binary'")
    try:
        expanded = expand_data(root, base, globs, python_path)
    except DataGlobError as exc:
        raise check.error(("data", exc.index) if isinstance(value, list) else ("data",), exc.message) from None
    return {_parse_record(check, record, ("data",)): file for record, file in expanded.items()}


def _parse_requires(check: _Checker, value: Any) -> tuple[str, ...]:
    from .requirements import normalise_requirement

    texts = check.strings(value, "a PEP 508 requirement", ("requires",))
    try:
        return tuple(normalise_requirement(text, index) for index, text in enumerate(texts))
    except ValueError as exc:
        raise check.error(("requires", exc.args[1]) if isinstance(value, list) else ("requires",), exc.args[0]) from None


def _check_value(check: _Checker, value: Any, path: tuple[str | int, ...]) -> None:
    """Arguments must survive the trip through canonical JSON unchanged."""
    if isinstance(value, (datetime.date, datetime.time)):
        raise check.error(path, "dates and times are not supported in args; pass a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise check.error(path, "nan and inf are not supported in args")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(check, item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(check, item, (*path, key))


def _parse_loaded(check: _Checker, value: Any, path: tuple[str | int, ...], target: Label, deps: tuple[Label, ...]) -> Loaded:
    check.table(value, _LOADED_KEYS, path)
    for key in _LOADED_KEYS:
        if key not in value:
            raise check.error((*path, key), "missing: an object from a dependency needs 'from' and 'record'")
    text = check.expect(value["from"], str, "a label", (*path, "from"))
    try:
        dep = parse_label(text, target.package, in_build_file=True)
    except LabelError as exc:
        raise check.error((*path, "from"), str(exc)) from None
    if dep not in deps:
        raise check.error((*path, "from"), f"{dep} is not in deps; add it there so that it is built first")
    record = _parse_record(check, check.expect(value["record"], str, "a record path", (*path, "record")), (*path, "record"))
    return Loaded(dep, record)


def _parse_pickle(check: _Checker, record: str, value: Any, target: Label, deps: tuple[Label, ...]) -> PickleSource:
    path: tuple[str | int, ...] = ("pickle", record)
    check.table(value, _PICKLE_KEYS, path)
    kinds = [key for key in ("call", "attr", "from") if key in value]
    if len(kinds) != 1:
        found = f"found {' and '.join(kinds)}" if kinds else "found none"
        raise check.error(path, f"needs exactly one of call = 'module:function', attr = 'module:name' or from = LABEL ({found})")
    kind = kinds[0]
    stray = [k for k in value if k not in {"call": ("call", "args", "dep_args"), "attr": ("attr",), "from": _LOADED_KEYS}[kind]]
    if stray:
        raise check.error((*path, stray[0]), f"not allowed together with '{kind}'")
    if kind == "from":
        return _parse_loaded(check, value, path, target, deps)
    spec = check.expect(value[kind], str, "a 'module:name' string", (*path, kind))
    if not _OBJECT_RE.fullmatch(spec):
        raise check.error((*path, kind), f"{spec!r} is not of the form 'package.module:name'")
    if kind == "attr":
        return Attr(spec)
    args = check.expect(value.get("args", {}), dict, "a table of keyword arguments", (*path, "args"))
    _check_value(check, args, (*path, "args"))
    dep_args_value = check.expect(value.get("dep_args", {}), dict, "a table of keyword arguments", (*path, "dep_args"))
    dep_args = {name: _parse_loaded(check, v, (*path, "dep_args", name), target, deps) for name, v in dep_args_value.items()}
    for name in (*args, *dep_args):
        if not name.isidentifier():
            raise check.error((*path, "args" if name in args else "dep_args", name), "not a valid Python keyword argument name")
    both = sorted(set(args) & set(dep_args))
    if both:
        raise check.error((*path, "dep_args", both[0]), "also given in args")
    return Call(spec, args, dep_args)


def _parse_main(check: _Checker, value: Any) -> str:
    spec = check.expect(value, str, "a 'module:function' string", ("main",))
    if not _OBJECT_RE.fullmatch(spec):
        raise check.error(("main",), f"{spec!r} is not of the form 'package.module:function'")
    return spec


def _parse_compat(check: _Checker, value: Any) -> str:
    from ..analyze.compat import COMPAT_TARGETS

    if check.expect(value, str, "a string", ("compat",)) not in COMPAT_TARGETS:
        raise check.error(("compat",), f"unknown loader {value!r}; supported: {', '.join(COMPAT_TARGETS)}")
    return value


def _parse_sources(check: _Checker, value: Any) -> dict[str, Source]:
    sources = {}
    for module, entry in check.expect(value, dict, "a table of module = source", ("sources",)).items():
        path = ("sources", module)
        if not _MODULE_RE.fullmatch(module):
            raise check.error(path, f"{module!r} is not a dotted module name")
        if isinstance(entry, str):
            sources[module] = Source(entry)
            continue
        check.table(entry, _SOURCE_KEYS, path)
        if "source" not in entry:
            raise check.error((*path, "source"), "missing: the module's source code")
        sources[module] = Source(
            check.expect(entry["source"], str, "a string", (*path, "source")),
            check.expect(entry.get("package", False), bool, "a boolean", (*path, "package")),
        )
    return sources


def parse_target(
    table: Any,
    label: Label,
    *,
    file: str,
    text: str | None = None,
    base: str | None = None,
    root: Path | None = None,
    python_path: tuple[str, ...] = ("",),
    data_matched: bool = False,
) -> Target:
    """Validate one target table.

    ``base`` is the folder resource paths are relative to (the label's package for BUILD.toml,
    the root for a DEF.json); ``root``, when given, is where resource files must exist;
    ``text`` is the file's source, used to point errors at a line; ``python_path`` the
    workspace's import folders (``""``: the root), which name ``data`` files' records;
    ``data_matched``: ``data`` lists the workspace files a glob matched, not globs.
    """
    check = _Checker(file, label.name, text)
    check.table(table, TARGET_KEYS, ())

    deps_value = check.strings(table.get("deps", []), "a label", ("deps",))
    deps = []
    for dep_text in deps_value:
        try:
            dep = parse_label(dep_text, label.package, in_build_file=True)
        except LabelError as exc:
            raise check.error(("deps",), str(exc)) from None
        if dep not in deps:
            deps.append(dep)

    out = check.expect(table.get("out", f"{label.name}.pt"), str, "a file name", ("out",))
    if not _NAME_RE.fullmatch(out):
        raise check.error(("out",), f"{out!r} must be a plain file name (letters, digits, '_', '-', '.', '+')")
    seed = check.expect(table.get("seed", 0), int, "an integer", ("seed",))
    if not 0 <= seed <= _SEED_MAX:
        raise check.error(("seed",), f"must be between 0 and {_SEED_MAX}")

    modules = check.strings(table.get("modules", []), "a module name", ("modules",))
    for index, module in enumerate(modules):
        if not _MODULE_RE.fullmatch(module):
            raise check.error(("modules", index), f"{module!r} is not a dotted module name")

    package_base = label.package if base is None else base
    text_files = _parse_files(check, table.get("text", {}), "text", package_base, root)
    binary_files = _parse_files(check, table.get("binary", {}), "binary", package_base, root)
    data_files = _parse_data(check, table["data"], package_base, root, python_path, data_matched) if "data" in table else {}
    pickles_value = check.expect(table.get("pickle", {}), dict, "a table of record = object", ("pickle",))
    pickles = {}
    for record, value in pickles_value.items():
        _parse_record(check, record, ("pickle", record))
        pickles[record] = _parse_pickle(check, record, value, label, tuple(deps))

    seen: dict[str, str] = {}
    for key, records in (("text", text_files), ("binary", binary_files), ("data", data_files), ("pickle", pickles)):
        for record in records:
            if record in seen:
                raise check.error((key, record), f"record is also saved by '{seen[record]}'")
            seen[record] = key

    return Target(
        label=label,
        out=out,
        seed=seed,
        deps=tuple(sorted(deps)),
        **{kind: _parse_actions(check, table[kind], kind) if kind in table else () for kind in ACTION_KINDS},
        modules=modules,
        sources=_parse_sources(check, table.get("sources", {})),
        text=dict(sorted(text_files.items())),
        # data is a shorthand for binary entries: the definition knows only binary.
        binary=dict(sorted({**binary_files, **data_files}.items())),
        pickle=dict(sorted(pickles.items())),
        requires=_parse_requires(check, table["requires"]) if "requires" in table else (),
        main=_parse_main(check, table["main"]) if "main" in table else None,
        sign=check.expect(table.get("sign", False), bool, "a boolean", ("sign",)),
        compat=_parse_compat(check, table["compat"]) if "compat" in table else None,
    )


def parse_build_file(root: Path, package: str, python_path: tuple[str, ...] = ("",)) -> dict[str, Target]:
    """Every target declared in ``<root>/<package>/BUILD.toml``, by name."""
    label_file = Label(package, "_").build_file
    try:
        text = (root / label_file).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BuildFileError(label_file, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, column, message = syntax_position(exc, text)
        raise BuildFileError(label_file, f"TOML syntax error: {message}", line=line, column=column) from None

    targets = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise BuildFileError(
                label_file,
                f"top-level key '{name}' is not a target: declare each target as a table, e.g. [{name}]",
                line=locate_key(text, (name,)),
            )
        if not _NAME_RE.fullmatch(name):
            raise BuildFileError(
                label_file,
                "invalid target name: use letters, digits, '_', '-', '.' and '+'",
                target=name,
                line=locate_key(text, (name,)),
            )
        targets[name] = parse_target(
            table, Label(package, name), file=label_file, text=text, root=root, python_path=python_path
        )

    outs: dict[str, str] = {}
    for name, target in targets.items():
        if target.out in outs:
            raise BuildFileError(
                label_file, f"'{target.out}' is also the output of target '{outs[target.out]}'",
                target=name, key="out", line=locate_key(text, (name, "out")),
            )
        outs[target.out] = name
    return targets


def target_from_definition(data: Any, *, file: str, data_python_path: tuple[str, ...] | None = None) -> Target:
    """Read a DEF.json back (see :mod:`torchpack.build.action`); resource paths are workspace-relative.

    With ``data_python_path``, the definition may also hold ``data``: the workspace files a
    ``torch_package`` macro's glob matched, saved as binary records named below those
    python-path folders (the rule's action turns its definition into a DEF.json this way).
    """
    if not isinstance(data, dict) or not isinstance(data.get("label"), str):
        raise BuildFileError(file, "a target definition is a JSON object with a 'label' string")
    try:
        label = parse_label(data["label"])
    except LabelError as exc:
        raise BuildFileError(file, str(exc), key="label") from None
    table = {key: value for key, value in data.items() if key != "label"}
    return parse_target(
        table, label, file=file, base="", python_path=data_python_path or ("",), data_matched=data_python_path is not None
    )


def target_error(root: Path, label: Label, path: tuple[str | int, ...], message: str) -> BuildFileError:
    """An error about key ``path`` of a parsed target, pointing at its line when the file is there.

    A path of several action kinds (``("intern/extern/mock/deny",)``) is shown as is: the fix
    for an unmatched module can go in any of them.
    """
    key = path[0] if len(path) == 1 and isinstance(path[0], str) and "/" in path[0] else format_key(path)
    return BuildFileError(label.build_file, message, target=label.name, key=key or None, line=locate_target_line(root, label, path))


def locate_target_line(root: Path, label: Label, path: tuple[str | int, ...]) -> int | None:
    """The line of key ``path`` of a target (or of the deepest table above it that is there)."""
    try:
        text: str | None = (root / label.build_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None  # e.g. a Bazel sandbox holds the definition, not the BUILD.toml
    return locate_key(text, (label.name, *path))
