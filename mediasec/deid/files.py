"""Part 10 files in and out: the de-identify and re-identify steps a front end calls.

``DeidJob`` holds what is fixed for a whole job (profile, keyed mapper, escrow
recipients, policy); ``DeidJob.deidentify(src, dst)`` reads one Part 10 file from a binary
stream and writes the de-identified file (new File Meta, blank preamble, originals in the
Encrypted Attributes Sequence) to another. ``reidentify(src, dst, decrypters=...)`` does
the reverse. Both read the whole data set into memory (one file at a time).
"""

from __future__ import annotations

import contextlib
import secrets
import struct
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import dcmwrite, write_dataset

from mediasec.deid import profile as P
from mediasec.deid.engine import MARK_TAGS, TAG_IDENTITY_REMOVED, deidentify_dataset
from mediasec.deid.escrow import TAG_ENCRYPTED_ATTRS, open_escrow, seal_originals
from mediasec.deid.mapping import Mapper
from mediasec.dicom._seam import translate_pydicom
from mediasec.dicom.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from mediasec.dicom.tags import PIXEL_BULK, PIXEL_DATA
from mediasec.errors import InputError, NotDicomError, UsageError
from mediasec.policy import AlgorithmPolicy
from mediasec.report import Finding, Outcome

__all__ = ["DeidJob", "DeidFileResult", "ReidFileResult", "reidentify", "reidentify_dataset",
           "prepare_reidentify",
           "read_part10", "Part10", "Rewritten", "check_burned_in"]

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@contextlib.contextmanager
def _quiet():
    """pydicom's warnings (odd values in the input or in a damaged escrow) stay out of the
    user's terminal; what matters is raised or reported as findings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclass
class DeidFileResult:
    sop_instance_uid: str          # the new one
    sop_class_uid: str
    removed: int
    replaced: int
    escrowed: bool
    findings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"sop_instance_uid": self.sop_instance_uid, "sop_class_uid": self.sop_class_uid,
                "removed": self.removed, "replaced": self.replaced, "escrowed": self.escrowed,
                "findings": [f.to_dict() for f in self.findings]}


@dataclass
class ReidFileResult:
    sop_instance_uid: str          # the restored one
    restored: int
    recipient: dict
    findings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"sop_instance_uid": self.sop_instance_uid, "restored": self.restored,
                "recipient": self.recipient,
                "findings": [f.to_dict() for f in self.findings]}


_PIXEL_TAGS = PIXEL_BULK
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_DEFLATED = "1.2.840.10008.1.2.1.99"
_CHUNK = 1 << 20


@dataclass
class Part10:
    """A Part 10 file read for rewriting: every element but the pixel data in ``dataset``;
    the pixel data element stays in the source, at ``pixel_span`` (start, end), and is
    copied raw on writing, so memory does not grow with the pixel data."""

    dataset: Dataset
    src: BinaryIO
    pixel_span: tuple[int, int] | None = None
    pixel_tag: int = PIXEL_DATA


def read_part10(src: BinaryIO) -> Part10:
    """Read a Part 10 file from a seekable stream (a deflated one wholly, others without
    their pixel data, whose bytes are left where they are)."""
    head = src.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        raise NotDicomError("not a DICOM Part 10 file (no DICM at byte 128)")
    src.seek(0)
    with translate_pydicom():
        ds = dcmread(src, stop_before_pixels=True)
        ts = ds.file_meta.TransferSyntaxUID
        out = Part10(ds, src)
        if ts == _DEFLATED:
            src.seek(0)
            out = Part10(dcmread(src), src)
        else:
            pos = src.tell()
            found = _pixel_span(src, pos, ts.is_implicit_VR, ts.is_little_endian)
            if found is not None:
                tag, end = found
                out.pixel_span, out.pixel_tag = (pos, end), tag
                src.seek(end)
                trailing = read_dataset(src, ts.is_implicit_VR, ts.is_little_endian,
                                        parent_encoding=ds._character_set)
                for elem in trailing.values():
                    ds[elem.tag] = elem
        for _ in out.dataset.iterall():   # decode everything now: damage is reported here
            pass
    return out


def _pixel_span(src: BinaryIO, pos: int, implicit: bool, little: bool):
    """(tag, end offset) of the pixel data element starting at ``pos``, or None at the end."""
    e = "<" if little else ">"
    src.seek(pos)
    hdr = src.read(8)
    if not hdr:
        return None
    size = src.seek(0, 2)
    if len(hdr) < 8:
        raise InputError("the file ends inside an element header", code="DICOM_UNREADABLE")
    group, elem = struct.unpack(e + "HH", hdr[:4])
    tag = group << 16 | elem
    if tag not in _PIXEL_TAGS:
        raise InputError(f"unexpected element ({group:04X},{elem:04X}) where the pixel data "
                         "was expected", code="DICOM_UNREADABLE")
    if implicit:
        length, body = struct.unpack(e + "L", hdr[4:8])[0], pos + 8
    elif hdr[4:6] in _LONG_VRS:
        src.seek(pos + 8)
        length, body = struct.unpack(e + "L", src.read(4))[0], pos + 12
    else:
        length, body = struct.unpack(e + "H", hdr[6:8])[0], pos + 8
    if length != 0xFFFFFFFF:
        if body + length > size:
            raise InputError("the pixel data runs past the end of the file",
                             code="DICOM_UNREADABLE")
        return tag, body + length
    p = body       # encapsulated: items up to the sequence delimiter, skipped unread
    while True:
        src.seek(p)
        ih = src.read(8)
        if len(ih) < 8:
            raise InputError("the encapsulated pixel data is cut short",
                             code="DICOM_UNREADABLE")
        g, el, n = struct.unpack(e + "HHL", ih)
        if (g, el) == (0xFFFE, 0xE0DD):
            return tag, p + 8
        if (g, el) != (0xFFFE, 0xE000) or n == 0xFFFFFFFF or p + 8 + n > size:
            raise InputError("malformed encapsulated pixel data", code="DICOM_UNREADABLE")
        p += 8 + n


def check_burned_in(ds: Dataset) -> None:
    """Refuse what Basic cannot make clean: burned-in text, free-text documents, video."""
    sop_class = str(ds.get("SOPClassUID", ""))
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    always, unless_no = P.burned_in_risk()
    why = None
    if flag == "YES":
        why = "it is flagged Burned In Annotation YES"
    elif sop_class in always:
        why = f"it is {always[sop_class]}, which may carry identifying pixels or text"
    elif sop_class in unless_no and flag != "NO":
        why = (f"it is {unless_no[sop_class]} without Burned In Annotation NO, so its "
               "pixels may carry identifying text")
    if why:
        raise InputError(f"refused: {why}; attribute de-identification cannot clean it "
                         "(give --accept-burned-in to take it as it is)",
                         code="DEID_BURNED_IN")


def _file_meta(ds: Dataset, transfer_syntax: str) -> FileMetaDataset:
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.TransferSyntaxUID = transfer_syntax
    fm.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    fm.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return fm


@dataclass
class Rewritten:
    """A rewritten Part 10 file of exactly ``size`` bytes: ``head`` (preamble, File Meta
    and the elements before the pixel data), the pixel data copied raw from the source,
    then ``tail``. ``chunks()`` streams it; a build stage can plan with ``size``."""

    head: bytes
    source: Part10
    tail: bytes

    @property
    def size(self) -> int:
        span = self.source.pixel_span
        return len(self.head) + (span[1] - span[0] if span else 0) + len(self.tail)

    def chunks(self, piece: int = _CHUNK) -> Iterator[memoryview]:
        """The file's bytes; each view is valid until the next step."""
        yield memoryview(self.head)
        span = self.source.pixel_span
        if span is not None:
            start, end = span
            src = self.source.src
            src.seek(start)
            buf = bytearray(min(piece, max(end - start, 1)))
            left = end - start
            while left:
                n = src.readinto(memoryview(buf)[:min(len(buf), left)])
                if not n:
                    raise InputError("the file shrank while it was being read",
                                     code="INPUT_CHANGED")
                yield memoryview(buf)[:n]
                left -= n
        if self.tail:
            yield memoryview(self.tail)

    def write_to(self, dst: BinaryIO) -> int:
        for mv in self.chunks():
            while mv:
                n = dst.write(mv)
                mv = mv[n:]
        return self.size


