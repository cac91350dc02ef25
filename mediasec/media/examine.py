"""Validation step 2: one read of a listed file -> small ``FileFacts``. The stored bytes
are hashed on the way through; a Secure DICOM File is decrypted and checked by
``open_secure_file`` while the first ``HEADER_BOUND`` bytes of plaintext are kept for the
header parse (see ``mediasec.media.validate``). Plaintext goes nowhere unless the caller
passed a sink (``extract``).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from mediasec.cms.envelope import looks_enveloped
from mediasec.cms.secure import inspect_secure_file, open_secure_file
from mediasec.dicom.scan import scan_file
from mediasec.dicom.tags import (INSTANCE_NUMBER, MODALITY, PATIENT_ID, PATIENT_NAME,
                                 SERIES_INSTANCE_UID as SERIES_UID, SERIES_NUMBER, STUDY_DATE,
                                 STUDY_DESCRIPTION, STUDY_ID, STUDY_INSTANCE_UID as STUDY_UID)
from mediasec.errors import (InputError, MediasecError, NoRecipientError, NotDicomError,
                             WrongPasswordError)
from mediasec.media.dsig_check import DatasetSignatureProbe
from mediasec.policy import TrustContext
from mediasec.report import Finding, Outcome

__all__ = ["HEADER_BOUND", "HeaderFacts", "FileFacts", "ExamineTask", "examine_file"]

#: plaintext kept per file for the header parse (see the module docstring)
HEADER_BOUND = 64 * 1024

#: the data-set elements a header parse extracts (all before (0020,0014))
HEADER_TAGS = frozenset({PATIENT_ID, PATIENT_NAME, STUDY_UID, SERIES_UID, STUDY_DATE,
                         STUDY_DESCRIPTION, STUDY_ID, MODALITY, SERIES_NUMBER,
                         INSTANCE_NUMBER})

_KEY_NAMES = {PATIENT_ID: "patient_id", PATIENT_NAME: "patient_name", STUDY_UID: "study_uid",
              SERIES_UID: "series_uid", STUDY_DATE: "study_date",
              STUDY_DESCRIPTION: "study_description", STUDY_ID: "study_id",
              MODALITY: "modality", SERIES_NUMBER: "series_number",
              INSTANCE_NUMBER: "instance_number"}


# -- what one read of a file tells ----------------------------------------------------------

@dataclass(frozen=True)
class HeaderFacts:
    """File Meta Information and the record keys of one (plaintext) DICOM file."""

    media_sop_class_uid: str
    media_sop_instance_uid: str
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    keys: dict = field(default_factory=dict)   # _KEY_NAMES values -> text

    def key(self, name: str) -> str | None:
        return self.keys.get(name)


@dataclass(frozen=True)
class FileFacts:
    """What one read of one stored file found (small, picklable, no plaintext)."""

    path: str
    size: int
    kind: str                                  # secure | plain | other | unreadable
    sha256: str | None = None
    findings: tuple[Finding, ...] = ()
    header: HeaderFacts | None = None
    envelope: dict | None = None               # cipher, recipients, matched recipient
    signers: tuple[str, ...] = ()              # signer subjects
    decrypted: bool = False                    # the whole plaintext passed (sink complete)
    magic: str | None = None                   # executable magic of a non-DICOM file
    content_length: int | None = None          # plaintext length (secure) / size (plain)


@dataclass(frozen=True)
class ExamineTask:
    path: str
    size: int
    handle: Any


class _Tee:
    """Iterate a file's chunks once: SHA-256 of every byte, and the first bytes kept."""

    def __init__(self, chunks: Iterable[bytes], *, keep: int = 0, hashing: bool = True):
        self._it = iter(chunks)
        self._replay: list[bytes] = []
        self.sha = hashlib.sha256() if hashing else None
        self.count = 0
        self.keep = keep
        self.head = bytearray()

    def prime(self, n: int) -> bytes:
        """The first ``n`` bytes (or fewer at the end), without consuming them.

        The first chunk is held as the reader's view; when more chunks are needed the held
        ones are copied *before* the next is requested (a chunk is valid only until then).
        """
        have = sum(len(c) for c in self._replay)
        while have < n:
            if self._replay:
                self._replay = [bytes(c) for c in self._replay]
            nxt = next(self._it, None)
            if nxt is None:
                break
            self._replay.append(nxt)
            have += len(nxt)
        if len(self._replay) == 1:
            return bytes(self._replay[0][:n])
        return b"".join(bytes(c) for c in self._replay)[:n]

    def __iter__(self):
        return self

    def __next__(self):
        if self._replay:
            chunk = self._replay.pop(0)
        else:
            chunk = next(self._it)
        if self.sha is not None:
            self.sha.update(chunk)
        self.count += len(chunk)
        if len(self.head) < self.keep:
            self.head += chunk[:self.keep - len(self.head)]
        return chunk

    def drain(self) -> None:
        for _ in self:
            pass


