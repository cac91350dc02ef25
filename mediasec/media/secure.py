"""Secure File-sets: every DICOM file of the medium, the DICOMDIR included, becomes a
Secure DICOM File (PS3.11 secure profiles, PS3.15 D.1).

``make_protector`` returns the ``protect`` hook of ``plan_medium``: it wraps each planned
file's producer (copy, VR conversion, the DICOMDIR bytes) in a ``SecureProducer`` whose
exact size is known at plan time, so an ISO image can be laid out before any byte is
encrypted. Keys and passwords stay in the recipient/signer objects; one PBKDF2 per job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from mediasec.cms.secure import ProtectOptions, SecureFileProducer
from mediasec.policy import AlgorithmPolicy

__all__ = ["ChunkReader", "SecureProducer", "make_protector"]


class ChunkReader:
    """A read-only binary file over an iterator of chunks (``readinto``/``read``)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._it = iter(chunks)
        self._cur = memoryview(b"")

    def readinto(self, buf) -> int:
        mv = memoryview(buf).cast("B")
        done = 0
        while done < len(mv):
            if not self._cur:
                nxt = next(self._it, None)
                if nxt is None:
                    break
                self._cur = memoryview(nxt).cast("B")
                continue
            k = min(len(mv) - done, len(self._cur))
            mv[done:done + k] = self._cur[:k]
            self._cur = self._cur[k:] if k < len(self._cur) else memoryview(b"")
            done += k
        return done

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [bytes(self._cur)] + [bytes(c) for c in self._it]
            self._cur = memoryview(b"")
            return b"".join(parts)
        buf = bytearray(n)
        got = self.readinto(buf)
        del buf[got:]
        return bytes(buf)


@dataclass(frozen=True)
class SecureProducer:
    """A planned file wrapped in signing/digesting and enveloping; exact ``size``."""

    inner: object = field(repr=False)          # the plaintext Producer
    cms: SecureFileProducer = field(repr=False, compare=False)
    kind: str = "secure"

    @property
    def source(self):
        return getattr(self.inner, "source", None)

    @property
    def size(self) -> int:
        return self.cms.size

    @property
    def plain_size(self) -> int:
        return self.inner.size

    def chunks(self) -> Iterator[memoryview]:
        yield from self.cms.chunks(ChunkReader(self.inner.chunks()))


def make_protector(*, recipients: Iterable, signers: Iterable = (),
                   options: ProtectOptions = ProtectOptions(),
                   policy: AlgorithmPolicy = AlgorithmPolicy(),
                   rng: Callable[[int], bytes] | None = None) -> Callable:
    """The ``protect`` hook for ``plan_medium``: PlannedFile -> SecureProducer."""
    recipients = list(recipients)
    signers = list(signers)
    extra = {} if rng is None else {"rng": rng}
    # one signingTime and one encoded SignedData trailer for the whole job
    template = SecureFileProducer.make_template(signers, options)

    def protect(planned) -> SecureProducer:
        inner = planned.producer
        cms = SecureFileProducer(inner.size, recipients=recipients, signers=signers,
                                 options=options, policy=policy, template=template, **extra)
        return SecureProducer(inner, cms)

    return protect
