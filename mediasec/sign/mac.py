"""MAC algorithms and the MAC byte stream of PS3.15 C.1 / PS3.3 C.12.1.1.3.1.

The stream is S || T (``shared/spec/signatures.md`` section 2, checked against
``dcmsign +d``): the listed, present, signable elements of one level in ascending tag
order, encoded in explicit VR little endian whatever the file's transfer syntax, with
sequences and items carrying no lengths (``FFFE,E000`` per item, one ``FFFE,E0DD`` at the
end) and encapsulated fragments as ``FFFE,E000`` + raw bytes; then the signature item's own
signable elements except the certificate, the signature and the timestamp.

RIPEMD-160 comes from ``hashlib`` when the OpenSSL build has it and from pycryptodome
otherwise (OpenSSL 3 moved it to the legacy provider; some builds lack it).
"""

from __future__ import annotations

import functools
import hashlib
import struct
from typing import Callable

from mediasec.dicom._elements import LONG_VRS, TEXT_VRS
from mediasec.sign._raw import Element, Item, Source, swap_value

__all__ = ["MAC_ALGORITHMS", "WRITE_MACS", "LEGACY_MACS", "NEVER_WRITE", "new_hash",
           "digest_info_prefix", "is_signable", "StreamBuilder", "hash_oid", "OID_TO_MAC",
           "NOT_SIGNABLE_TAGS", "SIGNATURE_TAIL_EXCLUDED"]

#: DICOM term -> (hashlib name, OID, digest size)
MAC_ALGORITHMS = {
    "RIPEMD160": ("ripemd160", "1.3.36.3.2.1", 20),
    "SHA1": ("sha1", "1.3.14.3.2.26", 20),
    "MD5": ("md5", "1.2.840.113549.2.5", 16),
    "SHA256": ("sha256", "2.16.840.1.101.3.4.2.1", 32),
    "SHA384": ("sha384", "2.16.840.1.101.3.4.2.2", 48),
    "SHA512": ("sha512", "2.16.840.1.101.3.4.2.3", 64),
}
OID_TO_MAC = {v[1]: k for k, v in MAC_ALGORITHMS.items()}
WRITE_MACS = ("SHA256", "SHA384", "SHA512")
LEGACY_MACS = ("RIPEMD160", "SHA1")
NEVER_WRITE = ("MD5",)
WEAK_MACS = frozenset({"RIPEMD160", "SHA1", "MD5"})

#: elements never part of any MAC stream (besides group lengths, groups < 0008, UN)
NOT_SIGNABLE_TAGS = frozenset({0x00080001, 0x4FFE0001, 0xFFFCFFFC})
#: (0400,0115) certificate, (0400,0120) signature, (0400,0305/0310) certified timestamp
SIGNATURE_TAIL_EXCLUDED = frozenset({0x04000115, 0x04000120, 0x04000305, 0x04000310})

_ITEM = b"\xfe\xff\x00\xe0"
_VRB = {v: v.encode() for v in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS",
                                "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH",
                                "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
                                "UR", "US", "UT", "UV")}
_SEQ_END = b"\xfe\xff\xdd\xe0"


class _PyRIPEMD160:
    """Adapter: pycryptodome's RIPEMD-160 with the hashlib interface."""

    name = "ripemd160"
    digest_size = 20

    def __init__(self):
        from Crypto.Hash import RIPEMD160
        self._h = RIPEMD160.new()

    def update(self, data) -> None:
        self._h.update(bytes(data))

    def digest(self) -> bytes:
        return self._h.digest()


def _ripemd_from_hashlib() -> bool:
    try:
        hashlib.new("ripemd160", b"")
        return True
    except (ValueError, TypeError):
        return False


_HASHLIB_RIPEMD = _ripemd_from_hashlib()


def new_hash(mac: str, *, force_fallback: bool = False):
    """A fresh hash object for a DICOM MAC term (KeyError when unknown)."""
    name = MAC_ALGORITHMS[mac][0]
    if name == "ripemd160" and (force_fallback or not _HASHLIB_RIPEMD):
        return _PyRIPEMD160()
    make = _CONSTRUCTORS.get(name)
    return make() if make is not None else hashlib.new(name)


#: hashlib's named constructors (faster than ``hashlib.new(name)``)
_CONSTRUCTORS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384,
                 "sha512": hashlib.sha512, "md5": hashlib.md5}


def hash_oid(mac: str) -> str:
    return MAC_ALGORITHMS[mac][1]