def _encode(ds: Dataset, source: Part10) -> Rewritten:
    """``ds`` as a Part 10 file (new File Meta, blank preamble) around the source's pixels."""
    src_ds = source.dataset
    ts = src_ds.file_meta.TransferSyntaxUID
    head, tail = ds, None
    if source.pixel_span is not None:
        head, tail = Dataset(), Dataset()
        for elem in ds.values():
            (head if elem.tag < source.pixel_tag else tail)[elem.tag] = elem
    head.file_meta = _file_meta(ds, str(ts))
    head.preamble = b"\x00" * 128        # PS3.10 7.5: nothing executable rides along
    enc = src_ds.original_encoding
    head.set_original_encoding(enc[0], enc[1], src_ds.original_character_set)
    with translate_pydicom():
        hb = DicomBytesIO()
        dcmwrite(hb, head, enforce_file_format=True)
        tb = b""
        if tail is not None and len(tail):
            fp = DicomBytesIO()
            fp.is_little_endian = ts.is_little_endian
            fp.is_implicit_VR = ts.is_implicit_VR
            write_dataset(fp, tail, parent_encoding=src_ds._character_set)
            tb = fp.getvalue()
    return Rewritten(hb.getvalue(), source, tb)


class DeidJob:
    """What stays fixed over a whole de-identification job.

    ``recipients``: ``mediasec.cms.keys`` recipients for the escrow (RSA certificates
    and/or a password); an empty list needs ``escrow=False`` (``--no-escrow``).
    ``mapping_key``: the HMAC key for UIDs, pseudonyms and date shifts (None: random, so
    consistent within the job only).
    """

    def __init__(self, *, options=(), recipients=(), escrow: bool = True,
                 cipher: str = "aes-256", policy: AlgorithmPolicy = AlgorithmPolicy(),
                 mapping_key: bytes | None = None, accept_burned_in: bool = False,
                 rng: Callable[[int], bytes] = secrets.token_bytes):
        self.profile = P.Profile(options)
        self.recipients = list(recipients)
        self.escrow = escrow
        if escrow and not self.recipients:
            raise UsageError("the originals need an escrow recipient: give --escrow-to CERT "
                             "and/or --escrow-password-env VAR, or --no-escrow to discard "
                             "them", code="USAGE_NO_ESCROW")
        if not escrow and self.recipients:
            raise UsageError("--no-escrow and escrow recipients exclude each other",
                             code="USAGE")
        policy.check_cipher(cipher)
        self.cipher = cipher
        self.policy = policy
        self.mapper = Mapper(mapping_key)
        self.accept_burned_in = accept_burned_in
        self.rng = rng
        self._instances: set = set()
        self._referenced: set = set()

    def dangling_references(self) -> int:
        """How many distinct referenced SOP Instances (after mapping) were not among the
        instances de-identified by this job so far (they resolve only if de-identified
        later with the same mapping key)."""
        return len(self._referenced - self._instances)

    def deidentify_dataset(self, ds: Dataset) -> tuple[Dataset, DeidFileResult]:
        """The de-identified data set (no File Meta) and what was done: the build stage."""
        if str(ds.get("SOPClassUID", "")) == _DICOMDIR_CLASS or (
                hasattr(ds, "file_meta") and
                str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS):
            raise InputError("a DICOMDIR is not de-identified: it is rebuilt from the "
                             "de-identified files", code="DEID_DICOMDIR")
        findings = []
        if not self.accept_burned_in:
            check_burned_in(ds)
        elif str(ds.get("BurnedInAnnotation", "")).upper() != "NO":
            findings.append(Finding("DEID_BURNED_IN_ACCEPTED", Outcome.WARNING,
                                    "pixel data not checked for burned-in text "
                                    "(--accept-burned-in)"))
        res = deidentify_dataset(ds, self.profile, self.mapper)
        out = res.dataset
        if self.escrow:
            out.add(seal_originals(res.originals, recipients=self.recipients,
                                   cipher=self.cipher, policy=self.policy, rng=self.rng))
        findings += res.findings
        self._instances.add(str(out.get("SOPInstanceUID", "")))
        _collect_refs(out, self._referenced)
        return out, DeidFileResult(str(out.get("SOPInstanceUID", "")),
                                   str(out.get("SOPClassUID", "")), res.removed,
                                   res.replaced, self.escrow, findings)

    def prepare(self, src: BinaryIO) -> tuple[Rewritten, DeidFileResult]:
        """De-identify the header of the Part 10 file in ``src`` (seekable): the output,
        of known size, streams on demand (``Rewritten.chunks``), its pixel data read from
        ``src`` then. Memory does not grow with the pixel data (except in deflated files)."""
        with _quiet():
            source = read_part10(src)
            out, result = self.deidentify_dataset(source.dataset)
            return _encode(out, source), result

    def deidentify(self, src: BinaryIO, dst: BinaryIO) -> DeidFileResult:
        """One Part 10 file from ``src`` (seekable) to ``dst``."""
        rewritten, result = self.prepare(src)
        rewritten.write_to(dst)
        return result


