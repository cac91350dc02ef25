"""The build's ``sign_dataset`` stage (``mediasec.media.stages``): PS3.15 Annex C signatures.

``SignDatasetStage`` sits after transcoding (and de-identification) and before CMS
protection. At plan time (``prepare``) it parses the instance as it will arrive (the source
itself, read in place through a small window; a converted one in memory) and sizes the
signed file with the signer's certificate alone (``mediasec.sign.plan_signature``), so the
disc layout is exact before any private-key operation. When the file is written
(``run``, in the build's worker processes for all but large files) it parses the upstream
bytes again, checks the plan still holds, hashes, signs with the private key and streams
the signed file. The DICOMDIR is not signed.

Modification strips stale signatures: signatures already in a converted input are checked
against the converted result and any that the conversion broke are removed and reported
(``SIG_STRIPPED_STALE``, ``mediasec.sign.stale``), with or without a signer (without one the
stage only does that, and only for converted files holding the (FFFA,FFFA) tag). Copied
files are bit-preserved.

``--authorized-copy``: sources whose SOP Instance Status is AO or AC become AC (signed with
the authorization profile); others are reported (``STATUS_NOT_AUTHORIZED``), never marked.
A signature covering the status is refused, or dropped and reported with
``drop_covering`` (``SIG_DROPPED_FOR_STATUS``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator

from mediasec.errors import InputError, InternalError, UsageError
from mediasec.policy import AlgorithmPolicy
from mediasec.sign import IN_MEMORY, SignRequest, open_part10, plan_signature
from mediasec.sign._raw import BytesSource, StreamSource, parse_part10
from mediasec.sign.stale import strip_stale
from mediasec.sign.status import change_status, current_status

__all__ = ["SignDatasetStage", "PROFILES"]

#: the signature profiles a build may sign with (PS3.15 C.1-C.4)
PROFILES = ("base", "creator", "authorization", "sr")
Opener = Callable[[str], BinaryIO]


@dataclass(frozen=True)
class SignDatasetStage:
    """One per job. ``signer`` (a ``mediasec.cms.keys.RSASigner``) signs each instance with
    ``request``; ``signer=None``: no new signature, only stale ones removed. ``opener``
    reads the job's inputs (the converted files' originals). ``findings`` collects what
    planning reported (dicts with ``source`` and ``code``)."""

    opener: Opener = field(repr=False, compare=False)
    signer: Any = field(default=None, repr=False, compare=False)
    request: SignRequest = SignRequest()
    policy: AlgorithmPolicy = AlgorithmPolicy()
    authorized_copy: bool = False
    drop_covering: bool = False
    findings: list = field(default_factory=list, repr=False, compare=False)
    name: str = "sign_dataset"
    reads_upstream = True        # class attribute: prepare reads the bytes before it

    @classmethod
    def for_job(cls, opener: Opener, *, profile: str | None, signer=None,
                authorized_copy: bool = False, drop_covering: bool = False,
                policy: AlgorithmPolicy = AlgorithmPolicy()) -> "SignDatasetStage":
        """The stage of a build: ``profile`` None and no authorized copy -> stale
        signatures removed only. Refusals (no signer, a profile that does not go with
        ``authorized_copy``) come here, before any input is read."""
        if authorized_copy:
            if profile not in (None, "authorization"):
                raise UsageError("--authorized-copy signs with the authorization profile",
                                 code="USAGE")
            profile = "authorization"
        if profile is None:
            return cls(opener, policy=policy)
        if profile not in PROFILES:
            raise UsageError(f"unknown signature profile {profile!r} "
                             f"({'|'.join(PROFILES)})", code="USAGE")
        if signer is None:
            raise UsageError("--sign-datasets needs --sign-key and --sign-cert",
                             code="USAGE")
        return cls(opener, signer, SignRequest(profile=profile), policy, authorized_copy,
                   drop_covering)

    @property
    def profile(self) -> str | None:
        return self.request.profile if self.signer is not None else None

    def prepare(self, item, in_size: int, upstream):
        if item.role != "instance":
            return None
        where = item.source
        try:
            if self.signer is None:
                return self._prepare_strip(item, in_size, upstream)
            with _parsed(upstream, in_size, plan=True) as part:
                copy = self._check_copy(part, where)
                part, plan, report = self._prepare(part, where, upstream.direct, copy)
        except (UsageError, InputError) as exc:
            raise exc.with_path(where)
        if plan.size is None:
            raise UsageError("a deflated output cannot be planned", path=where,
                             code="SIGN_TOO_LARGE")
        self.findings.extend({"source": where, **r} for r in report)
        return _Sign(self, where, plan.size, copy)

    def _prepare(self, part, source, direct: bool, authorized_copy: bool):
        """(part as it will be signed, plan, report lines): stale signatures of a conversion
        removed, the status set to AC for an authorized copy."""
        report = []
        if not direct:
            part, stripped = _strip(self.opener, source, part)
            report += [{"code": "SIG_STRIPPED_STALE", **s.to_dict()} for s in stripped]
        if authorized_copy:
            part, dropped = change_status(part, "AC", drop_covering=self.drop_covering)
            report += [{"code": "SIG_DROPPED_FOR_STATUS", **d.to_dict()} for d in dropped]
        plan = plan_signature(part, self.signer.certificate, self.request, policy=self.policy)
        return part, plan, report

    def _check_copy(self, part, where: str) -> bool:
        """AC only for AO/AC sources (never invented); others reported, signed as they are."""
        if not self.authorized_copy:
            return False
        status = current_status(part)
        if status in ("AO", "AC"):
            return True
        self.findings.append({"source": where, "code": "STATUS_NOT_AUTHORIZED",
                              "reason": f"SOP Instance Status is {status or 'absent'}: not "
                                        "marked AC (only an authorized original or copy can "
                                        "be)"})
        return False

    def _prepare_strip(self, item, in_size: int, upstream):
        if upstream.direct or not _has_signature_mark(self.opener, item.source):
            return None
        with _parsed(upstream, in_size, plan=True) as after:
            part, stripped = _strip(self.opener, item.source, after)
        if not stripped:
            return None
        self.findings.extend({"source": item.source, "code": "SIG_STRIPPED_STALE",
                              **s.to_dict()} for s in stripped)
        return _Strip(self.opener, item.source, part.source.size)


@dataclass(frozen=True)
class _Sign:
    """One instance signed: exactly ``size`` bytes, the private key used in ``run``."""

    stage: SignDatasetStage = field(repr=False)
    source: str
    size: int
    authorized_copy: bool
    signs = True

    def run(self, upstream) -> Iterator[bytes]:
        st = self.stage
        with _parsed(upstream, None, plan=False) as part:
            part, plan, _report = st._prepare(part, self.source, upstream.direct,
                                              self.authorized_copy)
            if plan.size != self.size:
                raise InputError("file changed while the File-set was being written",
                                 path=self.source, code="INPUT_CHANGED")
            out, _facts = plan.execute(st.signer)
            yield from out.pieces()


@dataclass(frozen=True)
class _Strip:
    """A converted instance whose conversion broke signatures: those removed."""

    opener: Opener = field(repr=False, compare=False)
    source: str
    size: int
    signs = False

    def run(self, upstream) -> Iterator[bytes]:
        with _parsed(upstream, None, plan=False) as after:
            part, _stripped = _strip(self.opener, self.source, after)
            if part.source.size != self.size:
                raise InputError("file changed while the File-set was being written",
                                 path=self.source, code="INPUT_CHANGED")
            yield from part.source.chunks(0, part.source.size)


# -- helpers ----------------------------------------------------------------------------

@contextlib.contextmanager
def _parsed(upstream, in_size: int | None, *, plan: bool):
    """The upstream bytes as a parsed Part 10 file. The source itself is read in place
    (at plan time through a small window: only the headers; when written, whole if small);
    converted bytes are gathered in memory, so they must fit ``IN_MEMORY``."""
    if upstream.direct:
        with upstream.open() as f:
            yield parse_part10(StreamSource(f)) if plan else open_part10(f)
        return
    if in_size is not None and in_size > IN_MEMORY:
        raise UsageError(f"a converted file of {in_size} bytes is too large to sign in "
                         f"memory (limit {IN_MEMORY}); convert it to Explicit VR Little Endian "
                         "first", code="SIGN_TOO_LARGE")
    data = b"".join(bytes(c) for c in upstream.chunks())
    if len(data) > IN_MEMORY:
        raise InternalError("converted bytes over the in-memory limit")
    yield parse_part10(BytesSource(data))


def _strip(opener: Opener, source: str, after):
    with opener(source) as f:
        return strip_stale(parse_part10(StreamSource(f)), after)


_MARKS = (b"\xfa\xff\xfa\xff", b"\xff\xfa\xff\xfa")


def _has_signature_mark(opener: Opener, source: str) -> bool:
    """Whether the stored file holds the (FFFA,FFFA) tag bytes anywhere (one streaming read)."""
    tail = b""
    with opener(source) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return False
            window = tail + b
            if any(m in window for m in _MARKS):
                return True
            tail = b[-3:]
