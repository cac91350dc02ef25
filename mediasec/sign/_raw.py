"""A random-access element tree over a Part 10 file, and byte splices on it.

The tree records *where* every element, sequence, item and fragment is (offsets into a
``Source``), keeps small values in memory and leaves large ones (pixel data) in the source,
so a 100+ MiB file costs a few kilobytes. Signing and status changes are expressed as
splices (insert / replace / delete byte ranges, plus the length fields of the enclosing
defined-length items and sequences), so everything we do not touch is copied bit for bit
and the exact output size is known before a byte is written.

Any transfer syntax: explicit/implicit VR little endian, explicit VR big endian,
encapsulated pixel data, undefined-length sequences and items. A deflated data set is
inflated in memory (PS3.5 A.5; such objects are small documents in practice) and deflated
again on output.
"""

from __future__ import annotations

import bisect
import struct
import zlib
from array import array
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from mediasec.dicom._elements import ITEM, ITEM_DELIM, LONG_VRS, SEQ_DELIM, TEXT_VRS, \
    UNDEFINED, implicit_vr
from mediasec.errors import InputError, NotDicomError
from mediasec.dicom.tags import PIXEL_REPRESENTATION

__all__ = ["Source", "BytesSource", "StreamSource", "SplicedSource", "SparseSource",
           "BytesDropped", "Element", "Item",
           "Part10", "parse_part10", "Coding", "encode_element", "encode_item", "swap_value",
           "Splice", "apply_splices", "ELE", "ILE", "BE", "DEFLATE", "NATIVE_TS"]

ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"
BE = "1.2.840.10008.1.2.2"
DEFLATE = "1.2.840.10008.1.2.1.99"
NATIVE_TS = frozenset({ELE, ILE, BE, DEFLATE})

MAX_DEPTH = 64
#: values up to this size are kept in memory when parsed; bigger ones are read on demand
SMALL = 1 << 16

_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB",
                  "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM",
                  "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"})
#: byte-swap unit per VR (PS3.5 7.3); AT is a pair of 16-bit numbers
SWAP = {"US": 2, "SS": 2, "OW": 2, "AT": 2, "UL": 4, "SL": 4, "FL": 4, "OF": 4, "OL": 4,
        "FD": 8, "OD": 8, "SV": 8, "UV": 8, "OV": 8}
_ARRAY = {2: "H", 4: "I", 8: "Q"}
_VR_OF = {v.encode(): v for v in _VRS}
#: VR bytes -> (VR, has a 4-byte length)
_VR_INFO = {v.encode(): (v, v in LONG_VRS) for v in _VRS}


class Malformed(InputError):
    code = "DICOM_MALFORMED"


# -- sources ------------------------------------------------------------------------------------

