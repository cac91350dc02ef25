"""Sans-IO element walking over a ``BinaryIO``: buffered readers, undefined-length walking,
and the lossless implicit VR LE -> explicit VR LE transcoder.

Both the header scanner (``dicom.scan``) and the Part 10 writer (``dicom.part10``) walk
elements with these pieces, so the explicit size the scanner predicts for a converted file
is, by construction, the size the writer produces (the writer still checks it).

Conversion rules (PS3.5 7.1, 7.5, A.1):

* each element's VR comes from the PS3.6 dictionary (``_elements.implicit_vr``);
* a short-VR value longer than 65535 bytes cannot be explicit: it becomes UN;
* sequences are re-encoded recursively; defined lengths are recomputed, undefined lengths
  stay undefined;
* an undefined-length element that is not in the dictionary as SQ (a private sequence) is
  copied verbatim as UN with undefined length, whose content PS3.5 6.2.2 defines to be
  implicit VR little endian - exactly the source bytes;
* group length elements (gggg,0000) outside group 0002 are dropped, since their values
  would be wrong after re-encoding (they are retired and optional).
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO, Iterator

from mediasec.dicom._elements import (ITEM, ITEM_DELIM, LONG_VRS, SEQ_DELIM, UNDEFINED,
                                      implicit_vr)
from mediasec.dicom.tags import PIXEL_REPRESENTATION
from mediasec.errors import InputError

__all__ = ["Truncated", "FileReader", "InflateReader", "ElementHeader", "read_header",
           "walk_undefined", "transcode_sequence", "iter_implicit", "MAX_DEPTH"]

MAX_DEPTH = 64
CHUNK = 1 << 16

_VR_BYTES = {v.encode(): v for v in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS",
                                     "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH",
                                     "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
                                     "UR", "US", "UT", "UV")}
_LE_HH = struct.Struct("<HH").unpack_from
_BE_HH = struct.Struct(">HH").unpack_from
_LE_I = struct.Struct("<I").unpack_from
_BE_I = struct.Struct(">I").unpack_from
_LE_H = struct.Struct("<H").unpack_from
_BE_H = struct.Struct(">H").unpack_from
_pack_item = struct.Struct("<HHI").pack


class Truncated(InputError):
    code = "DICOM_TRUNCATED"

    def __init__(self, message: str = "file ends inside a data element", **kw) -> None:
        super().__init__(message, **kw)


class _Buffered:
    """A forward reader with a small refillable buffer; ``_more(want)`` brings new bytes."""

    __slots__ = ()

    def tell(self) -> int:
        return self.base + self.off

    def fill(self, n: int) -> bool:
        if len(self.buf) - self.off >= n:
            return True
        rest = self.buf[self.off:]
        self.base += self.off
        self.off = 0
        self.buf = rest
        more = self._more(n - len(rest))
        self.buf = rest + more if rest else more
        return len(self.buf) >= n

    def take(self, n: int) -> bytes:
        if not self.fill(n):
            raise Truncated()
        b = self.buf[self.off:self.off + n]
        self.off += n
        return b


class FileReader(_Buffered):
    """Forward reader over a seekable binary file with a small refillable buffer.

    ``skip`` past the buffer seeks, so large values (pixel data, encapsulated documents)
    are never read by a header scan.
    """

    __slots__ = ("fp", "buf", "off", "base", "size")

    def __init__(self, fp: BinaryIO, size: int, start: int = 0, first: bytes | None = None):
        self.fp = fp
        self.size = size
        self.base = start
        self.buf = first if first is not None else b""
        self.off = 0

    def _more(self, want: int) -> bytes:
        self.fp.seek(self.base + len(self.buf))
        return self.fp.read(max(want, CHUNK))

    def skip(self, n: int) -> None:
        if n <= len(self.buf) - self.off:
            self.off += n
            return
        target = self.tell() + n
        if target > self.size:
            raise Truncated()
        self.base, self.buf, self.off = target, b"", 0

    def at_end(self) -> bool:
        return self.tell() >= self.size

    def copy_to(self, n: int, chunk: int) -> Iterator[bytes]:
        """Yield the next ``n`` bytes in chunks of at most ``chunk`` (never all at once)."""
        while n > 0:
            avail = len(self.buf) - self.off
            if avail:
                k = min(avail, n)
                yield self.buf[self.off:self.off + k]
                self.off += k
                n -= k
                continue
            self.base += self.off
            self.off = 0
            self.fp.seek(self.base)
            self.buf = self.fp.read(min(n, chunk))
            if not self.buf:
                raise Truncated()


class InflateReader(_Buffered):
    """The same interface over a raw-deflate stream (Deflated Explicit VR LE, PS3.5 A.5)."""

    __slots__ = ("fp", "z", "buf", "off", "base", "eof", "_done_input")

    def __init__(self, fp: BinaryIO, start: int):
        self.fp = fp
        fp.seek(start)
        self.z = zlib.decompressobj(-zlib.MAX_WBITS)
        self.buf = b""
        self.off = 0
        self.base = 0
        self._done_input = False

    def _more(self, want: int) -> bytes:
        out = b""
        while len(out) < want:
            if self.z.unconsumed_tail:
                data = self.z.unconsumed_tail
            elif self._done_input:
                break
            else:
                data = self.fp.read(CHUNK)
                if not data:
                    self._done_input = True
                    out += self.z.flush()
                    break
            try:
                out += self.z.decompress(data, max(want - len(out), CHUNK))
            except zlib.error as exc:
                raise InputError(f"deflated data set is corrupt: {exc}",
                                 code="DICOM_DEFLATE_CORRUPT") from exc
            if self.z.eof:
                self._done_input = True
                break
        return out

    def skip(self, n: int) -> None:
        for _ in self.copy_to(n, CHUNK):
            pass

    def at_end(self) -> bool:
        return not self.fill(1)

    def copy_to(self, n: int, chunk: int) -> Iterator[bytes]:
        while n > 0:
            if not self.fill(1):
                raise Truncated()
            avail = len(self.buf) - self.off
            k = min(avail, n, chunk)
            yield self.buf[self.off:self.off + k]
            self.off += k
            n -= k

    def drain(self) -> int:
        """Inflate to the end; returns the total inflated length (position at end)."""
        while True:
            self.base += len(self.buf)
            self.off = 0
            self.buf = b""
            more = self._more(1 << 20)
            if not more:
                return self.base
            self.base += len(more)


class ElementHeader(tuple):
    __slots__ = ()
    tag = property(lambda s: s[0])
    vr = property(lambda s: s[1])
    length = property(lambda s: s[2])


def read_header(r, implicit: bool, little: bool = True, pixrep: int | None = None):
    """Read one element header: ``(tag, vr, length)``; ``vr`` None for items/delimiters,
    None at a clean end of data."""
    if not r.fill(8):
        if r.fill(1):
            raise Truncated("file ends inside an element header")
        return None
    b, o = r.buf, r.off
    g, e = (_LE_HH if little else _BE_HH)(b, o)
    tag = g << 16 | e
    if g == 0xFFFE:
        r.off = o + 8
        return tag, None, (_LE_I if little else _BE_I)(b, o + 4)[0]
    if implicit:
        r.off = o + 8
        return tag, implicit_vr(tag, pixrep), (_LE_I if little else _BE_I)(b, o + 4)[0]
    vr = _VR_BYTES.get(b[o + 4:o + 6])
    if vr is None:
        raise InputError(f"invalid VR {b[o + 4:o + 6]!r} in element "
                         f"({g:04X},{e:04X}) at offset {r.tell()}", code="DICOM_BAD_VR")
    if vr in LONG_VRS:
        if not r.fill(12):
            raise Truncated("file ends inside an element header")
        b, o = r.buf, r.off
        r.off = o + 12
        return tag, vr, (_LE_I if little else _BE_I)(b, o + 8)[0]
    r.off = o + 8
    return tag, vr, (_LE_H if little else _BE_H)(b, o + 6)[0]


def walk_undefined(r, implicit: bool, little: bool = True, depth: int = 0,
                   keep: list | None = None) -> None:
    """Consume an undefined-length value (items up to the Sequence Delimitation Item).

    Items of defined length are skipped whole; items of undefined length are walked
    element by element (nested undefined values recursively, UN content as implicit).
    With ``keep`` (a list) the consumed bytes are appended to it.
    """
    if depth > MAX_DEPTH:
        raise InputError("sequences nested too deeply", code="DICOM_TOO_DEEP")
    while True:
        start = r.tell()
        h = read_header(r, True, little)  # item level: tag + 4-byte length
        if h is None:
            raise Truncated("file ends inside a sequence")
        tag, _, length = h
        if keep is not None:
            keep.append(_pack_item(tag >> 16, tag & 0xFFFF, length) if little else
                        struct.pack(">HHI", tag >> 16, tag & 0xFFFF, length))
        if tag == SEQ_DELIM:
            return
        if tag != ITEM:
            raise InputError(f"expected an item in a sequence at offset {start}",
                             code="DICOM_BAD_SEQUENCE")
        if length != UNDEFINED:
            if keep is not None:
                keep.append(r.take(length))
            else:
                r.skip(length)
            continue
        while True:  # elements of an undefined-length item
            hstart_buf, hstart_off = r.buf, r.off
            h = read_header(r, implicit, little)
            if h is None:
                raise Truncated("file ends inside an item")
            tag, vr, length = h
            if keep is not None:
                keep.append(_raw_header(hstart_buf, hstart_off, r, implicit, tag, vr, length,
                                        little))
            if tag == ITEM_DELIM:
                break
            if length == UNDEFINED:
                walk_undefined(r, implicit or vr == "UN", little, depth + 1, keep)
            elif keep is not None:
                keep.append(r.take(length))
            else:
                r.skip(length)


def _raw_header(buf, off, r, implicit, tag, vr, length, little) -> bytes:
    """Re-create the header bytes just read (the buffer may have been refilled)."""
    g, e = tag >> 16, tag & 0xFFFF
    fmt = "<" if little else ">"
    if vr is None or implicit:
        return struct.pack(fmt + "HHI", g, e, length)
    if vr in LONG_VRS:
        return struct.pack(fmt + "HH2s2xI", g, e, vr.encode(), length)
    return struct.pack(fmt + "HH2sH", g, e, vr.encode(), length)


# ---- implicit -> explicit -------------------------------------------------------------------

def _ehdr(tag: int, vr: str, length: int) -> bytes:
    if vr in LONG_VRS:
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(), length)
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)


def _tx_dataset(buf: bytes, pos: int, end: int | None, pixrep: list, depth: int,
                out: list[bytes]) -> int:
    """Transcode implicit elements from ``buf[pos:end]`` (or up to an Item Delimitation when
    ``end`` is None) into ``out``; returns the position after what was consumed."""
    if depth > MAX_DEPTH:
        raise InputError("sequences nested too deeply", code="DICOM_TOO_DEEP")
    n = len(buf)
    while end is None or pos < end:
        if pos + 8 > n:
            raise Truncated("file ends inside a sequence item")
        g, e = _LE_HH(buf, pos)
        tag = g << 16 | e
        length = _LE_I(buf, pos + 4)[0]
        pos += 8
        if tag == ITEM_DELIM:
            if end is not None:
                raise InputError("unexpected item delimiter", code="DICOM_BAD_SEQUENCE")
            out.append(_pack_item(0xFFFE, 0xE00D, 0))
            return pos
        vr = implicit_vr(tag, pixrep[0])
        if length == UNDEFINED:
            if vr == "SQ":
                body: list[bytes] = []
                pos = _tx_items(buf, pos, None, pixrep, depth + 1, body)
                out.append(_ehdr(tag, "SQ", UNDEFINED))
                out.extend(body)
            else:  # private/unknown sequence: verbatim as UN, undefined length
                start = pos
                pos = _skip_implicit_undefined(buf, pos, depth + 1)
                out.append(_ehdr(tag, "UN", UNDEFINED))
                out.append(buf[start:pos])
            continue
        if pos + length > n:
            raise Truncated()
        if vr == "SQ":
            body = []
            _tx_items(buf, pos, pos + length, pixrep, depth + 1, body)
            content = b"".join(body)
            out.append(_ehdr(tag, "SQ", len(content)))
            out.append(content)
            pos += length
            continue
        if e == 0 and g != 0x0002:  # group length: dropped (see module doc)
            pos += length
            continue
        if tag == PIXEL_REPRESENTATION and length >= 2:
            pixrep[0] = _LE_H(buf, pos)[0]
        if vr not in LONG_VRS and length > 0xFFFF:
            vr = "UN"
        out.append(_ehdr(tag, vr, length))
        out.append(buf[pos:pos + length])
        pos += length
    return pos


def _tx_items(buf: bytes, pos: int, end: int | None, pixrep: list, depth: int,
              out: list[bytes]) -> int:
    n = len(buf)
    while end is None or pos < end:
        if pos + 8 > n:
            raise Truncated("file ends inside a sequence")
        g, e = _LE_HH(buf, pos)
        tag = g << 16 | e
        length = _LE_I(buf, pos + 4)[0]
        pos += 8
        if tag == SEQ_DELIM:
            out.append(_pack_item(0xFFFE, 0xE0DD, 0))
            return pos
        if tag != ITEM:
            raise InputError("expected an item in a sequence", code="DICOM_BAD_SEQUENCE")
        body: list[bytes] = []
        if length == UNDEFINED:
            pos = _tx_dataset(buf, pos, None, pixrep, depth, body)
            out.append(_pack_item(0xFFFE, 0xE000, UNDEFINED))
            out.extend(body)
        else:
            if pos + length > n:
                raise Truncated()
            _tx_dataset(buf, pos, pos + length, pixrep, depth, body)
            content = b"".join(body)
            out.append(_pack_item(0xFFFE, 0xE000, len(content)))
            out.append(content)
            pos += length
    return pos


def _skip_implicit_undefined(buf: bytes, pos: int, depth: int) -> int:
    """Position after an implicit undefined-length value (through its Sequence Delimiter)."""
    if depth > MAX_DEPTH:
        raise InputError("sequences nested too deeply", code="DICOM_TOO_DEEP")
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise Truncated("file ends inside a sequence")
        g, e = _LE_HH(buf, pos)
        tag = g << 16 | e
        length = _LE_I(buf, pos + 4)[0]
        pos += 8
        if tag == SEQ_DELIM:
            return pos
        if tag != ITEM:
            raise InputError("expected an item in a sequence", code="DICOM_BAD_SEQUENCE")
        if length != UNDEFINED:
            pos += length
            continue
        while True:
            if pos + 8 > n:
                raise Truncated("file ends inside an item")
            g, e = _LE_HH(buf, pos)
            length = _LE_I(buf, pos + 4)[0]
            pos += 8
            if (g << 16 | e) == ITEM_DELIM:
                break
            if length == UNDEFINED:
                pos = _skip_implicit_undefined(buf, pos, depth + 1)
            else:
                pos += length


def transcode_sequence(raw: bytes, defined: bool, pixel_representation: int | None) -> bytes:
    """The explicit VR LE value of an implicit SQ value ``raw`` (for undefined length,
    ``raw`` ends with the Sequence Delimitation Item and so does the result)."""
    out: list[bytes] = []
    _tx_items(raw, 0, len(raw) if defined else None, [pixel_representation], 1, out)
    return b"".join(out)


def iter_implicit(r, *, big: int = 1 << 20, bulk: frozenset = frozenset()) -> Iterator[tuple]:
    """Walk a top-level implicit VR LE data set, yielding per element
    ``(src_offset, tag, vr, header, value, length)`` in its explicit form.

    ``header`` is the explicit header (b"" for dropped group lengths); ``value`` is the
    explicit value bytes, or None for values over ``big`` bytes or with a tag in ``bulk``
    (never read here), which the consumer must
    consume from ``r`` (skip or copy ``length`` bytes) before resuming the iterator.
    """
    pixrep: list = [None]
    while True:
        src = r.tell()
        h = read_header(r, True, True, pixrep[0])
        if h is None:
            return
        tag, vr, length = h
        if vr is None:
            raise InputError(f"unexpected item tag at offset {src} in the data set",
                             code="DICOM_BAD_SEQUENCE")
        if length == UNDEFINED:
            keep: list[bytes] = []
            walk_undefined(r, True, True, 1, keep)
            raw = b"".join(keep)
            if vr == "SQ":
                value = transcode_sequence(raw, False, pixrep[0])
                yield src, tag, "SQ", _ehdr(tag, "SQ", UNDEFINED), value, len(value)
            else:
                yield src, tag, "UN", _ehdr(tag, "UN", UNDEFINED), raw, len(raw)
            continue
        if vr == "SQ":
            value = transcode_sequence(r.take(length), True, pixrep[0])
            yield src, tag, "SQ", _ehdr(tag, "SQ", len(value)), value, len(value)
            continue
        if (tag & 0xFFFF) == 0 and (tag >> 16) != 0x0002:
            r.skip(length)
            continue
        if vr not in LONG_VRS and length > 0xFFFF:
            vr = "UN"
        if length > big or tag in bulk:
            yield src, tag, vr, _ehdr(tag, vr, length), None, length
            continue
        value = r.take(length)
        if tag == PIXEL_REPRESENTATION and length >= 2:
            pixrep[0] = _LE_H(value, 0)[0]
        yield src, tag, vr, _ehdr(tag, vr, length), value, length
