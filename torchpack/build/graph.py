"""Loading the targets a build needs and ordering them by their ``deps``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .labels import Label, Recursive
from .schema import parse_build_file, target_error
from .targets import Target
from .workspace import Workspace


class TargetError(Exception):
    """A requested target or a dependency does not exist, or matches nothing."""


@dataclass(frozen=True)
class BuildGraph:
    """The requested targets plus everything they depend on, in a buildable order."""

    targets: dict[Label, Target]
    requested: tuple[Label, ...]
    order: tuple[Label, ...]


class _Loader:
    """Parses each BUILD.toml at most once."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.files: dict[str, dict[str, Target]] = {}

    def package(self, package: str) -> dict[str, Target] | None:
        if package not in self.files:
            if not (self.workspace.root / package / "BUILD.toml").is_file():
                return None
            self.files[package] = parse_build_file(self.workspace.root, package, self.workspace.python_path)
        return self.files[package]

    def target(self, label: Label) -> Target | None:
        targets = self.package(label.package)
        return None if targets is None else targets.get(label.name)

    def describe_missing(self, label: Label) -> str:
        targets = self.package(label.package)
        if targets is None:
            return f"unknown label {label}: there is no {label.build_file}"
        known = ", ".join(sorted(targets)) or "none"
        return f"unknown label {label}: {label.build_file} declares no target '{label.name}' (it declares: {known})"


def load_graph(workspace: Workspace, patterns: Iterable[Label | Recursive]) -> BuildGraph:
    """Parse the BUILD files behind ``patterns`` and their deps; reject unknown labels and cycles."""
    loader = _Loader(workspace)
    requested: list[Label] = []
    for pattern in patterns:
        if isinstance(pattern, Recursive):
            matched = [
                Label(package, name)
                for package in workspace.build_files(pattern.package)
                for name in loader.package(package) or {}
            ]
            if not matched:
                raise TargetError(f"{pattern} matches no target (no BUILD.toml with targets below it)")
        else:
            if loader.target(pattern) is None:
                raise TargetError(loader.describe_missing(pattern))
            matched = [pattern]
        requested.extend(label for label in matched if label not in requested)

    targets: dict[Label, Target] = {}
    pending = list(requested)
    while pending:
        label = pending.pop()
        if label in targets:
            continue
        target = loader.target(label)
        assert target is not None  # requested labels were checked above, deps below
        targets[label] = target
        for dep in target.deps:
            if loader.target(dep) is None:
                raise target_error(workspace.root, label, ("deps",), loader.describe_missing(dep))
            pending.append(dep)

    return BuildGraph(targets=targets, requested=tuple(requested), order=_topological_order(workspace, targets))


def _topological_order(workspace: Workspace, targets: dict[Label, Target]) -> tuple[Label, ...]:
    """Dependencies first; ties in label order so that every run plans the same way."""
    order: list[Label] = []
    state: dict[Label, str] = {}
    stack: list[Label] = []

    def visit(label: Label) -> None:
        if state.get(label) == "done":
            return
        if state.get(label) == "active":
            cycle = stack[stack.index(label):] + [label]
            raise target_error(workspace.root, label, ("deps",), "dependency cycle: " + " -> ".join(map(str, cycle)))
        state[label] = "active"
        stack.append(label)
        for dep in targets[label].deps:
            visit(dep)
        stack.pop()
        state[label] = "done"
        order.append(label)

    for label in sorted(targets):
        visit(label)
    return tuple(order)
