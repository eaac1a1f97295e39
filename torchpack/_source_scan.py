"""Find the imports in a module's source without running it.

Recognises ``import a.b``, ``from a.b import c`` (absolute and relative), and the dynamic
forms whose arguments are constants: ``__import__("a", fromlist=[...], level=...)`` and
``importlib.import_module("a.b")`` / ``import_module(".b", package="a")``. The AST is walked
iteratively (``ast.walk``), so deeply nested code cannot exhaust the recursion limit.
Results are cached per source digest, in memory and on disk (:mod:`._disk_cache`):
re-exporting the same library parses it once.
"""

from __future__ import annotations

import ast
import hashlib
import json
import threading
from dataclasses import dataclass

from . import _disk_cache as disk_cache


@dataclass(frozen=True)
class ImportReference:
    """One thing a module imports: ``module``, or the attribute/submodule ``name`` of it."""

    module: str
    name: str | None = None


def resolve_relative(name: str, package: str, level: int) -> str:
    """Absolute module name of a relative import, as ``importlib._bootstrap._resolve_name``."""
    if level == 0:
        return name
    bits = package.rsplit(".", level - 1)
    if len(bits) < level or not package:
        raise ImportError(f"attempted relative import beyond top-level package ({'.' * level}{name} from {package!r})")
    base = bits[0]
    return f"{base}.{name}" if name else base


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


def _statements(tree: ast.AST) -> list[ast.stmt]:
    """Every statement of a module, nested ones included, without visiting expressions."""
    pending: list[ast.stmt] = list(getattr(tree, "body", ()))
    statements: list[ast.stmt] = []
    while pending:
        statement = pending.pop()
        statements.append(statement)
        for field in ("body", "orelse", "finalbody"):
            pending.extend(getattr(statement, field, ()))
        for handler in getattr(statement, "handlers", ()):
            pending.extend(handler.body)
        for case in getattr(statement, "cases", ()):
            pending.extend(case.body)
    return statements


def scan_source(source: str, package: str, filename: str = "<source>") -> list[ImportReference]:
    """Every import in ``source``, for a module whose ``__package__`` is ``package``.

    Raises SyntaxError for source that does not parse.
    """
    tree = ast.parse(source, filename)
    found: dict[ImportReference, None] = {}
    # Import statements are statements: unless the source mentions a dynamic import, only
    # statement nodes need a look, a small fraction of the whole tree.
    dynamic = "__import__" in source or "import_module" in source
    for node in ast.walk(tree) if dynamic else _statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found[ImportReference(alias.name)] = None
        elif isinstance(node, ast.ImportFrom):
            module = resolve_relative(node.module or "", package, node.level)
            for alias in node.names:
                found[ImportReference(module, None if alias.name == "*" else alias.name)] = None
        elif isinstance(node, ast.Call):
            for reference in _dynamic_import(node, package):
                found[reference] = None
    return list(found)


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
            disk_cache.store("imports", key, json.dumps([[r.module, r.name] for r in cached]).encode())
        with self._lock:
            self._results[key] = cached
        return list(cached)

    @staticmethod
    def _from_disk(key: str) -> tuple[ImportReference, ...] | None:
        data = disk_cache.load("imports", key)
        if data is None:
            return None
        try:
            return tuple(ImportReference(module, name) for module, name in json.loads(data))
        except (ValueError, TypeError):
            return None


#: One cache per process, shared by every exporter.
shared_scan_cache = ScanCache()