@functools.lru_cache(maxsize=None)
def digest_info_prefix(mac: str) -> bytes:
    """DER of DigestInfo up to the digest bytes (AlgorithmIdentifier with NULL params)."""
    _name, oid, size = MAC_ALGORITHMS[mac]
    parts = [int(x) for x in oid.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for n in parts[2:]:
        enc = [n & 0x7F]
        n >>= 7
        while n:
            enc.append(0x80 | (n & 0x7F))
            n >>= 7
        body += bytes(reversed(enc))
    oid_der = b"\x06" + bytes([len(body)]) + body
    alg = b"\x30" + bytes([len(oid_der) + 2]) + oid_der + b"\x05\x00"
    inner = alg + b"\x04" + bytes([size])
    return b"\x30" + bytes([len(inner) + size]) + inner


# -- signability -------------------------------------------------------------------------------

def _tag_excluded(tag: int) -> bool:
    group, elem = tag >> 16, tag & 0xFFFF
    return (elem == 0 or group < 0x0008 or group == 0xFFFA or group == 0xFFFE
            or tag in NOT_SIGNABLE_TAGS)


def _contains_un(el: Element) -> bool:
    for item in el.items or ():
        for sub in item.elements:
            if sub.vr == "UN" or (sub.items is not None and _contains_un(sub)):
                return True
    return False


def is_signable(el: Element) -> bool:
    """PS3.15 C.12.1.1.3.1.1 as dcmsign applies it."""
    tag = el.tag
    # _tag_excluded and UN, inlined (called for every element of every level checked)
    if (not tag & 0xFFFF or tag < 0x00080000 or (tag >> 16) in _EXCLUDED_GROUPS
            or tag in NOT_SIGNABLE_TAGS or el.vr == "UN"):
        return False
    if el.items is None:
        # implicit VR only: a short-VR value over 64 KiB has no explicit VR encoding
        return el.vr in LONG_VRS or el.length <= 0xFFFF or el.length == 0xFFFFFFFF
    return not _contains_un(el)


_EXCLUDED_GROUPS = frozenset({0xFFFA, 0xFFFE})


# -- the stream --------------------------------------------------------------------------------

class StreamBuilder:
    """Feeds the canonical encoding of elements to ``update`` (a hash or a list append)."""

    def __init__(self, src: Source, update: Callable[[bytes], object], *,
                 old_format: bool = False):
        self.src = src
        self.update = update
        #: DCMTK before 3.5.4 (``dcmsign -fo``) hashed each fragment's length too; only
        #: used to *explain* a mismatch, never to accept a signature
        self.old_format = old_format

    def element(self, el: Element) -> None:
        up = self.update
        tag_le = struct.pack("<HH", el.tag >> 16, el.tag & 0xFFFF)
        if el.items is not None:
            up(tag_le + b"SQ\0\0")
            for item in el.items:
                up(_ITEM)
                self.level(item)
            up(_SEQ_END)
            return
        if el.frags is not None:
            up(tag_le + el.vr.encode() + b"\0\0")
            for off, n in el.frags:
                up(_ITEM + struct.pack("<I", n) if self.old_format else _ITEM)
                for piece in self.src.chunks(off, n):
                    up(piece)
            up(_SEQ_END)
            return
        n = el.length
        padded = n + (n & 1)
        vr = el.vr
        if vr in LONG_VRS:
            head = tag_le + _VRB[vr] + b"\0\0" + struct.pack("<I", padded)
        else:
            head = tag_le + _VRB[vr] + struct.pack("<H", padded)
        big = not el.coding.little
        pad = (b" " if vr in TEXT_VRS else b"\0") if n & 1 else b""
        if el.value is not None:
            up(head + (swap_value(vr, el.value) if big else el.value) + pad)
            return
        up(head)
        # large values stream through in even-sized chunks (byte swapping needs whole units)
        for piece in self.src.chunks(el.val, n, 1 << 20):
            up(swap_value(vr, piece) if big else piece)
        if pad:
            up(pad)

    def elements(self, els) -> None:
        """``element`` for each of ``els`` (ascending), hashing runs of adjacent plain
        explicit VR little endian elements straight from the file: their stored bytes *are*
        their canonical encoding (same header layout, even length)."""
        run_start = run_end = None
        raw_ok = not self.old_format
        for el in els:
            c = el.coding
            if (raw_ok and el.items is None and el.frags is None and not el.length & 1
                    and c.explicit and c.little
                    and (el.vr not in LONG_VRS or self._reserved_zero(el))):
                if run_end == el.hdr:
                    run_end = el.end
                    continue
                if run_start is not None:
                    self._raw(run_start, run_end)
                run_start, run_end = el.hdr, el.end
                continue
            if run_start is not None:
                self._raw(run_start, run_end)
                run_start = run_end = None
            self.element(el)
        if run_start is not None:
            self._raw(run_start, run_end)

    def _reserved_zero(self, el: Element) -> bool:
        """The 2 reserved bytes of a long-VR header are 0 (else the stored header is not
        the canonical one)."""
        buf, i = self.src.view(el.hdr + 6, 2)
        return buf[i] == 0 and buf[i + 1] == 0

    def _raw(self, start: int, end: int) -> None:
        for piece in self.src.chunks(start, end - start, 1 << 22):
            self.update(piece)

    def has_fragments(self, el: Element) -> bool:
        if el.frags is not None:
            return True
        return any(self.has_fragments(sub) for it in (el.items or ()) for sub in it.elements)

    def level(self, item: Item) -> None:
        """Every signable element of an item (the content of a signed sequence)."""
        for el in item.elements:
            if is_signable(el):
                self.element(el)
