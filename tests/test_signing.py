"""Signed archives: keys, ``torchpack sign``/``keygen``/``verify --trusted-key``,
``PackageImporter(trusted_keys=...)``, real torch.package on a signed archive, and build
targets with ``sign = true``. Hostile signatures are in tests/hostile/test_hostile_signing.py."""

from __future__ import annotations

import contextlib
import io
import json
import stat
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from archive_surgery import load_all, valid_archive
from build_support import build_in_process, make_workspace, write
from torchpack import PackageImporter
from torchpack import _signing as signing
from torchpack._archive_reader import open_archive
from torchpack.cli import main as torchpack_main
from torchpack.errors import SignatureError, SigningKeyError, SigningUnavailableError


def _archive(tmp_path: Path, name: str = "model.pt") -> Path:
    path = tmp_path / name
    path.write_bytes(valid_archive())
    return path


def _key_pair(tmp_path: Path, name: str = "release") -> tuple[Path, Path]:
    private, public = signing.generate_key_pair(tmp_path / name)
    return Path(private), Path(public)


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = torchpack_main([str(arg) for arg in args])
    return code, out.getvalue(), err.getvalue()


def test_keygen_writes_a_private_pem_readable_only_by_its_owner_and_a_public_pem(tmp_path):
    private, public = _key_pair(tmp_path)
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    with pytest.raises(SigningKeyError, match="already exists"):
        signing.generate_key_pair(private)


def test_every_documented_key_format_signs_and_verifies(tmp_path):
    archive = _archive(tmp_path)
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key()
    private_files = {
        "pkcs8.pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "openssh": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()),
        "raw": key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
    }
    public_forms = [
        public,
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b" ci@example\n",
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
    ]
    for name, data in private_files.items():
        (tmp_path / name).write_bytes(data)
        signing.sign_archive(open_archive(archive), signing.load_private_key(tmp_path / name))
        for form in public_forms:
            assert PackageImporter(archive, trusted_keys=[form]).load_text("zoo", "readme.txt") == "hello"


def test_password_protected_and_non_ed25519_keys_are_refused_clearly(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    )
    with pytest.raises(SigningKeyError, match="password-protected"):
        signing.load_private_key(encrypted)
    from cryptography.hazmat.primitives.asymmetric import ec

    other = tmp_path / "ec.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519 private key"):
        signing.load_private_key(other)
    with pytest.raises(SigningKeyError, match="a private key; a trusted key is the public one"):
        signing.load_public_key(encrypted)


def test_signing_leaves_the_archive_bytes_alone_and_the_importer_loads_it(tmp_path):
    archive = _archive(tmp_path)
    before = archive.read_bytes()
    private, public = _key_pair(tmp_path)
    path = signing.sign_archive(open_archive(archive), signing.load_private_key(private))
    assert path == f"{archive}.sig" and archive.read_bytes() == before
    document = json.loads(Path(path).read_text())
    assert document["schema"] == "torchpack-signature/1" and document["algorithm"] == "ed25519"
    # The signature is over the prefix and the integrity record's exact bytes.
    integrity = open_archive(archive).read(".data/torchpack/integrity.json")
    import base64

    signing.load_public_key(public).verify(base64.b64decode(document["signature"]), signing.SIGNED_PREFIX + integrity)
    assert load_all(archive, trusted_keys=[public]) == load_all(archive)
    assert load_all(archive, trusted_keys=[str(public)], integrity="eager") == load_all(archive)


def test_any_one_of_several_trusted_keys_is_enough(tmp_path):
    archive = _archive(tmp_path)
    private, public = _key_pair(tmp_path)
    _, other_public = _key_pair(tmp_path, "other")
    signing.sign_archive(open_archive(archive), signing.load_private_key(private))
    PackageImporter(archive, trusted_keys=[other_public.read_bytes(), public])


def test_buffers_take_their_signature_as_an_argument(tmp_path):
    archive = _archive(tmp_path)
    private, public = _key_pair(tmp_path)
    signing.sign_archive(open_archive(archive), signing.load_private_key(private))
    data = archive.read_bytes()
    with pytest.raises(SignatureError, match="<bytes>: unsigned .*needs its signature passed in"):
        PackageImporter(data, trusted_keys=[public])
    sidecar = Path(f"{archive}.sig").read_bytes()
    assert load_all(data, trusted_keys=[public], signature=sidecar) == load_all(archive)


def test_folder_archives_are_signed_next_to_the_folder(tmp_path):
    import zipfile

    archive = _archive(tmp_path)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / "package"
    private, public = _key_pair(tmp_path)
    assert signing.sign_archive(open_archive(folder), signing.load_private_key(private)) == f"{folder}.sig"
    assert PackageImporter(folder, trusted_keys=[public]).load_text("zoo", "readme.txt") == "hello"


def test_torch_package_loads_a_signed_archive_unchanged(tmp_path):
    from torch.package import PackageImporter as TorchImporter

    archive = _archive(tmp_path)
    private, public = _key_pair(tmp_path)
    assert _cli("sign", archive, "--key", private)[0] == 0
    ours = PackageImporter(archive, trusted_keys=[public]).load_pickle("data", "tensors.pkl")
    theirs = TorchImporter(str(archive)).load_pickle("data", "tensors.pkl")
    assert all(ours[k].equal(theirs[k]) for k in ("a", "b", "c"))


