"""Detached Ed25519 signatures over an archive's integrity record.

The integrity record (``.data/torchpack/integrity.json``) lists the size and digest of every
other record, so a signature over its exact bytes vouches for every record - once the
reader also refuses records the integrity record does not list, which
:class:`torchpack._integrity.CheckedReader` does. The signed message is
:data:`SIGNED_PREFIX` followed by those bytes; the prefix keeps a torchpack signature from
being valid for anything else the same key signs.

A signature lives in a sidecar file next to the archive, ``ARCHIVE.sig`` (see
:func:`signature_path`): signing never rewrites an archive, so an unsigned build's bytes,
a memory-mapped archive and Bazel's read-only outputs all stay as they are. The sidecar is
a small JSON document (:func:`signature_document`).

``cryptography`` is imported only here, and only when a key is read or a signature made
or checked: it is the optional extra ``torchpack[sign]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Union

from . import _records as records
from ._archive_reader import ArchiveReader
from ._integrity import CheckedReader, parse_integrity
from ._record_files import open_regular_file, signature_path, write_atomically
from .errors import ArchiveFormatError, RecordNotFoundError, SignatureError, SigningKeyError, SigningUnavailableError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: What precedes the integrity record's bytes in the signed message (domain separation).
SIGNED_PREFIX = b"torchpack archive signature v1\0"
SIGNATURE_SCHEMA = "torchpack-signature/1"
#: A sidecar is about 200 bytes; anything much larger is not one, and is not read whole.
MAX_SIGNATURE_SIZE = 1 << 16
#: Raw Ed25519 keys (public key, private seed) and signatures, in bytes.
_RAW_KEY_SIZE = 32
_SIGNATURE_SIZE = 64

#: A trusted public key: the key itself, a key file's contents (bytes), or its path.
PublicKeySource = Union["Ed25519PublicKey", bytes, str, os.PathLike]


def _crypto() -> Any:
    """``cryptography``'s modules this file uses (imported on first use, ~30 ms)."""
    try:
        from cryptography import exceptions
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SigningUnavailableError(
            "archive signatures need the 'cryptography' package: pip install 'torchpack[sign]'"
        ) from None
    return SimpleNamespace(ed25519=ed25519, serialization=serialization, exceptions=exceptions)


