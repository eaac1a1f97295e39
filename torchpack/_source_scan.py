"""Find the imports in a module's source without running it.

Recognises ``import a.b``, ``from a.b import c`` (absolute and relative), and the dynamic
forms whose arguments are constants: ``__import__("a", fromlist=[...], level=...)`` and
``importlib.import_module("a.b")`` / ``import_module(".b", package="a")``. Each import comes
with its :class:`ImportSite` (top level, guarded, or deferred into a function), which tells
the exporter whether the module can do without it. The AST is walked
iteratively (``ast.walk``), so deeply nested code cannot exhaust the recursion limit.
Results are cached per source digest, in memory and on disk (:mod:`._disk_cache`):
re-exporting the same library parses it once.
"""

from __future__ import annotations

import ast
import enum
import hashlib
import json
import threading
from dataclasses import dataclass

from . import _disk_cache as disk_cache


class ImportSite(enum.IntEnum):
    """Where an import sits, which says whether the module can work without its target.

    Ordered by how surely the import runs: a module imported at several sites is as
    dependent on it as its surest site makes it.
    """

    #: In a function body: runs only when the function is called.
    DEFERRED = 0
    #: Under an ``if`` or ``match``, in an ``except`` handler, or in a ``try`` that catches
    #: ImportError (or ModuleNotFoundError, Exception, BaseException, bare ``except``).
    GUARDED = 1
    #: Runs, unguarded, whenever the module is imported.
    TOP_LEVEL = 2


@dataclass(frozen=True)
class ImportReference:
    """One thing a module imports: ``module``, or the attribute/submodule ``name`` of it,
    at its surest ``site`` in the module."""

    module: str
    name: str | None = None
    site: ImportSite = ImportSite.TOP_LEVEL

    @property
    def optional(self) -> bool:
        """Whether the module can be imported without the target: no site runs it for sure."""
        return self.site is not ImportSite.TOP_LEVEL


def resolve_relative(name: str, package: str, level: int) -> str:
    """Absolute module name of a relative import, as ``importlib._bootstrap._resolve_name``."""
    if level == 0:
        return name
    bits = package.rsplit(".", level - 1)
    if len(bits) < level or not package:
        raise ImportError(f"attempted relative import beyond top-level package ({'.' * level}{name} from {package!r})")
    base = bits[0]
    return base if not name else f"{base}.{name}"


