"""What a validated build target is: the typed form :mod:`torchpack.build.schema` parses
BUILD.toml into, and its one canonical JSON form (:meth:`Target.definition`): the cache key's
basis and the ``DEF.json`` that the export action and the Bazel rule consume.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

from .labels import Label

#: The order in which action lists are registered with the exporter. A target's exporter
#: lets the most specific pattern decide (deny before anything, then the most literal leading
#: segments; see ``PackageExporter(pattern_precedence=...)``), so this order only breaks ties.
ACTION_KINDS = ("deny", "mock", "extern", "intern")

@dataclass(frozen=True)
class Action:
    """One intern/extern/mock/deny call: ``include`` and ``exclude`` glob lists."""

    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    allow_empty: bool = True

    def definition(self) -> dict[str, Any]:
        return {"include": list(self.include), "exclude": list(self.exclude), "allow_empty": self.allow_empty}


@dataclass(frozen=True)
class Loaded:
    """An object unpickled from a dependency's archive (``from`` label, ``record`` path)."""

    dep: Label
    record: str

    def definition(self) -> dict[str, Any]:
        return {"from": str(self.dep), "record": self.record}


@dataclass(frozen=True)
class Call:
    """An object returned by ``module:callable(**args, **dep_args)``."""

    function: str
    args: Mapping[str, Any]
    dep_args: Mapping[str, Loaded]

    def definition(self) -> dict[str, Any]:
        return {
            "call": self.function,
            "args": dict(self.args),
            "dep_args": {name: loaded.definition() for name, loaded in self.dep_args.items()},
        }


@dataclass(frozen=True)
class Attr:
    """An existing object, ``module:attribute``."""

    attribute: str

    def definition(self) -> dict[str, Any]:
        return {"attr": self.attribute}


PickleSource = Union[Call, Attr, Loaded]


@dataclass(frozen=True)
class Source:
    """A module saved from a source string."""

    source: str
    package: bool = False

    def definition(self) -> dict[str, Any]:
        return {"source": self.source, "package": self.package}


@dataclass(frozen=True)
class Target:
    """A validated, normalised target.  Resource paths are workspace-relative posix paths."""

    label: Label
    out: str
    seed: int
    deps: tuple[Label, ...]
    deny: tuple[Action, ...]
    mock: tuple[Action, ...]
    extern: tuple[Action, ...]
    intern: tuple[Action, ...]
    modules: tuple[str, ...]
    sources: Mapping[str, Source]
    text: Mapping[str, str]
    binary: Mapping[str, str]
    pickle: Mapping[str, PickleSource]
    #: PEP 508 requirements the build environment must satisfy (normalised text); recorded
    #: in the archive's provenance.
    requires: tuple[str, ...] = ()
    #: ``module:function`` that ``torchpack run`` calls; stored as the archive's entry point.
    main: str | None = None
    #: Sign the archive into ``<out>.sig`` with the key given to the build from outside the
    #: workspace. Not part of :meth:`definition`: it never changes the archive's bytes, so it
    #: is no input of the export and no part of the action cache key.
    sign: bool = False
    #: A loader the archive's packaged code must also load in (``"torch.package"``), checked
    #: statically after export (:mod:`torchpack.analyze.compat`).
    compat: str | None = None

    def actions(self) -> Iterator[tuple[str, Action]]:
        """The action calls in registration order (see :data:`ACTION_KINDS`)."""
        for kind in ACTION_KINDS:
            for action in getattr(self, kind):
                yield kind, action

    def definition(self) -> dict[str, Any]:
        """The canonical JSON-able form: every key present, defaults filled in."""
        return {
            "label": str(self.label),
            "out": self.out,
            "seed": self.seed,
            "deps": [str(dep) for dep in self.deps],
            **{kind: [a.definition() for a in getattr(self, kind)] for kind in ACTION_KINDS},
            "modules": list(self.modules),
            "sources": {name: s.definition() for name, s in self.sources.items()},
            "text": dict(self.text),
            "binary": dict(self.binary),
            "pickle": {record: p.definition() for record, p in self.pickle.items()},
            # Present only when set, so that the definitions (and cache keys) of targets
            # without them stay what they were.
            **({"requires": list(self.requires)} if self.requires else {}),
            **({"main": self.main} if self.main is not None else {}),
            **({"compat": self.compat} if self.compat is not None else {}),
        }

    def definition_json(self) -> str:
        """The definition as canonical JSON (sorted keys, no whitespace): the DEF.json bytes."""
        return canonical_json(self.definition())


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def split_record(record: str) -> tuple[str, str]:
    """``"a/b/c.pkl"`` -> ``("a.b", "c.pkl")``: the (package, resource) pair the exporter takes."""
    folder, _, resource = record.rpartition("/")
    return folder.replace("/", "."), resource
