"""``torchpack plan TARGET|MODULE:ATTR``: a working intern/extern/mock set, each entry with its reason.

The set is found the way an export would find it, without the export-and-fail rounds: a
dry-run export (written to memory, then dropped) follows every import with a catch-all
``intern("**")``; each top-level package it reaches is then decided once, by what is
installed:

* not installed, imported unconditionally -> ``mock`` (imported only under a guard or in a
  function, the exporter leaves it out: the one summary line lists those);
* installed from a distribution that ships compiled extensions -> ``extern``;
* installed pure Python -> ``intern``; ``extern`` instead for the distributions torch itself
  requires (they are wherever torch is; a second ``typing_extensions`` would patch ``typing``
  twice) and for those named with ``--extern``.

A second dry run with those decisions drops what only the now-extern packages imported and
checks what is left; modules that still cannot be interned get an entry of their own.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import io
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _records as records
from ._output import InputError, print_json

HELP = "propose intern/extern/mock patterns for a target or an object, with reasons"
DESCRIPTION = (
    "Resolve the dependencies of a BUILD.toml target (//dir:name) or of an object "
    "(module:attribute; --call to call it first) and print a pattern set that exports, "
    "each entry with its reason."
)

#: The exporter's own support modules and pickles are no packages to decide on.
_NOT_PACKAGES = ("torch_package_importer", "_mock")


@dataclass(frozen=True)
class Entry:
    action: str  # "intern", "extern" or "mock"
    pattern: str
    reason: str


@dataclass
class Plan:
    subject: str
    entries: list[Entry]
    left_out: list[str]
    distributions: list[str]  # interned distributions, whose metadata packaged code may read
    modules: int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", metavar="TARGET|MODULE:ATTR", help="//dir:name of a BUILD.toml workspace, or module:attribute")
    parser.add_argument("--call", action="store_true", help="MODULE:ATTR is a factory: plan for what calling it returns")
    parser.add_argument("--extern", action="append", default=[], metavar="NAME",
                        help="make this installed distribution or top-level package extern rather than interned (repeatable)")
    parser.add_argument("--format", choices=("toml", "python", "json"), default="toml",
                        help="a BUILD.toml snippet (default), PackageExporter calls, or JSON")


# -- what to export ---------------------------------------------------------------------------


def _object_saver(subject: str, call: bool) -> Callable[[Any], None]:
    module_name, _, attribute = subject.partition(":")
    if not module_name or not attribute:
        raise InputError(f"{subject!r} is neither a label (//dir:name) nor module:attribute")
    sys.path.insert(0, "")  # module:attr names code of the current folder, as `python -m` does
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise InputError(f"cannot import {module_name!r}: {error}") from None
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise InputError(f"module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    try:
        obj = value() if call else value
    except Exception as error:  # noqa: BLE001 - the user's factory: reported as one line
        raise InputError(f"{subject}() raised {type(error).__name__}: {error}") from None
    record = attribute.replace(".", "_")
    return lambda exporter: exporter.save_pickle("plan", f"{record}.pkl", obj)


def _target_saver(subject: str) -> Callable[[Any], None]:
    from ..build.action import save_target_contents
    from ..build.graph import load_graph
    from ..build.labels import Label, parse_pattern
    from ..build.workspace import open_workspace

    workspace = open_workspace(Path.cwd())
    label = parse_pattern(subject)
    if not isinstance(label, Label):
        raise InputError(f"{subject}: plan takes one target, not a pattern")
    target = load_graph(workspace, [label]).targets[label]
    if target.deps:
        raise InputError(f"{label} loads objects from other targets ({', '.join(map(str, target.deps))}); plan its deps, or an object")
    sys.path.insert(0, str(workspace.root))
    return lambda exporter: save_target_contents(exporter, target, workspace.root)


# -- deciding ---------------------------------------------------------------------------------


class _DryRunDone(Exception):
    """Ends a dry run inside the exporter's ``with``, so that it writes nothing."""


