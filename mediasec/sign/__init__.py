"""Dataset digital signatures (PS3.15 Annex C) and SOP Instance Status (PS3.15 A.1).

Pure: bytes or seekable streams in, a ``SignedFile`` (exact size, streamed ``write_to``)
or a ``SignatureReport`` out. Keys stay behind ``mediasec.cms.keys.Signer``.

* ``sign_file(data, signer, SignRequest(...))`` - one more signature, at the top level or
  in any item (``item_path``), in the file's own transfer syntax.
* ``check_file(data, trust=...)`` - every signature at every level, each with its outcome.
* ``plan_signature(part, certificate, request).size`` - the exact signed size, before any
  private-key operation (a build plans with it); ``.execute(signer)`` signs.
* ``change_status(...)`` (``mediasec.sign.status``) - OR -> AO, AO/AC -> AC, with the
  signatures that cover the status found first.
* ``strip_stale(before, after)`` (``mediasec.sign.stale``) - after any modification of ours,
  remove (and report) the signatures it broke.
"""

from __future__ import annotations

import datetime as _dt
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

from mediasec.errors import InputError
from mediasec.policy import AlgorithmPolicy, TrustContext
from mediasec.report import Finding, Outcome, worst
from mediasec.sign._raw import (BytesSource, Part10, Source, SplicedSource, StreamSource,
                                parse_part10, parse_part10_inflated)
from mediasec.sign.signature import (SignatureResult, SignedSignature, SignPlan, SignRequest,
                                     check_part10, plan_signature, sign_part10)

__all__ = ["SignRequest", "SignedFile", "SignatureReport", "SignatureResult", "SignPlan",
           "open_part10", "plan_signature", "sign_file", "sign_part", "check_file",
           "check_part", "finish"]


def open_part10(data) -> Part10:
    """Parse a Part 10 file from bytes, a ``Source`` or a seekable binary stream."""
    if isinstance(data, Part10):
        return data
    if isinstance(data, Source):
        return parse_part10(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return parse_part10(BytesSource(bytes(data)))
    data.seek(0, 2)
    size = data.tell()
    data.seek(0)
    if size <= IN_MEMORY:
        # one read, then zero-copy views; larger files stay on disk (bounded memory)
        raw = data.read(size)          # the exact size: one allocation, no resize
        while len(raw) < size:         # a short read (raw file objects may give one)
            more = data.read(size - len(raw))
            if not more:
                break
            raw += more
        if len(raw) != size:
            raise InputError("the file changed size while it was read", code="INPUT_CHANGED")
        return parse_part10(BytesSource(raw))
    return parse_part10(StreamSource(data))


#: files up to this size are read whole (faster); larger ones are read on demand
IN_MEMORY = 64 << 20


@dataclass
class SignedFile:
    """The output file: its exact ``size`` and a streaming ``write_to``.

    ``source`` is the output as a random-access source, ``base`` the parsed input it was
    made from (same meta information); ``part`` parses the output on first use."""

    source: Source
    base: Part10
    signatures: list = field(default_factory=list)   # SignedSignature, in order added
    dropped: list = field(default_factory=list)      # signatures removed (status changes)
    _deflated: bytes | None = None
    _part: Part10 | None = None

    @property
    def part(self) -> Part10:
        if self._part is None:
            self._part = parse_part10_inflated(self.source, self.base)
        return self._part

    @property
    def size(self) -> int:
        if self.base.deflated:
            return len(self._deflated_bytes())
        return self.source.size

    def _deflated_bytes(self) -> bytes:
        if self._deflated is None:
            src = self.source
            body = b"".join(src.chunks(self.base.meta_end, src.size - self.base.meta_end))
            z = zlib.compressobj(9, zlib.DEFLATED, -15)
            data = z.compress(body) + z.flush()
            if len(data) & 1:
                data += b"\0"
            self._deflated = self.base.raw_prefix + data
        return self._deflated

    def write_to(self, write: Callable[[bytes], Any]) -> int:
        if self.base.deflated:
            data = self._deflated_bytes()
            write(data)
            return len(data)
        src = self.source
        if isinstance(src, SplicedSource):
            src.copy(write)
        else:
            for piece in src.chunks(0, src.size):
                write(piece)
        return src.size


def sign_part(part: Part10, signer, request: SignRequest = SignRequest(), *,
              policy: AlgorithmPolicy = AlgorithmPolicy()) -> tuple[Part10, SignedSignature]:
    spliced, facts = sign_part10(part, signer, request, policy=policy)
    return parse_part10_inflated(_in_memory(spliced, part), part), facts


def _in_memory(spliced: SplicedSource, part: Part10) -> Source:
    """The signed output as one bytes object when the input was read whole (one copy,
    then the fast in-memory parse), else the splices over the input as they are."""
    if isinstance(part.source, BytesSource):
        return BytesSource(b"".join(spliced.pieces()))
    return spliced


def sign_file(data, signer, request: SignRequest = SignRequest(), *,
              policy: AlgorithmPolicy = AlgorithmPolicy()) -> SignedFile:
    """``data`` (bytes or a seekable stream of a Part 10 file) with one more signature."""
    part = open_part10(data)
    spliced, facts = sign_part10(part, signer, request, policy=policy)
    return SignedFile(spliced, part, [facts])


def finish(part: Part10, signatures=(), dropped=()) -> SignedFile:
    """A ``SignedFile`` for a part already in its final state (e.g. after ``sign_part``)."""
    return SignedFile(part.source, part, list(signatures), list(dropped), _part=part)


# -- checking -----------------------------------------------------------------------------------

@dataclass
class SignatureReport:
    transfer_syntax: str
    sop_instance_status: str | None
    signatures: list[SignatureResult]
    findings: list[Finding]

    @property
    def outcome(self) -> Outcome:
        st = worst(f.outcome for f in self.findings)
        return Outcome.PASSED if st is Outcome.INFO else st

    def status_covered(self) -> bool:
        return any(s.covers_status and s.status in ("valid", "trust_not_checked")
                   for s in self.signatures)

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "transfer_syntax": self.transfer_syntax,
                "sop_instance_status": self.sop_instance_status,
                "status_signed": self.status_covered(),
                "signatures": [s.to_dict() for s in self.signatures],
                "findings": [f.to_dict() for f in self.findings]}


def check_part(part: Part10, *, trust: TrustContext | None = None,
               now: _dt.datetime | None = None, digests=None) -> SignatureReport:
    """``digests``: see ``check_part10`` (MAC digests computed while the file streamed)."""
    from mediasec.sign.status import current_status
    results = check_part10(part, trust=trust, now=now, digests=digests)
    findings: list[Finding] = []
    for r in results:
        findings += r.findings()
    status = current_status(part)
    if not results:
        findings.append(Finding("SIG_NONE", Outcome.FAILED,
                                "no digital signature (FFFA,FFFA) in the object"))
    elif status in ("AO", "AC") and not any(
            r.covers_status and r.status in ("valid", "trust_not_checked") for r in results):
        findings.append(Finding("STATUS_UNSUPPORTED", Outcome.WARNING,
                                f"SOP Instance Status is {status}, but no valid signature "
                                "covers (0100,0410)"))
    return SignatureReport(part.transfer_syntax, status, results, findings)


def check_file(data, *, trust: TrustContext | None = None,
               now: _dt.datetime | None = None) -> SignatureReport:
    return check_part(open_part10(data), trust=trust, now=now)
