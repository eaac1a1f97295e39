"""``torchpack build``: the build layer's command line (``python -m torchpack.build``), as it is."""

from __future__ import annotations

from collections.abc import Sequence

HELP = "build BUILD.toml targets (see `torchpack build --help`)"


def run(argv: Sequence[str]) -> int:
    from ..build.cli import main as build_main

    return build_main(list(argv), prog="torchpack build")
