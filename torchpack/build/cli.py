"""``python -m torchpack.build``: build BUILD.toml targets.

Exit status: 0 when every target is built or cached, 1 when a build failed (or --check found a
difference), 2 for usage and input errors (bad BUILD.toml, unknown label, cycle), found before
anything runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cli._output import format_size
from ..errors import SigningKeyError, SigningUnavailableError, TorchpackError
from .cache import ActionCache, toolchain_fingerprint
from .graph import BuildGraph, TargetError, load_graph
from .labels import Label, LabelError, parse_pattern
from .runner import Builder, Options, Progress, TargetResult
from .schema import BuildFileError
from .workspace import Workspace, WorkspaceError, open_workspace

USER_ERRORS = (WorkspaceError, LabelError, TargetError, BuildFileError, SigningKeyError, SigningUnavailableError)
#: Names the key file for targets with ``sign = true``: the key is never a workspace input.
SIGN_KEY_VARIABLE = "TORCHPACK_SIGN_KEY"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Build torchpack archives declared in BUILD.toml files.",
        epilog="Targets: //dir:name, //dir (the target named like the folder), :name, //dir/... (all below).",
    )
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="labels or patterns to build")
    parser.add_argument("--out", type=Path, help="output folder (default: <workspace>/torchpack-out)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="exports run at once (default: CPU count)")
    parser.add_argument("--no-cache", action="store_true", help="rebuild even when the action cache says up to date")
    parser.add_argument("--check", action="store_true", help="build every target twice in perturbed environments; fail on any byte difference")
    parser.add_argument(
        "--no-zygote", action="store_true",
        help="start every export in its own fresh interpreter instead of forking it from one that imported torch once",
    )
    parser.add_argument("--list", action="store_true", help="list the matching targets and their outputs; build nothing")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    parser.add_argument(
        "--sign-key",
        type=Path,
        default=os.environ.get(SIGN_KEY_VARIABLE) or None,
        metavar="KEYFILE",
        help=f"Ed25519 private key that signs targets with sign = true into <out>.sig (default: ${SIGN_KEY_VARIABLE})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show export output and tracebacks")
    return parser


def _signing_key(graph: BuildGraph, key_file: Path | None) -> Any:
    """The private key for the targets with ``sign = true``, or None when none signs."""
    signed = [label for label in graph.order if graph.targets[label].sign]
    if not signed:
        return None
    if key_file is None:
        raise SigningKeyError(
            f"{signed[0].build_file}: target '{signed[0].name}': sign = true needs a key: "
            f"pass --sign-key KEYFILE or set {SIGN_KEY_VARIABLE}"
        )
    from .._signing import load_private_key  # here: a build that signs nothing starts faster

    return load_private_key(key_file)


def print_targets(workspace: Workspace, graph: BuildGraph, labels: Sequence[Label], as_json: bool) -> None:
    """Each of ``labels`` with its output file and direct deps (``--list``, ``torchpack query``)."""
    if as_json:
        targets = [
            {
                "label": str(label),
                "output": str(workspace.output_of(label.package, graph.targets[label].out)),
                "deps": [str(dep) for dep in graph.targets[label].deps],
                "definition": graph.targets[label].definition(),
            }
            for label in labels
        ]
        print(json.dumps({"workspace": str(workspace.root), "targets": targets}, indent=2))
        return
    for label in labels:
        output = workspace.output_of(label.package, graph.targets[label].out)
        deps = ", ".join(str(dep) for dep in graph.targets[label].deps)
        print(f"{label}  ->  {_shown(output)}" + (f"  (deps: {deps})" if deps else ""))


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _line(result: TargetResult, width: int) -> str:
    digest = result.sha256 or "-" * 64
    size = format_size(result.size) if result.size is not None else "-"
    state = "checked" if result.checked else result.state
    return f"{str(result.label):<{width}}  {digest}  {size:>9}  {state:<7}  {result.seconds:6.2f}s"


def _optional_missing(output: Path) -> list[str]:
    """The modules an export left out as optional and not installed, as its archive records them."""
    from .. import _records as records  # here: --json output never reads an archive
    from .._archive_reader import open_archive

    try:
        reader = open_archive(output)
        if not reader.has_record(records.OPTIONAL_MISSING):
            return []
        return reader.read(records.OPTIONAL_MISSING).decode("utf-8", "replace").splitlines()
    except (OSError, TorchpackError):
        return []  # the build reported on the archive already; this note is only a summary


def _result_json(result: TargetResult) -> dict[str, Any]:
    return {
        "label": str(result.label),
        "output": str(result.output),
        "state": result.state,
        "sha256": result.sha256,
        "size": result.size,
        "seconds": round(result.seconds, 3),
        "checked": result.checked,
        "error": result.error,
    }


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, prog: str = "python -m torchpack.build") -> int:
    args = _parser(prog).parse_args(argv)
    if args.jobs < 1:
        print(f"{prog}: error: --jobs must be at least 1", file=sys.stderr)
        return 2
    if not args.targets:
        print(f"{prog}: error: name at least one target, e.g. //... for every target", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        workspace = open_workspace(Path.cwd(), args.out)
        current = workspace.package_of(Path.cwd())
        graph = load_graph(workspace, [parse_pattern(text, current) for text in args.targets])
        sign_key = None if args.list else _signing_key(graph, args.sign_key)
    except USER_ERRORS as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc), "targets": []}, indent=2))
        return 2

    if args.list:
        print_targets(workspace, graph, graph.requested, args.json)
        return 0

    width = max(len(str(label)) for label in graph.order)
    # Results come as exports finish; they are printed in label order, each as soon as
    # every label before it has its result, so the output is the same run after run.
    in_label_order = sorted(graph.order, key=str)
    finished: dict[Label, TargetResult] = {}

    def on_result(result: TargetResult) -> None:
        finished[result.label] = result
        while in_label_order and in_label_order[0] in finished:
            print_result(finished[in_label_order.pop(0)])

    def print_result(result: TargetResult) -> None:
        if result.error:
            print(f"error: {result.error}", file=sys.stderr)
        if args.verbose and result.log.strip():
            # The export's log ends with the error line printed just above: once is enough.
            log = [line for line in result.log.rstrip().splitlines() if line != f"error: {result.error}"]
            print("\n".join(log), file=sys.stderr)
        if not args.json:
            print(_line(result, width), flush=True)
            left_out = _optional_missing(result.output) if result.state in ("built", "cached") else []
            if left_out:
                summary = (
                    f"{len(left_out)} optional modules are not installed and were left out"
                    if len(left_out) > 1
                    else "1 optional module is not installed and was left out"
                )
                print(f"  {summary}" + (":" if args.verbose else "; -v lists them"), flush=True)
                for name in left_out if args.verbose else ():
                    print(f"    {name}", flush=True)

    # The import folders decide which code an export finds: part of every key.
    toolchain = toolchain_fingerprint()
    if workspace.python_path != ("",):
        toolchain += f" python-path={list(workspace.python_path)}"
    cache = ActionCache(workspace.out, workspace.root, toolchain)
    options = Options(
        jobs=args.jobs, use_cache=not args.no_cache, check=args.check, verbose=args.verbose, sign_key=sign_key,
        zygote=not args.no_zygote,
    )
    progress = Progress(sys.stderr) if sys.stderr.isatty() else None
    # SIGTERM (a CI timeout, `kill`) stops the exports like Ctrl-C does instead of orphaning
    # them (each export has its own process group, so a terminal's Ctrl-C reaches only us).
    # Only the main thread may install signal handlers; the previous ones come back after.
    in_main_thread = threading.current_thread() is threading.main_thread()
    stop_signals = (signal.SIGINT, signal.SIGTERM) if in_main_thread else ()
    previous_handlers = {signum: signal.signal(signum, _raise_interrupt) for signum in stop_signals}
    try:
        results = Builder(workspace, graph, cache, options, on_result, progress).run()
    except KeyboardInterrupt:
        print("interrupted: running exports were stopped; no partial output was kept", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    ok = all(result.state in ("built", "cached") for result in results)
    seconds = time.monotonic() - started
    if args.json:
        document = {"ok": ok, "workspace": str(workspace.root), "out": str(workspace.out), "seconds": round(seconds, 3),
                    "targets": [_result_json(result) for result in results]}
        print(json.dumps(document, indent=2))
    else:
        states = ["checked" if r.checked else r.state for r in results]
        counts = {state: states.count(state) for state in ("built", "checked", "cached", "failed", "skipped")}
        summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
        print(f"{len(results)} target{'s' if len(results) != 1 else ''}: {summary} in {seconds:.1f}s"
              + ("" if ok else "  (FAILED)"))
    return 0 if ok else 1
