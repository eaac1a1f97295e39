"""The Bazel rule's ``sign = True``, through a real Bazel (its own server and workspace copy,
as in tests/test_bazel.py): the signature is a separate output made with a key given by
``--action_env``, and the archive's bytes are those of the same target unsigned."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from test_bazel import bazel_server
from torchpack import PackageImporter
from torchpack import _signing as signing
from torchpack.errors import SignatureError

pytestmark = pytest.mark.bazel

SIGNED_BUILD = textwrap.dedent(
    """\
    load("//rules:defs.bzl", "torch_package")

    [torch_package(
        name = name,
        sources = {"lib.values": "ANSWER = 42\\n"},
        text = {"lib/readme.txt": "readme.txt"},
        sign = sign,
    ) for name, sign in (("plain", False), ("signed", True))]
    """
)


@pytest.fixture(scope="module")
def bazel(tmp_path_factory):
    with bazel_server(tmp_path_factory.mktemp("bazel-signing")) as server:
        yield server


def test_bazel_signs_into_a_separate_output_with_a_key_from_outside(bazel, tmp_path):
    package = bazel.workspace / "signing"
    package.mkdir()
    (package / "BUILD.bazel").write_text(SIGNED_BUILD)
    (package / "readme.txt").write_text("hello\n")
    private, public = signing.generate_key_pair(tmp_path / "release")

    unkeyed = bazel.build("//signing:signed")
    assert unkeyed.returncode != 0
    assert "//signing:signed: sign = True needs the key" in unkeyed.stderr, unkeyed.stderr

    bazel.build("//signing:all", f"--action_env=TORCHPACK_SIGN_KEY={private}").check()
    bin_folder = Path(bazel.info("bazel-bin")) / "signing"
    assert (bin_folder / "signed.pt").read_bytes() == (bin_folder / "plain.pt").read_bytes()
    assert not (bin_folder / "plain.pt.sig").exists()
    importer = PackageImporter(bin_folder / "signed.pt", trusted_keys=[public])
    assert importer.load_text("lib", "readme.txt") == "hello\n"

    # Another key: the archive stays cached, the signature is made again.
    rotated_private, rotated_public = signing.generate_key_pair(tmp_path / "rotated")
    bazel.build("//signing:signed", f"--action_env=TORCHPACK_SIGN_KEY={rotated_private}").check()
    PackageImporter(bin_folder / "signed.pt", trusted_keys=[rotated_public])
    with pytest.raises(SignatureError, match="not trusted"):
        PackageImporter(bin_folder / "signed.pt", trusted_keys=[public])
