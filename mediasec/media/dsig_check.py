"""Dataset signatures of the files a reader passes over (``verify``, ``extract``).

``DatasetSignatureProbe`` is fed the plaintext chunks as they stream past (header-only reads
never see (FFFA,FFFA), which follows the pixel data, so it needs the whole file). An object
of up to ``BUFFER`` bytes is held in one reused in-memory buffer and searched once for the
signature sequence's header (skipping the pixel data's value); only an object with one is
checked. A larger object goes to ``_StreamingProbe``, which walks
the element structure as the bytes go by (any transfer syntax but deflate; sequences and
items of defined or undefined length; encapsulated pixel data) and keeps only the element
headers and the values of at most ``limit`` bytes - no plaintext copy of the file.
Larger values (pixel data) are not kept: while they pass, they are hashed into the MAC
streams that will need them:

* the MAC Parameters Sequence (4FFE,0001) sorts before the pixel data, so when a large
  top-level value arrives the algorithms and the Data Elements Signed of the main data
  set's signatures are known: one running hash per (algorithm, list) takes each listed,
  signable top-level element in file order (= ascending tag order), encoded as PS3.15
  C.12.1.1.3.1 says (``mediasec.sign.mac``);
* a large value *before* (4FFE,0001) (an encapsulated document, say) is hashed into a
  speculative SHA-256 stream of every signable element before it; a signature whose list
  and MAC turn out to match takes that state, any other falls back.

At the end the object is parsed from what was kept and checked by ``mediasec.sign`` (the
same checks as ``check-signatures``), with those running digests standing in for the
dropped bytes (big endian values are byte-swapped on the way, as the MAC stream wants).
Whatever needs a byte that was not kept (a signature inside an item over a large value, a
stream the running hashes did not cover) falls back honestly: a second read through the ``reread`` callback the caller gave, else
``SIG_NOT_CHECKED`` with the reason - never a guess. A deflated data set is compressed: its
signatures are not seen (known limit). The SOP Instance Status, and whether a valid
signature covers it, come with the findings (``STATUS_UNSUPPORTED`` when AO/AC is not
covered).
"""

from __future__ import annotations

import struct
from typing import Callable

from mediasec.dicom._elements import ITEM, ITEM_DELIM, LONG_VRS, SEQ_DELIM, TEXT_VRS, \
    UNDEFINED, implicit_vr
from mediasec.dicom.scan import _fast_explicit_le
from mediasec.dicom.tags import PIXEL_DATA, PIXEL_REPRESENTATION
from mediasec.errors import MediasecError
from mediasec.pki.certs import Memo
from mediasec.policy import TrustContext
from mediasec.report import Finding, Outcome
from mediasec.sign import check_file, check_part
from mediasec.sign import mac as macs
from mediasec.sign._raw import (DEFLATE, EXPLICIT_LE, IMPLICIT_LE, SMALL, SWAP,
                                BytesDropped, Element, Item, SparseSource, _Parser,
                                coding_for, parse_part10, swap_value)
from mediasec.sign.signature import (DATA_ELEMENTS_SIGNED, MAC_ALGORITHM, MAC_PARAMETERS,
                                     _at_list, _text)

__all__ = ["DatasetSignatureProbe", "has_signature_sequence", "signature_findings"]

DIGITAL_SIGNATURES = 0xFFFAFFFA

#: the Digital Signatures Sequence's element header as it is stored: explicit VR (little and
#: big endian: tag, "SQ", two zero bytes), or implicit VR little endian (tag, any length,
#: then the first item's tag): 8 known bytes, so pixel data (hundreds of MiB of any
#: bytes) does not pass for a signature by chance
_EXPLICIT = (b"\xfa\xff\xfa\xffSQ\x00\x00", b"\xff\xfa\xff\xfaSQ\x00\x00")
_IMPLICIT_TAG = b"\xfa\xff\xfa\xff"
_BE_TAG = b"\xff\xfa\xff\xfa"
_ITEM_LE = b"\xfe\xff\x00\xe0"
_WINDOW = 11          # bytes kept from one chunk to the next (a header across the boundary)
_SEQ_END = b"\xfe\xff\xdd\xe0"
_LE_HH = struct.Struct("<HH").unpack_from
_BE_HH = struct.Struct(">HH").unpack_from


