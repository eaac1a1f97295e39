"""Export ONE target in the current process: the build step shared by the CLI and Bazel.

Usage::

    python -m torchpack.build.action --definition DEF.json --workspace ROOT --output OUT.pt \\
        [--dep LABEL=ARCHIVE ...] [--report REPORT.json] [--confine] [--python-path FOLDER ...] [--verbose]

``python -m torchpack.build`` runs every export through this module, in a fresh interpreter
with a sanitised environment; the Bazel rule runs the same module, so both produce the same
bytes for the same definition.  Sanitising the environment (``PYTHONHASHSEED=0``, ``TZ=UTC``,
``LC_ALL=C.UTF-8``, umask 022, ...) is the caller's job; this module puts ``ROOT`` first on
``sys.path``, seeds ``random``, ``numpy`` (when installed) and ``torch`` from the target's seed,
exports, and renames a temporary file next to ``OUT.pt`` into place, so that a failed or killed
export leaves no output.  The temporary's name carries the pid and a random part
(``.OUT.pt.tmp-PID-XXXXXXXX``), so concurrent builds of one target never share one; and the
rename happens only while the process that started the export is alive: an export whose
parent died (a build CLI killed with SIGKILL) abandons its work instead of writing the output
later.  On failure it prints one line naming the BUILD file, the target and
the key to stderr (with ``--verbose``, the traceback too) and exits with status 1; a bad
command line or definition exits with status 2.

``--dep LABEL=ARCHIVE`` gives the archive built for each label in ``deps``.  ``--report``
writes a JSON object ``{"inputs": [...], "distributions": [...], "sha256": ..., "size": ...,
"error": null | "message"}``; ``inputs`` lists every file the export read (interned sources,
resources, files the factories opened, workspace modules they imported, and the modules of
libraries it used that no distribution in site-packages installed: an editable install, a
PYTHONPATH or ``.pth`` folder): workspace-relative posix paths, else absolute; installed code
is named by its distribution in ``distributions`` (those the archive externs or interns, and
the libraries the export's code used without packaging them), and the standard library by
neither.  The action cache of ``python -m torchpack.build`` keys on their digests and versions.

``--confine`` (the CLI passes it) keeps the inputs inside the workspace: a declared ``text`` or
``binary`` file, or any file the export read through a workspace path, whose real path leaves
the workspace (a symlink to ``/etc/hostname``, a symlinked folder) fails the export, naming
the key and the file.  Under Bazel the sandbox decides what an action sees (its inputs are
symlinks by design), so the Bazel rule does not pass it.

DEF.json schema
---------------
The canonical definition of one target: a JSON object with sorted keys and every key present
(:meth:`torchpack.build.targets.Target.definition_json` writes it; ``python -m torchpack.build
--list --json`` prints it for every target).  It is the normalised BUILD.toml table plus the
label; file paths are relative to the workspace root::

    {
      "label":   "//examples/tinynet:tinynet",        # absolute label
      "out":     "tinynet.pt",                        # output file name
      "seed":    0,                                   # RNG seed, 0 <= seed < 2**32
      "deps":    ["//examples/other:other"],          # absolute labels, sorted
      "deny":    [ACTION, ...],                       # registered in this order:
      "mock":    [ACTION, ...],                       #   deny, mock, extern, intern
      "extern":  [ACTION, ...],                       #   (first matching pattern wins)
      "intern":  [ACTION, ...],
      "modules": ["pkg.module", ...],                 # save_module, in this order
      "sources": {"pkg.mod": {"source": "...", "package": false}},  # save_source_string
      "text":    {"pkg/config.json": "examples/tinynet/config.json"},  # record: file (UTF-8)
      "binary":  {"pkg/blob.bin": "examples/tinynet/blob.bin"},      # record: file
      "pickle":  {"pkg/model.pkl": OBJECT, ...},      # save_pickle, in record order
      "requires": ["numpy>=2,<3"],                    # only when set: PEP 508 pins, checked
                                                      #   first, recorded in the provenance
      "main":    "pkg.serve:main"                     # only when set: the entry point
    }

BUILD.toml's ``data`` globs are expanded into ``binary`` entries; a definition has no ``data``.

    ACTION = {"include": ["glob", ...], "exclude": ["glob", ...], "allow_empty": true}
    OBJECT = {"call": "module:function", "args": {...}, "dep_args": {"name": LOADED}}
           | {"attr": "module:name"}
           | LOADED
    LOADED = {"from": "//label:name", "record": "pkg/model.pkl"}  # unpickled from a dep

A record path ``a/b/c.pkl`` is saved as package ``a.b``, resource ``c.pkl``.  ``call`` objects
are ``function(**args, **{name: loaded object})``.  The exporter's importer is the deps'
``PackageImporter``\\ s (in ``deps`` order) followed by ``sys_importer``, so objects loaded from
a dependency are re-exported with the code they were packaged with.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import posixpath
import random
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .cache import file_digest, temporary_prefix
from .data_files import carry_dep_resources, package_path
from .inputs import ReadRecorder, export_inputs
from .labels import Label, LabelError, parse_label
from .schema import BuildFileError, locate_target_line, target_error, target_from_definition
from .targets import Call, Loaded, PickleSource, Target, split_record
from .workspace import flag_python_path

Key = tuple[str | int, ...]
ACTIONS_KEY: Key = ("intern/extern/mock/deny",)


class ExportError(Exception):
    """The export failed at key ``path`` of the target; ``message`` says why, without a traceback."""

    def __init__(self, path: Key, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


@contextlib.contextmanager
def _step(key: Key, what: str) -> Iterator[None]:
    """Attribute any failure inside the block to ``key``, prefixing ``what`` was being done."""
    try:
        yield
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(key, f"{what}{_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    broken = getattr(exc, "by_reason", None)
    if isinstance(broken, dict) and broken:
        # torchpack's PackagingError: per reason, the modules, what is wrong and the fix.
        return "; ".join(
            f"{', '.join(m.name for m in modules)}: {reason.description} Hint: {reason.hint}."
            for reason, modules in broken.items()
        )
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _in_build_terms(target: Target, root: Path, error: Any) -> ExportError:
    """A PackagingError as what to change in the BUILD.toml: for a module no pattern matches,
    the pattern to add and the key to add it to; for every module the import chain that
    pulled it in (``<mylab.cnn.pkl> -> mylab.cnn -> numpy``, a pickle in angle brackets)."""
    from torchpack.errors import BrokenReason

    parts, keys = [], []
    for reason, modules in error.by_reason.items():
        for module in modules:
            chain = f" (import chain: {' -> '.join(module.import_path or (module.name,))})"
            if reason is not BrokenReason.NO_ACTION:
                parts.append(f"{module.name}: {reason.description} Hint: {reason.hint}.{chain}")
                keys.append(ACTIONS_KEY)
                continue
            top = module.name.partition(".")[0]
            spec = importlib.util.find_spec(top) if top not in sys.modules else sys.modules[top].__spec__
            origin = getattr(spec, "origin", None) or next(iter(getattr(spec, "submodule_search_locations", None) or []), None)
            # Workspace code is what a target interns; anything installed is left to the
            # loading environment.
            kind = "intern" if origin and Path(origin).resolve().is_relative_to(root) else "extern"
            line = locate_target_line(root, target.label, (kind,))
            where = f" ({target.label.build_file}:{line})" if line else ""
            parts.append(f'{module.name} matches no pattern: add "{top}.**" to {kind} of {target.label}{where}{chain}')
            keys.append((kind,))
    # The error's own line points at the key to change when there is one.
    return ExportError(keys[0] if len(set(keys)) == 1 else ACTIONS_KEY, "; ".join(parts))


def _resolve(spec: str, key: Key) -> Any:
    module_name, _, qualname = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ExportError(key, f"cannot import module {module_name}: {_one_line(exc)}") from exc
    for attribute in qualname.split("."):
        try:
            obj = getattr(obj, attribute)
        except AttributeError:
            raise ExportError(key, f"{spec}: {getattr(obj, '__name__', module_name)} has no attribute {attribute!r}") from None
    return obj


def _set_sys_path(root: Path, python_path: tuple[str, ...]) -> None:
    # Without -P (safe_path), sys.path[0] is the caller's cwd or script folder: an accident of
    # how the interpreter was started, not an input of the build.
    entries = sys.path if getattr(sys.flags, "safe_path", False) else sys.path[1:]
    torchpack_home = str(Path(__file__).resolve().parents[2])
    first = [str(root / folder) if folder else str(root) for folder in python_path]
    sys.path[:] = first + [p for p in entries if p and p not in first]
    if torchpack_home not in sys.path:
        # Keep torchpack importable when it is neither installed nor inside the workspace.
        sys.path.append(torchpack_home)


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    if importlib.util.find_spec("numpy") is not None:
        import numpy

        numpy.random.seed(seed)
    torch.manual_seed(seed)


def _load(loaded: Loaded, importers: dict[Label, Any], key: Key) -> Any:
    package, resource = split_record(loaded.record)
    with _step(key, f"cannot load {loaded.record} from {loaded.dep}: "):
        return importers[loaded.dep].load_pickle(package, resource)


def _make_object(record: str, source: PickleSource, importers: dict[Label, Any]) -> Any:
    base = ("pickle", record)
    if isinstance(source, Loaded):
        return _load(source, importers, base)
    if not isinstance(source, Call):
        return _resolve(source.attribute, (*base, "attr"))
    key = (*base, "call")
    function = _resolve(source.function, key)
    kwargs = dict(source.args)
    for name, loaded in source.dep_args.items():
        kwargs[name] = _load(loaded, importers, (*base, "dep_args", name))
    with _step(key, f"{source.function}(...) raised "):
        return function(**kwargs)


class _Confinement:
    """``--confine``: refuse an input whose real path leaves the workspace.

    A symlink (to a file, or a folder above it) inside the workspace would otherwise let a
    BUILD.toml or a factory package any file of the machine, e.g. ``/etc/hostname``.  Declared
    files are checked before they are read; files the export read through a workspace path
    (imports, resources, factories' ``open``) after each key's work, so that the error names it.
    """

    def __init__(self, root: Path, recorder: ReadRecorder, enabled: bool) -> None:
        self.root, self.recorder, self.enabled = root, recorder, enabled
        self._checked: set[str] = set()
        self._prefix = str(root) + os.sep

    def _escape(self, path: Path) -> Path | None:
        real = path.resolve()
        return None if real.is_relative_to(self.root) else real

    def declared(self, key: Key, file: str) -> None:
        if self.enabled and (real := self._escape(self.root / file)) is not None:
            raise ExportError(key, f"file {file} resolves to {real}, outside the workspace {self.root}; inputs must stay inside it")

    def reads(self, key: Key, exporter: Any) -> None:
        if not self.enabled:
            return
        fresh = (self.recorder.paths | set(exporter.read_files if exporter is not None else ())) - self._checked
        for path in sorted(fresh):
            self._checked.add(path)
            if path.startswith(self._prefix) and (real := self._escape(Path(path))) is not None:
                shown = Path(path).relative_to(self.root).as_posix()
                raise ExportError(key, f"the export read {shown}, which resolves to {real}, outside the workspace {self.root}; inputs must stay inside it")


@contextlib.contextmanager
def _confined_step(confinement: _Confinement, exporter: Any, key: Key, what: str) -> Iterator[None]:
    """:func:`_step`, then the confinement check of what the step read."""
    with _step(key, what):
        yield
    confinement.reads(key, exporter)


def _save_everything(exporter: Any, target: Target, root: Path, importers: dict[Label, Any], confinement: _Confinement) -> None:
    def step(key: Key, what: str) -> contextlib.AbstractContextManager[None]:
        return _confined_step(confinement, exporter, key, what)

    for kind, action in target.actions():
        with step((kind,), f"{kind}({list(action.include)}): "):
            # deny() has no allow_empty: a deny that matches nothing is what its author hopes for.
            options = {} if kind == "deny" else {"allow_empty": action.allow_empty}
            getattr(exporter, kind)(list(action.include), exclude=list(action.exclude), **options)
    for module, source in target.sources.items():
        with step(("sources", module), "cannot save the source: "):
            exporter.save_source_string(module, source.source, is_package=source.package)
    for index, module in enumerate(target.modules):
        with step(("modules", index), f"cannot save module {module}: "):
            exporter.save_module(module)
    for record, file in target.text.items():
        confinement.declared(("text", record), file)
        with step(("text", record), f"cannot save {file}: "):
            exporter.save_text(*split_record(record), (root / file).read_bytes().decode("utf-8"))
    for record, file in target.binary.items():
        confinement.declared(("binary", record), file)
        with step(("binary", record), f"cannot save {file}: "):
            exporter.save_binary(*split_record(record), (root / file).read_bytes())
    for record, source in target.pickle.items():
        with step(("pickle", record), ""):
            obj = _make_object(record, source, importers)
        with step(("pickle", record), "cannot pickle the object: "):
            exporter.save_pickle(*split_record(record), obj)


class _ParentWatch:
    """Abandon the export when the process that started it dies.

    The build CLI stops its exports when it is interrupted; killed with SIGKILL it cannot, and
    an export finishing later would write an output nobody asked for any more.  The final
    rename and this check share a lock, so the output appears only while the parent lives.
    """

    def __init__(self, temporary: Path) -> None:
        self.parent = os.getppid()
        self.temporary = temporary
        self._lock = threading.Lock()
        self._done = threading.Event()
        threading.Thread(target=self._watch, name="torchpack-parent-watch", daemon=True).start()

    def _orphaned(self) -> bool:
        return os.getppid() != self.parent

    def _watch(self) -> None:
        while not self._done.wait(0.2):
            with self._lock:
                if self._orphaned():
                    self.temporary.unlink(missing_ok=True)
                    if os.getpgrp() == os.getpid():
                        # Leader of its own group (the CLI starts it so): whatever the
                        # packaged code started goes too, this process last.
                        os.killpg(os.getpid(), signal.SIGKILL)
                    os._exit(1)

    def commit(self, output: Path) -> None:
        with self._lock:
            if self._orphaned():
                raise SystemExit(1)  # export()'s `finally` removes the temporary
            os.replace(self.temporary, output)
            self._done.set()


def save_target_contents(exporter: Any, target: Target, root: Path) -> None:
    """Save what ``target`` holds (sources, modules, resources, pickles) under the exporter's
    own patterns, not the target's: what ``torchpack plan`` dry-runs to propose patterns. Not
    confined: a plan reads what the target reads; judging that is the build's job."""
    bare = replace(target, deny=(), mock=(), extern=(), intern=())
    _save_everything(exporter, bare, root, {}, _Confinement(root, ReadRecorder(), enabled=False))


def _undeclared_resources(target: Target, root: Path, python_path: tuple[str, ...], exporter: Any, read: set[str], skip: set[Path]) -> None:
    """Fail on a workspace file the export read below an interned package's folder that the
    archive does not hold: the packaged code reads it at load too, and would not find it.

    Module code (sources, bytecode, extensions) is the actions' business, and files outside
    interned packages (a checkpoint a factory loads) are build inputs only: both pass.
    """
    import importlib.machinery


    interned = set(exporter.interned_modules())
    declared = {root / file for file in (*target.text.values(), *target.binary.values())}
    code_suffixes = (*importlib.machinery.all_suffixes(), ".pyc")
    inside = os.path.join(root, "")  # a cheap first cut: ``read`` may hold all of torch's files
    for path in sorted(Path(p) for p in read if p.startswith(inside)):
        if not path.is_relative_to(root) or path.suffix in code_suffixes or path in declared or not path.is_file():
            continue
        if any(path.is_relative_to(folder) for folder in skip):
            continue
        file = path.relative_to(root).as_posix()
        record = package_path(file, python_path)
        folders = record.split("/")[:-1] if record else []
        owner = next((".".join(folders[:d]) for d in range(len(folders), 0, -1) if ".".join(folders[:d]) in interned), None)
        if owner is None:
            continue
        in_package = posixpath.relpath(file, target.label.package or ".")
        suggestion = f'text = {{ "{record}" = "{in_package}" }}'
        if not in_package.startswith("../"):
            suggestion += f' (or data = ["{in_package}"] for its bytes as they are)'
        raise ExportError(
            ("text",),
            f"the export read {file}, a resource of the interned package {owner}, which the archive would not "
            f"contain (loading would fail): add \"{record}\" to text of {target.label}: {suggestion}",
        )


@dataclass(frozen=True)
class Exported:
    """What an export read and wrote, for the report."""

    read: list[Path]  # files the exporter read, and the declared text/binary files
    tops: set[str]  # top-level modules the archive externs
    sha256: str
    size: int


def _check_compat(archive: Path, loader: str) -> None:
    """Fail the target, naming each finding, when its packaged code would load differently in ``loader``."""
    from torchpack._archive_reader import open_archive
    from torchpack.analyze.compat import torch_package_findings

    findings = torch_package_findings(open_archive(str(archive)))
    if findings:
        listed = "\n  ".join(finding.describe() for finding in findings)
        raise ExportError(("compat",), f"packaged code would not load the same in {loader}:\n  {listed}")


def export(
    target: Target,
    root: Path,
    output: Path,
    deps: dict[Label, Path],
    confinement: _Confinement | None = None,
    python_path: tuple[str, ...] = ("",),
) -> Exported:
    """Export ``target`` to ``output`` (atomically); return what the export read and wrote."""
    from torchpack import PackageExporter, PackageImporter, sys_importer
    from torchpack.errors import PackagingError

    confinement = confinement or _Confinement(root, ReadRecorder(), enabled=False)
    missing = [str(dep) for dep in target.deps if dep not in deps]
    if missing:
        raise ExportError(("deps",), f"no archive given for {', '.join(missing)} (pass --dep LABEL=ARCHIVE)")
    from .requirements import first_unsatisfied

    failed = first_unsatisfied(target.requires)
    if failed is not None:
        raise ExportError(("requires", failed[0]), f"{failed[1]}; install a version it allows, or change requires")
    importers = {}
    for dep in target.deps:
        with _step(("deps",), f"cannot open the archive of {dep} ({deps[dep]}): "):
            importers[dep] = PackageImporter(deps[dep])

    _seed(target.seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the output, so that the final rename is atomic; pid and random part keep
    # concurrent builds of one target (--check, two CLIs) apart, and the pid tells a later
    # build whether the owner still lives.
    handle, name = tempfile.mkstemp(prefix=f"{temporary_prefix(output)}{os.getpid()}-", dir=output.parent)
    temporary = Path(name)
    try:
        # The exporter writes into a stream we own, so that this `finally` is the only cleanup
        # needed; the exporter's context manager discards its state when the body raises.
        with open(handle, "wb") as stream:
            watch = _ParentWatch(temporary)
            os.fchmod(stream.fileno(), 0o644)  # the same mode whatever the umask
            with _step(ACTIONS_KEY, "cannot create the exporter: "):
                exporter = PackageExporter(
                    stream, importer=[*importers.values(), sys_importer], pattern_precedence="most-specific",
                    requires=target.requires, entry_point=target.main,
                )
            with exporter:
                _save_everything(exporter, target, root, importers, confinement)
                if target.main is not None:
                    with _step(("main",), "cannot package the entry point: "):
                        # Resolved through the actions like any import of the package's code.
                        exporter.add_dependency(target.main.partition(":")[0])
                with _step(("deps",), "cannot copy a dependency's resources: "):
                    carry_dep_resources(exporter, target, importers)
                # close() resolves the dependency graph (unmatched, denied or broken modules
                # fail here); called explicitly so that such errors point at the action keys.
                with _confined_step(confinement, exporter, ACTIONS_KEY, ""):
                    try:
                        exporter.close()
                    except PackagingError as error:
                        raise _in_build_terms(target, root, error) from error
            skip = {output.parent, *(p.parent for p in deps.values())}
            if os.environ.get("TORCHPACK_CACHE_DIR"):
                skip.add(Path(os.environ["TORCHPACK_CACHE_DIR"]).resolve())
            _undeclared_resources(target, root, python_path, exporter, confinement.recorder.paths, skip)
            read = [Path(p) for p in exporter.read_files]
            tops = {name.partition(".")[0] for name in exporter.externed_modules()}
            stream.flush()
            os.fsync(stream.fileno())
        if target.compat is not None:
            _check_compat(temporary, target.compat)
        sha256, size = file_digest(temporary), temporary.stat().st_size
        watch.commit(output)
    finally:
        temporary.unlink(missing_ok=True)
    return Exported(read + [root / file for file in (*target.text.values(), *target.binary.values())], tops, sha256, size)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m torchpack.build.action", description="Export one torchpack target.")
    parser.add_argument("--definition", required=True, type=Path, help="the target's canonical definition (DEF.json)")
    parser.add_argument("--workspace", required=True, type=Path, help="workspace root: sys.path[0] and base of file paths")
    parser.add_argument("--output", required=True, type=Path, help="archive to write (atomically)")
    parser.add_argument("--dep", action="append", default=[], metavar="LABEL=ARCHIVE", help="archive of a dependency")
    parser.add_argument("--report", type=Path, help="write the files read (and any error) as JSON here")
    parser.add_argument(
        "--python-path", action="append", default=[], metavar="FOLDER",
        help="folder, relative to the workspace, to import code from (repeatable, in order; default: the workspace)",
    )
    parser.add_argument("--confine", action="store_true", help="refuse inputs whose real path leaves the workspace")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of a failure")
    return parser.parse_args(argv)


def _write_report(path: Path | None, error: str | None, **facts: Any) -> None:
    if path is not None:
        document = {"inputs": [], "distributions": [], "sha256": None, "size": None, **facts, "error": error}
        path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # SIGTERM (the CLI cancelling a build, a CI timeout) must unwind through export()'s
    # `finally` so that the temporary archive is removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    root = args.workspace.resolve()
    try:
        target = target_from_definition(json.loads(args.definition.read_text(encoding="utf-8")), file=str(args.definition))
        deps = {}
        for item in args.dep:
            label, sep, archive = item.partition("=")
            if not sep:
                raise ValueError(f"--dep {item!r}: expected LABEL=ARCHIVE")
            deps[parse_label(label)] = Path(archive).resolve()
    except (OSError, ValueError, LabelError, BuildFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        _write_report(args.report, str(exc))
        return 2

    python_path = flag_python_path(args.python_path)
    # What torch and the exporter import (numpy through torch, blake3) is the toolchain, keyed
    # by torch's version; anything imported after this is the target's own doing.
    import torch  # noqa: F401

    from torchpack import PackageExporter, PackageImporter  # noqa: F401

    preloaded = frozenset(name.partition(".")[0] for name in sys.modules)
    _set_sys_path(root, python_path)
    recorder = ReadRecorder()
    sys.addaudithook(recorder)
    try:
        confinement = _Confinement(root, recorder, args.confine)
        exported = export(target, root, args.output.resolve(), deps, confinement, python_path)
    except ExportError as exc:
        message = str(target_error(root, target.label, exc.path, exc.message))
        if args.verbose:
            # The frames only: the exception's own text is the error line below, in BUILD.toml
            # terms (a PackagingError's would speak of PackageExporter(debug=True)).
            cause = exc.__cause__ or exc
            frames = "".join(traceback.format_tb(cause.__traceback__)).rstrip()
            print(f"Traceback (most recent call last):\n{frames}", file=sys.stderr)
            print(f"({type(cause).__module__}.{type(cause).__qualname__})", file=sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        _write_report(args.report, message)
        return 1
    inputs, distributions = export_inputs(root, exported.read, exported.tops, recorder, {args.output.resolve(), *deps.values()}, preloaded)
    _write_report(args.report, None, inputs=inputs, distributions=distributions, sha256=exported.sha256, size=exported.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
