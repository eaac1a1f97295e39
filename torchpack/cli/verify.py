"""``torchpack verify ARCHIVE...``: is each archive intact, loadable, and loadable *here*?

Four checks, each reported per record or module:

1. integrity - every record's CRC-32, and its size and digest against the integrity record
   when there is one (torch.package archives have none: CRCs only; an archive torchpack
   wrote that lost its record is pointed out, and fails with ``--require-integrity``, as
   does any archive without one);
2. pickles - each one loads in a fresh, isolated :class:`PackageImporter`;
3. extern modules - each can be found by this interpreter (located, not imported);
4. provenance - installed versions of extern distributions against the recorded ones.

With ``--compat torch.package`` a further check reads each packaged module's source (without
running it) for calls that torch.package resolves differently (see :mod:`torchpack.analyze.compat`).

With ``--trusted-key`` a fifth check comes first: that one of the keys signed the archive
(``ARCHIVE.sig``, see :mod:`torchpack._signing`). An archive that fails it is not loaded.

Exit 1 when any check of any archive fails, naming the archive and the record or module at fault.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from typing import Any

from .. import _records as records
from .. import _signing as signing
from .._archive_reader import open_archive
from .._integrity import extern_version_mismatches, is_downgraded, read_integrity, verify_records
from .._resolution import module_exists
from ..analyze.archive_graph import read_contents
from ..analyze.compat import COMPAT_TARGETS, torch_package_findings
from ..errors import ArchiveFormatError, IntegrityDowngradeWarning, SignatureError, TorchpackError
from ..importer import sys_importer
from ._output import InputError, paint, print_json

_NO_INTEGRITY = "no integrity record (torch.package archive): digests not checked"
_DOWNGRADED = (
    "WARNING: written by torchpack, but its integrity record was removed after export: digests not checked "
    "(--require-integrity fails such archives)"
)
_REQUIRED = "no integrity record: --require-integrity fails archives whose digests cannot be checked"

HELP = "check integrity, that every pickle loads, extern modules and versions"
DESCRIPTION = "Check archives' records, pickles and extern modules; exit 1 naming what failed in which archive."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archives", nargs="+", metavar="ARCHIVE", help="one or more archives; exit 1 when any fails")
    parser.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="PUB",
        help="an Ed25519 public key file (PEM, OpenSSH or raw); the archive must be signed by one (repeatable)",
    )
    parser.add_argument("--require-integrity", action="store_true",
                        help="fail (exit 1) when the archive has no integrity record, as torch.package's have none")
    parser.add_argument("--compat", choices=COMPAT_TARGETS, metavar="LOADER",
                        help="also fail packaged code that would load differently in LOADER (torch.package)")
    parser.add_argument("--json", action="store_true", help="print a JSON document")


def _extern_problem(name: str) -> str | None:
    """Why the extern module ``name`` cannot be imported here, or None when it can be found.

    The import system's finders locate it (and its parents) without running any of them.
    """
    try:
        found = module_exists(sys_importer, name)
    except Exception as error:  # noqa: BLE001 - a broken finder or parent package
        return f"cannot be located here: {type(error).__name__}: {error}"
    return None if found else "is not installed here"


def _shorter(message: str, archive: str, record: str) -> str:
    """``message`` without the archive and record names that the report already shows."""
    return message.removeprefix(f"{archive}: ").removeprefix(f"record {record!r} ")


def _pickle_problem(archive: str, record: str) -> str | None:
    """Why ``record`` does not load in a fresh importer, or None when it does."""
    from ..package_importer import PackageImporter

    package, _, resource = record.rpartition("/")
    try:
        with warnings.catch_warnings():
            # torch's own deprecation notice for typed storages says nothing about the archive.
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
            # A missing integrity record is reported once, by check(), not once per pickle.
            warnings.filterwarnings("ignore", category=IntegrityDowngradeWarning)
            PackageImporter(archive).load_pickle(package.replace("/", "."), resource, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - whatever the pickle raises is the finding
        return f"does not load: {type(error).__name__}: {_shorter(str(error), archive, record)}"
    return None


def _signature_result(archive: str, reader: Any, trusted_keys: list[str]) -> dict[str, Any] | None:
    """Who signed the archive, or why no trusted key did; None when no key was given."""
    if not trusted_keys:
        return None
    keys = [signing.load_public_key(key) for key in trusted_keys]  # a bad key file: exit 2
    try:
        _, key_id = signing.check_signature(reader, keys, sidecar=signing.signature_path(archive))
    except SignatureError as error:
        return {"ok": False, "key_id": None, "message": str(error).removeprefix(f"{archive}: ")}
    return {"ok": True, "key_id": key_id, "message": None}


def _compat_result(reader: Any, compat: str | None) -> dict[str, Any] | None:
    """Each construct that ``compat`` (torch.package) would load differently; None when not asked."""
    if compat is None:
        return None
    findings = torch_package_findings(reader)
    problems = [
        {"where": f.where, "module": f.module, "line": f.line, "construct": f.construct, "why": f.why,
         "portable": f.portable, "message": f"{f.construct}: {f.why}; portable: {f.portable}"}
        for f in findings
    ]
    return {"loader": compat, "problems": problems}


def check(
    archive: str, trusted_keys: Sequence[str] = (), require_integrity: bool = False, compat: str | None = None
) -> dict[str, Any]:
    """Every finding, grouped by check; ``ok`` is whether there were none."""
    reader = open_archive(archive)
    signature = _signature_result(archive, reader, list(trusted_keys))
    signed = signature is None or signature["ok"]
    contents = read_contents(reader)
    if contents.format_version is None and records.VERSION not in contents.unreadable:
        raise InputError(f"{archive}: no .data/version record; not a torch.package archive")
    integrity_problems = [
        {"record": p.record, "message": _shorter(p.message, reader.name, p.record)} for p in verify_records(reader)
    ]
    try:
        integrity = read_integrity(reader)
    except ArchiveFormatError:
        integrity = None  # already reported by verify_records, naming the record
    downgraded = integrity is None and is_downgraded(reader)
    if integrity is None and require_integrity and not integrity_problems:
        integrity_problems.append({"record": records.INTEGRITY, "message": _REQUIRED})
    corrupted = {problem["record"] for problem in integrity_problems}
    pickle_problems = []
    for record in sorted(contents.pickles) if signed else ():  # no trusted signer: load nothing
        if record in corrupted:
            continue  # its bytes are already known to be wrong; loading them proves nothing more
        problem = _pickle_problem(archive, record)
        if problem is not None:
            pickle_problems.append({"record": record, "message": problem})
    extern_problems = []
    for name in sorted(contents.extern):
        problem = _extern_problem(name)
        if problem is not None:
            extern_problems.append({"module": name, "message": problem})
    version_problems = [
        {"distribution": m.distribution, "recorded": m.recorded, "installed": m.installed, "message": m.describe()}
        for m in (extern_version_mismatches(integrity) if integrity is not None else [])
    ]
    compat_result = _compat_result(reader, compat)
    compat_problems = compat_result["problems"] if compat_result is not None else []
    return {
        "archive": archive,
        "ok": signed and not (integrity_problems or pickle_problems or extern_problems or version_problems or compat_problems),
        "signature": signature,
        "digests_checked": integrity is not None,
        "integrity_record_removed": downgraded,
        "note": None if integrity is not None or integrity_problems else _DOWNGRADED if downgraded else _NO_INTEGRITY,
        "integrity": integrity_problems,
        "pickles": {"checked": len(contents.pickles) if signed else 0, "problems": pickle_problems},
        "extern_modules": {"checked": len(contents.extern), "problems": extern_problems},
        "extern_versions": version_problems,
        **({"compat": compat_result} if compat_result is not None else {}),
    }


def _report(title: str, problems: list[dict[str, Any]], subject: str, passed: str) -> None:
    if not problems:
        print(f"{paint('ok', 'green')}    {title}: {passed}")
        return
    print(f"{paint('FAIL', 'red')}  {title}:")
    for problem in problems:
        print(f"        {problem[subject]}: {problem['message']}")


def _print_result(result: dict[str, Any]) -> None:
    signature = result["signature"]
    if signature is not None:
        signer = [] if signature["ok"] else [{"subject": "signature", "message": signature["message"]}]
        _report("signature", signer, "subject", f"signed by trusted key {signature['key_id']}")
    records_checked = "sizes and digests match" if result["digests_checked"] else "CRC-32 checks pass"
    _report("integrity", result["integrity"], "record", records_checked)
    if result["note"]:
        print(f"      {result['note']}")
    pickles, externs = result["pickles"], result["extern_modules"]
    if signature is None or signature["ok"]:
        _report("pickles", pickles["problems"], "record", f"{pickles['checked']} load")
    else:
        print("      pickles: not loaded (no trusted signature)")
    _report("extern modules", externs["problems"], "module", f"{externs['checked']} found")
    if result["digests_checked"] or result["extern_versions"]:
        _report("extern versions", result["extern_versions"], "distribution", "as recorded")
    if "compat" in result:
        compat = result["compat"]
        _report(f"{compat['loader']} compat", compat["problems"], "where", f"loads the same in {compat['loader']}")
    print(f"{result['archive']}: " + (paint("OK", "green") if result["ok"] else paint("FAILED", "red")))


def run(args: argparse.Namespace) -> int:
    if len(args.archives) == 1:
        result = check(args.archives[0], args.trusted_key, args.require_integrity, args.compat)
        if args.json:
            print_json(result)
        else:
            _print_result(result)
        return 0 if result["ok"] else 1
    # Several archives: each is checked and reported, also after one that cannot be read.
    results: list[dict[str, Any]] = []
    for position, archive in enumerate(args.archives):
        try:
            result = check(archive, args.trusted_key, args.require_integrity, args.compat)
        except (TorchpackError, OSError) as error:
            result = {"archive": archive, "ok": False, "error": str(error)}
        results.append(result)
        if args.json:
            continue
        if "error" in result:
            print(f"{archive}: {paint('FAILED', 'red')}: {result['error']}")
        else:
            _print_result(result)
        if position < len(args.archives) - 1:
            print()
    failed = [result["archive"] for result in results if not result["ok"]]
    if args.json:
        print_json({"ok": not failed, "failed": failed, "archives": results})
    else:
        print(f"{len(args.archives)} archives: {len(args.archives) - len(failed)} OK"
              + (f", {len(failed)} FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
