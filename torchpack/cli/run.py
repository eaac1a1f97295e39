"""``torchpack run ARCHIVE [-- ARGS...]``: call an archive's entry point, like a pex or a py_binary.

A target with ``main = "mylab.serve:main"`` stores that name in the archive
(``.data/torchpack/entry_point``).  ``run`` opens the archive in a fresh ``PackageImporter``,
imports the entry point's module from it, sets ``sys.argv`` to ``[ARCHIVE, *ARGS]`` and calls
the function with no arguments.  Its return value is the exit status, as with ``sys.exit``:
``None`` is 0, an integer is itself, anything else is printed and gives 1; a ``SystemExit``
it raises ends the command the same way, and any other exception prints its traceback and
gives 1.  Unlike the other subcommands, ``run`` executes the archive's code: run only
archives you trust (``torchpack verify --trusted-key`` first).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

from .. import _records as records
from ..errors import ObjNotFoundError, RecordNotFoundError

HELP = "call the entry point (BUILD.toml main) of an archive with ARGS, like a py_binary"
DESCRIPTION = (
    "Load ARCHIVE in a fresh PackageImporter and call its entry point (the target's "
    "main = 'module:function') with sys.argv = [ARCHIVE, *ARGS]; exit with its status. "
    "Put -- before ARGS that start with a dash."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", metavar="ARCHIVE")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, metavar="ARGS", help="the entry point's sys.argv[1:]")


def _exit_status(code: Any) -> int:
    """What the interpreter makes of ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from ..package_importer import PackageImporter

    importer = PackageImporter(args.archive)
    if not importer.zip_reader.has_record(records.ENTRY_POINT):
        raise RecordNotFoundError(
            f"{args.archive}: no entry point ({records.ENTRY_POINT}): give its target main = 'module:function'"
        )
    spec = importer.zip_reader.read(records.ENTRY_POINT).decode("utf-8").strip()
    module_name, _, qualname = spec.partition(":")
    function: Any = importer.import_module(module_name)
    for attribute in qualname.split("."):
        if not hasattr(function, attribute):
            raise ObjNotFoundError(f"{args.archive}: entry point {spec}: {function.__name__} has no attribute {attribute!r}")
        function = getattr(function, attribute)
    arguments = args.arguments[1:] if args.arguments[:1] == ["--"] else args.arguments
    saved_argv = sys.argv
    sys.argv = [args.archive, *arguments]
    try:
        return _exit_status(function())
    except SystemExit as exit_request:
        return _exit_status(exit_request.code)
    except Exception:  # the packaged program's own failure, reported as Python would
        traceback.print_exc()
        return 1
    finally:
        sys.argv = saved_argv