def test_cli_sign_then_verify_with_trusted_keys(tmp_path):
    archive = _archive(tmp_path)
    assert _cli("keygen", tmp_path / "ci")[0] == 0
    code, out, _ = _cli("verify", archive, "--trusted-key", tmp_path / "ci.pub")
    assert code == 1 and "unsigned" in out and "pickles: not loaded" in out
    code, out, _ = _cli("sign", archive, "--key", tmp_path / "ci")
    assert code == 0 and out.startswith(f"{archive}.sig: signed by key ")
    code, out, _ = _cli("verify", archive, "--trusted-key", tmp_path / "ci.pub")
    assert code == 0 and "ok    signature: signed by trusted key" in out and "2 load" in out
    _cli("keygen", tmp_path / "stranger")
    code, out, _ = _cli("verify", archive, "--trusted-key", tmp_path / "stranger.pub", "--json")
    result = json.loads(out)
    assert code == 1 and not result["ok"] and "which is not trusted" in result["signature"]["message"]
    # Without --trusted-key, verify checks what it always did and ignores signatures.
    assert _cli("verify", archive)[0] == 0


def test_sign_refuses_an_archive_that_does_not_match_its_integrity_record(tmp_path):
    from archive_surgery import flip_byte, rebuild

    private, _ = _key_pair(tmp_path)
    archive = _archive(tmp_path)
    archive.write_bytes(flip_byte(archive.read_bytes(), "zoo/readme.txt"))
    code, _, err = _cli("sign", archive, "--key", private)
    assert code == 2 and "record 'zoo/readme.txt' does not match its integrity digest" in err
    archive.write_bytes(rebuild(valid_archive(), add={"zoo/extra.txt": b"x"}, refresh_integrity=False))
    code, _, err = _cli("sign", archive, "--key", private)
    assert code == 2 and "record 'zoo/extra.txt' is not listed in the integrity record" in err
    assert not Path(f"{archive}.sig").exists()


def test_cli_reports_bad_keys_as_usage_errors(tmp_path):
    archive = _archive(tmp_path)
    (tmp_path / "junk.pem").write_text("not a key\n")
    code, _, err = _cli("sign", archive, "--key", tmp_path / "junk.pem")
    assert code == 2 and "junk.pem: not a PEM, OpenSSH or raw 32-byte Ed25519 private key" in err
    code, _, err = _cli("verify", archive, "--trusted-key", tmp_path / "missing.pub")
    assert code == 2 and "missing.pub: no such key file" in err
    assert not Path(f"{archive}.sig").exists()


def test_a_signing_build_target_writes_a_sidecar_and_leaves_the_archive_alone(tmp_path, monkeypatch):
    workspace = make_workspace(tmp_path / "ws", examples=False)
    build_file = workspace / "pkg" / "BUILD.toml"
    target = """
        [model]
        sources = { "lib.values" = "ANSWER = 42\\n" }
        text = { "lib/readme.txt" = "readme.txt" }
    """
    write(build_file, target + "sign = true\n")
    write(workspace / "pkg" / "readme.txt", "hello\n")
    private, public = _key_pair(tmp_path)
    monkeypatch.delenv("TORCHPACK_SIGN_KEY", raising=False)

    missing = build_in_process(monkeypatch, workspace, "//pkg:model")
    assert missing.code == 2 and "sign = true needs a key" in missing.err and not missing.exports

    built = build_in_process(monkeypatch, workspace, "//pkg:model", "--sign-key", str(private))
    assert built.code == 0 and len(built.exports) == 1, built.err
    archive = workspace / "torchpack-out" / "pkg" / "model.pt"
    signed_bytes = archive.read_bytes()
    assert PackageImporter(archive, trusted_keys=[public]).load_text("lib", "readme.txt") == "hello\n"

    # A cached build signs again, with the key the environment names (a new one here).
    rotated_private, rotated_public = _key_pair(tmp_path, "rotated")
    monkeypatch.setenv("TORCHPACK_SIGN_KEY", str(rotated_private))
    cached = build_in_process(monkeypatch, workspace, "//pkg:model")
    assert cached.code == 0 and "cached" in cached.out and not cached.exports
    PackageImporter(archive, trusted_keys=[rotated_public])
    with pytest.raises(SignatureError, match="not trusted"):
        PackageImporter(archive, trusted_keys=[public])

    # Not signing is the same target: still cached, the same bytes, and no stale signature.
    write(build_file, target)
    unsigned = build_in_process(monkeypatch, workspace, "//pkg:model")
    assert unsigned.code == 0 and "cached" in unsigned.out and not unsigned.exports
    assert archive.read_bytes() == signed_bytes and not Path(f"{archive}.sig").exists()


def test_the_sign_key_must_be_a_boolean(tmp_path, monkeypatch):
    workspace = make_workspace(tmp_path / "ws", examples=False)
    write(workspace / "pkg" / "BUILD.toml", """
        [t]
        sources = { "lib.values" = "A = 1\\n" }
        sign = "yes"
    """)
    result = build_in_process(monkeypatch, workspace, "//pkg:t")
    assert result.code == 2 and "key 'sign': expected a boolean" in result.err


def test_checking_a_signature_without_cryptography_says_what_to_install(tmp_path, monkeypatch):
    archive = _archive(tmp_path)
    monkeypatch.setitem(sys.modules, "cryptography", None)  # as if it were not installed
    with pytest.raises(SigningUnavailableError, match=r"pip install 'torchpack\[sign\]'"):
        PackageImporter(archive, trusted_keys=[b"x" * 32])
