"""Data element primitives shared by the scanner, the Part 10 writer and the DICOMDIR codec.

PS3.5 7.1: explicit VR elements have a 2-byte length after the VR, except the VRs in
``LONG_VRS`` which have 2 reserved bytes and a 4-byte length; implicit VR elements always
have a 4-byte length. Items and delimiters (group FFFE) never carry a VR.
"""

from __future__ import annotations

import struct

from mediasec.dicom._seam import dictionary_vr
from mediasec.dicom.tags import PIXEL_BULK, PIXEL_DATA

__all__ = ["LONG_VRS", "TEXT_VRS", "UNDEFINED", "ITEM", "ITEM_DELIM", "SEQ_DELIM", "PIXEL_DATA",
           "implicit_vr", "encode_element", "pad_value", "element_header_size", "strip_value"]

UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIM = 0xFFFEE00D
SEQ_DELIM = 0xFFFEE0DD
#: bulk elements a header scan stops at (Float/Double Float Pixel Data, Pixel Data)
BULK_STOP = PIXEL_BULK

LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT",
                      "UV"})
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                      "TM", "UC", "UR", "UT"})
ALL_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT",
                     "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST",
                     "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"})

_pack_hdr_short = struct.Struct("<HH2sH").pack
_pack_hdr_long = struct.Struct("<HH2s2xI").pack

_VR_CACHE: dict[int, str] = {}


def implicit_vr(tag: int, pixel_representation: int | None = None) -> str:
    """The VR an implicit-VR element is encoded with, resolved to one explicit VR.

    Ambiguous dictionary VRs follow PS3.5 A.1/A.2: "OB or OW" and "US or OW" become OW
    (always valid for little endian native data), "US or SS" follows Pixel Representation
    (LUT Descriptors are US). Group lengths are UL, private creators LO, anything else
    not in the dictionary UN.
    """
    vr = _VR_CACHE.get(tag)
    if vr is None:
        group, elem = tag >> 16, tag & 0xFFFF
        if elem == 0:
            vr = "UL"
        elif group & 1 and 0x10 <= elem <= 0xFF:
            vr = "LO"
        elif group & 1:
            vr = "UN"
        else:
            vr = dictionary_vr(tag) or "UN"
        _VR_CACHE[tag] = vr
    if " or " not in vr:
        return vr
    options = vr.split(" or ")
    if "OW" in options:
        return "OW"
    if tag in (0x00283002, 0x00281101, 0x00281102, 0x00281103):  # LUT descriptors
        return "US"
    if options == ["US", "SS"] or options == ["SS", "US"]:
        return "SS" if pixel_representation == 1 else "US"
    return options[0]


def pad_value(vr: str, value: bytes) -> bytes:
    """Pad to even length: UI with NUL, text with space, binary with NUL (PS3.5 6.2)."""
    if len(value) % 2 == 0:
        return value
    if vr in TEXT_VRS:
        return value + b" "
    return value + b"\0"


def element_header_size(vr: str) -> int:
    return 12 if vr in LONG_VRS else 8


def encode_element(tag: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element with a defined length (value padded to even)."""
    value = pad_value(vr, value)
    if vr in LONG_VRS:
        return _pack_hdr_long(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} value of {len(value)} "
                         "bytes does not fit a 16-bit length")
    return _pack_hdr_short(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def strip_value(vr: str, value: bytes) -> str:
    """A text value as str: padding and trailing NUL/space removed (ASCII-safe for UIDs)."""
    text = value.decode("latin-1")
    if vr == "UI":
        return text.rstrip("\0 ").strip()
    return text.rstrip("\0 ").lstrip(" ") if vr not in ("LT", "ST", "UT") else text.rstrip("\0 ")
