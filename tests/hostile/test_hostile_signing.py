"""Hostile signed archives: with ``trusted_keys`` nothing loads unless a trusted key signed
exactly these records.

Each case builds its own archive and signature. Each must be refused with a
:class:`SignatureError` (or the :class:`IntegrityError` it derives from) naming the archive,
before any packaged code runs: the archive's module writes a marker file when imported,
and the marker must never appear.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest
import torch

from archive_surgery import INTEGRITY, flip_byte, rebuild
from torchpack import PackageExporter, PackageImporter
from torchpack import _signing as signing
from torchpack._archive_reader import open_archive
from torchpack.errors import IntegrityError, SignatureError


def _payload_archive(marker: Path, value: int = 1) -> bytes:
    """An archive whose pickle imports a packaged module that writes ``marker`` when run."""
    out = io.BytesIO()
    with PackageExporter(out) as exporter:
        exporter.save_source_string(
            "payload",
            f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
            "class Box:\n    def __init__(self, value):\n        self.value = value\n",
        )
        # payload.Box(value), pickled by hand: exporting the object would import the module here.
        exporter.save_binary("data", "box.pkl", b"\x80\x03cpayload\nBox\nK" + bytes([value]) + b"\x85R.")
        exporter.save_pickle("data", "weights.pkl", torch.arange(8, dtype=torch.float32))
    return out.getvalue()


@pytest.fixture
def signed(tmp_path):
    """(archive path, marker path, trusted public key, private key) for a validly signed archive."""
    marker = tmp_path / "marker"
    archive = tmp_path / "model.pt"
    archive.write_bytes(_payload_archive(marker))
    private = signing.load_private_key(signing.generate_key_pair(tmp_path / "release")[0])
    signing.sign_archive(open_archive(archive), private)
    return archive, marker, f"{tmp_path / 'release'}.pub", private


def _refused(archive: Path, marker: Path, trusted: str, match: str, error: type = SignatureError, **options) -> None:
    with pytest.raises(error, match=match) as caught:
        importer = PackageImporter(archive, trusted_keys=[trusted], **options)
        importer.load_pickle("data", "box.pkl")
    assert str(archive) in str(caught.value)
    assert not marker.exists(), "packaged code ran"


def test_the_untouched_signed_archive_loads(signed):
    archive, marker, trusted, _ = signed
    assert PackageImporter(archive, trusted_keys=[trusted]).load_pickle("data", "box.pkl").value == 1
    assert marker.exists()  # the control: loading does run the module


def test_unsigned_archive_is_refused(signed):
    archive, marker, trusted, _ = signed
    os.unlink(f"{archive}.sig")
    _refused(archive, marker, trusted, r"unsigned \(no signature file .*model\.pt\.sig\)")


def test_an_empty_trusted_key_list_accepts_nothing(signed):
    archive, marker, _, _ = signed
    with pytest.raises(SignatureError, match="no trusted keys given"):
        PackageImporter(archive, trusted_keys=[])


def test_signature_by_an_untrusted_key_is_refused(signed, tmp_path):
    archive, marker, trusted, _ = signed
    stranger = signing.load_private_key(signing.generate_key_pair(tmp_path / "stranger")[0])
    signing.sign_archive(open_archive(archive), stranger)
    _refused(archive, marker, trusted, "which is not trusted")


def test_untrusted_signature_relabelled_with_the_trusted_key_id_is_refused(signed, tmp_path):
    archive, marker, trusted, _ = signed
    stranger = signing.load_private_key(signing.generate_key_pair(tmp_path / "stranger")[0])
    signing.sign_archive(open_archive(archive), stranger)
    sidecar = Path(f"{archive}.sig")
    document = json.loads(sidecar.read_text())
    document["key_id"] = signing.key_id(signing.load_public_key(trusted))
    sidecar.write_text(json.dumps(document))
    _refused(archive, marker, trusted, "does not match .*integrity.json")


def test_record_changed_and_integrity_rehashed_without_resigning_is_refused(signed):
    archive, marker, trusted, _ = signed
    evil_source = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('evil')\nBox = dict\n".encode()
    archive.write_bytes(rebuild(archive.read_bytes(), replace={"payload.py": evil_source}, refresh_integrity=True))
    _refused(archive, marker, trusted, "does not match .*integrity.json")


def test_record_changed_without_touching_integrity_is_refused_by_its_digest(signed):
    archive, marker, trusted, _ = signed
    # A changed byte with its CRC-32 fixed: the signature still holds, the digest does not.
    archive.write_bytes(flip_byte(archive.read_bytes(), "payload.py", 3))
    _refused(archive, marker, trusted, r"record 'payload\.py' does not match its integrity digest", IntegrityError)


def test_signature_of_another_archive_is_refused(signed, tmp_path):
    archive, marker, trusted, private = signed
    other = tmp_path / "other.pt"
    other.write_bytes(_payload_archive(tmp_path / "other-marker", value=3))
    signing.sign_archive(open_archive(other), private)  # same trusted key, other content
    os.replace(f"{other}.sig", f"{archive}.sig")
    _refused(archive, marker, trusted, "does not match .*integrity.json")


def test_integrity_record_swapped_for_another_signed_archives_is_refused(signed, tmp_path):
    archive, marker, trusted, private = signed
    other = tmp_path / "other.pt"
    other.write_bytes(_payload_archive(tmp_path / "other-marker", value=3))
    signing.sign_archive(open_archive(other), private)
    # Its integrity record and signature, with this archive's records: the signature holds,
    # and the records then fail the digests it vouches for.
    archive.write_bytes(rebuild(archive.read_bytes(), replace={INTEGRITY: open_archive(other).read(INTEGRITY)},
                                refresh_integrity=False))
    os.replace(f"{other}.sig", f"{archive}.sig")
    _refused(archive, marker, trusted, "integrity digest|integrity record", IntegrityError)


@pytest.mark.parametrize("position", [0, 31, 63])
def test_signature_bytes_tampered_are_refused(signed, position):
    archive, marker, trusted, _ = signed
    sidecar = Path(f"{archive}.sig")
    document = json.loads(sidecar.read_text())
    raw = bytearray(base64.b64decode(document["signature"]))
    raw[position] ^= 0x01
    document["signature"] = base64.b64encode(bytes(raw)).decode()
    sidecar.write_text(json.dumps(document))
    _refused(archive, marker, trusted, "does not match .*integrity.json")


def test_extra_record_added_after_signing_is_refused(signed):
    archive, marker, trusted, _ = signed
    archive.write_bytes(rebuild(archive.read_bytes(), add={"extra/evil.py": b"import os\n"}, refresh_integrity=False))
    _refused(archive, marker, trusted, r"record 'extra/evil\.py' is not listed in the integrity record", IntegrityError)


def test_record_removed_after_signing_is_refused(signed):
    archive, marker, trusted, _ = signed
    archive.write_bytes(rebuild(archive.read_bytes(), drop=(".data/extern_modules",), refresh_integrity=False))
    _refused(archive, marker, trusted, "listed in the integrity record but missing", IntegrityError)


def test_integrity_record_removed_is_refused(signed):
    archive, marker, trusted, _ = signed
    archive.write_bytes(rebuild(archive.read_bytes(), drop=(INTEGRITY,)))
    _refused(archive, marker, trusted, "no .data/torchpack/integrity.json record")


@pytest.mark.parametrize("keep", [0, 1, 40, 100])
def test_truncated_signature_is_refused(signed, keep):
    archive, marker, trusted, _ = signed
    sidecar = Path(f"{archive}.sig")
    sidecar.write_bytes(sidecar.read_bytes()[:keep])
    _refused(archive, marker, trusted, "not a torchpack signature|not valid base64|Ed25519 signatures are 64")


def test_short_signature_with_valid_base64_is_refused(signed):
    archive, marker, trusted, _ = signed
    sidecar = Path(f"{archive}.sig")
    document = json.loads(sidecar.read_text())
    document["signature"] = base64.b64encode(base64.b64decode(document["signature"])[:48]).decode()
    sidecar.write_text(json.dumps(document))
    _refused(archive, marker, trusted, "48 bytes; Ed25519 signatures are 64")


@pytest.mark.parametrize(
    "document",
    [
        b"\xff\xfe not utf-8",
        b"[]",
        b'{"schema": "torchpack-signature/1", "algorithm": "rsa", "key_id": "x", "signature": "AA=="}',
        b'{"schema": "torchpack-signature/1", "algorithm": "ed25519", "key_id": 5, "signature": "AA=="}',
        b'{"schema": "torchpack-signature/1", "algorithm": "ed25519", "key_id": "x", "signature": "!!"}',
    ],
)
def test_malformed_signature_documents_are_refused(signed, document):
    archive, marker, trusted, _ = signed
    Path(f"{archive}.sig").write_bytes(document)
    _refused(archive, marker, trusted, "signature")


def test_huge_signature_file_is_refused_without_reading_it_whole(signed):
    archive, marker, trusted, _ = signed
    with open(f"{archive}.sig", "wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GiB that takes no disk and must not be read
    _refused(archive, marker, trusted, "over 65536 bytes")


def test_signature_that_is_a_fifo_is_refused_without_blocking(signed):
    archive, marker, trusted, _ = signed
    os.unlink(f"{archive}.sig")
    os.mkfifo(f"{archive}.sig")
    _refused(archive, marker, trusted, "not a regular file")
