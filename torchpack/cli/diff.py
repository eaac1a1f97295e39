"""``torchpack diff A B``: which records differ between two archives, and how.

What ``python -m torchpack.build --check`` sends a user to when two builds differ. Records
are matched by name; for each changed one the difference is shown in its own terms:

* source and other text: a unified diff;
* pickles: the globals added and removed, and a unified diff of the opcode listings
  (as ``pickletools.dis`` lists them, but without byte offsets, which would make every later
  line differ, and bounded: see the limits below);
* tensor data (``.data/N.storage``): the tensors of each pickle stored there - pickle,
  storage key, dtype, element count - with how many elements changed and by how much at
  most, read in the dtype the pickle gives them;
* the integrity record and serialization id: only named, as they follow from the others.

Archives may be hostile, so the work stays linear in their size: a listing shows at most
:data:`_MAX_LISTED_OPCODES` opcodes, cuts long arguments, and caps the indentation that
shows nesting; line diffs compare only what lies between the lines both sides start and end
with, and skip (saying so) a middle whose line pairs exceed :data:`_MAX_DIFFED_PAIRS`, as
difflib's matching is quadratic in the worst case.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import pickletools
import re
from typing import Any

from .. import _records as records
from .._archive_reader import open_archive
from .._pickle_scan import PickleScan, StorageReference, is_pickle, scan_pickle
from .._integrity import read_integrity
from ..analyze.archive_graph import read_contents, record_data
from ..analyze.tensor_names import NamedTensor, storage_tensors
from ..errors import ArchiveFormatError
from ._output import paint, print_json

#: Records computed from all the others: they change whenever anything does.
_DERIVED = {records.INTEGRITY: "integrity record", records.SERIALIZATION_ID: "serialization id"}
_HUNK_HEADER = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")
#: Opcodes listed per pickle; the globals of the whole pickle are compared all the same.
_MAX_LISTED_OPCODES = 200_000
#: Characters of an opcode's argument shown; a longer one ends with its length and a digest,
#: so that two long arguments that differ still list differently.
_MAX_ARGUMENT_TEXT = 200
#: Mark nesting shown as indentation (4 spaces a level); deeper nesting is indented as this.
_MAX_INDENT_LEVELS = 16
#: Line pairs difflib may compare in the part of two texts that differs (about a second at
#: worst); beyond it the record is reported changed without a line diff.
_MAX_DIFFED_PAIRS = 2_000_000

HELP = "records that differ between two archives, with readable differences"
DESCRIPTION = "Compare two archives record by record; exit 0 when identical, 1 when they differ."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A")
    parser.add_argument("b", metavar="B")
    parser.add_argument("--context", type=int, default=3, metavar="N", help="lines of context in diffs (default 3)")
    parser.add_argument("--json", action="store_true", help="print a JSON document")


def _digest(data: Any) -> bytes:
    return hashlib.sha256(data).digest()


def _text(data: Any) -> str | None:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _unified(a_lines: list[str], b_lines: list[str], name: str, context: int) -> str:
    """A unified diff with git's ``a/`` and ``b/`` prefixes on the record name.

    Lines both sides start and end with are matched in one linear pass; difflib sees only
    the differing middle (with ``context`` lines around it), and only when it is small enough.
    """
    shorter = min(len(a_lines), len(b_lines))
    same_start = 0
    while same_start < shorter and a_lines[same_start] == b_lines[same_start]:
        same_start += 1
    same_end = 0
    while same_end < shorter - same_start and a_lines[-1 - same_end] == b_lines[-1 - same_end]:
        same_end += 1
    a_differing, b_differing = len(a_lines) - same_start - same_end, len(b_lines) - same_start - same_end
    if a_differing * b_differing > _MAX_DIFFED_PAIRS:
        return (
            f"(not shown: {a_differing:,} and {b_differing:,} lines differ from line {same_start + 1} on, "
            f"more than the {_MAX_DIFFED_PAIRS:,} line pairs a diff compares)\n"
        )
    first = max(0, same_start - context)
    a_end, b_end = len(a_lines) - max(0, same_end - context), len(b_lines) - max(0, same_end - context)
    lines = difflib.unified_diff(a_lines[first:a_end], b_lines[first:b_end], f"a/{name}", f"b/{name}", n=context)
    # Hunk headers count from the first line given to difflib: shift them back.
    return "".join(
        _HUNK_HEADER.sub(
            lambda m: f"@@ -{int(m[1]) + first}{m[2] or ''} +{int(m[3]) + first}{m[4] or ''} @@", line, count=1
        ) if line.startswith("@@") else line
        for line in lines
    )


def _argument_text(argument: Any) -> str:
    """``repr(argument)``, cut to a bounded length without building the whole text."""
    if not isinstance(argument, (str, bytes)) or len(argument) <= _MAX_ARGUMENT_TEXT:
        return repr(argument)
    whole = argument.encode("utf-8", "surrogatepass") if isinstance(argument, str) else argument
    digest = hashlib.sha256(whole).hexdigest()[:16]
    return f"{argument[:_MAX_ARGUMENT_TEXT]!r}... ({len(argument):,} long, sha256 {digest}...)"


def _opcode_listing(data: Any) -> list[str]:
    """One line per opcode: its code, its name indented by mark nesting, its argument."""
    lines: list[str] = []
    marks: list[int] = []  # positions of the open marks
    try:
        for opcode, argument, position in pickletools.genops(bytes(data)):
            if len(lines) == _MAX_LISTED_OPCODES:
                lines.append(f"<listing stops after {_MAX_LISTED_OPCODES:,} opcodes>\n")
                break
            line = f"{repr(opcode.code)[1:-1]:<4} {' ' * 4 * min(len(marks), _MAX_INDENT_LEVELS)}{opcode.name}"
            closes_mark = pickletools.markobject in opcode.stack_before
            if argument is not None or closes_mark:
                line = f"{line:<{len(line) - len(opcode.name) + 10}}"
                if argument is not None:
                    line += " " + _argument_text(argument)
                if closes_mark:
                    if not marks:
                        raise ValueError(f"{opcode.name} without a mark")
                    line += f" (MARK at {marks.pop()})"
            if opcode.name == "MARK":
                marks.append(position)
            lines.append(line + "\n")
    except ValueError as error:  # a malformed pickle: list what could be read, then why it stopped
        lines.append(f"<unreadable from here: {error}>\n")
    return lines


def _pickle_change(name: str, a: Any, b: Any, context: int) -> dict[str, Any]:
    change: dict[str, Any] = {"record": name, "kind": "pickle"}
    scans: list[PickleScan | None] = []
    for data in (a, b):
        try:
            scans.append(scan_pickle(data))
        except ValueError:
            scans.append(None)
    a_globals = {f"{m}.{n}" for m, n in scans[0].globals} if scans[0] else set()
    b_globals = {f"{m}.{n}" for m, n in scans[1].globals} if scans[1] else set()
    change["globals_added"] = sorted(b_globals - a_globals)
    change["globals_removed"] = sorted(a_globals - b_globals)
    a_listing, b_listing = _opcode_listing(a), _opcode_listing(b)
    change["diff"] = _unified(a_listing, b_listing, name, context)
    if not change["diff"] and len(a_listing) > _MAX_LISTED_OPCODES:
        change["diff"] = f"(the opcodes differ after the first {_MAX_LISTED_OPCODES:,}, which are all that is listed)\n"
    return change


def _tensor_difference(reference: StorageReference, a: Any, b: Any) -> dict[str, Any]:
    """How the elements of one storage differ, read in the dtype its pickle declares."""
    import torch

    dtype = getattr(torch, reference.dtype, None)
    if not isinstance(dtype, torch.dtype) or reference.dtype.startswith(("qint", "quint")):
        dtype = torch.uint8  # compare raw bytes when the elements cannot be read as numbers
    size = dtype.itemsize
    if len(a) != len(b) or len(a) % size:
        return {"max_abs_diff": None, "changed_elements": None}
    if len(a) == 0:
        return {"max_abs_diff": 0.0, "changed_elements": 0}
    # Copies: frombuffer over a read-only archive mapping would warn, and these are small
    # next to reading both archives anyway.
    left = torch.frombuffer(bytearray(a), dtype=dtype)
    right = torch.frombuffer(bytearray(b), dtype=dtype)
    changed = left != right
    wide = torch.complex128 if dtype.is_complex else torch.float64
    difference = (left.to(wide) - right.to(wide)).abs()
    return {
        "max_abs_diff": float(difference.max()),
        "changed_elements": int(changed.sum()),
    }


def _storage_change(
    name: str, a: Any, b: Any, users: list[tuple[str, StorageReference]], named: list[tuple[str, NamedTensor]]
) -> dict[str, Any]:
    if not users:  # data no pickle points at: compare it as bytes
        key = name[len(".data/") : -len(".storage")]
        users = [("", StorageReference(key, "UntypedStorage", "uint8", "?", len(a)))]
    # Named where the pickle could be read as an object; by storage number otherwise.
    names: dict[str, list[NamedTensor]] = {}
    for pickle_record, tensor in named:
        names.setdefault(pickle_record, []).append(tensor)
    difference = _tensor_difference(users[0][1], a, b)
    tensors = []
    for pickle_record, reference in users:
        for tensor in names.get(pickle_record) or [None]:
            tensors.append({
                "pickle": pickle_record or None,
                "name": tensor.name if tensor else None,
                "shape": list(tensor.shape) if tensor and tensor.shape is not None else None,
                "storage_key": reference.key,
                "dtype": tensor.dtype if tensor else reference.dtype,
                "numel": reference.numel,
                **(difference if reference.dtype == users[0][1].dtype else _tensor_difference(reference, a, b)),
            })
    return {"record": name, "kind": "storage", "tensors": tensors}


def _change(
    name: str, a: Any, b: Any, context: int,
    users: list[tuple[str, StorageReference]], named: list[tuple[str, NamedTensor]],
) -> dict[str, Any]:
    sizes = {"size_a": len(a), "size_b": len(b)}
    if name in _DERIVED:
        return {"record": name, "kind": "derived", **sizes}
    if name.startswith(".data/") and name.endswith(".storage"):
        return {**_storage_change(name, a, b, users, named), **sizes}
    if is_pickle(name, a) and is_pickle(name, b):
        return {**_pickle_change(name, a, b, context), **sizes}
    a_text, b_text = _text(a), _text(b)
    if a_text is not None and b_text is not None:
        diff = _unified(a_text.splitlines(keepends=True), b_text.splitlines(keepends=True), name, context)
        return {"record": name, "kind": "source" if name.endswith(".py") else "text", "diff": diff, **sizes}
    return {"record": name, "kind": "binary", **sizes}


def _flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """``{"extern_distributions": {"numpy": "2.3.5"}}`` as ``{"extern_distributions.numpy": "2.3.5"}``."""
    if not isinstance(document, dict) or len(prefix) > 1000:
        return {prefix: document}
    flat: dict[str, Any] = {}
    for key, value in document.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _provenance_changes(a_reader: Any, b_reader: Any) -> list[dict[str, Any]]:
    """What differs between the two builds' provenance: versions of Python, torch, extern libraries.

    This is what answers "why do two machines' hashes differ" when no other record did.
    """
    provenances = []
    for reader in (a_reader, b_reader):
        try:
            integrity = read_integrity(reader)
        except ArchiveFormatError:
            integrity = None
        provenances.append(_flatten(dict(integrity.provenance)) if integrity is not None else {})
    a, b = provenances
    return [
        {"key": key, "a": a.get(key), "b": b.get(key)}
        for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)
    ]


def compare(a_path: str, b_path: str, context: int = 3) -> dict[str, Any]:
    """The differences between two archives, as the JSON document ``--json`` prints."""
    a_reader, b_reader = open_archive(a_path), open_archive(b_path)
    a_names, b_names = set(a_reader.names()), set(b_reader.names())
    changed_names = [
        name for name in sorted(a_names & b_names)
        if _digest(record_data(a_reader, name)) != _digest(record_data(b_reader, name))
    ]
    users: dict[str, list[tuple[str, StorageReference]]] = {}
    named: dict[str, list[tuple[str, NamedTensor]]] = {}
    if any(name.endswith(".storage") for name in changed_names):
        # A's pickles say what a storage holds; B's only for storages A does not use.
        a_contents, b_contents = read_contents(a_reader), read_contents(b_reader)
        users = {**b_contents.storage_users(), **a_contents.storage_users()}
        named = {**storage_tensors(b_reader, b_contents.pickles), **storage_tensors(a_reader, a_contents.pickles)}
    # Derived records last: they only echo the changes above them.
    changed_names.sort(key=lambda name: name in _DERIVED)
    changes = [
        _change(name, record_data(a_reader, name), record_data(b_reader, name), context,
                users.get(name, []), named.get(name, []))
        for name in changed_names
    ]
    provenance = _provenance_changes(a_reader, b_reader) if records.INTEGRITY in changed_names else []
    return {
        "a": a_path,
        "b": b_path,
        "identical": not (a_names ^ b_names or changes),
        "added": sorted(b_names - a_names),
        "removed": sorted(a_names - b_names),
        "changed": changes,
        "provenance": provenance,
    }


def _print_diff(diff: str) -> None:
    for line in diff.splitlines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "cyan" if line.startswith("@@") else None
        print("    " + (paint(line, style) if style else line))


def _print_change(change: dict[str, Any], derived_note: str) -> None:
    kind = change["kind"]
    if kind == "derived":
        print(f"{paint('changed', 'yellow')} {change['record']} ({_DERIVED[change['record']]}, {derived_note})")
        return
    print(f"{paint('changed', 'yellow')} {change['record']} ({kind}, {change['size_a']} -> {change['size_b']} bytes)")
    if kind == "storage":
        for tensor in change["tensors"]:
            if not tensor["pickle"]:
                where = f"storage used by no pickle: storage {tensor['storage_key']}, {tensor['numel']} bytes"
            elif tensor["name"] is not None:
                shape = "[" + ", ".join(map(str, tensor["shape"])) + "]" if tensor["shape"] is not None else "?"
                label = tensor["name"] or "the pickled tensor"
                where = f"{paint(label, 'bold')} in {tensor['pickle']}: {tensor['dtype']} {shape}"
            else:
                where = (f"tensor in {tensor['pickle']}: storage {tensor['storage_key']}, {tensor['dtype']}, "
                         f"{tensor['numel']} elements")
            print(f"    {where}: ", end="")
            if tensor["max_abs_diff"] is None:
                print("size changed")
            else:
                count = tensor["changed_elements"]
                print(f"{count} element{' differs' if count == 1 else 's differ'}, max abs diff {tensor['max_abs_diff']:.6g}")
        return
    for label, key in (("globals added", "globals_added"), ("globals removed", "globals_removed")):
        if change.get(key):
            print(f"    {label}: {', '.join(change[key])}")
    if change.get("diff"):
        _print_diff(change["diff"])


def _provenance_line(item: dict[str, Any]) -> str:
    """``numpy 2.3.5 → 2.4.6`` for a distribution, ``python 3.11.7 → 3.12.1`` for the rest."""
    key = item["key"].removeprefix("extern_distributions.")
    a = "(none)" if item["a"] is None else item["a"]
    b = "(none)" if item["b"] is None else item["b"]
    return f"{key} {a} → {b}"


def run(args: argparse.Namespace) -> int:
    result = compare(args.a, args.b, args.context)
    if args.json:
        print_json(result)
        return 0 if result["identical"] else 1
    if result["identical"]:
        print(f"{args.a} and {args.b} are identical")
        return 0
    for name in result["added"]:
        print(f"{paint('added', 'green')}   {name}")
    for name in result["removed"]:
        print(f"{paint('removed', 'red')} {name}")
    # No record but the derived ones differ: the builds ran in different environments, and
    # the provenance says which (the answer to "why do two machines' hashes differ").
    only_provenance = bool(result["provenance"]) and not (
        result["added"] or result["removed"] or any(change["kind"] != "derived" for change in result["changed"])
    )
    note = "only its provenance differs: the builds ran in different environments" if only_provenance \
        else "follows from the records above"
    for change in result["changed"]:
        _print_change(change, note)
    if result["provenance"]:
        print(f"{paint('provenance', 'yellow')}: recorded build environments differ")
        for item in result["provenance"]:
            print(f"    {_provenance_line(item)}")
    count = len(result["added"]) + len(result["removed"]) + len(result["changed"])
    print(f"{count} record{'s differ' if count != 1 else ' differs'}: {len(result['added'])} added, "
          f"{len(result['removed'])} removed, {len(result['changed'])} changed")
    return 1
