"""``torchpack clean``: remove what builds of this workspace wrote."""

from __future__ import annotations

import argparse
import contextlib
import shutil
from pathlib import Path

from ._output import InputError, format_size, print_json

HELP = "remove the workspace's built archives and action cache records (--expunge: the whole cache)"
DESCRIPTION = (
    "Remove the archive of every target in the workspace from the output folder, their leftover "
    "temporaries, and the action cache (records and stored archives), so that the next build "
    "runs every export. --expunge also removes the rest of the cache folder (<out>/.cache: the "
    "parsed-imports cache), and the output folder itself when nothing else is left in it."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output folder (default: <workspace>/torchpack-out)")
    parser.add_argument("--expunge", action="store_true", help="also remove the whole cache folder <out>/.cache")
    parser.add_argument("--json", action="store_true", help="print what was removed as JSON")


def _remove_empty_folders(top: Path) -> None:
    """Folders left empty below (and including) ``top``, deepest first."""
    if not top.is_dir():
        return
    for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()


def run(args: argparse.Namespace) -> int:
    from ..build.cache import ActionCache, temporary_prefix
    from ..build.cli import USER_ERRORS
    from ..build.graph import load_graph
    from ..build.labels import parse_pattern
    from ..build.workspace import open_workspace

    try:
        workspace = open_workspace(Path.cwd(), args.out)
        # The outputs are named by the targets; a workspace without BUILD.toml has none.
        has_targets = next(workspace.build_files(""), None) is not None
        graph = load_graph(workspace, [parse_pattern("//...")]) if has_targets else None
    except USER_ERRORS as exc:
        raise InputError(f"{exc} (clean reads the BUILD.toml files to find the outputs)") from None

    archives = 0
    for label in graph.order if graph is not None else ():
        output = workspace.output_of(label.package, graph.targets[label].out)
        if output.is_file():
            output.unlink()
            archives += 1
        if output.parent.is_dir():
            for temporary in output.parent.glob(f"{temporary_prefix(output)}*"):
                temporary.unlink(missing_ok=True)
    cache = ActionCache(workspace.out, workspace.root, toolchain="")
    records, stored = cache.clear()
    expunged = args.expunge and cache.folder.exists()
    if args.expunge:
        shutil.rmtree(cache.folder, ignore_errors=True)
    # Folders the outputs mirrored, now empty; anything else in the output folder stays.
    _remove_empty_folders(workspace.out)

    if args.json:
        print_json({"out": str(workspace.out), "archives": archives, "records": records,
                    "stored_bytes": stored, "expunged": bool(expunged)})
    else:
        print(f"removed {archives} archive{'s' if archives != 1 else ''} and {records} cache "
              f"record{'s' if records != 1 else ''} ({format_size(stored)} of stored archives)"
              + (f"; expunged {cache.folder}" if expunged else ""))
    return 0
