"""The ``torchpack`` command (also ``python -m torchpack``).

Each subcommand lives in its own module (``HELP``, ``DESCRIPTION``, ``configure(parser)`` and
``run(args)``);
:func:`main` is the one place where outcomes become exit statuses:

* 0 - success (nothing wrong found, archives identical);
* 1 - the command worked and found a problem (``verify``) or a difference (``diff``);
* 2 - bad usage or input: a missing file, something that is not an archive, an unknown
  module or label. Reported as one line on stderr; ``-v`` adds the traceback.

Subcommands import torch and other heavy modules inside ``run``, so ``--help`` and the
commands that read archives without loading them start quickly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import NoReturn

from ..errors import TorchpackError
from ._output import print_json

PROG = "torchpack"
#: Subcommand -> module in this package.
_COMMANDS = {
    "build": "build",
    "inspect": "inspect_archive",
    "why": "why",
    "verify": "verify",
    "diff": "diff",
    "query": "query",
    "sign": "sign",
    "keygen": "keygen",
    "clean": "clean",
    "plan": "plan",
    "run": "run",
}


class _Parser(argparse.ArgumentParser):
    """argparse, remembering its usage error so that ``--json`` can report it as JSON too."""

    usage_error: str | None = None

    def error(self, message: str) -> NoReturn:
        _Parser.usage_error = f"{self.prog}: {message}"
        super().error(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Build, inspect and check torch.package / torchpack archives.",
        epilog="Exit status: 0 ok, 1 a problem or difference was found, 2 bad usage or input.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # -v is accepted after the subcommand too; SUPPRESS keeps an absent one from
    # overwriting a -v given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    for name, module_name in _COMMANDS.items():
        module = importlib.import_module(f".{module_name}", __name__)
        if name == "build":
            # Listed for --help only: main() hands `build ...` to the build layer unparsed.
            subparsers.add_parser(name, help=module.HELP, add_help=False)
            continue
        command = subparsers.add_parser(name, parents=[common], help=module.HELP, description=module.DESCRIPTION)
        module.configure(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``torchpack`` command line; return its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    leading = 0
    while argv[leading : leading + 1] in (["-v"], ["--verbose"]):
        leading += 1
    try:
        if argv[leading : leading + 1] == ["build"]:
            # `build` hands every argument, --help included, to the build layer's own parser
            # (which has its own -v).
            from . import build

            return build.run(argv[:leading] + argv[leading + 1 :])
        args = _parser().parse_args(argv)
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        if _Parser.usage_error is not None and "--json" in argv:
            print_json({"ok": False, "error": _Parser.usage_error, "error_type": "UsageError"})
        return exit_request.code if isinstance(exit_request.code, int) else 2
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader of our output went away (`torchpack inspect x.pt | head`): stop quietly.
        # Pointing stdout at /dev/null keeps the interpreter's final flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command a pipe ended
    except (TorchpackError, OSError) as error:
        if args.verbose:
            traceback.print_exc()
        if getattr(args, "json", False):
            # A script reading stdout gets JSON whatever happened; the line on stderr stays.
            print_json({"ok": False, "error": str(error), "error_type": type(error).__name__})
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
