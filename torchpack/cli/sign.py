"""``torchpack sign ARCHIVE --key KEY``: write ``ARCHIVE.sig``, an Ed25519 signature over the
archive's integrity record, leaving the archive's bytes alone (see :mod:`torchpack._signing`).
"""

from __future__ import annotations

import argparse

from .. import _signing as signing
from .._archive_reader import open_archive
from ._output import print_json

HELP = "sign an archive with an Ed25519 key (writes ARCHIVE.sig)"
DESCRIPTION = (
    "Sign the archive's integrity record with an Ed25519 private key (PEM, OpenSSH or raw 32 "
    "bytes) into ARCHIVE.sig; the archive itself is not changed. Check with "
    "`torchpack verify ARCHIVE --trusted-key KEY.pub`."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", metavar="ARCHIVE")
    parser.add_argument("--key", required=True, metavar="KEY", help="the Ed25519 private key file")
    parser.add_argument("--output", "-o", metavar="FILE", help="where to write the signature (default: ARCHIVE.sig)")
    parser.add_argument("--json", action="store_true", help="print a JSON document")


def run(args: argparse.Namespace) -> int:
    key = signing.load_private_key(args.key)
    path = signing.sign_archive(open_archive(args.archive), key, args.output)
    key_id = signing.key_id(key.public_key())
    if args.json:
        print_json({"archive": args.archive, "signature": path, "key_id": key_id})
    else:
        print(f"{path}: signed by key {key_id}")
    return 0
