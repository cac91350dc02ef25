"""The Basic Directory IOD (PS3.3 F, PS3.10 8.6): our own encoder and a bounded decoder.

**Encoding.** ``encode_dicomdir(roots, fileset_uid=..., fileset_id=...)`` writes Explicit VR
Little Endian with defined lengths everywhere. Every record's size is independent of the
offset values it holds (the three offsets are fixed-size UL/US elements), so one pass
computes each record's body and size, a prefix sum gives every record's absolute offset
(counted from byte 0 of the file, preamble included, to the record's Item tag), and a
second pass emits the bytes: linear time, one copy. Records are laid out in pre-order
(a parent before its children, like DCMTK). (0004,1212) is 0000H, every (0004,1410) FFFFH;
(0002,0003) is the File-set UID.

**Decoding.** ``decode_dicomdir(data)`` parses within bounds: every offset must land on a
record's Item tag, a visited set stops cycles, depth is capped, records unreachable from the
root are counted as orphans. Problems are raised as ``InputError`` with a ``DIR_`` code
(a DICOMDIR that cannot be used at all) or returned as findings (one that can).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Sequence

from mediasec.dicom._elements import (ITEM, ITEM_DELIM, SEQ_DELIM, UNDEFINED, encode_element,
                                      strip_value)
from mediasec.dicom._transcode import FileReader, Truncated, read_header, walk_undefined
from mediasec.dicom.fileid import FileId, parse_file_id
from mediasec.dicom.part10 import encode_file_meta
from mediasec.dicom.scan import MEDIA_STORAGE_DIRECTORY, TS_EXPLICIT_LE, parse_file_meta
from mediasec.dicom.tags import (CONSISTENCY, FILESET_ID, FIRST_ROOT, IN_USE,
                                 LAST_ROOT, LOWER, NEXT, PRIVATE_RECORD_UID, RECORD_SEQUENCE,
                                 RECORD_TYPE, REF_FILE_ID, REF_SOP_CLASS, REF_SOP_INSTANCE,
                                 REF_TS)
from mediasec.errors import InputError

__all__ = ["DirRecord", "encode_dicomdir", "DecodedRecord", "DecodedDirectory",
           "decode_dicomdir", "FIRST_ROOT", "LAST_ROOT", "RECORD_SEQUENCE", "NEXT", "IN_USE",
           "LOWER", "RECORD_TYPE", "REF_FILE_ID", "REF_SOP_CLASS", "REF_SOP_INSTANCE",
           "REF_TS"]


_UL = struct.Struct("<I").pack
_US = struct.Struct("<H").pack
_ITEM_HDR = struct.Struct("<HHI").pack
#: item header + (0004,1400) UL + (0004,1410) US + (0004,1420) UL
_FIXED = 8 + 12 + 10 + 12


def _text(value: str, vr: str) -> bytes:
    b = value.encode("ascii")
    if len(b) % 2:
        b += b"\0" if vr == "UI" else b" "
    return b


@dataclass(frozen=True)
class DirRecord:
    """One directory record to encode. ``keys`` are ``(tag, vr, value)`` in explicit VR LE
    form (any order; sorted when encoded); the referenced-file elements come from
    ``file_id`` / ``sop_class_uid`` / ``sop_instance_uid`` / ``transfer_syntax``."""

    type: str
    keys: tuple[tuple[int, str, bytes], ...] = ()
    children: tuple["DirRecord", ...] = ()
    file_id: FileId | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    transfer_syntax: str | None = None
    private_record_uid: str | None = None

    def body(self) -> bytes:
        """Everything after the three offset elements (type, references, keys)."""
        parts = [encode_element(RECORD_TYPE, "CS", _text(self.type, "CS"))]
        if self.private_record_uid:
            parts.append(encode_element(PRIVATE_RECORD_UID, "UI",
                                        _text(self.private_record_uid, "UI")))
        if self.file_id is not None:
            parts.append(encode_element(REF_FILE_ID, "CS", _text("\\".join(self.file_id), "CS")))
            parts.append(encode_element(REF_SOP_CLASS, "UI", _text(self.sop_class_uid, "UI")))
            parts.append(encode_element(REF_SOP_INSTANCE, "UI",
                                        _text(self.sop_instance_uid, "UI")))
            parts.append(encode_element(REF_TS, "UI", _text(self.transfer_syntax, "UI")))
        for tag, vr, value in sorted(self.keys, key=lambda k: k[0]):
            parts.append(encode_element(tag, vr, value))
        return b"".join(parts)


def encode_dicomdir(roots: Sequence[DirRecord], *, fileset_uid: str,
                    fileset_id: str = "") -> bytes:
    """The complete DICOMDIR file (preamble, meta, Basic Directory data set) as bytes."""
    if len(fileset_id) > 16:
        raise InputError("File-set ID is longer than 16 characters", code="FILESET_ID_INVALID")
    # pass 1: pre-order list with sibling/child links, and every record's body
    order: list[DirRecord] = []
    next_of: list[int] = []
    lower_of: list[int] = []

    def visit(siblings: Sequence[DirRecord]) -> int:
        first = len(order)
        prev = -1
        for rec in siblings:
            slot = len(order)
            order.append(rec)
            next_of.append(-1)
            lower_of.append(-1)
            if prev >= 0:
                next_of[prev] = slot
            prev = slot
            if rec.children:
                lower_of[slot] = visit(rec.children)
        return first if siblings else -1

    visit(roots)  # depth is bounded by the hierarchy (PATIENT/STUDY/SERIES/leaf)
    bodies = [r.body() for r in order]
    meta = encode_file_meta(MEDIA_STORAGE_DIRECTORY, fileset_uid, TS_EXPLICIT_LE)
    head_len = (8 + len(_text(fileset_id, "CS"))) + 12 + 12 + 10 + 12
    offsets: list[int] = []
    pos = len(meta) + head_len
    for b in bodies:
        offsets.append(pos)
        pos += _FIXED + len(b)
    seq_len = pos - (len(meta) + head_len)
    root_last = -1
    if roots:
        root_last = 0
        while next_of[root_last] >= 0:
            root_last = next_of[root_last]
    out = [meta,
           encode_element(FILESET_ID, "CS", _text(fileset_id, "CS")),
           encode_element(FIRST_ROOT, "UL", _UL(offsets[0] if roots else 0)),
           encode_element(LAST_ROOT, "UL", _UL(offsets[root_last] if roots else 0)),
           encode_element(CONSISTENCY, "US", _US(0)),
           struct.pack("<HH2s2xI", 0x0004, 0x1220, b"SQ", seq_len)]
    for i, b in enumerate(bodies):
        nxt, low = next_of[i], lower_of[i]
        out.append(_ITEM_HDR(0xFFFE, 0xE000, _FIXED - 8 + len(b)))
        out.append(encode_element(NEXT, "UL", _UL(offsets[nxt] if nxt >= 0 else 0)))
        out.append(encode_element(IN_USE, "US", _US(0xFFFF)))
        out.append(encode_element(LOWER, "UL", _UL(offsets[low] if low >= 0 else 0)))
        out.append(b)
    data = b"".join(out)
    assert len(data) == pos, (len(data), pos)
    return data


# ---- decoding -----------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodedRecord:
    offset: int
    type: str
    elements: dict = field(repr=False)      # tag -> (vr, raw value)
    children: tuple["DecodedRecord", ...] = ()

    def text(self, tag: int) -> str | None:
        hit = self.elements.get(tag)
        if hit is None or hit[0] == "SQ":
            return None
        return strip_value(hit[0], hit[1])

    @property
    def file_id(self) -> FileId | None:
        v = self.text(REF_FILE_ID)
        return parse_file_id(v) if v else None

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass(frozen=True)
class DecodedDirectory:
    fileset_uid: str
    fileset_id: str
    roots: tuple[DecodedRecord, ...]
    record_count: int
    #: (code, message) of problems that did not stop decoding (orphans, inactive records)
    findings: tuple[tuple[str, str], ...] = ()

    def walk(self):
        for r in self.roots:
            yield from r.walk()


def _err(msg: str, code: str, path: str | None) -> InputError:
    return InputError(msg, path=path, code=code)


def decode_dicomdir(data: bytes, *, path: str | None = None, max_depth: int = 16,
                    lenient: bool = False) -> DecodedDirectory:
    """Parse a DICOMDIR held in memory, within bounds (see the module docstring).

    ``lenient=True`` (validators): a dangling offset (``DIR_OFFSET``), a record reached
    twice (``DIR_CYCLE``) or a chain deeper than ``max_depth`` (``DIR_TOO_DEEP``) becomes a
    finding and that chain stops there, instead of the whole DICOMDIR being refused.
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        raise _err("DICOMDIR is not a DICOM Part 10 file", "DIR_META", path)
    try:
        meta, pos = parse_file_meta(data, path)
    except InputError as exc:
        raise _err(f"DICOMDIR meta information is damaged: {exc.message}", "DIR_META", path)
    sop_class = strip_value("UI", meta.get(0x00020002, b""))
    ts = strip_value("UI", meta.get(0x00020010, b""))
    if sop_class != MEDIA_STORAGE_DIRECTORY or ts != TS_EXPLICIT_LE:
        raise _err(f"not a Basic Directory in Explicit VR Little Endian (SOP class "
                   f"{sop_class or '-'}, transfer syntax {ts or '-'})", "DIR_META", path)
    fileset_uid = strip_value("UI", meta.get(0x00020003, b""))
    r = FileReader(io.BytesIO(data), len(data), 0, data)
    r.off = pos
    top: dict[int, tuple[str, bytes]] = {}
    items: dict[int, dict] = {}
    order: list[int] = []
    try:
        while True:
            h = read_header(r, False)
            if h is None:
                break
            tag, vr, length = h
            if tag == RECORD_SEQUENCE:
                _read_records(r, length, items, order, path)
                continue
            if length == UNDEFINED:
                walk_undefined(r, vr == "UN", True, 1)
                continue
            top[tag] = (vr or "UN", r.take(length))
    except Truncated as exc:
        raise _err(f"DICOMDIR is truncated: {exc.message}", "DIR_TRUNCATED", path)
    except InputError as exc:
        raise _err(f"DICOMDIR is malformed: {exc.message}", "DIR_MALFORMED", path)

    def ul(tag: int) -> int | None:
        hit = top.get(tag)
        if hit is None or len(hit[1]) != 4:
            return None
        return struct.unpack("<I", hit[1])[0]

    first = ul(FIRST_ROOT)
    if first is None:
        raise _err("DICOMDIR has no offset of the first root record", "DIR_KEY_MISSING", path)
    findings: list[tuple[str, str]] = []
    consistency = top.get(CONSISTENCY)
    if consistency and consistency[1] == b"\xff\xff":
        findings.append(("DIR_FLAGS", "consistency flag is FFFFH"))
    visited: set[int] = set()

    def problem(msg: str, code: str) -> None:
        if not lenient:
            raise _err(msg, code, path)
        findings.append((code, msg))

    def chain(offset: int, depth: int) -> tuple[DecodedRecord, ...]:
        if depth > max_depth:
            problem(f"directory deeper than {max_depth} levels", "DIR_TOO_DEEP")
            return ()
        out = []
        while offset:
            if offset not in items:
                problem(f"offset {offset} does not point at a directory record", "DIR_OFFSET")
                break
            if offset in visited:
                problem(f"directory record at offset {offset} is reached twice", "DIR_CYCLE")
                break
            visited.add(offset)
            el = items[offset]
            nxt = _ul_of(el, NEXT)
            low = _ul_of(el, LOWER)
            in_use = el.get(IN_USE)
            rtype = strip_value("CS", el.get(RECORD_TYPE, ("CS", b""))[1])
            children = chain(low, depth + 1) if low else ()
            if in_use is not None and in_use[1] == b"\x00\x00":
                findings.append(("DIR_FLAGS", f"record at offset {offset} is marked inactive"))
            else:
                out.append(DecodedRecord(offset=offset, type=rtype, elements=el,
                                         children=children))
            offset = nxt
        return tuple(out)

    roots = chain(first, 0)
    orphans = len(items) - len(visited)
    if orphans:
        findings.append(("DIR_ORPHAN", f"{orphans} records are not reachable from the root"))
    fsid = top.get(FILESET_ID)
    return DecodedDirectory(fileset_uid=fileset_uid,
                            fileset_id=strip_value("CS", fsid[1]) if fsid else "",
                            roots=roots, record_count=len(items), findings=tuple(findings))


