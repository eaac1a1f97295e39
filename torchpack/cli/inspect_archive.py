"""``torchpack inspect ARCHIVE``: what an archive holds, read without running any of it.

Records with sizes (as a tree), interned / extern / mocked modules, every pickle with the
globals it loads and its tensors by name and shape (``head.bias  float32 [2]``), tensor
storages, the format version and the build's provenance. Pickles
are read at the opcode level (:mod:`torchpack._pickle_scan`), so inspecting an untrusted
archive imports nothing from it.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import Any

from .. import _records as records
from .._archive_reader import ArchiveReader, open_archive
from .._globbing import GlobGroup
from .._integrity import read_integrity
from .._pickle_scan import PickleScan
from ..analyze.archive_graph import ArchiveContents, read_contents, record_data
from ..analyze.tensor_names import tensor_names
from ..errors import ArchiveFormatError
from ..file_structure_representation import directory_from_records
from ._output import format_size, paint, print_json

HELP = "records, modules, pickled globals, storages and provenance of an archive"
DESCRIPTION = "Show what an archive holds, without importing or unpickling anything from it."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", metavar="ARCHIVE", help="a .pt file written by torchpack or torch.package")
    parser.add_argument("--include", action="append", metavar="GLOB",
                        help="only records matching this '/'-separated glob (repeatable; default: all)")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="leave out records matching this glob (repeatable)")
    parser.add_argument("--json", action="store_true", help="print a JSON document")


def _provenance(reader: ArchiveReader) -> dict[str, Any] | None:
    """The integrity record's provenance, or None when the archive has none (torch.package's)."""
    try:
        integrity = read_integrity(reader)
    except ArchiveFormatError as error:
        return {"error": str(error)}
    return None if integrity is None else dict(integrity.provenance)


def _storages(contents: ArchiveContents, sizes: dict[str, int]) -> dict[str, Any]:
    """Every storage record, with the dtype and element count its pickles give it."""
    users = contents.storage_users()
    storage_records = sorted(
        (name for name in sizes if name.startswith(".data/") and name.endswith(".storage")),
        key=lambda name: (len(name), name),  # .data/2.storage before .data/10.storage
    )
    listed = []
    for name in storage_records:
        reference = users[name][0][1] if name in users else None
        listed.append({
            "record": name,
            "bytes": sizes[name],
            "dtype": reference.dtype if reference else None,
            "numel": reference.numel if reference else None,
            "location": reference.location if reference else None,
            "pickles": [pickle_record for pickle_record, _ in users.get(name, [])],
        })
    dtypes = Counter(entry["dtype"] or "unreferenced" for entry in listed)
    return {
        "count": len(listed),
        "bytes": sum(entry["bytes"] for entry in listed),
        "dtypes": dict(sorted(dtypes.items())),
        "records": listed,
    }


def _tensor_entries(reader: ArchiveReader, record: str) -> list[dict[str, Any]] | None:
    """The pickle's tensors by name (``head.bias``), or None when it cannot be read as an object."""
    try:
        named = tensor_names(record_data(reader, record))
    except (ValueError, ArchiveFormatError):
        return None
    return [
        {
            "name": tensor.name,
            "shape": list(tensor.shape) if tensor.shape is not None else None,
            "dtype": tensor.dtype,
            "storage": records.storage_record(tensor.storage.key),
        }
        for tensor in named
    ]


def _pickle_entry(reader: ArchiveReader, record: str, scan: PickleScan | str, size: int) -> dict[str, Any]:
    if not isinstance(scan, PickleScan):
        return {"record": record, "bytes": size, "error": scan}
    return {
        "record": record,
        "bytes": size,
        "protocol": scan.protocol,
        "globals": [f"{module}.{name}" for module, name in scan.globals],
        "storages": [records.storage_record(reference.key) for reference in scan.storages],
        "tensors": _tensor_entries(reader, record),
    }