def _collect_refs(ds: Dataset, into: set, depth: int = 0) -> None:
    if depth > 32:
        return
    for elem in ds.values():
        if elem.tag == 0x00081155 and elem.value:
            into.add(str(elem.value))
        elif elem.VR == "SQ" and elem.tag != 0x04000500:
            for item in elem.value or ():
                _collect_refs(item, into, depth + 1)


def reidentify_dataset(ds: Dataset, decrypters: list) -> tuple[Dataset, ReidFileResult]:
    opened = open_escrow(ds, decrypters)
    out = Dataset()
    for elem in ds:
        tag = int(elem.tag)
        if tag == TAG_ENCRYPTED_ATTRS or tag in MARK_TAGS:
            continue
        out.add(elem)
    for elem in opened.originals:
        out.add(elem)
    if TAG_IDENTITY_REMOVED not in opened.originals:
        out.add_new(TAG_IDENTITY_REMOVED, "CS", "NO")   # PS3.15 E.1.2
    findings = [Finding(code, Outcome.WARNING, msg) for code, msg in opened.legacy]
    return out, ReidFileResult(str(out.get("SOPInstanceUID", "")), len(opened.originals),
                               opened.recipient, findings)


def prepare_reidentify(src: BinaryIO, *, decrypters: list) -> tuple[Rewritten, ReidFileResult]:
    """Restore the originals of one de-identified Part 10 file (seekable ``src``): the
    output of known size, streamed on demand."""
    with _quiet():
        source = read_part10(src)
        out, result = reidentify_dataset(source.dataset, decrypters)
        return _encode(out, source), result


def reidentify(src: BinaryIO, dst: BinaryIO, *, decrypters: list) -> ReidFileResult:
    """Restore the originals of one de-identified Part 10 file."""
    rewritten, result = prepare_reidentify(src, decrypters=decrypters)
    rewritten.write_to(dst)
    return result