def has_signature_sequence(buf, end: int | None = None) -> bool:
    """Whether ``buf[:end]`` holds the element header of a Digital Signatures Sequence (two
    searches for the 4-byte tag, each hit checked against the bytes after it, never past
    ``end``: a reused buffer holds stale bytes there). Used for the implicit VR form and
    once the structure walk has failed (a damaged data set)."""
    n = len(buf) if end is None else end
    i = buf.find(_IMPLICIT_TAG, 0, n)
    while i >= 0:
        if (i + 8 <= n and buf[i + 4:i + 8] == b"SQ\x00\x00") or \
                (i + 12 <= n and buf[i + 8:i + 12] == _ITEM_LE):
            return True
        i = buf.find(_IMPLICIT_TAG, i + 1, n)
    i = buf.find(_BE_TAG, 0, n)
    while i >= 0:
        if i + 8 <= n and buf[i + 4:i + 8] == b"SQ\x00\x00":
            return True
        i = buf.find(_BE_TAG, i + 1, n)
    return False


class _Broken(Exception):
    """The data set does not walk (damaged): the probe stops walking and says so."""


class _Lane:
    """One running MAC stream S of the main data set: an algorithm and a tag list (None:
    every signable element, the speculative lane)."""

    __slots__ = ("mac", "tags", "h", "broken")

    def __init__(self, mac: str, tags, h):
        self.mac, self.tags, self.h, self.broken = mac, tags, h, None

    def wants(self, tag: int) -> bool:
        return self.tags is None or tag in self.tags


class _Box:
    """A container being walked: the data set, an item, a sequence or encapsulated pixel
    data (``end`` None: undefined length)."""

    __slots__ = ("kind", "end", "coding", "depth", "tag", "hdr", "sig")

    def __init__(self, kind, end, coding, depth, tag=0, hdr=0, sig=False):
        self.kind, self.end, self.coding, self.depth = kind, end, coding, depth
        self.tag, self.hdr = tag, hdr
        #: inside a MAC Parameters or Digital Signatures Sequence (values always kept)
        self.sig = sig


#: objects up to this size are held whole in a reused per-job buffer and searched once
#: (C speed) for the signature sequence's header; only larger ones are walked as they
#: stream (the walk costs ~5 us of Python per element: 0.5-0.75 ms per small CT or MR
#: file, more than the hashing of the file itself, while the search costs ~20 us per MiB)
BUFFER = 8 << 20
#: the plaintext buffer, reused file after file (one per job: no fresh pages per file)
_SCRATCH = Memo(1)
#: the transfer syntax decides which 8-byte form a data set can hold
_TS_IMPLICIT = b"1.2.840.10008.1.2"
_TS_BIG = b"1.2.840.10008.1.2.2"


def _form(head) -> str:
    """The form a file's data set can hold, from its Transfer Syntax UID (0002,0010) as
    the File Meta Information states it; "any" when that is not found plainly."""
    i = head.find(b"\x02\x00\x10\x00UI")
    if i < 0 or i + 8 > len(head):
        return "any"
    n = int.from_bytes(head[i + 6:i + 8], "little")
    ts = bytes(head[i + 8:i + 8 + n]).rstrip(b"\x00 ")
    if i + 8 + n > len(head) or not ts:
        return "any"
    if ts == _TS_IMPLICIT:
        return "implicit"
    if ts == _TS_BIG:
        return "big"
    return "explicit"


