"""``torchpack why ARCHIVE MODULE``: the dependency paths that pulled MODULE into an archive.

The graph is rebuilt from the archive (:mod:`torchpack.analyze.archive_graph`); each path
runs from a root - a pickle, or a module nothing imports - to MODULE.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess

from .._archive_reader import open_archive
from ..analyze.archive_graph import archive_graph, read_contents, why_paths
from ._output import InputError, paint, print_json

HELP = "the dependency paths that pulled a module into an archive"
DESCRIPTION = "Show every path from a pickle (or a module nothing imports) to MODULE."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", metavar="ARCHIVE")
    parser.add_argument("module", metavar="MODULE", help="an interned, extern or mocked module, e.g. my_models.net")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--dot", action="store_true", help="print the paths as a Graphviz DOT graph")
    output.add_argument("--svg", metavar="FILE", help="render the paths to FILE with Graphviz `dot -Tsvg`")
    output.add_argument("--json", action="store_true", help="print a JSON document")
    parser.add_argument("--max-paths", type=int, default=50, metavar="N", help="list at most N paths (default 50)")


def run(args: argparse.Namespace) -> int:
    if args.max_paths < 1:
        raise InputError("--max-paths must be at least 1")
    dot_program = shutil.which("dot") if args.svg else None
    if args.svg and dot_program is None:
        raise InputError("--svg needs Graphviz: no `dot` program on PATH (use --dot and render it elsewhere)")
    contents = read_contents(open_archive(args.archive))
    kind = contents.kind(args.module)
    if kind is None:
        known = [*contents.modules, *contents.extern]
        close = difflib.get_close_matches(args.module, known, n=3, cutoff=0.6)
        # The last part alone catches a right module name under the wrong package.
        last_part = args.module.rpartition(".")[2]
        close += [name for name in known if name.rpartition(".")[2] == last_part and name not in close]
        hint = f"; did you mean {' or '.join(repr(name) for name in close[:3])}?" if close else ""
        raise InputError(
            f"{args.archive}: module {args.module!r} is not in the archive (neither interned, extern nor mocked){hint}"
        )
    graph = archive_graph(contents)
    graph.node(args.module)  # an extern module nothing references still gets its one-node path
    paths, more = why_paths(graph, args.module, args.max_paths)
    if args.dot or args.svg:
        reaching = graph.reaching(args.module)
        dot = graph.to_dot([(a, b) for a, b in graph.edges if a in reaching and b in reaching])
        if args.dot:
            print(dot, end="")
            return 0
        rendered = subprocess.run([dot_program, "-Tsvg", "-o", args.svg], input=dot, text=True, capture_output=True)
        if rendered.returncode != 0:
            raise InputError(f"`dot -Tsvg -o {args.svg}` failed: {rendered.stderr.strip()}")
        print(f"wrote {args.svg}")
        return 0
    if args.json:
        print_json({"archive": args.archive, "module": args.module, "kind": kind, "paths": paths, "truncated": more})
        return 0
    print(f"{paint(args.module, 'bold')} is {kind}; "
          f"{len(paths)}{'+' if more else ''} path{'s' if len(paths) != 1 else ''} lead{'s' if len(paths) == 1 else ''} to it:")
    for path in paths:
        print("  " + " -> ".join(path))
    if more:
        print(f"  ... more paths not shown (--max-paths {args.max_paths}; --dot draws them all)")
    return 0
