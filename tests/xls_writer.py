"""A minimal writer of legacy Excel ``.xls`` files (BIFF8 in an OLE2 compound document), for fixtures.

Only what the coding sheets need: one or more worksheets of numbers and text. Numbers are NUMBER
records, text LABEL records (BIFF8 unicode strings); there are no formats, fonts or shared strings,
which readers (xlrd, so pandas) default. The container is one FAT sector, one directory sector and
a ``Workbook`` stream padded past the 4096-byte mini-stream cutoff, so no mini stream is needed.
"""

from __future__ import annotations

import struct
from pathlib import Path

SECTOR = 512
FREE, END, FAT_SECTOR, NO_STREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


def _record(kind: int, data: bytes) -> bytes:
    return struct.pack("<HH", kind, len(data)) + data


def _bof(sheet_type: int) -> bytes:  # BIFF8, workbook globals (0x0005) or worksheet (0x0010)
    return _record(0x0809, struct.pack("<HHHHII", 0x0600, sheet_type, 0x0DBB, 0x07CC, 0, 0x06))


def _text(s: str) -> bytes:
    """A BIFF8 unicode string with a 16-bit length, stored as UTF-16LE."""
    return struct.pack("<HB", len(s), 0x01) + s.encode("utf-16-le")


def _cells(rows: list[list[object]]) -> bytes:
    out = b""
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                out += _record(0x0204, struct.pack("<HHH", r, c, 0) + _text(str(v)))  # LABEL
            else:
                out += _record(0x0203, struct.pack("<HHHd", r, c, 0, float(v)))  # NUMBER
    return out


def workbook_stream(sheets: dict[str, list[list[object]]]) -> bytes:
    """The BIFF8 ``Workbook`` stream: globals (BOF, CODEPAGE, BOUNDSHEETs, EOF), then each sheet."""
    names = list(sheets)
    bodies = [_bof(0x0010) + _cells(sheets[n]) + _record(0x000A, b"") for n in names]

    def boundsheet(offset: int, name: str) -> bytes:
        return _record(
            0x0085, struct.pack("<IBBBB", offset, 0, 0, len(name), 0x01) + name.encode("utf-16-le")
        )

    head_len = len(_bof(0x0005)) + len(_record(0x0042, b"\0\0")) + len(_record(0x000A, b""))
    head_len += sum(len(boundsheet(0, n)) for n in names)
    offsets, pos = [], head_len
    for body in bodies:
        offsets.append(pos)
        pos += len(body)
    globals_ = _bof(0x0005) + _record(0x0042, struct.pack("<H", 1200))
    globals_ += b"".join(boundsheet(o, n) for o, n in zip(offsets, names, strict=True))
    globals_ += _record(0x000A, b"")
    return globals_ + b"".join(bodies)


def _dir_entry(name: str, kind: int, child: int, start: int, size: int) -> bytes:
    encoded = (name + "\0").encode("utf-16-le") if name else b""
    return struct.pack(
        "<64sHBBIII16sIQQIQ",
        encoded,
        len(encoded),
        kind,
        1,  # black node
        NO_STREAM,
        NO_STREAM,
        child,
        b"\0" * 16,
        0,
        0,
        0,
        start,
        size,
    )


def write_xls(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """Write ``sheets`` (name -> rows; ``None`` cells stay empty) as an ``.xls`` file."""
    stream = workbook_stream(sheets)
    target = -(-max(len(stream), 4096) // SECTOR) * SECTOR  # past the mini-stream cutoff, whole sectors
    padded = stream + b"\0" * (target - len(stream))
    size = len(padded)
    n_data = len(padded) // SECTOR
    if n_data + 2 > SECTOR // 4:
        raise ValueError("fixture too large for a one-sector FAT")
    fat = [FAT_SECTOR, END] + [3 + i for i in range(n_data - 1)] + [END]
    fat += [FREE] * (SECTOR // 4 - len(fat))
    directory = (
        _dir_entry("Root Entry", 5, 1, END, 0)
        + _dir_entry("Workbook", 2, NO_STREAM, 2, size)
        + _dir_entry("", 0, NO_STREAM, 0, 0) * 2
    )
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        bytes.fromhex("D0CF11E0A1B11AE1"),
        b"\0" * 16,
        0x003E,  # minor version
        0x0003,  # major version 3: 512-byte sectors
        0xFFFE,  # little endian
        9,  # sector shift
        6,  # mini sector shift
        b"\0" * 6,
        0,  # directory sectors (0 in version 3)
        1,  # FAT sectors
        1,  # first directory sector
        0,  # transaction signature
        4096,  # mini stream cutoff
        END,  # first mini FAT sector
        0,
        END,  # first DIFAT sector
        0,
    )
    header += struct.pack("<I", 0) + struct.pack("<I", FREE) * 108  # DIFAT: the FAT is sector 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + struct.pack(f"<{SECTOR // 4}I", *fat) + directory + padded)
    return path