class DatasetSignatureProbe:
    """Feed it the plaintext (``feed``), then ask ``findings(trust)``. ``seen``: the object
    holds a Digital Signatures Sequence at some level. ``limit``: the largest value kept
    in memory by the streaming walk (larger ones are hashed as they pass). ``reread``:
    optional, returns the same plaintext again (bytes or a seekable binary stream) for the
    rare checks the running hashes cannot answer. ``buffer``: objects up to this size are
    held whole (in one reused buffer) and searched for the Digital Signatures Sequence's
    8-byte header - a search over every byte misses nothing, a false hit costs only the
    full check - and only an object with one is checked (``check_file``, the same checks
    as ``check-signatures``); a larger object switches to the streaming walk
    (``_StreamingProbe``), fed first what was held."""

    def __init__(self, limit: int = SMALL, *, reread: Callable[[], object] | None = None,
                 buffer: int = BUFFER):
        self.limit, self.reread, self.buffer = limit, reread, buffer
        self.count = 0
        self._stream: _StreamingProbe | None = None if buffer else \
            _StreamingProbe(limit, reread=reread)
        self._buf = _SCRATCH.get("plaintext", bytearray) if buffer else None

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    def feed(self, chunk) -> None:
        n = chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)
        if not n:
            return
        if self._stream is not None:
            self.count += n
            self._stream.feed(chunk)
            return
        pos = self.count
        self.count = pos + n
        if self.count <= self.buffer:
            self._buf[pos:pos + n] = chunk    # one copy (the chunk's own buffer is reused)
            return
        self._stream = _StreamingProbe(self.limit, reread=self.reread)
        if pos:
            self._stream.feed(bytes(self._buf[:pos]))
        self._stream.feed(chunk)

    @property
    def seen(self) -> bool:
        return self._seen()

    def _seen(self, pixel_header: int | None = None) -> bool:
        if self._stream is not None:
            return self._stream.seen
        buf, n = self._buf, self.count
        form = _form(bytes(buf[:min(n, 4096)]))
        if form not in ("explicit", "big"):
            return has_signature_sequence(buf, n)   # no copy of the held object
        needle = _EXPLICIT[0] if form == "explicit" else _EXPLICIT[1]
        if pixel_header is None and form == "explicit":
            pixel_header = _find_pixel_header(buf, n)
        value = _bulk_value(buf, n, pixel_header, form == "explicit")
        if value is not None:
            # the bytes of a top-level value (the pixel data) are values, never element
            # headers: search before and after it
            start, end = value
            return buf.find(needle, 0, start) >= 0 or buf.find(needle, end, n) >= 0
        return buf.find(needle, 0, n) >= 0

    def findings(self, trust: TrustContext | None, *,
                 pixel_header: int | None = None) -> list[Finding]:
        """``pixel_header`` (optional, for a caller that already knows it): where the
        top-level pixel data element's header starts; else the probe finds it itself. A
        held object's search skips that value once the header there is checked to be one."""
        if self._stream is not None:
            return self._stream.findings(trust)
        if not self._seen(pixel_header):
            return []
        return signature_findings(bytes(self._buf[:self.count]), trust)


_PIXEL_TAGS = frozenset({PIXEL_DATA})


def _find_pixel_header(buf, n: int) -> int | None:
    """Where the top-level pixel data element of an explicit VR little endian object
    starts, by the header scan's fast walk over its first 64 KiB (None when the File Meta
    Information has no group length or the walk stops before: the whole object is then
    searched)."""
    if n < 144 or buf[132:138] != b"\x02\x00\x00\x00UL":
        return None
    meta_end = 144 + int.from_bytes(buf[140:144], "little")
    head = bytes(buf[:min(n, 1 << 16)])
    if meta_end >= len(head):
        return None
    _pos, done, at, _length = _fast_explicit_le(head, meta_end, _PIXEL_TAGS, PIXEL_DATA, {})
    return at if done else None


def _bulk_value(buf, n: int, at: int | None, little: bool) -> tuple[int, int] | None:
    """(start, end) of the value of the explicit VR element whose header is at ``at``, if
    that header is a pixel data one - group 7FE0, a long VR, reserved bytes zero, a defined
    length ending inside the object - else None."""
    if at is None or at < 0 or at + 12 > n:
        return None
    h = bytes(buf[at:at + 12])
    group = h[0:2] if little else h[1::-1]
    if group != b"\xe0\x7f" or h[4:6] not in _LONG or h[6:8] != b"\0\0":
        return None
    length = int.from_bytes(h[8:12], "little" if little else "big")
    if length == UNDEFINED or at + 12 + length > n:
        return None
    return at + 12, at + 12 + length


