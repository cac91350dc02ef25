"""BER/DER building blocks and a bounded, pull-based BER reader over a chunk stream.

Writing: small structures are DER (built with asn1crypto or ``tlv``); large content is
framed either definite (one primitive OCTET STRING, DER-compatible) or indefinite
(constructed, fixed-size chunks, end-of-contents octets), and every framing has an
exact size function so the whole file's size is known before a byte is written.

Reading: ``ByteStream`` pulls from an iterator of chunks (file reads, decrypted
blocks); ``read_header`` parses one identifier+length; ``read_element`` returns one
complete small element (capped); ``iter_octets`` streams the value of a (possibly
constructed, possibly indefinite) OCTET STRING without holding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from mediasec.errors import MalformedError

__all__ = ["der_len", "tlv", "definite_at", "EOC", "Header", "ByteStream", "read_header", "read_element",
           "iter_octets", "skip_eoc", "octets_size", "write_octets_header",
           "MAX_SMALL_ELEMENT", "MAX_DEPTH"]

EOC = b"\x00\x00"
#: the largest "small" element (RecipientInfos, certificates, SignerInfos) we load
MAX_SMALL_ELEMENT = 16 * 1024 * 1024
MAX_DEPTH = 32


def der_len(n: int) -> bytes:
    """DER length octets for ``n``."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + der_len(len(content)) + content


def definite_at(buf: bytes, off: int, end: int) -> tuple[int, int, int] | None:
    """``(tag, content start, content end)`` of the definite-length, low-tag-number TLV at
    ``buf[off:end]``, or None (multi-byte tag, indefinite or over-long length, or content
    past ``end``): the one in-memory TLV walker, used to *locate* bytes whose meaning
    asn1crypto has established."""
    if off + 2 > end:
        return None
    tag = buf[off]
    if tag & 0x1F == 0x1F:
        return None
    n = buf[off + 1]
    p = off + 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or p + k > end:
            return None
        n = int.from_bytes(buf[p:p + k], "big")
        p += k
    if p + n > end:
        return None
    return tag, p, p + n


def header_size(content_len: int | None) -> int:
    """Size of a one-byte tag plus length octets (None = indefinite, ``80``)."""
    return 2 if content_len is None else 1 + len(der_len(content_len))


# -- large OCTET STRING framing ---------------------------------------------------------------

def octets_size(n: int, *, chunk: int | None, tag: int = 0x04) -> int:
    """Encoded size of an OCTET STRING value of ``n`` bytes.

    ``chunk=None``: one primitive TLV (definite, DER). Otherwise the constructed,
    indefinite form with primitive pieces of ``chunk`` bytes (the last one shorter,
    none when ``n == 0``) and the end-of-contents octets. ``tag`` is the primitive tag
    (``0x04`` or ``0x80`` for ``[0] IMPLICIT``); the constructed tag is ``tag | 0x20``.
    """
    if chunk is None:
        return header_size(n) + n
    full, rest = divmod(n, chunk)
    size = 2 + full * (1 + len(der_len(chunk)) + chunk) + 2
    if rest:
        size += 1 + len(der_len(rest)) + rest
    return size


def write_octets_header(n: int, *, chunk: int | None, tag: int = 0x04) -> bytes:
    """The bytes before the first content byte (definite) or before the first piece."""
    if chunk is None:
        return bytes((tag,)) + der_len(n)
    return bytes((tag | 0x20, 0x80))


# -- reading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    tag: int          # the first identifier octet (class | constructed | number < 31)
    length: int | None  # None = indefinite
    raw: bytes        # identifier + length octets as read
    offset: int       # position of the first identifier octet in the stream

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    @property
    def end(self) -> int | None:
        return None if self.length is None else self.offset + len(self.raw) + self.length


