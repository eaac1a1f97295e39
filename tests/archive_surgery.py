"""Byte-level edits of valid archives, for the malformed-archive corpus and the fuzz properties.

Two kinds of damage: *in place* (same length, ZIP structures patched so that only the check
under test can notice) and *rebuilt* (a new ZIP written with :mod:`zipfile` from edited
records, optionally with the integrity record refreshed, so the archive is well-formed and
only its meaning is wrong).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

from torchpack._digest import HEX_DIGESTS
from torchpack._records import SERIALIZATION_ID, serialization_id

INTEGRITY = ".data/torchpack/integrity.json"

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_CRC_IN_LOCAL = 14
_CRC_IN_CENTRAL = 16


def _infos(data: bytes) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename.partition("/")[2]: info for info in archive.infolist()}


def data_span(data: bytes, record: str) -> tuple[int, int]:
    """(offset, size) of a stored record's bytes in the archive."""
    info = _infos(data)[record]
    fields = _LOCAL.unpack_from(data, info.header_offset)
    start = info.header_offset + _LOCAL.size + fields[9] + fields[10]
    return start, info.compress_size


def central_offset(data: bytes, record: str) -> int:
    """Offset of the record's central-directory entry (archives below 4 GiB: no ZIP64 end)."""
    full_name = _infos(data)[record].filename.encode()
    end = data.rindex(b"PK\x05\x06")
    (position,) = struct.unpack_from("<I", data, end + 16)
    while True:
        fields = _CENTRAL.unpack_from(data, position)
        name = data[position + _CENTRAL.size : position + _CENTRAL.size + fields[10]]
        if name == full_name:
            return position
        position += _CENTRAL.size + fields[10] + fields[11] + fields[12]


def flip_byte(data: bytes, record: str, index: int = 0, *, fix_crc: bool = True) -> bytes:
    """Change one byte of a stored record; with ``fix_crc`` the CRC fields are patched to match,
    as a deliberate tamperer would, so only the integrity digest can catch it."""
    start, size = data_span(data, record)
    assert size > 0, record
    position = start + index % size
    edited = bytearray(data)
    edited[position] ^= 0xFF
    if fix_crc:
        crc = zlib.crc32(edited[start : start + size])
        info = _infos(data)[record]
        struct.pack_into("<I", edited, info.header_offset + _CRC_IN_LOCAL, crc)
        struct.pack_into("<I", edited, central_offset(data, record) + _CRC_IN_CENTRAL, crc)
    return bytes(edited)


def rebuild(
    data: bytes,
    *,
    replace: dict[str, bytes] | None = None,
    drop: tuple[str, ...] = (),
    add: dict[str, bytes] | None = None,
    raw_names: dict[str, str] | None = None,
    compress: tuple[str, ...] = (),
    refresh_integrity: bool = True,
    digest: str | None = None,
) -> bytes:
    """A new ZIP with records replaced, dropped, added or renamed (``raw_names`` maps a record
    to the full name to write, top folder included); ``refresh_integrity`` rewrites the
    integrity record to describe the result, so only the edit's meaning is wrong, with the
    ``digest`` algorithm if given (else the one the record names)."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        top = source.infolist()[0].filename.partition("/")[0]
        contents = {info.filename.partition("/")[2]: source.read(info) for info in source.infolist()}
    for name in drop:
        del contents[name]
    contents.update(replace or {})
    contents.update(add or {})
    if refresh_integrity and INTEGRITY in contents:
        document = json.loads(contents[INTEGRITY])
        if digest is not None and SERIALIZATION_ID in contents:
            # Derived from the other records' digests, as the exporter derives it.
            contents[SERIALIZATION_ID] = serialization_id(
                {name: HEX_DIGESTS[digest](body) for name, body in contents.items() if name not in (INTEGRITY, SERIALIZATION_ID)}
            ).encode()
        document["digest"] = algorithm = digest or document["digest"]
        document["records"] = {
            name: {algorithm: HEX_DIGESTS[algorithm](body), "size": len(body)}
            for name, body in sorted(contents.items())
            if name != INTEGRITY
        }
        contents[INTEGRITY] = json.dumps(document, sort_keys=True, indent=1).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, body in contents.items():
            full_name = (raw_names or {}).get(name, f"{top}/{name}")
            method = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
            target.writestr(zipfile.ZipInfo(full_name, date_time=(1980, 1, 1, 0, 0, 0)), body, compress_type=method)
    return out.getvalue()


ZOO_SOURCE = "SCALE = 3\n\n\ndef answer(x):\n    return x * SCALE\n"


def valid_archive() -> bytes:
    """A small torchpack archive with a module, a resource and two pickles sharing a storage."""
    import torch

    from torchpack import PackageExporter

    base = torch.arange(12, dtype=torch.float32)
    out = io.BytesIO()
    with PackageExporter(out) as exporter:
        exporter.save_source_string("zoo.net", ZOO_SOURCE)
        exporter.save_text("zoo", "readme.txt", "hello")
        exporter.save_pickle("data", "tensors.pkl", {"a": base, "b": base[4:], "c": torch.ones(2, 2, dtype=torch.int64)})
        exporter.save_pickle("data", "more.pkl", [base.view(3, 4), 7])
    return out.getvalue()


def load_all(source, **importer_options) -> dict:
    """Everything a user gets out of :func:`valid_archive`, in comparable form."""
    from torchpack import PackageImporter

    importer = PackageImporter(source, **importer_options)
    tensors = importer.load_pickle("data", "tensors.pkl")
    more = importer.load_pickle("data", "more.pkl")
    return {
        "answer": importer.import_module("zoo.net").answer(2),
        "source": importer.get_source("zoo.net"),
        "text": importer.load_text("zoo", "readme.txt"),
        "tensors": {key: (str(value.dtype), value.tolist()) for key, value in tensors.items()},
        "more": [more[0].tolist(), more[1]],
    }
