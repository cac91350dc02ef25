"""DICOM Part 10 over streams: File Meta Information, and lossless transfer syntax
conversion to Explicit VR Little Endian, streamed.

* ``encode_file_meta`` writes preamble, ``DICM`` and group 0002 (PS3.10 7.1).
* ``converted_size(scanned)`` is the exact size of the converted file, known from the
  scan alone; ``iter_converted(fp, scanned)`` yields exactly that many bytes in chunks:
  implicit VR LE is transcoded element by element (``_transcode``), Pixel Data and any
  other large value copied through in ``chunk``-sized pieces; deflated explicit LE is
  inflated on the fly. Nothing holds a whole image in memory.

PS3.11 (D.3.1, H.3.1, J.3.1 ...) lets the general-purpose profiles carry only the listed
transfer syntaxes; Explicit VR LE is in every one, so implicit and deflated sources are
converted to it, which loses nothing.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

from mediasec.dicom._elements import encode_element
from mediasec.dicom._transcode import FileReader, InflateReader, Truncated, iter_implicit
from mediasec.dicom.scan import (TS_DEFLATED_LE, TS_EXPLICIT_LE, TS_IMPLICIT_LE, ScannedFile)
from mediasec.errors import InputError, InternalError

__all__ = ["IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION_NAME", "CONVERTIBLE",
           "encode_file_meta", "converted_size", "iter_converted", "CHUNK"]

#: mediasec's Implementation Class UID (a UUID-derived 2.25 UID, PS3.5 B.2)
IMPLEMENTATION_CLASS_UID = "2.25.233604559175994743598252832226030234293"
IMPLEMENTATION_VERSION_NAME = "MEDIASEC_0_1"
#: source transfer syntaxes we convert to Explicit VR Little Endian losslessly
CONVERTIBLE = frozenset({TS_IMPLICIT_LE, TS_DEFLATED_LE})
CHUNK = 1 << 20


def _ui(uid: str) -> bytes:
    b = uid.encode("ascii")
    return b + b"\0" if len(b) % 2 else b


def encode_file_meta(sop_class_uid: str, sop_instance_uid: str,
                     transfer_syntax: str = TS_EXPLICIT_LE) -> bytes:
    """Preamble (128 zero bytes), ``DICM`` and the File Meta Information group."""
    body = b"".join((
        encode_element(0x00020001, "OB", b"\x00\x01"),
        encode_element(0x00020002, "UI", _ui(sop_class_uid)),
        encode_element(0x00020003, "UI", _ui(sop_instance_uid)),
        encode_element(0x00020010, "UI", _ui(transfer_syntax)),
        encode_element(0x00020012, "UI", _ui(IMPLEMENTATION_CLASS_UID)),
        encode_element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME.encode()),
    ))
    group_length = encode_element(0x00020000, "UL", struct.pack("<I", len(body)))
    return b"\0" * 128 + b"DICM" + group_length + body


def _meta_for(scanned: ScannedFile) -> bytes:
    return encode_file_meta(scanned.media_sop_class_uid or scanned.sop_class_uid,
                            scanned.media_sop_instance_uid or scanned.sop_instance_uid)


def converted_size(scanned: ScannedFile) -> int:
    """Exact size of ``scanned`` once converted to Explicit VR LE."""
    if scanned.transfer_syntax not in CONVERTIBLE or scanned.explicit_dataset_length is None:
        raise InternalError(f"{scanned.source}: no conversion planned for "
                            f"{scanned.transfer_syntax}")
    return len(_meta_for(scanned)) + scanned.explicit_dataset_length


def iter_converted(fp: BinaryIO, scanned: ScannedFile, *, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield the converted file (``converted_size(scanned)`` bytes) in chunks."""
    yield _meta_for(scanned)
    ts = scanned.transfer_syntax
    try:
        if ts == TS_DEFLATED_LE:
            r = InflateReader(fp, scanned.dataset_offset)
            while True:
                if not r.fill(1):
                    return
                data = r.buf[r.off:r.off + chunk]
                r.off += len(data)
                yield data
        elif ts == TS_IMPLICIT_LE:
            fp.seek(0, 2)
            size = fp.tell()
            r = FileReader(fp, size, scanned.dataset_offset)
            pending: list[bytes] = []
            pending_len = 0
            for _src, _tag, _vr, hdr, value, length in iter_implicit(r, big=chunk):
                if value is None:
                    pending.append(hdr)
                    yield b"".join(pending)
                    pending, pending_len = [], 0
                    yield from r.copy_to(length, chunk)
                    continue
                if not hdr:
                    continue
                pending.append(hdr)
                pending.append(value)
                pending_len += len(hdr) + len(value)
                if pending_len >= chunk:
                    yield b"".join(pending)
                    pending, pending_len = [], 0
            if pending:
                yield b"".join(pending)
        else:
            raise InternalError(f"cannot convert from {ts}")
    except Truncated as exc:
        raise exc.with_path(scanned.source)
    except InputError as exc:
        raise exc.with_path(scanned.source)
