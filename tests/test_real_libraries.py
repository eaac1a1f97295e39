"""Real pure-Python libraries interned whole into a package and run from it: networkx, and
sympy with mpmath (torch.package itself fails to package sympy; torchpack must work).

The configuration is the one the user guide suggests: intern the library, extern the heavy
compiled dependencies, and mock everything else (``mock("**")``) for optional extras.
"""

from __future__ import annotations

import io
import sys

from torchpack import PackageExporter, PackageImporter


def export_library(intern, extern, root):
    buf = io.BytesIO()
    with PackageExporter(buf) as pe:
        pe.intern(intern)
        pe.extern(extern)
        pe.mock("**", allow_empty=True)
        pe.save_module(root)
        interned = pe.interned_modules()
    return buf.getvalue(), interned


def test_networkx_runs_from_the_package():
    data, interned = export_library(["networkx.**"], ["numpy.**", "scipy.**", "pandas.**"], "networkx")
    assert "networkx.algorithms.shortest_paths.generic" in interned
    importer = PackageImporter(io.BytesIO(data))
    nx = importer.import_module("networkx")
    prefix = importer.id() + "."
    assert nx is not sys.modules.get("networkx")
    assert nx.__name__ == prefix + "networkx"

    G = nx.path_graph(5)
    assert nx.shortest_path(G, 0, 4) == [0, 1, 2, 3, 4]
    assert type(G).__module__ == prefix + "networkx.classes.graph"
    assert nx.shortest_path.__module__.startswith(prefix)

    W = nx.DiGraph()
    W.add_weighted_edges_from([("a", "b", 5), ("a", "c", 1), ("c", "b", 1), ("b", "d", 1)])
    assert nx.dijkstra_path(W, "a", "d") == ["a", "c", "b", "d"]
    assert nx.dijkstra_path_length(W, "a", "d") == 3
    assert list(nx.topological_sort(W))[0] == "a"
    U = nx.Graph([(1, 2), (3, 4), (4, 5)])
    assert sorted(sorted(c) for c in nx.connected_components(U)) == [[1, 2], [3, 4, 5]]


def test_sympy_and_mpmath_run_from_the_package():
    data, interned = export_library(["sympy.**", "mpmath.**"], ["numpy.**", "scipy.**", "sys", "io"], "sympy")
    assert {"sympy.core.symbol", "sympy.solvers.solvers", "mpmath.functions.zetazeros"} <= set(interned)
    importer = PackageImporter(io.BytesIO(data))
    sp = importer.import_module("sympy")
    prefix = importer.id() + "."
    assert sp is not sys.modules.get("sympy")

    x = sp.Symbol("x")
    assert type(x).__module__ == prefix + "sympy.core.symbol"
    assert sp.simplify(sp.sin(x) ** 2 + sp.cos(x) ** 2) == 1
    assert sp.solve(x**2 - 4, x) == [-2, 2]
    assert sp.expand((x + 1) ** 2) == x**2 + 2 * x + 1
    assert sp.simplify.__module__.startswith(prefix)
    assert sp.integrate(2 * x, (x, 0, 3)) == 9

    mpmath = importer.import_module("mpmath")
    assert mpmath.__name__ == prefix + "mpmath"
    assert str(mpmath.sqrt(2))[:6] == "1.4142"
    assert type(mpmath.mpf(1)).__module__.startswith(prefix)