class _StreamingProbe:
    """The walk of an object as it streams past (``DatasetSignatureProbe`` above hands the
    objects larger than its buffer to it)."""

    def __init__(self, limit: int = SMALL, *, reread: Callable[[], object] | None = None):
        self.limit = limit
        self.reread = reread
        self.count = 0
        self.seen = False
        self._src = SparseSource(limit)
        self._hdr = bytearray()
        self._state = "preamble"       # preamble, meta, body, search (damaged), off
        self._why = ""
        self._ts = ""
        self._meta_end = 0
        self._stack: list[_Box] = []
        self._coding = EXPLICIT_LE
        self._pixrep: int | None = None
        # the value being passed: bytes left, dropped or kept, its element
        self._left = 0
        self._drop = False
        self._vtag = 0
        self._vr = ""
        self._vhdr = 0
        self._vdepth = 0
        self._vkind = ""               # "meta", "value", "frag"
        # running MAC streams of the main data set
        self._lanes: list[_Lane] = [_Lane("SHA256", None, macs.new_hash("SHA256"))]
        self._spec = True              # the lanes are still the speculative one
        self._streamed = False         # a top-level value was hashed as it passed
        self._feeding: list[_Lane] = []
        self._fed_upto = 0
        self._by_key: dict = {}
        self._swap = 0                 # byte-swap unit of the value being hashed (big endian)
        self._carry = b""
        self._vlen = 0
        self._tail = b""

    # -- the walk ---------------------------------------------------------------------------
    def feed(self, chunk) -> None:
        mv = memoryview(chunk)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        n = len(mv)
        if n == 0:
            return
        self.count += n
        state = self._state
        if state == "off":
            return
        if state == "search":
            self._search(mv)
            return
        i = 0
        try:
            while True:
                left = self._left
                if left:
                    if self._hdr:
                        # header bytes read ahead that belong to this value
                        piece = bytes(self._hdr[:left])
                        del self._hdr[:len(piece)]
                        k = len(piece)
                    elif i >= n:
                        return
                    else:
                        k = left if left < n - i else n - i
                        piece = mv[i:i + k]
                        i += k
                    if self._drop:
                        self._src.drop(k)
                    else:
                        self._src.append(piece)
                    if self._feeding:
                        if self._swap:
                            piece = self._swapped(piece)
                        for lane in self._feeding:
                            lane.h.update(piece)
                    self._left = left - k
                    if not self._left:
                        self._value_end()
                    continue
                if self._state not in ("preamble", "meta", "body"):
                    return
                if not self._hdr and self._state == "body":
                    self._settle()
                need = self._need()
                if len(self._hdr) >= need and (need != 8 or self._need() == 8):
                    self._header()
                    continue
                if i >= n:
                    return
                take = min(need - len(self._hdr), n - i)
                self._hdr += mv[i:i + take]
                i += take
        except (_Broken, MediasecError, BytesDropped) as exc:
            self._state, self._why = "search", str(exc)
            self._search(mv[i:])

    def _search(self, mv) -> None:
        """The structure walk failed: look for the sequence's header bytes instead (to say
        whether the object has signatures that could not be checked)."""
        if self.seen:
            return
        whole = bytes(mv)
        if has_signature_sequence(whole) or (
                self._tail and has_signature_sequence(self._tail + whole[:_WINDOW])):
            self.seen = True
        self._tail = (self._tail + whole)[-_WINDOW:]

    def _need(self) -> int:
        if self._state == "preamble":
            return 132
        h = self._hdr
        if len(h) < 8:
            return 8
        coding = self._stack[-1].coding if self._state == "body" else EXPLICIT_LE
        if not coding.explicit or h[0:2] == (b"\xfe\xff" if coding.little else b"\xff\xfe"):
            return 8
        return 12 if bytes(h[4:6]) in _LONG else 8

    def _settle(self) -> None:
        """Close the defined-length containers that end here."""
        pos = self._src.size
        stack = self._stack
        while len(stack) > 1 and stack[-1].end is not None and pos >= stack[-1].end:
            box = stack.pop()
            if pos > box.end:
                raise _Broken("an element runs past the end of its item or sequence")
            self._closed(box)

    def _header(self) -> None:
        need = self._need()
        h = bytes(self._hdr[:need])
        del self._hdr[:need]
        src = self._src
        pos = src.size
        src.append(h)
        if self._state == "preamble":
            if h[128:132] != b"DICM":
                self._state = "off"
            else:
                self._state = "meta"
            return
        if self._state == "meta":
            if h[0:2] != b"\x02\x00":
                self._start_body(h, pos)
                return
            tag, vr, length = _explicit(h, True)
            if vr is None or length == UNDEFINED:
                raise _Broken("bad file meta information")
            self._value(tag, vr, pos, length, "meta", -1)
            return
        box = self._stack[-1]
        coding = box.coding
        little = coding.little
        g, e = (_LE_HH if little else _BE_HH)(h, 0)
        tag = (g << 16) | e
        if g == 0xFFFE:
            length = int.from_bytes(h[4:8], "little" if little else "big")
            if tag == ITEM:
                if box.kind == "sq":
                    self._stack.append(_Box("item", None if length == UNDEFINED else
                                            pos + 8 + length, coding, box.depth + 1,
                                            sig=box.sig))
                elif box.kind == "frags" and length != UNDEFINED:
                    for lane in self._feeding:
                        lane.h.update(_ITEM_LE)
                    self._value(box.tag, "", pos, length, "frag", box.depth)
                    return
                else:
                    raise _Broken("an item where none belongs")
            elif tag == ITEM_DELIM and box.kind == "item" and box.end is None:
                self._stack.pop()
            elif tag == SEQ_DELIM and box.kind in ("sq", "frags") and box.end is None:
                self._stack.pop()
                self._closed(box)
            else:
                raise _Broken(f"unexpected (FFFE,{e:04X})")
            self._settle()
            return
        if box.kind not in ("top", "item"):
            raise _Broken("an element where an item belongs")
        depth = box.depth
        if coding.explicit:
            tag, vr, length = _explicit(h, little)
            if vr is None:
                raise _Broken(f"({g:04X},{e:04X}) has an unknown VR")
        else:
            vr = implicit_vr(tag, self._pixrep)
            length = int.from_bytes(h[4:8], "little")
        val = pos + len(h)
        if tag == DIGITAL_SIGNATURES:
            self.seen = True
        if depth == 0 and self._spec and tag > MAC_PARAMETERS:
            # past where the MAC Parameters Sequence sorts, without one: no signature of
            # the main data set can be checked, nothing to hash ahead
            self._lanes, self._spec = [], False
        if vr == "SQ" or (length == UNDEFINED and (vr == "UN" or not coding.explicit)):
            inner = coding if vr == "SQ" else IMPLICIT_LE
            self._stack.append(_Box("sq", None if length == UNDEFINED else val + length,
                                    inner, depth, tag, pos,
                                    box.sig or tag in (MAC_PARAMETERS, DIGITAL_SIGNATURES)))
            self._settle()
            return
        if length == UNDEFINED:
            box = _Box("frags", None, coding, depth, tag, pos)
            self._stack.append(box)
            if depth == 0:
                self._stream_start(Element(tag, vr, pos, val, length, 0, coding),
                                   struct.pack("<HH", g, e) + vr.encode() + b"\0\0")
            return
        self._value(tag, vr, pos, length, "value", depth)

    def _start_body(self, h: bytes, pos: int) -> None:
        """The first data set element header is in ``h``: the meta information ends here."""
        self._meta_end = pos
        if self._ts == DEFLATE or not self._ts:
            self._state = "off"
            return
        self._coding = coding_for(self._ts)
        self._stack = [_Box("top", None, self._coding, 0)]
        self._fed_upto = pos
        self._state = "body"
        # the header bytes were appended already: take them back and walk them again
        del self._src.kept[len(self._src.kept) - len(h):]
        self._src.size -= len(h)
        self._hdr[:0] = h

    def _value(self, tag, vr, hdr, length, kind, depth) -> None:
        self._vtag, self._vr, self._vhdr, self._vdepth, self._vkind = (tag, vr, hdr, depth,
                                                                     kind)
        self._vlen = length
        keep = self.limit
        if kind == "meta" or (self._state == "body" and self._stack[-1].sig):
            keep = max(keep, _KEEP_SIGNATURE)    # what the check reads: always kept
        # top-level pixel data fragments are never kept, whatever their size: they are
        # hashed as they pass (a multi-frame object has thousands of small ones)
        self._drop = length > keep or (kind == "frag" and depth == 0 and length > 0)
        if kind == "value" and depth == 0 and self._drop:
            n = length
            padded = n + (n & 1)
            tb = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
            head = (tb + vr.encode() + b"\0\0" + struct.pack("<I", padded)
                    if vr in LONG_VRS else
                    tb + vr.encode() + struct.pack("<H", padded & 0xFFFF))
            self._stream_start(Element(tag, vr, hdr, self._src.size, length, 0,
                                       self._stack[-1].coding), head)
        self._left = length
        if not length:
            self._value_end()

    def _value_end(self) -> None:
        kind = self._vkind
        if kind == "meta":
            if self._vtag == 0x00020010:
                self._ts = self._src.read(self._vhdr + 8, self._src.size - self._vhdr - 8) \
                    .rstrip(b"\0 ").decode("ascii", "replace")
            return
        if kind == "frag":
            return
        if self._vdepth == 0:
            if self._feeding:
                if self._vlen & 1:
                    pad = b" " if self._vr in TEXT_VRS else b"\0"
                    for lane in self._feeding:
                        lane.h.update(pad)
                self._feeding = []
                self._fed_upto = self._src.size
            if self._vtag == PIXEL_REPRESENTATION and self._vlen == 2 and not self._drop:
                raw = self._src.read(self._src.size - 2, 2)
                self._pixrep = int.from_bytes(raw, "little" if self._coding.little else "big")
            self._top_done(self._vtag, self._vhdr)

    def _closed(self, box: _Box) -> None:
        if box.kind == "frags" and box.depth == 0:
            for lane in self._feeding:
                lane.h.update(_SEQ_END)
            self._feeding = []
            self._fed_upto = self._src.size
        if box.kind in ("sq", "frags") and box.depth == 0:
            self._top_done(box.tag, box.hdr)

    def _top_done(self, tag: int, hdr: int) -> None:
        if tag == MAC_PARAMETERS:
            self._mac_parameters(hdr, self._src.size)

    # -- the running hashes -------------------------------------------------------------------
    def _stream_start(self, el: Element, head: bytes) -> None:
        """A top-level value too large to keep begins: bring the running hashes up to it,
        then those that want it take its header (and its bytes as they pass)."""
        self._flush(el.hdr)
        self._streamed = True
        self._feeding = []
        self._swap, self._carry = 0, b""
        unit = 0 if el.coding.little else SWAP.get(el.vr, 0)
        for lane in self._lanes:
            if lane.broken or not lane.wants(el.tag) or not macs.is_signable(el):
                continue
            if not el.coding.little and (el.length == UNDEFINED or el.length % (unit or 1)):
                lane.broken = "a large big endian value of unusual length"
                continue
            lane.h.update(head)
            self._feeding.append(lane)
        # big endian: the MAC stream holds the value little endian (whole units swapped)
        self._swap = unit if self._feeding else 0

    def _swapped(self, piece) -> bytes:
        buf = self._carry + bytes(piece)
        k = len(buf) - len(buf) % self._swap
        self._carry = buf[k:]
        return swap_value(self._vr, buf[:k])

    def _elements(self, start: int, end: int) -> list[Element]:
        item = Item(None, start, end - start, end, self._coding)
        _Parser(self._src, self._pixrep).dataset(start, end, self._coding, 0, item)
        return item.elements

    def _flush(self, at: int, lanes=None) -> None:
        """Feed the top-level elements between the last fed one and ``at`` (all kept, or
        the lanes that need a dropped byte are broken)."""
        start = self._fed_upto if lanes is None else self._meta_end
        if lanes is None:
            lanes = self._lanes
            self._fed_upto = max(self._fed_upto, at)
        lanes = [ln for ln in lanes if not ln.broken]
        if at <= start or not lanes:
            return
        try:
            els = self._elements(start, at)
        except (BytesDropped, MediasecError) as exc:
            for lane in lanes:
                lane.broken = f"the data set does not parse ({exc})"
            return
        for el in els:
            signable = None
            for lane in lanes:
                if lane.broken or not lane.wants(el.tag):
                    continue
                if signable is None:
                    signable = macs.is_signable(el)
                if not signable:
                    continue
                try:
                    macs.StreamBuilder(self._src, lane.h.update).element(el)
                except BytesDropped:
                    lane.broken = "a signed element holds a value that was not kept"

    def _mac_parameters(self, hdr: int, end: int) -> None:
        """The main data set's MAC Parameters Sequence has passed: one lane per (MAC,
        list) from here on."""
        if self._spec and self._streamed:
            self._flush(hdr)             # the speculative lane, up to here
        spec = self._lanes[0] if self._spec and self._lanes else None
        lanes: dict = {}
        try:
            el = self._elements(hdr, end)[0]
        except (BytesDropped, MediasecError, IndexError):
            self._lanes, self._spec = [], False
            return
        fresh = []
        for it in el.items or ():
            try:
                mac = _text(it.get(MAC_ALGORITHM), self._src)
                tl = it.get(DATA_ELEMENTS_SIGNED)
                if mac not in macs.MAC_ALGORITHMS or tl is None:
                    continue
                tags = frozenset(_at_list(tl, self._src))
            except BytesDropped:
                continue             # not kept (a tiny limit): that signature falls back
            if (mac, tags) in lanes:
                continue
            if not self._streamed:
                lane = _Lane(mac, tags, macs.new_hash(mac))
                fresh.append(lane)
            else:
                lane = _Lane(mac, tags, None)
                if spec is None or spec.broken:
                    lane.broken = (spec.broken if spec is not None else
                                   "a large value passed before the MAC Parameters")
                elif mac != spec.mac:
                    lane.broken = f"a large value passed before the {mac} MAC was known"
                elif not all(t in tags for t in self._spec_fed(hdr)):
                    lane.broken = ("a large value passed before the MAC Parameters, and the "
                                   "signed list is not every element before it")
                else:
                    lane.h = spec.h.copy()
            lanes[(mac, tags)] = lane
        if fresh:
            self._flush(hdr, fresh)      # everything before, kept: from the start
        self._fed_upto = max(self._fed_upto, hdr)
        self._lanes, self._spec = list(lanes.values()), False
        self._by_key = lanes

    def _spec_fed(self, hdr: int) -> list[int]:
        """The tags of the signable top-level elements before ``hdr`` (what the speculative
        lane took); the large ones are read from their kept headers."""
        item = Item(None, self._meta_end, hdr - self._meta_end, hdr, self._coding)
        try:
            _Parser(self._src, self._pixrep).dataset(self._meta_end, hdr, self._coding, 0,
                                                     item)
        except (BytesDropped, MediasecError):
            return [-1]
        return [e.tag for e in item.elements if macs.is_signable(e)]

    def _digest(self, level, mac: str, tags) -> object | None:
        if level.path:
            return None
        lane = self._by_key.get((mac, frozenset(tags)))
        if lane is None or lane.broken or not hasattr(lane.h, "copy"):
            return None
        return lane.h.copy()

    # -- the end ----------------------------------------------------------------------------
    def findings(self, trust: TrustContext | None) -> list[Finding]:
        if self._state == "body" and not self._left and not self._hdr:
            try:
                self._settle()
            except _Broken as exc:
                self._why = str(exc)
        complete = (self._state == "body" and not self._left and not self._hdr
                    and len(self._stack) == 1)
        if self._state == "body" and not complete and not self.seen:
            if self._left and self._drop:
                # a value runs past the end of the object: what it swallowed (a signature
                # sequence?) is unknown
                return self._fallback("the data set does not parse (a value runs past the "
                                      "end of the object), so whether it holds signatures "
                                      "is unknown", trust)
            self.seen = has_signature_sequence(bytes(self._src.kept))
        if not self.seen:
            return []
        if not complete:
            why = self._why or "the object ends inside a data element"
            return self._fallback(f"the data set does not parse ({why})", trust)
        self._flush(self._src.size)
        try:
            part = parse_part10(self._src)
            report = check_part(part, trust=trust, digests=self._digest)
        except BytesDropped:
            return self._fallback("a signature needs bytes the single pass did not keep "
                                  "(a signature inside an item over a large value, or an "
                                  "unusual list or MAC)", trust)
        except MediasecError as exc:
            return [Finding("SIG_NOT_CHECKED", Outcome.INDETERMINATE,
                            f"dataset signatures not checked: {exc.message}")]
        return _report_findings(report)

    def _fallback(self, why: str, trust) -> list[Finding]:
        if self.reread is not None:
            return signature_findings(self.reread(), trust)
        return [Finding("SIG_NOT_CHECKED", Outcome.INDETERMINATE,
                        f"dataset signatures not checked: {why}")]


