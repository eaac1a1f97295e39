"""The fixed parts of torchpack's ZIP layout: record structures and reproducibility constants.

Everything that would otherwise leak the build machine into the archive is pinned here:
timestamps, permissions, the "made by" system, and the name of the single top-level folder.
"""

from __future__ import annotations

import functools
import os
import struct
import time

# CRC-32 exactly as zlib computes it, from Intel's ISA-L: 24 GB/s on one core of the
# benchmark VM against zlib's 4.2 GB/s, and 0.06 us against 0.2 us for a small tensor's
# record. Like zlib's, it releases the GIL while it runs.
from isal.isal_zlib import crc32

#: Every record lives under this folder. torch.package names it after the output file; we do
#: not, so that renaming or moving an archive can never change its bytes.
TOP_FOLDER = "package"

#: Data of aligned records (tensor storages) starts at a multiple of this, so it can be mmapped.
STORAGE_ALIGNMENT = 64

#: 1980-01-01 00:00:00, the earliest time a DOS date can express.
DOS_EPOCH = (1980, 1, 1, 0, 0, 0)

#: rw-r--r-- for every record, stored as a Unix mode in the high 16 bits of the external attributes.
RECORD_MODE = 0o100644
MADE_BY_UNIX = 3
ZIP_VERSION = 20  # 2.0: stored records, folders; no encryption
ZIP64_VERSION = 45

#: Header id of the padding extra field (the id zipalign uses for the same purpose).
ALIGNMENT_EXTRA_ID = 0xD935
ZIP64_EXTRA_ID = 0x0001

STORED = 0
DEFLATED = 8

LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
CENTRAL_HEADER = struct.Struct("<4sHHHHHHIIIHHHHHII")
CENTRAL_HEADER_SIGNATURE = b"PK\x01\x02"
END_OF_CENTRAL_DIR = struct.Struct("<4sHHHHIIH")
END_OF_CENTRAL_DIR_SIGNATURE = b"PK\x05\x06"
ZIP64_END_OF_CENTRAL_DIR = struct.Struct("<4sQHHIIQQQQ")
ZIP64_END_OF_CENTRAL_DIR_SIGNATURE = b"PK\x06\x06"
ZIP64_LOCATOR = struct.Struct("<4sIQI")
ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
EXTRA_HEADER = struct.Struct("<HH")

#: A local header repeats its central entry's version needed, flags, method, time, date,
#: CRC-32, sizes and name length: bytes [4:28) of the local header, [6:30) of the central one.
LOCAL_REPEATED = (4, 28)
CENTRAL_REPEATED_START = 6
#: The local header's extra field length, which follows the repeated bytes.
LOCAL_EXTRA_LENGTH = struct.Struct("<H")

#: Sizes and counts at or above these need the ZIP64 extensions.
ZIP32_LIMIT = 0xFFFFFFFF
ZIP16_LIMIT = 0xFFFF

#: UTF-8 names (general purpose bit 11); no data descriptors, no encryption.
FLAG_UTF8 = 0x0800

#: The most a deflate stream can expand: 258 bytes (a longest match) per at least 2 bits.
#: A compressed record that declares a larger size than this allows is refused unread.
MAX_DEFLATE_RATIO = 1032

#: Names the largest size, in bytes, one compressed record may inflate to (default 1 GiB).
MAX_INFLATED_SIZE_VARIABLE = "TORCHPACK_MAX_INFLATED_SIZE"
DEFAULT_MAX_INFLATED_SIZE = 1 << 30


def max_inflated_size() -> int:
    """The limit on one compressed record's inflated size: ``TORCHPACK_MAX_INFLATED_SIZE`` or 1 GiB.

    Reading a compressed record allocates its declared size. Neither writer compresses
    anything (archives from other ZIP tools may), so only records of foreign archives meet
    this limit; it is read from the environment so that it reaches every reader alike -
    PackageImporter, the CLI, builds reading their dependencies - without an option on each.
    """
    configured = os.environ.get(MAX_INFLATED_SIZE_VARIABLE)
    if not configured:
        return DEFAULT_MAX_INFLATED_SIZE
    try:
        limit = int(configured)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ValueError(f"{MAX_INFLATED_SIZE_VARIABLE} must be a number of bytes, not {configured!r}")
    return limit


def dos_timestamp() -> tuple[int, int]:
    """(date, time) in DOS format: the epoch, or ``SOURCE_DATE_EPOCH`` when it is set.

    SOURCE_DATE_EPOCH is read as UTC so the time zone of the build machine cannot matter.
    """
    year, month, day, hour, minute, second = DOS_EPOCH
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        moment = time.gmtime(int(epoch))
        if moment.tm_year >= 1980:
            year, month, day = moment.tm_year, moment.tm_mon, moment.tm_mday
            hour, minute, second = moment.tm_hour, moment.tm_min, moment.tm_sec
        year = min(year, 2107)  # the last year a DOS date can hold
    return (year - 1980) << 9 | month << 5 | day, hour << 11 | minute << 5 | second // 2


# -- CRC-32 of a record hashed in pieces -------------------------------------------------
#
# A large record's CRC-32 is computed by several threads, one piece each; the pieces' CRCs are
# then combined. The CRC of A + B is CRC(A) times x^(8 * len(B)) plus CRC(B), in polynomials
# over GF(2) modulo CRC-32's polynomial (the initial and final inversions cancel out). The
# numbers below are such polynomials written bit-reflected, as zlib writes CRCs: bit 31 holds
# x^0 and bit 0 holds x^31.

#: CRC-32's polynomial without its x^32 term, bit-reflected.
_CRC32_POLYNOMIAL = 0xEDB88320
_X_TO_THE_0 = 0x80000000
_X_TO_THE_1 = 0x40000000


def _crc_multiply(a: int, b: int) -> int:
    """a * b modulo CRC-32's polynomial."""
    product = 0
    for _ in range(32):
        if a & _X_TO_THE_0:  # a's coefficient of x^k, k counting up from 0 as a shifts
            product ^= b
        a = (a << 1) & 0xFFFFFFFF
        # b times x: reflected, a shift right; x^32 wraps round to the polynomial.
        b = (b >> 1) ^ _CRC32_POLYNOMIAL if b & 1 else b >> 1
    return product


@functools.lru_cache(maxsize=64)
def _x_to_the_bits_of(length: int) -> int:
    """x^(8 * length) modulo the polynomial: what a CRC is multiplied by for ``length`` more bytes."""
    result, square, exponent = _X_TO_THE_0, _X_TO_THE_1, 8 * length
    while exponent:
        if exponent & 1:
            result = _crc_multiply(result, square)
        square = _crc_multiply(square, square)
        exponent >>= 1
    return result


def crc32_combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """The CRC-32 of A + B, from ``crc32(A)``, ``crc32(B)`` and ``len(B)``."""
    return _crc_multiply(_x_to_the_bits_of(length_b), crc_a) ^ crc_b