def _ul_of(el: dict, tag: int) -> int:
    hit = el.get(tag)
    if hit is None or len(hit[1]) != 4:
        return 0
    return struct.unpack("<I", hit[1])[0]


def _read_records(r, length: int, items: dict, order: list, path) -> None:
    end = None if length == UNDEFINED else r.tell() + length
    while end is None or r.tell() < end:
        start = r.tell()
        h = read_header(r, True)
        if h is None:
            raise Truncated("file ends inside the record sequence")
        tag, _, ilen = h
        if tag == SEQ_DELIM:
            return
        if tag != ITEM:
            raise InputError(f"expected a directory record at offset {start}",
                             code="DIR_MALFORMED")
        iend = None if ilen == UNDEFINED else r.tell() + ilen
        el: dict[int, tuple[str, bytes]] = {}
        while iend is None or r.tell() < iend:
            h = read_header(r, False)
            if h is None:
                raise Truncated("file ends inside a directory record")
            etag, vr, elen = h
            if etag == ITEM_DELIM:
                break
            if elen == UNDEFINED:
                keep: list[bytes] = []
                walk_undefined(r, vr == "UN", True, 1, keep)
                el[etag] = (vr or "UN", b"".join(keep))
            else:
                el[etag] = (vr or "UN", r.take(elen))
        items[start] = el
        order.append(start)