class Source:
    size: int

    def read(self, off: int, n: int) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def view(self, off: int, n: int):
        """``(buffer, position)`` holding bytes ``off .. off+n`` (no copy where possible)."""
        return self.read(off, n), 0

    def chunks(self, off: int, n: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        while n > 0:
            k = min(n, chunk)
            yield self.read(off, k)
            off += k
            n -= k


class BytesSource(Source):
    def __init__(self, data: bytes):
        self.data = bytes(data)
        self.size = len(self.data)

    def read(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > self.size:
            raise Malformed("file ends inside a data element", code="DICOM_TRUNCATED")
        return self.data[off:off + n]

    def view(self, off: int, n: int):
        if off < 0 or off + n > self.size:
            raise Malformed("file ends inside a data element", code="DICOM_TRUNCATED")
        return self.data, off

    def chunks(self, off: int, n: int, chunk: int = 1 << 20) -> Iterator[memoryview]:
        if off < 0 or off + n > self.size:
            raise Malformed("file ends inside a data element", code="DICOM_TRUNCATED")
        mv = memoryview(self.data)
        while n > 0:
            k = min(n, chunk)
            yield mv[off:off + k]
            off += k
            n -= k


class StreamSource(Source):
    """A seekable binary stream, read through one small window (header walks are cheap)."""

    WINDOW = 1 << 18

    def __init__(self, fp: BinaryIO):
        self.fp = fp
        fp.seek(0, 2)
        self.size = fp.tell()
        self._off = 0
        self._buf = b""

    def read(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > self.size:
            raise Malformed("file ends inside a data element", code="DICOM_TRUNCATED")
        rel = off - self._off
        if 0 <= rel and rel + n <= len(self._buf):
            return self._buf[rel:rel + n]
        self.fp.seek(off)
        if n >= self.WINDOW:
            data = self.fp.read(n)
        else:
            self._buf = self.fp.read(self.WINDOW)
            self._off = off
            data = self._buf[:n]
        if len(data) != n:
            raise Malformed("file ends inside a data element", code="DICOM_TRUNCATED")
        return data

    def view(self, off: int, n: int):
        rel = off - self._off
        if 0 <= rel and rel + n <= len(self._buf):
            return self._buf, rel
        if n >= self.WINDOW:
            return self.read(off, n), 0
        self.read(off, n)           # refills the window at ``off``
        return self._buf, 0


class BytesDropped(Exception):
    """A ``SparseSource`` was asked for bytes it did not keep (deliberately not a
    ``MediasecError``: a caller that cannot supply them must say so, never report the
    object as damaged)."""


class SparseSource(Source):
    """A Part 10 file of which only the element headers and the values of at most ``small``
    bytes were kept (built while it streamed past, ``append`` / ``drop`` in file order);
    reading a dropped byte raises ``BytesDropped``."""

    def __init__(self, small: int = SMALL):
        self.small = small
        self.kept = bytearray()
        self.size = 0
        self._starts: list[int] = [0]     # file offset where each kept run starts
        self._kept_at: list[int] = [0]    # ... and its offset in ``kept``
        self.dropped = 0

    def append(self, data) -> None:
        self.kept += data
        self.size += len(data)

    def drop(self, n: int) -> None:
        if n <= 0:
            return
        self.size += n
        self.dropped += n
        if self._kept_at[-1] == len(self.kept) and len(self._starts) > 1:
            self._starts[-1] = self.size         # one more dropped piece of the same run
        else:
            self._starts.append(self.size)
            self._kept_at.append(len(self.kept))

    def read(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > self.size:
            raise Malformed("file ends inside a data element", code="DICOM_TRUNCATED")
        i = bisect.bisect_right(self._starts, off) - 1
        kept_end = self._kept_at[i + 1] if i + 1 < len(self._kept_at) else len(self.kept)
        run_end = self._starts[i] + kept_end - self._kept_at[i]
        if off + n > run_end:
            raise BytesDropped(f"bytes {off}..{off + n} were not kept")
        k = self._kept_at[i] + off - self._starts[i]
        return bytes(self.kept[k:k + n])


@dataclass(frozen=True)
class Splice:
    """Replace ``length`` bytes at ``offset`` by ``data`` (length 0: insert; data b"": delete)."""

    offset: int
    length: int
    data: bytes
    order: int = 0


class SplicedSource(Source):
    """``base`` with splices applied, readable at random (the output, before it is written)."""

    def __init__(self, base: Source, splices: list[Splice]):
        self.base = base
        segs = []      # (out_start, length, ("src", off) | ("mem", bytes))
        pos = 0        # in base
        out = 0
        for s in sorted(splices, key=lambda s: (s.offset, s.length > 0, s.order)):
            if s.offset < pos:
                raise ValueError("overlapping splices")
            if s.offset > pos:
                segs.append((out, s.offset - pos, pos, None))
                out += s.offset - pos
            if s.data:
                segs.append((out, len(s.data), 0, s.data))
                out += len(s.data)
            pos = s.offset + s.length
        if base.size > pos:
            segs.append((out, base.size - pos, pos, None))
            out += base.size - pos
        self.segs = segs
        self.starts = [s[0] for s in segs]
        self.size = out

    def read(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > self.size:
            raise Malformed("file ends inside a data element", code="DICOM_TRUNCATED")
        parts = []
        i = bisect.bisect_right(self.starts, off) - 1
        while n > 0:
            start, length, src_off, mem = self.segs[i]
            rel = off - start
            k = min(n, length - rel)
            parts.append(mem[rel:rel + k] if mem is not None else self.base.read(src_off + rel, k))
            off += k
            n -= k
            i += 1
        return b"".join(parts)

    def pieces(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The whole output, in order, as views of the base and the inserted bytes."""
        for _start, length, src_off, mem in self.segs:
            if mem is not None:
                yield mem
            else:
                yield from self.base.chunks(src_off, length, chunk)

    def copy(self, write: Callable[[bytes], object], chunk: int = 1 << 20) -> None:
        for piece in self.pieces(chunk):
            write(piece)


def apply_splices(base: Source, splices: list[Splice]) -> SplicedSource:
    return SplicedSource(base, splices)


# -- the tree --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Coding:
    explicit: bool = True
    little: bool = True

    @property
    def endian(self) -> str:
        return "<" if self.little else ">"


EXPLICIT_LE = Coding(True, True)
IMPLICIT_LE = Coding(False, True)
EXPLICIT_BE = Coding(True, False)


@dataclass(eq=False, slots=True)
class Element:
    tag: int
    vr: str
    hdr: int            # offset of the element's first byte
    val: int            # offset of its value
    length: int         # value length as encoded (UNDEFINED possible)
    end: int            # offset after the element (delimiter included)
    coding: Coding
    value: bytes | None = None          # small values, read at parse time
    items: list | None = None           # SQ (or undefined-length UN) items
    frags: list | None = None           # encapsulated pixel data: (offset, length)

    @property
    def undefined(self) -> bool:
        return self.length == UNDEFINED

    def read_value(self, src: Source) -> bytes:
        if self.value is not None:
            return self.value
        return src.read(self.val, self.length)

    def length_field(self) -> int | None:
        """Offset of the 4-byte length field (None when it has a 2-byte one)."""
        if not self.coding.explicit:
            return self.hdr + 4
        if self.vr in LONG_VRS:
            return self.hdr + 8
        return None


@dataclass(eq=False, slots=True)
class Item:
    hdr: int | None     # None: the top-level data set
    val: int
    length: int
    end: int
    coding: Coding
    elements: list = field(default_factory=list)
    _index: dict | None = None
    _src: object = None

    @property
    def undefined(self) -> bool:
        return self.length == UNDEFINED

    def get(self, tag: int) -> Element | None:
        return self.index().get(tag)

    def index(self) -> dict:
        """Tag -> element (built once; read only)."""
        if self._index is None:
            self._index = {e.tag: e for e in self.elements}
        return self._index

    def content_end(self) -> int:
        """Where a new last element goes (before the item delimiter, if any)."""
        return self.end - 8 if self.undefined and self.hdr is not None else self.end

    def insert_offset(self, tag: int) -> int:
        for e in self.elements:
            if e.tag > tag:
                return e.hdr
        return self.content_end()


@dataclass(eq=False)
class Part10:
    source: Source           # the (inflated) file: meta + data set
    meta_end: int
    transfer_syntax: str
    dataset: Item
    deflated: bool = False
    raw_prefix: bytes = b""  # deflated files: the bytes before the data set


# -- parsing ---------------------------------------------------------------------------------

_LE_HH = struct.Struct("<HH").unpack_from
_BE_HH = struct.Struct(">HH").unpack_from
_LE_I = struct.Struct("<I").unpack_from
_LE_HDR = struct.Struct("<HH2sH").unpack_from


def _tag(b: bytes, little: bool) -> int:
    g, e = (_LE_HH if little else _BE_HH)(b, 0)
    return (g << 16) | e


class _Parser:
    def __init__(self, src: Source, pixrep: int | None = None):
        self.src = src
        self.pixrep = pixrep
        #: values up to this size are read into the tree; a ``SparseSource`` holds them
        self.small = getattr(src, "small", SMALL)

    def header(self, off: int, coding: Coding):
        """(tag, vr, length, value_offset)."""
        src = self.src
        end = "<" if coding.little else ">"
        b, i = src.view(off, 8)
        g, e = (_LE_HH if coding.little else _BE_HH)(b, i)
        tag = (g << 16) | e
        if g == 0xFFFE:
            return tag, None, struct.unpack_from(end + "I", b, i + 4)[0], off + 8
        if not coding.explicit:
            vr = implicit_vr(tag, self.pixrep)
            return tag, vr, struct.unpack_from("<I", b, i + 4)[0], off + 8
        vr = _VR_OF.get(bytes(b[i + 4:i + 6]))
        if vr is None:
            raise Malformed(f"({g:04X},{e:04X}) has an unknown VR {bytes(b[i + 4:i + 6])!r}")
        if vr in LONG_VRS:
            b, i = src.view(off + 8, 4)
            return tag, vr, struct.unpack_from(end + "I", b, i)[0], off + 12
        return tag, vr, struct.unpack_from(end + "H", b, i + 6)[0], off + 8

    def dataset(self, off: int, end: int | None, coding: Coding, depth: int,
                item: Item) -> int:
        """Parse elements from ``off`` to ``end`` (or to an item delimiter when None)."""
        if depth > MAX_DEPTH:
            raise Malformed("sequences nested too deep")
        elements = item.elements
        last = -1
        src = self.src
        data = getattr(src, "data", None)
        fast = data is not None and coding.explicit and coding.little
        size = src.size
        small = self.small
        append = elements.append
        explicit = coding.explicit
        vr_info = _VR_INFO
        stop = end if end is not None else 1 << 62
        while True:
            if off >= stop:
                if off > stop:
                    raise Malformed("an element runs past the end of its item")
                return off
            if off + 8 > size:
                raise Malformed("file ends inside a data element", code="DICOM_TRUNCATED")
            if fast:
                # explicit VR little endian in memory: the common case, inlined (one unpack
                # of tag, VR and short length)
                g, e, vrb, length = _LE_HDR(data, off)
                tag = (g << 16) | e
                if g == 0xFFFE:
                    vr, length, val = None, _LE_I(data, off + 4)[0], off + 8
                else:
                    info = vr_info.get(vrb)
                    if info is None:
                        raise Malformed(f"({g:04X},{e:04X}) has an unknown VR")
                    vr, long = info
                    if long:
                        if off + 12 > size:
                            raise Malformed("file ends inside a data element",
                                            code="DICOM_TRUNCATED")
                        length, val = _LE_I(data, off + 8)[0], off + 12
                    else:
                        val = off + 8
            else:
                tag, vr, length, val = self.header(off, coding)
            if vr is None:
                if tag == ITEM_DELIM:
                    if end is not None:
                        raise Malformed("item delimiter in a defined-length item")
                    return val
                raise Malformed(f"unexpected item tag (FFFE,{tag & 0xFFFF:04X}) in a data set")
            if tag <= last:
                raise Malformed(f"elements out of order at ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            last = tag
            if vr == "SQ" or (length == UNDEFINED and (vr == "UN" or not explicit)):
                el = Element(tag, vr, off, val, length, 0, coding)
                el.items = []
                el.end = self.items(val, length, coding if vr == "SQ" else IMPLICIT_LE,
                                    depth + 1, el.items)
            elif length == UNDEFINED:
                el = Element(tag, vr, off, val, length, 0, coding)
                el.frags = []
                el.end = self.fragments(val, el.frags, coding)
            else:
                el_end = val + length
                if el_end > size:
                    raise Malformed(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the end "
                                    "of the file", code="DICOM_TRUNCATED")
                el = Element(tag, vr, off, val, length, el_end, coding,
                             (data[val:el_end] if fast else src.read(val, length))
                             if length <= small else None)
                if tag == PIXEL_REPRESENTATION and depth == 0 and length == 2:
                    self.pixrep = struct.unpack(coding.endian + "H", src.read(val, 2))[0]
            append(el)
            off = el.end

    def items(self, off: int, length: int, coding: Coding, depth: int, out: list) -> int:
        end = None if length == UNDEFINED else off + length
        little = coding.little
        while True:
            if end is not None and off >= end:
                return off
            b, i = self.src.view(off, 8)
            tag = _tag(bytes(b[i:i + 4]), little)
            ilen = struct.unpack_from(coding.endian + "I", b, i + 4)[0]
            if tag == SEQ_DELIM:
                if end is not None:
                    raise Malformed("sequence delimiter in a defined-length sequence")
                return off + 8
            if tag != ITEM:
                raise Malformed(f"expected an item in a sequence, found "
                                f"({tag >> 16:04X},{tag & 0xFFFF:04X})")
            item = Item(off, off + 8, ilen, 0, coding)
            if ilen == UNDEFINED:
                item.end = self.dataset(off + 8, None, coding, depth, item)
            else:
                item.end = self.dataset(off + 8, off + 8 + ilen, coding, depth, item)
            out.append(item)
            off = item.end

    def fragments(self, off: int, out: list, coding: Coding) -> int:
        while True:
            b = self.src.read(off, 8)
            tag = _tag(b, coding.little)
            flen = struct.unpack_from(coding.endian + "I", b, 4)[0]
            if tag == SEQ_DELIM:
                return off + 8
            if tag != ITEM or flen == UNDEFINED:
                raise Malformed("bad fragment in encapsulated pixel data")
            if off + 8 + flen > self.src.size:
                raise Malformed("file ends inside a pixel data fragment",
                                code="DICOM_TRUNCATED")
            out.append((off + 8, flen))
            off += 8 + flen


def coding_for(ts: str) -> Coding:
    if ts == ILE:
        return IMPLICIT_LE
    if ts == BE:
        return EXPLICIT_BE
    return EXPLICIT_LE


def parse_part10(src: Source) -> Part10:
    """Parse a Part 10 file: preamble, ``DICM``, the meta group, then the data set."""
    if src.size < 132 or src.read(128, 4) != b"DICM":
        raise NotDicomError("not a DICOM Part 10 file (no DICM at byte 128)")
    p = _Parser(src)
    off = 132
    ts = None
    while off + 8 <= src.size:
        if src.read(off, 2) != b"\x02\x00":
            break
        tag, vr, length, val = p.header(off, EXPLICIT_LE)
        if vr is None or length == UNDEFINED:
            raise Malformed("bad file meta information")
        if tag == 0x00020010:
            ts = src.read(val, length).rstrip(b"\0 ").decode("ascii", "replace")
        off = val + length
    if ts is None:
        raise NotDicomError("no Transfer Syntax UID in the file meta information")
    meta_end = off
    deflated = ts == DEFLATE
    if deflated:
        body = b"".join(src.chunks(meta_end, src.size - meta_end))
        try:
            inflated = zlib.decompress(body, -15)
        except zlib.error as exc:
            raise Malformed(f"deflated data set does not inflate: {exc}") from exc
        prefix = src.read(0, meta_end)
        src = BytesSource(prefix + inflated)
        p = _Parser(src)
    coding = coding_for(ts)
    top = Item(None, meta_end, src.size - meta_end, src.size, coding)
    p.dataset(meta_end, src.size, coding, 0, top)
    return Part10(src, meta_end, ts, top, deflated,
                  src.read(0, meta_end) if deflated else b"")


def reparse(part: Part10, splices: list[Splice]) -> Part10:
    """The file as it will be after ``splices`` (same transfer syntax), parsed again."""
    spliced = SplicedSource(part.source, splices)
    new = parse_part10_inflated(spliced, part)
    return new


def parse_part10_inflated(src: Source, like: Part10) -> Part10:
    p = _Parser(src)
    coding = coding_for(like.transfer_syntax)
    top = Item(None, like.meta_end, src.size - like.meta_end, src.size, coding)
    p.dataset(like.meta_end, src.size, coding, 0, top)
    return Part10(src, like.meta_end, like.transfer_syntax, top, like.deflated, like.raw_prefix)


# -- encoding new elements in a file's own transfer syntax ------------------------------------

def swap_value(vr: str, value: bytes) -> bytes:
    unit = SWAP.get(vr)
    if not unit or len(value) % unit:
        return value
    a = array(_ARRAY[unit], bytes(value))
    a.byteswap()
    return a.tobytes()


def pad(vr: str, value: bytes) -> bytes:
    if len(value) % 2 == 0:
        return value
    return value + (b" " if vr in TEXT_VRS else b"\0")


def encode_header(tag: int, vr: str, length: int, coding: Coding) -> bytes:
    e = coding.endian
    if not coding.explicit:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length)
    if vr in LONG_VRS:
        return struct.pack(e + "HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(), length)
    if length > 0xFFFF:
        raise InputError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) value too long for {vr}")
    return struct.pack(e + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)


def encode_element(tag: int, vr: str, value, coding: Coding) -> bytes:
    """One element in ``coding``: ``value`` is little endian bytes, or for SQ a list of
    items, each a list of ``(tag, vr, value)``. Defined lengths throughout."""
    if vr == "SQ":
        body = b"".join(encode_item(it, coding) for it in value)
        return encode_header(tag, vr, len(body), coding) + body
    v = pad(vr, value)
    if not coding.little:
        v = swap_value(vr, v)
    return encode_header(tag, vr, len(v), coding) + v


def encode_item(elements, coding: Coding) -> bytes:
    body = b"".join(encode_element(t, vr, v, coding) for t, vr, v in sorted(elements,
                                                                           key=lambda x: x[0]))
    return struct.pack(coding.endian + "HHI", 0xFFFE, 0xE000, len(body)) + body


def pack_length(n: int, coding: Coding) -> bytes:
    return struct.pack(coding.endian + "I", n)