def describe(archive: str, include: list[str] | None, exclude: list[str]) -> dict[str, Any]:
    """The JSON-able description of ``archive`` that both output formats print."""
    reader = open_archive(archive)
    names = reader.names()
    sizes = {name: len(record_data(reader, name)) for name in names}
    contents = read_contents(reader)
    selection = GlobGroup(include or "**", exclude=exclude, separator="/")
    return {
        "archive": archive,
        "format_version": contents.format_version,
        "records": [{"name": name, "bytes": sizes[name]} for name in sorted(names) if selection.matches(name)],
        "record_count": len(names),
        "record_bytes": sum(sizes.values()),
        "file_bytes": os.path.getsize(archive) if os.path.isfile(archive) else None,
        "interned_modules": contents.interned,
        "extern_modules": sorted(contents.extern),
        "mocked_modules": contents.mocked,
        "pickles": [
            _pickle_entry(reader, record, scan, sizes[record]) for record, scan in sorted(contents.pickles.items())
        ],
        "storages": _storages(contents, sizes),
        "provenance": _provenance(reader),
        "unreadable_records": contents.unreadable,
    }


def _section(title: str, count: int | None = None) -> str:
    return paint(title if count is None else f"{title} ({count})", "bold")


def _print_modules(title: str, names: list[str]) -> None:
    print(_section(title, len(names)))
    for name in names:
        print(f"  {name}")


def _print_provenance(provenance: dict[str, Any] | None) -> None:
    if provenance is None:
        print("provenance: none (no integrity record, as in torch.package archives)")
        return
    if "error" in provenance:
        print(f"provenance: {paint('unreadable', 'red')}: {provenance['error']}")
        return
    tools = ", ".join(
        f"{tool} {provenance[key]}" for tool, key in (("torchpack", "torchpack"), ("torch", "torch"), ("Python", "python"))
        if key in provenance
    )
    print(f"built with {tools}")
    distributions = provenance.get("extern_distributions") or {}
    listed = ", ".join(f"{name} {version}" for name, version in distributions.items()) or "none"
    print(f"extern distributions: {listed}")


def _print_text(document: dict[str, Any]) -> None:
    shown = document["records"]
    count = f"{len(shown)} of {document['record_count']}" if len(shown) != document["record_count"] else len(shown)
    on_disk = f", {format_size(document['file_bytes'])} on disk" if document["file_bytes"] is not None else ""
    print(f"{paint(document['archive'], 'bold')}: format version {document['format_version'] or 'unknown'}, "
          f"{count} records ({format_size(document['record_bytes'])}){on_disk}")
    _print_provenance(document["provenance"])
    for record, error in document["unreadable_records"].items():
        print(paint(f"unreadable record {record}: {error}", "red"))
    print()
    # The tree is file_structure()'s, each file labelled with its size.
    labelled = [f"{entry['name']}  ({format_size(entry['bytes'])})" for entry in shown]
    print(directory_from_records(document["archive"], labelled), end="")
    print()
    _print_modules("interned modules", document["interned_modules"])
    _print_modules("extern modules", document["extern_modules"])
    _print_modules("mocked modules", document["mocked_modules"])
    print()
    print(_section("pickles", len(document["pickles"])))
    for entry in document["pickles"]:
        if "error" in entry:
            print(f"  {entry['record']}  {paint('unreadable: ' + entry['error'], 'red')}")
            continue
        print(f"  {entry['record']}  ({format_size(entry['bytes'])}, protocol {entry['protocol']}, "
              f"{len(entry['storages'])} storages)")
        for name in entry["globals"]:
            print(f"    {paint(name, 'cyan')}")
        if entry["tensors"]:
            print(f"    tensors ({len(entry['tensors'])}):")
        for tensor in entry["tensors"] or ():
            shape = "[" + ", ".join(map(str, tensor["shape"])) + "]" if tensor["shape"] is not None else "?"
            print(f"      {tensor['name'] or '(the pickled tensor)'}  {tensor['dtype']} {shape}  ({tensor['storage']})")
    storages = document["storages"]
    dtypes = ", ".join(f"{dtype} x{count}" for dtype, count in storages["dtypes"].items()) or "none"
    print()
    print(f"{_section('storages', storages['count'])}: {format_size(storages['bytes'])}; dtypes: {dtypes}")


def run(args: argparse.Namespace) -> int:
    document = describe(args.archive, args.include, args.exclude)
    if args.json:
        print_json(document)
    else:
        _print_text(document)
    return 0