def _dry_run(save: Callable[[Any], None], entries: list[Entry]) -> tuple[Any, list[str]]:
    from ..package_exporter import PackageExporter

    try:
        with PackageExporter(io.BytesIO()) as exporter:
            for action in ("mock", "extern", "intern"):  # the BUILD.toml order; no pattern nests in another
                patterns = [entry.pattern for entry in entries if entry.action == action]
                if patterns:
                    getattr(exporter, action)(patterns)
            exporter.intern("**")
            save(exporter)
            graph, left_out = exporter.dependency_graph, exporter.optional_missing_modules()
            raise _DryRunDone
    except _DryRunDone:
        return graph, left_out


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.lru_cache(maxsize=None)
def _torch_requirements() -> frozenset[str]:
    """The distributions torch requires, transitively."""
    found: set[str] = set()
    pending = ["torch"]
    while pending:
        try:
            distribution = importlib.metadata.distribution(pending.pop())
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in distribution.requires or []:
            if "extra ==" in requirement:
                continue
            name = _normalized(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0))
            if name not in found:
                found.add(name)
                pending.append(name)
    return frozenset(found)


def _compiled_file(distribution: importlib.metadata.Distribution, top: str) -> str | None:
    """An extension module the distribution ships, preferably one of ``top`` itself."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    compiled = sorted(str(file) for file in distribution.files or () if str(file).endswith(suffixes))
    own = [file for file in compiled if file.startswith(f"{top}/")]
    return (own or compiled or [None])[0]


def _decide(top: str, first_user: str, extern_asked: set[str]) -> Entry:
    pattern = f"{top}.**"
    if importlib.util.find_spec(top) is None:
        return Entry("mock", pattern, f"not installed; imported unconditionally by {first_user}")
    names = records.distributions_by_package().get(top)
    if not names:
        where = getattr(importlib.util.find_spec(top), "origin", None) or "a namespace package"
        return Entry("intern", pattern, f"pure Python, from no distribution ({where})")
    distribution = importlib.metadata.distribution(names[0])
    described = f"{distribution.metadata['Name']} {distribution.version}"
    compiled = _compiled_file(distribution, top)
    if compiled is not None:
        return Entry("extern", pattern, f"compiled extension: {described} ships {compiled}")
    if {top, names[0], _normalized(names[0])} & extern_asked:
        return Entry("extern", pattern, f"installed pure Python ({described}); --extern asked for it")
    if _normalized(names[0]) in _torch_requirements():
        return Entry("extern", pattern, f"installed pure Python ({described}) that torch requires: present wherever torch is")
    return Entry("intern", pattern, f"installed pure Python: {described}")


def _is_implicit(top: str) -> bool:
    from .._stdlib import is_stdlib_module

    return top == "torch" or is_stdlib_module(top) or top in _NOT_PACKAGES


def _reached_tops(graph: Any) -> dict[str, str]:
    """Top-level package -> the first module (or pickle) that imports something in it."""
    tops: dict[str, str] = {}
    for name, node in graph.nodes.items():
        if node.is_pickle or name.startswith("<"):
            continue
        top = name.partition(".")[0]
        if _is_implicit(top) or top in tops:
            continue
        users = [user for user in graph.predecessors.get(name, {}) if user.partition(".")[0] != top]
        tops[top] = users[0] if users else name
    return tops


def _module_entries(graph: Any, decided: dict[str, Entry]) -> list[Entry]:
    """Entries for single modules that still cannot be interned under an interned package."""
    from .._resolution import ModuleAction
    from ..errors import BrokenReason

    entries = []
    for name, node in graph.nodes.items():
        top = name.partition(".")[0]
        if node.action is not ModuleAction.INTERN or decided.get(top, Entry("", "", "")).action != "intern":
            continue
        if node.broken is BrokenReason.NO_SOURCE:
            entries.append(Entry("extern", name, "compiled extension (no Python source)"))
        elif node.broken is BrokenReason.NOT_FOUND:
            users = list(graph.predecessors.get(name, {}))
            entries.append(Entry("mock", name, f"not found; imported unconditionally by {users[0] if users else '?'}"))
    return entries


def make_plan(subject: str, save: Callable[[Any], None], extern_asked: set[str]) -> Plan:
    decided: dict[str, Entry] = {}
    entries: list[Entry] = []
    for _ in range(5):  # a round decides the packages it reaches anew, or drops some; then it settles
        graph, left_out = _dry_run(save, entries)
        tops = _reached_tops(graph)
        decided.update({top: _decide(top, user, extern_asked) for top, user in tops.items() if top not in decided})
        proposal = [decided[top] for top in sorted(tops)] + _module_entries(graph, decided)
        if proposal == entries:
            break  # this round ran with exactly the proposed set: its graph is the export's
        entries = proposal
    broken = sorted(name for name, node in graph.nodes.items() if node.broken is not None)
    if broken or proposal != entries:
        raise InputError(f"{subject}: no working set found; still broken: {', '.join(broken[:10]) or 'none, but no fixed point'}")
    interned = [entry.pattern[: -len(".**")] for entry in entries if entry.action == "intern" and entry.pattern.endswith(".**")]
    distributions = sorted({records.distributions_by_package()[top][0] for top in interned if records.distributions_by_package().get(top)})
    modules = sum(1 for node in graph.nodes.values() if not node.is_pickle)
    return Plan(subject, entries, left_out, distributions, modules)


# -- printing ---------------------------------------------------------------------------------


def _left_out_line(plan: Plan, verbose: bool) -> list[str]:
    if not plan.left_out:
        return []
    lines = [f"{len(plan.left_out)} optional modules are not installed and were left out"
             + ("" if verbose else "; -v lists them")]
    if verbose:
        lines += [f"  {name}" for name in plan.left_out]
    return lines


def _format_actions(plan: Plan, verbose: bool, opening: str, closing: str, distributions: list[str]) -> str:
    """The plan's patterns, one list per action (``opening``/``closing`` around each, with
    ``{action}`` in ``opening``), each pattern with its reason, then ``distributions``
    (shown only when the plan has distributions to save) and the left-out line."""
    lines = [f"# torchpack plan for {plan.subject}: {plan.modules} modules"]
    # The patterns name disjoint top-level packages, so the declaration order decides nothing.
    for action in ("mock", "extern", "intern"):
        chosen = [entry for entry in plan.entries if entry.action == action]
        if not chosen:
            continue
        lines.append(opening.format(action=action))
        width = max(len(entry.pattern) for entry in chosen) + 3
        lines += [f'    {(chr(34) + entry.pattern + chr(34) + ",").ljust(width)}  # {entry.reason}' for entry in chosen]
        lines.append(closing)
    if plan.distributions:
        lines += distributions
    lines += ["# " + line for line in _left_out_line(plan, verbose)]
    return "\n".join(lines) + "\n"


def format_toml(plan: Plan, verbose: bool = False) -> str:
    saving = [f"# packaged code reading its version needs: save_distribution_metadata(exporter, {plan.distributions!r})"]
    return _format_actions(plan, verbose, "{action} = [", "]", saving)


def format_python(plan: Plan, verbose: bool = False) -> str:
    saving = [
        "# packaged code reads the versions of these (importlib.metadata):",
        f"torchpack.save_distribution_metadata(exporter, {plan.distributions!r})",
    ]
    return _format_actions(plan, verbose, "exporter.{action}([", "])", saving)


def run(args: argparse.Namespace) -> int:
    if args.subject.startswith("//") or args.subject.startswith(":"):
        if args.call:
            raise InputError("--call applies to module:attribute, not to a target")
        save = _target_saver(args.subject)
    else:
        save = _object_saver(args.subject, args.call)
    plan = make_plan(args.subject, save, set(args.extern) | {_normalized(name) for name in args.extern})
    if args.format == "json":
        print_json({
            "subject": plan.subject,
            "modules": plan.modules,
            "entries": [entry.__dict__ for entry in plan.entries],
            "left_out": plan.left_out,
            "distributions": plan.distributions,
        })
    else:
        print((format_python if args.format == "python" else format_toml)(plan, args.verbose), end="")
    return 0
