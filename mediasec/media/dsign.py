"""The build's "sign dataset" step: each instance gets a DICOM digital signature before CMS.

``make_dataset_signer(...)`` returns a hook with the shape of ``plan_medium``'s ``protect``
(PlannedFile -> Producer) that wraps each instance's producer in a ``DatasetSignProducer``
of exact size (planned with the certificate only, so the disc layout is known before any
private-key operation); compose it before the CMS protector. The DICOMDIR is not signed.

A copied file is read twice from its source (hash, then copy: bounded memory whatever its
size); a converted one (implicit VR, deflate) is signed from the converted bytes in memory,
so it must fit ``IN_MEMORY``. Signatures already in a converted input are checked against
the converted result and any that the conversion broke are removed and reported
(``mediasec.sign.stale``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Iterator

from mediasec.errors import InputError, UsageError
from mediasec.media.plan import CopyProducer
from mediasec.policy import AlgorithmPolicy
from mediasec.sign import IN_MEMORY, SignRequest, plan_signature
from mediasec.sign._raw import BytesSource, StreamSource, parse_part10
from mediasec.sign.status import change_status, current_status
from mediasec.sign.stale import strip_stale

__all__ = ["DatasetSignProducer", "make_dataset_signer", "compose_hooks", "StrippedProducer",
           "make_stale_stripper"]


def _converted_bytes(inner) -> bytes:
    if inner.size > IN_MEMORY:
        raise UsageError(f"a converted file of {inner.size} bytes is too large to sign in "
                         f"memory (limit {IN_MEMORY}); convert it to Explicit VR Little Endian "
                         "first", path=inner.source, code="SIGN_TOO_LARGE")
    return b"".join(bytes(c) for c in inner.chunks())


@dataclass(frozen=True)
class DatasetSignProducer:
    inner: object = field(repr=False)
    planned_size: int
    signer: object = field(repr=False, compare=False)
    request: SignRequest
    policy: AlgorithmPolicy
    authorized_copy: bool = False
    drop_covering: bool = False
    kind: str = "sign"

    @property
    def source(self):
        return getattr(self.inner, "source", None)

    @property
    def size(self) -> int:
        return self.planned_size

    def chunks(self) -> Iterator[bytes]:
        with _opened(self.inner) as part:
            part, plan, _report = _prepare(part, self.inner, self.request,
                                           self.signer.certificate, self.policy,
                                           self.authorized_copy, self.drop_covering)
            if plan.size != self.planned_size:
                raise InputError("file changed while the File-set was being written",
                                 path=self.source, code="INPUT_CHANGED")
            out, _facts = plan.execute(self.signer)
            yield from out.pieces()


class _opened:
    """The producer's content as a parsed Part 10 file: a copied source is read in place
    (two passes, bounded memory), a converted one is made in memory."""

    def __init__(self, inner):
        self.inner = inner
        self.f = None

    def __enter__(self):
        inner = self.inner
        if isinstance(inner, CopyProducer):
            self.f = inner.opener(inner.source)
            return parse_part10(StreamSource(self.f))
        return parse_part10(BytesSource(_converted_bytes(inner)))

    def __exit__(self, *exc):
        if self.f is not None:
            self.f.close()
        return False


def _prepare(part, inner, request, certificate, policy, authorized_copy, drop_covering):
    """(part as it will be signed, plan, report lines): stale signatures of a conversion
    removed, the status set to AC for an authorized copy."""
    report = []
    if not isinstance(inner, CopyProducer) and hasattr(inner, "opener"):
        with inner.opener(inner.source) as f:
            before = parse_part10(StreamSource(f))
            part, stripped = strip_stale(before, part)
        report += [{"code": "SIG_STRIPPED_STALE", **s.to_dict()} for s in stripped]
    if authorized_copy:
        part, dropped = change_status(part, "AC", drop_covering=drop_covering)
        report += [{"code": "SIG_DROPPED_FOR_STATUS", **d.to_dict()} for d in dropped]
    return part, plan_signature(part, certificate, request, policy=policy), report


def make_dataset_signer(*, signer, request: SignRequest, policy: AlgorithmPolicy,
                        authorized_copy: bool = False, drop_covering: bool = False,
                        on_report: Callable[[dict], None] | None = None) -> Callable:
    """The hook: PlannedFile -> DatasetSignProducer (instances) or the same producer."""

    def hook(planned):
        inner = planned.producer
        if planned.role != "instance":
            return inner
        where = planned.source or "/".join(planned.file_id)
        try:
            with _opened(inner) as part:
                copy = _check_copy(part, authorized_copy, where, on_report)
                part, plan, report = _prepare(part, inner, request, signer.certificate,
                                              policy, copy, drop_covering)
                size = plan.size
        except (UsageError, InputError) as exc:
            raise exc.with_path(where)
        if size is None:
            raise UsageError("a deflated output cannot be planned", path=where,
                             code="SIGN_TOO_LARGE")
        if on_report is not None:
            for r in report:
                on_report({"source": where, **r})
        return DatasetSignProducer(inner, size, signer, request, policy, copy, drop_covering)

    return hook


def _check_copy(part, authorized_copy: bool, where: str, on_report) -> bool:
    """AC only for AO/AC sources (never invented); others are reported and signed as they are."""
    if not authorized_copy:
        return False
    status = current_status(part)
    if status in ("AO", "AC"):
        return True
    if on_report is not None:
        on_report({"source": where, "code": "STATUS_NOT_AUTHORIZED",
                   "reason": f"SOP Instance Status is {status or 'absent'}: not marked AC "
                             "(only an authorized original or copy can be)"})
    return False


def compose_hooks(first: Callable, then: Callable | None) -> Callable:
    """``then(first(planned))`` as a ``plan_medium`` protect hook."""
    def hook(planned):
        produced = first(planned)
        if then is None:
            return produced
        return then(dataclasses.replace(planned, producer=produced))
    return hook


# -- without --sign-datasets: a conversion must still not hand on a signature it broke ---------

_MARKS = (b"\xfa\xff\xfa\xff", b"\xff\xfa\xff\xfa")


def _has_signature_mark(opener, source: str) -> bool:
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


@dataclass(frozen=True)
class StrippedProducer:
    """A converted instance whose conversion broke signatures: those removed (exact size)."""

    inner: object = field(repr=False)
    planned_size: int
    kind: str = "convert-strip"

    @property
    def source(self):
        return getattr(self.inner, "source", None)

    @property
    def size(self) -> int:
        return self.planned_size

    def chunks(self) -> Iterator[bytes]:
        part, _stripped = _stripped_part(self.inner)
        if part.source.size != self.planned_size:
            raise InputError("file changed while the File-set was being written",
                             path=self.source, code="INPUT_CHANGED")
        yield from part.source.pieces()


def _stripped_part(inner):
    after = parse_part10(BytesSource(_converted_bytes(inner)))
    with inner.opener(inner.source) as f:
        return strip_stale(parse_part10(StreamSource(f)), after)


def make_stale_stripper(on_report: Callable[[dict], None] | None = None) -> Callable:
    """The hook for builds without ``--sign-datasets``: a converted instance that carries
    signatures is checked after conversion; one its conversion broke is removed and reported
    (``SIG_STRIPPED_STALE``). Copied instances are bit-preserved and pass untouched."""

    def hook(planned):
        inner = planned.producer
        if (planned.role != "instance" or isinstance(inner, CopyProducer)
                or not hasattr(inner, "opener")
                or not _has_signature_mark(inner.opener, inner.source)):
            return inner
        where = planned.source or "/".join(planned.file_id)
        try:
            part, stripped = _stripped_part(inner)
        except (UsageError, InputError) as exc:
            raise exc.with_path(where)
        if not stripped:
            return inner
        if on_report is not None:
            for s in stripped:
                on_report({"source": where, "code": "SIG_STRIPPED_STALE", **s.to_dict()})
        return StrippedProducer(inner, part.source.size)

    return hook