class _SinkFailed(Exception):
    """The caller's sink could not take the plaintext (disk full at the output...): that is
    the caller's environment failing, never a fault of the file being read. Carried past
    every parser's error handling and re-raised as the sink's own error."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def _guarded(sink):
    def write(mv) -> None:
        try:
            sink(mv)
        except OSError as exc:  # EnvironmentFailure included
            raise _SinkFailed(exc) from exc
    return write


class _HeaderFull(Exception):
    """Raised from a sink to stop reading once the header is captured (listing only)."""


def _exec_magic(first: bytes) -> str | None:
    if first[:2] == b"MZ":
        return "PE/DOS executable (MZ)"
    if first[:4] == b"\x7fELF":
        return "ELF executable"
    if first[:4] in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                     b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe"):
        return "Mach-O executable"
    if first[:2] == b"#!":
        return "script (#!)"
    return None


def _parse_header(head: bytes, content_length: int, path: str
                  ) -> tuple[HeaderFacts | None, list[Finding]]:
    try:
        s = scan_file(io.BytesIO(head), content_length, source=path, tags=HEADER_TAGS,
                      need_explicit_length=False)
    except NotDicomError as exc:
        return None, [Finding("PAYLOAD_NOT_DICOM", Outcome.FAILED, exc.message)]
    except InputError as exc:
        if content_length > len(head):
            return None, [Finding("DICOM_HEADER_TOO_LONG", Outcome.INDETERMINATE,
                                  f"the DICOM header does not end within the first "
                                  f"{HEADER_BOUND // 1024} KiB; record keys not checked")]
        return None, [Finding(exc.code if exc.code.startswith("DICOM_") else "DICOM_DAMAGED",
                              Outcome.FAILED, f"damaged DICOM header: {exc.message}")]
    keys = {}
    for tag, name in _KEY_NAMES.items():
        v = s.text(tag)
        if v is not None:
            keys[name] = v
    return HeaderFacts(s.media_sop_class_uid, s.media_sop_instance_uid, s.transfer_syntax,
                       s.sop_class_uid, s.sop_instance_uid, keys), []


def _envelope_summary(env: dict) -> dict:
    return {"cipher": env.get("cipher"), "framing": env.get("framing"),
            "content_type": env.get("content_type"),
            "recipients": env.get("recipients", []),
            "matched_recipient": env.get("matched_recipient")}


def examine_file(chunks: Iterable[bytes], *, path: str, size: int, decrypters=(),
                 trust: TrustContext | None = None,
                 sink: Callable[[memoryview], None] | None = None,
                 header_only: bool = False) -> FileFacts:
    """Read one stored file once and say what it is (see the module docstring).

    ``sink`` receives the plaintext of a DICOM file (decrypted, or the plain bytes) as it
    passes; use it only if ``decrypted`` is true and the judged findings allow it.
    ``header_only`` (listing): stop once the header is captured; no hash, no checks.
    """
    tee = _Tee(chunks, keep=HEADER_BOUND, hashing=not header_only)
    findings: list[Finding] = []
    if sink is not None:
        sink = _guarded(sink)
    try:
        first = tee.prime(160)
        if looks_enveloped(first[:16]):
            tee.keep = 0   # the header comes from the plaintext, not the stored bytes
            return _examine_secure(tee, path, size, list(decrypters), trust, sink,
                                   header_only)
        if len(first) >= 132 and first[128:132] == b"DICM":
            probe = None if header_only else DatasetSignatureProbe()
            for chunk in tee:
                if sink is not None:
                    sink(memoryview(chunk))
                if probe is not None:
                    probe.feed(chunk)
                if header_only and tee.count >= HEADER_BOUND:
                    break
            header, hf = _parse_header(bytes(tee.head), tee.count if not header_only
                                       else size, path)
            if probe is not None and header is not None:
                hf = [*hf, *probe.findings(trust)]
            return FileFacts(path, size, "plain", _hex(tee), tuple(hf), header,
                             decrypted=not header_only, content_length=size)
        if not header_only:
            tee.drain()
        return FileFacts(path, size, "other", _hex(tee), (), magic=_exec_magic(first))
    except _SinkFailed as exc:
        raise exc.error from None
    except (OSError, MediasecError) as exc:
        if isinstance(exc, MediasecError) and not exc.code.startswith("ENV"):
            raise
        msg = getattr(exc, "strerror", None) or getattr(exc, "message", None) or str(exc)
        findings.append(Finding("FILE_UNREADABLE", Outcome.FAILED,
                                f"the file could not be read from the medium: {msg}"))
        return FileFacts(path, size, "unreadable", None, tuple(findings))


def _hex(tee: _Tee) -> str | None:
    return tee.sha.hexdigest() if tee.sha is not None else None


def _examine_secure(tee: _Tee, path, size, decrypters, trust, sink, header_only) -> FileFacts:
    findings: list[Finding] = []
    envelope = None
    signers: tuple[str, ...] = ()
    header = None
    decrypted = False
    content_length = None
    if not decrypters:
        try:
            rep = inspect_secure_file(tee)
            envelope = _envelope_summary(rep.envelope)
            findings += rep.findings
        except MediasecError as exc:
            findings.append(Finding(exc.code, Outcome.FAILED, exc.message))
        if not header_only:
            tee.drain()
        return FileFacts(path, size, "secure", _hex(tee), tuple(findings), None, envelope)
    plain_head = bytearray()
    probe = None if header_only else DatasetSignatureProbe()

    def capture(mv) -> None:
        if len(plain_head) < HEADER_BOUND:
            plain_head.extend(mv[:HEADER_BOUND - len(plain_head)])
        if sink is not None:
            sink(mv)
        if probe is not None:
            probe.feed(mv)
        if header_only and len(plain_head) >= HEADER_BOUND:
            raise _HeaderFull()

    rep = None
    try:
        rep = open_secure_file(tee, decrypters=decrypters, sink=capture, trust=trust)
        decrypted = True
    except _HeaderFull:
        pass
    except NoRecipientError as exc:
        findings.append(Finding("CMS_NOT_RECIPIENT", Outcome.FAILED, exc.message))
    except WrongPasswordError as exc:
        findings.append(Finding("CMS_WRONG_PASSWORD", Outcome.FAILED, exc.message))
    except MediasecError as exc:
        if exc.code.startswith("ENV"):
            raise
        findings.append(Finding(exc.code, Outcome.FAILED, exc.message))
    if not header_only:
        tee.drain()
    if rep is not None:
        envelope = _envelope_summary(rep.envelope)
        signers = tuple(str(s.get("subject")) for s in rep.signers)
        findings += rep.findings
        content_length = rep.inner.content_length if rep.inner is not None else None
        not_dicom = any(f.code == "PAYLOAD_NOT_DICOM" for f in rep.findings)
        if not not_dicom and plain_head:
            header, hf = _parse_header(bytes(plain_head), content_length or len(plain_head),
                                       path)
            findings += hf
            if probe is not None and decrypted and header is not None:
                findings += probe.findings(trust)
    elif header_only and plain_head:
        header, _ = _parse_header(bytes(plain_head), size, path)
    return FileFacts(path, size, "secure", _hex(tee), tuple(findings), header, envelope,
                     signers, decrypted, None, content_length)