def _constant(node: ast.AST | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _call_target(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return None


def _dynamic_import(call: ast.Call, package: str) -> list[ImportReference]:
    target = _call_target(call)
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    if target == "__import__":
        name = _constant(call.args[0]) if call.args else _constant(keywords.get("name"))
        fromlist_node = call.args[3] if len(call.args) > 3 else keywords.get("fromlist")
        level = _constant(call.args[4]) if len(call.args) > 4 else _constant(keywords.get("level"))
        if not isinstance(name, str) or not isinstance(level if level is not None else 0, int):
            return []
        module = resolve_relative(name, package, level or 0)
        fromlist: list[str] = []
        if isinstance(fromlist_node, (ast.List, ast.Tuple)):
            fromlist = [v for v in (_constant(e) for e in fromlist_node.elts) if isinstance(v, str)]
        if not fromlist:
            return [ImportReference(module)]
        return [ImportReference(module, item) for item in fromlist if item != "*"] or [ImportReference(module)]
    if target in ("importlib.import_module", "import_module"):
        name = _constant(call.args[0]) if call.args else _constant(keywords.get("name"))
        anchor = _constant(call.args[1]) if len(call.args) > 1 else _constant(keywords.get("package"))
        if not isinstance(name, str):
            return []
        level = len(name) - len(name.lstrip("."))
        if level:
            if not isinstance(anchor, str):
                return []
            return [ImportReference(resolve_relative(name[level:], anchor, level))]
        return [ImportReference(name)]
    return []


_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
_NESTED_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_CONDITIONALS = (ast.If, ast.Match)
#: ``try`` statements; ``try``/``except*`` (Python 3.11) catches like ``try``/``except``.
_TRIES = (ast.Try, ast.TryStar) if hasattr(ast, "TryStar") else (ast.Try,)


def _catches_import_error(statement: ast.stmt) -> bool:
    for handler in statement.handlers:
        caught = handler.type
        for name in caught.elts if isinstance(caught, ast.Tuple) else [caught]:
            if name is None or (isinstance(name, ast.Name) and name.id in _IMPORT_ERRORS):
                return True
    return False


def _statements(tree: ast.AST) -> list[tuple[ast.stmt, ImportSite]]:
    """Every statement of a module (nested ones too), each with the site its code runs at.

    A ``for``/``while``/``with`` body or a class body runs with the statement around it;
    the ``else``/``finally`` of a ``try`` are not protected by its handlers. Expressions
    are not visited.
    """
    pending: list[tuple[ast.stmt, ImportSite]] = [(s, ImportSite.TOP_LEVEL) for s in getattr(tree, "body", ())]
    statements: list[tuple[ast.stmt, ImportSite]] = []
    while pending:
        statement, site = pending.pop()
        statements.append((statement, site))
        # min(): a site never gets surer further in (a guarded block in a function is deferred).
        if isinstance(statement, _FUNCTIONS):
            body_site = ImportSite.DEFERRED
        elif isinstance(statement, _CONDITIONALS) or (
            isinstance(statement, _TRIES) and _catches_import_error(statement)
        ):
            body_site = min(site, ImportSite.GUARDED)
        else:
            body_site = site
        conditional = min(site, ImportSite.GUARDED)
        pending.extend((child, body_site) for child in getattr(statement, "body", ()))
        orelse_site = conditional if isinstance(statement, ast.If) else site
        pending.extend((child, orelse_site) for child in getattr(statement, "orelse", ()))
        pending.extend((child, site) for child in getattr(statement, "finalbody", ()))
        for handler in getattr(statement, "handlers", ()):
            pending.extend((child, conditional) for child in handler.body)
        for case in getattr(statement, "cases", ()):
            pending.extend((child, conditional) for child in case.body)
    return statements


def _own_expressions(statement: ast.stmt) -> list[ast.AST]:
    """The expression nodes of a statement, not those of the statements nested in it."""
    nodes: list[ast.AST] = []
    for field, value in ast.iter_fields(statement):
        if field in _NESTED_BODIES:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, ast.AST):
                nodes.extend(ast.walk(item))
    return nodes


def scan_source(source: str, package: str, filename: str = "<source>") -> list[ImportReference]:
    """Every import in ``source``, for a module whose ``__package__`` is ``package``.

    Raises SyntaxError for source that does not parse.
    """
    tree = ast.parse(source, filename)
    # (module, name) -> the surest site among its occurrences.
    found: dict[tuple[str, str | None], ImportSite] = {}

    def add(module: str, name: str | None, site: ImportSite) -> None:
        found[(module, name)] = max(found.get((module, name), site), site)

    # Calls to __import__/import_module are looked for only when the source mentions them;
    # for most modules the statements alone are a small fraction of the tree.
    dynamic = "__import__" in source or "import_module" in source
    for statement, site in _statements(tree):
        if isinstance(statement, ast.Import):
            for alias in statement.names:
                add(alias.name, None, site)
        elif isinstance(statement, ast.ImportFrom):
            module = resolve_relative(statement.module or "", package, statement.level)
            for alias in statement.names:
                add(module, None if alias.name == "*" else alias.name, site)
        if dynamic:
            for node in _own_expressions(statement):
                if isinstance(node, ast.Call):
                    for reference in _dynamic_import(node, package):
                        add(reference.module, reference.name, site)
    return [ImportReference(module, name, site) for (module, name), site in found.items()]


class ScanCache:
    """Memoises :func:`scan_source` by the digest of the source and the package it sits in."""

    def __init__(self) -> None:
        self._results: dict[str, tuple[ImportReference, ...]] = {}
        self._lock = threading.Lock()

    def scan(self, source: str, package: str, filename: str = "<source>") -> list[ImportReference]:
        key = hashlib.sha256(f"{package}\0{source}".encode("utf-8", "surrogatepass")).hexdigest()
        with self._lock:
            cached = self._results.get(key)
        if cached is None:
            cached = self._from_disk(key)
        if cached is None:
            cached = tuple(scan_source(source, package, filename))
            rows = [[r.module, r.name, int(r.site)] for r in cached]
            disk_cache.store(disk_cache.IMPORTS, key, json.dumps(rows).encode())
        with self._lock:
            self._results[key] = cached
        return list(cached)

    @staticmethod
    def _from_disk(key: str) -> tuple[ImportReference, ...] | None:
        data = disk_cache.load(disk_cache.IMPORTS, key)
        if data is None:
            return None
        try:
            return tuple(ImportReference(module, name, ImportSite(site)) for module, name, site in json.loads(data))
        except (ValueError, TypeError):
            return None


#: One cache per process, shared by every exporter.
shared_scan_cache = ScanCache()
