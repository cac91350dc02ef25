"""Dataset signatures of the files a reader passes over (``verify``, ``extract``).

``DatasetSignatureProbe`` is fed the plaintext chunks as they stream past (header-only reads
never see (FFFA,FFFA), which follows the pixel data, so it needs the whole file); it keeps
a copy up to ``IN_MEMORY`` bytes and looks for the Digital Signatures Sequence's element
header on the way (``has_signature_sequence``: 8 known bytes, never a chance match in pixel
data). Known limit: a deflated file's data set is compressed, so its signatures are not seen.
At the end, an object with signatures is checked (``mediasec.sign``) and each signature
becomes a finding; an object without any gives none. The SOP Instance Status, and whether a
valid signature covers it, come with them (``STATUS_UNSUPPORTED`` when AO/AC is not covered).
"""

from __future__ import annotations

from mediasec.errors import MediasecError
from mediasec.pki.certs import Memo
from mediasec.policy import TrustContext
from mediasec.report import Finding, Outcome
from mediasec.sign import IN_MEMORY, check_file

__all__ = ["DatasetSignatureProbe", "has_signature_sequence", "signature_findings"]

#: the Digital Signatures Sequence's element header as it is stored: explicit VR (little and
#: big endian: tag, "SQ", two zero bytes), or implicit VR little endian (tag, any length,
#: then the first item's tag): 8 known bytes, so pixel data (hundreds of MiB of any
#: bytes) does not pass for a signature by chance
_EXPLICIT = (b"\xfa\xff\xfa\xffSQ\x00\x00", b"\xff\xfa\xff\xfaSQ\x00\x00")
_IMPLICIT_TAG = b"\xfa\xff\xfa\xff"
_BE_TAG = b"\xff\xfa\xff\xfa"
_ITEM_LE = b"\xfe\xff\x00\xe0"
_WINDOW = 11          # bytes kept from one chunk to the next (a header across the boundary)


def has_signature_sequence(buf: bytes) -> bool:
    """Whether ``buf`` holds the element header of a Digital Signatures Sequence (two
    searches for the 4-byte tag, each hit checked against the bytes after it)."""
    i = buf.find(_IMPLICIT_TAG)
    while i >= 0:
        if buf[i + 4:i + 8] == b"SQ\x00\x00" or buf[i + 8:i + 12] == _ITEM_LE:
            return True
        i = buf.find(_IMPLICIT_TAG, i + 1)
    i = buf.find(_BE_TAG)
    while i >= 0:
        if buf[i + 4:i + 8] == b"SQ\x00\x00":
            return True
        i = buf.find(_BE_TAG, i + 1)
    return False


#: the transfer syntax decides which form a file can hold (searching one 8-byte form is
#: what keeps this probe cheap beside the hashing: CPython's ``find`` is not vectorized)
_TS_IMPLICIT = b"1.2.840.10008.1.2\x00"
_TS_BIG = b"1.2.840.10008.1.2.2"
#: plaintext kept per job and process, reused file after file (no fresh pages per file)
_SCRATCH = Memo(1)


def _form(head: bytes) -> str:
    """The form a file's data set can hold, from its Transfer Syntax UID (0002,0010) as the
    File Meta Information states it; "any" when that is not found plainly."""
    i = head.find(b"\x02\x00\x10\x00UI")
    if i < 0 or i + 8 > len(head):
        return "any"
    n = int.from_bytes(head[i + 6:i + 8], "little")
    ts = head[i + 8:i + 8 + n].rstrip(b"\x00 ")
    if i + 8 + n > len(head) or not ts:
        return "any"
    if ts == _TS_IMPLICIT.rstrip(b"\x00"):
        return "implicit"
    if ts == _TS_BIG:
        return "big"
    return "explicit"


def _holds(form: str, buf: bytes) -> bool:
    if form == "explicit":
        return buf.find(_EXPLICIT[0]) >= 0
    if form == "big":
        return buf.find(_EXPLICIT[1]) >= 0
    return has_signature_sequence(buf)


class DatasetSignatureProbe:
    def __init__(self, limit: int = IN_MEMORY):
        self.limit = limit
        self.count = 0
        self.seen = False
        self._tail = b""
        self._form: str | None = None
        self._head = b""
        self._buf: bytearray = _SCRATCH.get("plaintext", bytearray)
        self._kept = 0

    def feed(self, chunk) -> None:
        n = len(chunk)
        if n == 0:
            return
        pos = self.count
        self.count += n
        if self.count <= self.limit:
            # one copy into the reused buffer (the chunk's own is reused after this call)
            self._buf[pos:pos + n] = chunk
            self._kept = self.count
            b = memoryview(self._buf)[pos:pos + n]
        else:
            self._kept = 0
            b = chunk
        if self.seen:
            return
        whole = bytes(b)
        if self._form is None:     # decided once the File Meta Information has passed
            self._head += whole[:4096 - len(self._head)]
            if len(self._head) >= 4096:
                self._form = _form(self._head)
        form = self._form or "any"
        if _holds(form, whole) or (
                self._tail and _holds(form, self._tail + whole[:_WINDOW])):
            self.seen = True
        self._tail = whole[-_WINDOW:] if n >= _WINDOW else (self._tail + whole)[-_WINDOW:]

    def findings(self, trust: TrustContext | None) -> list[Finding]:
        if not self.seen:
            return []
        if self.count > self.limit:
            return [Finding("SIG_NOT_CHECKED", Outcome.INDETERMINATE,
                            f"dataset signatures not checked: the object is larger than "
                            f"{self.limit} bytes")]
        return signature_findings(bytes(self._buf[:self._kept]), trust)


def signature_findings(data, trust: TrustContext | None) -> list[Finding]:
    """The dataset signatures of one Part 10 object (bytes or a seekable binary file, read
    in place when large) as findings: none for an object without signatures, ``SIG_VALID``
    as info, failures as ``mediasec.sign`` reports them, the SOP Instance Status."""
    try:
        report = check_file(data, trust=trust)
    except MediasecError as exc:
        return [Finding("SIG_NOT_CHECKED", Outcome.INDETERMINATE,
                        f"dataset signatures not checked: {exc.message}")]
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
