"""The fixed parts of torchpack's ZIP layout: record structures and reproducibility constants.

Everything that would otherwise leak the build machine into the archive is pinned here:
timestamps, permissions, the "made by" system, and the name of the single top-level folder.
"""

from __future__ import annotations

import os
import struct
import time

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

#: Sizes and counts at or above these need the ZIP64 extensions.
ZIP32_LIMIT = 0xFFFFFFFF
ZIP16_LIMIT = 0xFFFF

#: UTF-8 names (general purpose bit 11); no data descriptors, no encryption.
FLAG_UTF8 = 0x0800


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