def _read_small_file(path: str | os.PathLike, error: type[Exception], what: str) -> bytes:
    """A regular file of at most :data:`MAX_SIGNATURE_SIZE` bytes; never blocks on a FIFO."""
    where = os.fspath(path)
    try:
        handle = open_regular_file(where, where)
    except FileNotFoundError:
        raise error(f"{where}: no such {what}") from None
    except ArchiveFormatError:
        raise error(f"{where}: not a regular file, so not a {what}") from None
    except OSError as problem:
        raise error(f"{where}: cannot read {what}: {problem.strerror or problem}") from None
    with handle:
        data = handle.read(MAX_SIGNATURE_SIZE + 1)
    if len(data) > MAX_SIGNATURE_SIZE:
        raise error(f"{where}: over {MAX_SIGNATURE_SIZE} bytes, so not a {what}")
    return data


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """An Ed25519 private key from a file: PKCS#8 PEM (``openssl genpkey -algorithm ed25519``,
    ``torchpack keygen``), OpenSSH (``ssh-keygen -t ed25519 -N ''``) or the raw 32-byte seed.
    Password-protected keys are refused."""
    crypto = _crypto()
    ed25519, serialization = crypto.ed25519, crypto.serialization
    data = _read_small_file(path, SigningKeyError, "key file")
    where = os.fspath(path)
    if len(data) == _RAW_KEY_SIZE:
        return ed25519.Ed25519PrivateKey.from_private_bytes(data)
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningKeyError(f"{where}: the private key is password-protected; give an unencrypted key") from None
    except (ValueError, crypto.exceptions.UnsupportedAlgorithm) as error:
        raise SigningKeyError(f"{where}: not a PEM, OpenSSH or raw 32-byte Ed25519 private key ({error})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningKeyError(f"{where}: a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_public_key(source: PublicKeySource) -> Ed25519PublicKey:
    """A trusted Ed25519 public key: a key object, or the contents (bytes) or path of a file
    holding it as PEM (``-----BEGIN PUBLIC KEY-----``), an OpenSSH line (``ssh-ed25519 AAAA...``)
    or the raw 32 bytes."""
    crypto = _crypto()
    ed25519, serialization = crypto.ed25519, crypto.serialization
    if isinstance(source, ed25519.Ed25519PublicKey):
        return source
    if isinstance(source, (str, os.PathLike)):
        where, data = os.fspath(source), _read_small_file(source, SigningKeyError, "key file")
    elif isinstance(source, (bytes, bytearray, memoryview)):
        where, data = "<trusted key bytes>", bytes(source)
    else:
        raise SigningKeyError(f"a trusted key is an Ed25519PublicKey, bytes or a path, not {type(source).__name__}")
    if len(data) == _RAW_KEY_SIZE:
        return ed25519.Ed25519PublicKey.from_public_bytes(data)
    if b"PRIVATE KEY-----" in data:
        raise SigningKeyError(f"{where}: a private key; a trusted key is the public one (e.g. KEYFILE.pub)")
    try:
        if data.lstrip().startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data.strip())
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, crypto.exceptions.UnsupportedAlgorithm) as error:
        raise SigningKeyError(f"{where}: not a PEM, OpenSSH or raw 32-byte Ed25519 public key ({error})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningKeyError(f"{where}: a {type(key).__name__}, not an Ed25519 public key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    """16 hex digits naming a public key: the start of the SHA-256 of its raw 32 bytes."""
    serialization = _crypto().serialization
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair(private_path: str | os.PathLike) -> tuple[str, str]:
    """Write a new key pair: ``private_path`` (PKCS#8 PEM, mode 0600) and ``private_path.pub``
    (PEM). Existing files are never overwritten."""
    crypto = _crypto()
    ed25519, serialization = crypto.ed25519, crypto.serialization
    private_path = os.fspath(private_path)
    public_path = private_path + ".pub"
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise SigningKeyError(f"{path}: already exists; not overwriting a key")
    written = []
    try:
        for path, data, mode in ((private_path, private_pem, 0o600), (public_path, public_pem, 0o644)):
            # O_EXCL: a file that appeared since the check above is not overwritten either.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
    except OSError:
        for path in written:
            os.unlink(path)
        raise
    return private_path, public_path


def integrity_bytes(reader: ArchiveReader) -> bytes:
    """The exact bytes a signature covers (after :data:`SIGNED_PREFIX`)."""
    try:
        return reader.read(records.INTEGRITY)
    except RecordNotFoundError:
        raise SignatureError(
            f"{reader.name}: no {records.INTEGRITY} record, so nothing to sign or check a signature against "
            "(torch.package archives have none: re-export it with torchpack)"
        ) from None


def signature_document(integrity: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The sidecar's bytes: ``{"schema", "algorithm": "ed25519", "key_id", "signature"}`` with
    the signature in base64, as one line of JSON."""
    signature = private_key.sign(SIGNED_PREFIX + integrity)
    document = {
        "algorithm": "ed25519",
        "key_id": key_id(private_key.public_key()),
        "schema": SIGNATURE_SCHEMA,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    return (json.dumps(document, sort_keys=True) + "\n").encode()


def sign_archive(reader: ArchiveReader, private_key: Ed25519PrivateKey, path: str | None = None) -> str:
    """Sign the archive ``reader`` reads; write the sidecar (through a temporary file and a
    rename, so a reader never sees half of one) to ``path``, by default next to the archive.

    Every record is checked against the integrity record first (an :class:`IntegrityError`
    otherwise): a signature must not vouch for a record changed, added or removed before
    signing. A file this machine exported or checked before is not hashed again."""
    integrity = integrity_bytes(reader)
    CheckedReader(reader, parse_integrity(integrity, reader.name)).verify_all()
    document = signature_document(integrity, private_key)
    path = signature_path(reader.name) if path is None else path
    write_atomically(path, document, mode=0o644)
    return path


def _parse_signature(document: bytes, where: str) -> tuple[str, bytes]:
    """(key id, 64-byte signature) of a sidecar's bytes."""
    try:
        parsed = json.loads(document.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SignatureError(f"{where} is not a torchpack signature (not JSON)") from None
    if not isinstance(parsed, dict) or parsed.get("schema") != SIGNATURE_SCHEMA:
        raise SignatureError(f"{where} is not a torchpack signature (schema is not {SIGNATURE_SCHEMA!r})")
    if parsed.get("algorithm") != "ed25519":
        raise SignatureError(f"{where}: unsupported signature algorithm {parsed.get('algorithm')!r}")
    identifier, encoded = parsed.get("key_id"), parsed.get("signature")
    if not isinstance(identifier, str) or not isinstance(encoded, str):
        raise SignatureError(f"{where}: 'key_id' and 'signature' must be strings")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{where}: the signature is not valid base64") from None
    if len(signature) != _SIGNATURE_SIZE:
        raise SignatureError(f"{where}: the signature is {len(signature)} bytes; Ed25519 signatures are {_SIGNATURE_SIZE}")
    return identifier, signature


def check_signature(
    reader: ArchiveReader,
    trusted_keys: Iterable[PublicKeySource],
    *,
    signature: bytes | None = None,
    sidecar: str | None = None,
) -> tuple[bytes, str]:
    """Check that a trusted key signed the archive's integrity record; return its bytes and the key id.

    The signature is ``signature`` (a sidecar's contents) if given, else read from the
    ``sidecar`` file (see :func:`signature_path`). Reads no record but the integrity record.
    Raises :class:`SignatureError` naming the archive (and the sidecar) otherwise.
    """
    keys = [load_public_key(key) for key in trusted_keys]
    if not keys:
        raise SignatureError(f"{reader.name}: no trusted keys given, so no signature can be accepted")
    if signature is not None:
        where = f"{reader.name}: the signature given"
    elif sidecar is None:
        raise SignatureError(f"{reader.name}: unsigned (an archive that is no file needs its signature passed in)")
    elif not os.path.lexists(sidecar):
        raise SignatureError(f"{reader.name}: unsigned (no signature file {sidecar})")
    else:
        signature = _read_small_file(sidecar, SignatureError, "torchpack signature")
        where = f"{reader.name}: signature {sidecar}"
    identifier, raw_signature = _parse_signature(signature, where)
    integrity = integrity_bytes(reader)
    matching = [key for key in keys if key_id(key) == identifier]
    if not matching:
        trusted = ", ".join(sorted(key_id(key) for key in keys))
        raise SignatureError(f"{where}: signed by key {identifier}, which is not trusted (trusted: {trusted})")
    invalid_signature = _crypto().exceptions.InvalidSignature
    for key in matching:
        try:
            key.verify(raw_signature, SIGNED_PREFIX + integrity)
        except invalid_signature:
            continue
        return integrity, identifier
    raise SignatureError(
        f"{where}: does not match {records.INTEGRITY} (key {identifier}): the archive or its signature was changed"
    )
