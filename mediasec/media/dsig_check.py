"""Dataset signatures of the files a reader passes over (``verify``, ``extract``).

``DatasetSignatureProbe`` is fed the plaintext chunks as they stream past (header-only reads
never see (FFFA,FFFA), which follows the pixel data, so it needs the whole file); it keeps
a copy up to ``IN_MEMORY`` bytes and looks for the Digital Signatures Sequence tag on the way.
At the end, an object with signatures is checked (``mediasec.sign``) and each signature
becomes a finding; an object without any gives none. The SOP Instance Status, and whether a
valid signature covers it, come with them (``STATUS_UNSUPPORTED`` when AO/AC is not covered).
"""

from __future__ import annotations

from mediasec.errors import MediasecError
from mediasec.policy import TrustContext
from mediasec.report import Finding, Outcome
from mediasec.sign import IN_MEMORY, check_file

__all__ = ["DatasetSignatureProbe"]

#: common to (FFFA,FFFA) as stored little endian and big endian
_MARK = b"\xfa\xff\xfa"


class DatasetSignatureProbe:
    def __init__(self, limit: int = IN_MEMORY):
        self.limit = limit
        self.parts: list[bytes] = []
        self.count = 0
        self.seen = False
        self._tail = b""

    def feed(self, chunk) -> None:
        b = bytes(chunk)
        if not self.seen:
            # FA FF FA is in both byte orders of the tag (FA FF FA FF, FF FA FF FA): one search
            if _MARK in b or _MARK in self._tail + b[:2]:
                self.seen = True
            self._tail = b[-2:]
        self.count += len(b)
        if self.count <= self.limit:
            self.parts.append(b)
        else:
            self.parts = []

    def findings(self, trust: TrustContext | None) -> list[Finding]:
        if not self.seen:
            return []
        if self.count > self.limit:
            return [Finding("SIG_NOT_CHECKED", Outcome.INDETERMINATE,
                            f"dataset signatures not checked: the object is larger than "
                            f"{self.limit} bytes")]
        data = b"".join(self.parts)
        self.parts = []
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
            out.append(Finding("STATUS_REPORTED", Outcome.INFO,
                               f"SOP Instance Status {report.sop_instance_status}"
                               f"{', covered by a valid signature' if report.status_covered() else ''}",
                               {"status": report.sop_instance_status,
                                "signed": report.status_covered()}))
        return out