class ByteStream:
    """Pull bytes from an iterator of chunks, tracking the absolute position.

    ``read(n)`` returns exactly ``n`` bytes or raises ``MalformedError`` (truncated);
    ``read_some(n)`` returns 1..n bytes as a memoryview valid until the next call
    (or an empty view at the end).
    """

    def __init__(self, chunks: Iterator[bytes], *, what: str = "CMS data"):
        self._chunks = iter(chunks)
        self._pending: memoryview | None = None   # the unread tail of a chunk split by peek
        self._buf = memoryview(b"")
        self._off = 0
        self.pos = 0
        self.what = what

    def _next_chunk(self) -> memoryview | None:
        if self._pending is not None:
            nxt, self._pending = self._pending, None
            return nxt
        for nxt in self._chunks:
            if len(nxt):
                return memoryview(nxt)
        return None

    def _fill(self) -> bool:
        if self._off < len(self._buf):
            return True
        nxt = self._next_chunk()
        if nxt is None:
            return False
        self._buf, self._off = nxt, 0
        return True

    def read_some(self, n: int) -> memoryview:
        if not self._fill():
            return memoryview(b"")
        end = min(len(self._buf), self._off + n)
        out = self._buf[self._off:end]
        self.pos += end - self._off
        self._off = end
        return out

    def read(self, n: int) -> bytes:
        off = self._off
        end = off + n
        if end <= len(self._buf):   # the common case: all in the current chunk
            self._off = end
            self.pos += n
            return bytes(self._buf[off:end])
        if n == 0:
            return b""
        first = self.read_some(n)
        if len(first) == n:
            return bytes(first)
        parts = [bytes(first)]
        got = len(first)
        while got < n:
            piece = self.read_some(n - got)
            if not piece:
                raise MalformedError(f"{self.what} is truncated at byte {self.pos}",
                                     code="CMS_TRUNCATED")
            parts.append(bytes(piece))
            got += len(piece)
        return b"".join(parts)

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes without consuming them (to look at a type's first octets)."""
        while len(self._buf) - self._off < n:
            # copy what is left *before* pulling: the producer may reuse its buffer
            rest = bytes(self._buf[self._off:])
            self._buf, self._off = memoryview(rest), 0
            nxt = self._next_chunk()
            if nxt is None:
                break
            need = n - len(rest)
            # glue only the few bytes needed; the rest of the chunk waits in _pending
            self._buf = memoryview(rest + bytes(nxt[:need]))
            if need < len(nxt):
                self._pending = nxt[need:]
        return bytes(self._buf[self._off:self._off + n])

    def at_end(self) -> bool:
        return not self._fill()


def read_header(s: ByteStream) -> Header:
    buf, off = s._buf, s._off
    if len(buf) - off >= 10:
        # the common case: identifier and length octets all in the current chunk
        tag = buf[off]
        n = buf[off + 1]
        if tag & 0x1F != 0x1F and n == 0x80 and tag & 0x20:
            offset = s.pos
            s._off = off + 2
            s.pos = offset + 2
            return Header(tag, None, bytes(buf[off:off + 2]), offset)
        if tag & 0x1F != 0x1F and (n < 0x80 or (n != 0x80 and (n & 0x7F) <= 8)):
            end = off + 2
            if n & 0x80:
                end += n & 0x7F
                n = int.from_bytes(buf[off + 2:end], "big")
            offset = s.pos
            s._off = end
            s.pos = offset + end - off
            return Header(tag, n, bytes(buf[off:end]), offset)
    offset = s.pos
    first = s.read(1)
    tag = first[0]
    if tag & 0x1F == 0x1F:
        raise MalformedError(f"high tag numbers are not used in CMS (byte {offset})")
    lb = s.read(1)
    raw = first + lb
    n = lb[0]
    if n == 0x80:
        if not tag & 0x20:
            raise MalformedError(f"indefinite length on a primitive element (byte {offset})")
        return Header(tag, None, raw, offset)
    if n & 0x80:
        k = n & 0x7F
        if k == 0x7F or k > 8:
            raise MalformedError(f"length of {k} octets is out of range (byte {offset})")
        body = s.read(k)
        raw += body
        n = int.from_bytes(body, "big")
    return Header(tag, n, raw, offset)


def expect(s: ByteStream, tag: int, what: str) -> Header:
    h = read_header(s)
    if h.tag != tag:
        raise MalformedError(f"expected {what} (tag {tag:#04x}) at byte {h.offset}, "
                             f"found tag {h.tag:#04x}")
    return h


def skip_eoc(s: ByteStream, h: Header) -> None:
    """Close an element opened with ``h``: read ``00 00`` if it was indefinite."""
    if h.length is None:
        eoc = s.read(2)
        if eoc != EOC:
            raise MalformedError(f"expected end-of-contents at byte {s.pos - 2}")
    elif s.pos != h.end:
        raise MalformedError(f"element at byte {h.offset} has {s.pos - h.end:+d} bytes "
                             "beyond its length")


def is_eoc_next(s: ByteStream) -> bool:
    return s.peek(2) == EOC


def read_element(s: ByteStream, h: Header | None = None, *, cap: int = MAX_SMALL_ELEMENT,
                 _depth: int = 0) -> bytes:
    """Read one whole element (after ``h`` if given) and return its raw encoding."""
    if h is None:
        h = read_header(s)
    if _depth > MAX_DEPTH:
        raise MalformedError(f"nesting deeper than {MAX_DEPTH} at byte {h.offset}")
    if h.length is not None:
        if h.length > cap:
            raise MalformedError(f"element of {h.length} bytes at byte {h.offset} is over "
                                 f"the {cap}-byte cap")
        return h.raw + s.read(h.length)
    parts = [h.raw]
    size = len(h.raw)
    while True:
        if is_eoc_next(s):
            parts.append(s.read(2))
            return b"".join(parts)
        part = read_element(s, cap=cap - size, _depth=_depth + 1)
        size += len(part)
        if size > cap:
            raise MalformedError(f"element at byte {h.offset} is over the {cap}-byte cap")
        parts.append(part)


def iter_octets(s: ByteStream, h: Header, *, piece: int = 1 << 20,
                _depth: int = 0) -> Iterator[memoryview]:
    """Stream the value of an OCTET STRING (primitive or constructed) opened with ``h``.

    Each yielded view is valid until the next iteration step.
    """
    if not h.constructed:
        left = h.length
        while left:
            mv = s.read_some(min(piece, left))
            if not mv:
                raise MalformedError(f"{s.what} is truncated at byte {s.pos}",
                                     code="CMS_TRUNCATED")
            left -= len(mv)
            yield mv
        return
    if _depth > MAX_DEPTH:
        raise MalformedError(f"OCTET STRING nested deeper than {MAX_DEPTH}")
    while True:
        if h.length is None:
            if is_eoc_next(s):
                s.read(2)
                return
        elif s.pos >= h.end:
            if s.pos != h.end:
                raise MalformedError(f"OCTET STRING piece overruns its parent at byte {s.pos}")
            return
        sub = read_header(s)
        if sub.tag & 0xDF != 0x04:
            raise MalformedError(f"constructed OCTET STRING holds tag {sub.tag:#04x} "
                                 f"at byte {sub.offset}")
        yield from iter_octets(s, sub, piece=piece, _depth=_depth + 1)
