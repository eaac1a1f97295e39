"""``torchpack keygen KEYFILE``: a new Ed25519 key pair for ``torchpack sign``.

It writes ``KEYFILE`` (PKCS#8 PEM, mode 0600) and ``KEYFILE.pub`` (PEM), the files
``openssl genpkey -algorithm ed25519`` and ``openssl pkey -pubout`` make; keys from
``ssh-keygen -t ed25519 -N ''`` work as well.
"""

from __future__ import annotations

import argparse

from .. import _signing as signing

HELP = "make an Ed25519 key pair for `torchpack sign` (KEYFILE and KEYFILE.pub)"
DESCRIPTION = (
    "Write a new Ed25519 private key to KEYFILE (PEM, mode 0600) and its public key to "
    "KEYFILE.pub. Existing files are never overwritten."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("keyfile", metavar="KEYFILE")


def run(args: argparse.Namespace) -> int:
    private_path, public_path = signing.generate_key_pair(args.keyfile)
    identifier = signing.key_id(signing.load_public_key(public_path))
    print(f"{private_path}: private key (keep it secret)\n{public_path}: public key {identifier}")
    return 0
