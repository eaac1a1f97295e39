"""``torchpack query PATTERN...``: the build targets that patterns match, their outputs and deps.

Reads BUILD.toml files the way ``python -m torchpack.build`` does (same workspace, labels and
graph loading), and builds nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._output import InputError

HELP = "list build targets with their outputs and deps"
DESCRIPTION = "List the targets that labels or patterns (//dir:name, //dir, //dir/...) match."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("patterns", nargs="+", metavar="PATTERN", help="e.g. //... or //examples/tinynet:tinynet")
    parser.add_argument("--deps", action="store_true",
                        help="also list every target the matched ones depend on, dependencies first")
    parser.add_argument("--out", type=Path,
                        help="output folder the listed outputs are in, as for build (default: <workspace>/torchpack-out)")
    parser.add_argument("--json", action="store_true", help="print a JSON document")


def run(args: argparse.Namespace) -> int:
    from ..build.cli import USER_ERRORS, print_targets
    from ..build.graph import load_graph
    from ..build.labels import parse_pattern
    from ..build.workspace import open_workspace

    try:
        workspace = open_workspace(Path.cwd(), args.out)
        current = workspace.package_of(Path.cwd())
        graph = load_graph(workspace, [parse_pattern(text, current) for text in args.patterns])
    except USER_ERRORS as error:
        raise InputError(str(error)) from error
    except RecursionError:
        # tomllib and the graph's ordering recurse: a hostile workspace can nest past the limit.
        raise InputError(
            "the BUILD.toml files nest too deeply to read (a TOML value or a chain of deps deeper "
            f"than Python's recursion limit, {sys.getrecursionlimit()})"
        ) from None
    print_targets(workspace, graph, graph.order if args.deps else graph.requested, args.json)
    return 0