_LONG = frozenset(v.encode() for v in LONG_VRS)
#: values in the File Meta Information and in the signature sequences are kept up to this
#: size whatever ``limit`` says (certificates, signatures, tag lists, time-stamp tokens)
_KEEP_SIGNATURE = 1 << 20


def _explicit(h: bytes, little: bool):
    """(tag, VR or None, length) of an explicit VR header (8 or 12 bytes)."""
    g, e = (_LE_HH if little else _BE_HH)(h, 0)
    vrb = h[4:6]
    try:
        vr = vrb.decode("ascii")
    except UnicodeDecodeError:
        return (g << 16) | e, None, 0
    if vr not in _VRS:
        return (g << 16) | e, None, 0
    order = "little" if little else "big"
    if vr in LONG_VRS:
        return (g << 16) | e, vr, int.from_bytes(h[8:12], order)
    return (g << 16) | e, vr, int.from_bytes(h[6:8], order)


_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB",
                  "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM",
                  "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"})


def _report_findings(report) -> list[Finding]:
    out = []
    for f in report.findings:
        if f.code == "SIG_NONE":
            continue
        if f.code == "SIG_VALID":
            f = Finding(f.code, Outcome.INFO, f"dataset {f.message}", f.detail)
        else:
            f = Finding(f.code, f.outcome, f"dataset {f.message}", f.detail)
        out.append(f)
    if report.sop_instance_status:
        covered = report.status_covered()
        out.append(Finding("STATUS_REPORTED", Outcome.INFO,
                           f"SOP Instance Status {report.sop_instance_status}"
                           f"{', covered by a valid signature' if covered else ''}",
                           {"status": report.sop_instance_status, "signed": covered}))
    return out


def signature_findings(data, trust: TrustContext | None) -> list[Finding]:
    """The dataset signatures of one Part 10 object (bytes or a seekable binary file, read
    in place when large) as findings: none for an object without signatures, ``SIG_VALID``
    as info, failures as ``mediasec.sign`` reports them, the SOP Instance Status."""
    try:
        report = check_file(data, trust=trust)
    except MediasecError as exc:
        return [Finding("SIG_NOT_CHECKED", Outcome.INDETERMINATE,
                        f"dataset signatures not checked: {exc.message}")]
    return _report_findings(report)
