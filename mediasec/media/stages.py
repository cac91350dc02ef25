"""Per-file stages: the declared sequence every planned DICOM file goes through.

::

    read -> transcode -> de-identify -> sign dataset -> protect (CMS) -> hash (manifest)

A ``Stage`` is asked once per file, at plan time, to ``prepare(item, in_size)``: it
returns ``None`` when it has nothing to do for that file, or a ``Step`` whose ``size``
is the **exact** number of bytes it will make from ``in_size`` input bytes. So the whole
output size of every file - and the layout of a disc image - is known before any byte is
read, and per-file secrets (a content key, an IV) are drawn once, at plan time, never
again per disc. ``Step.run(upstream)`` streams: it takes the bytes of the step before
(``upstream.chunks()``, or ``upstream.open()`` for a reader that needs a file object:
the source itself when the step reads straight from it, which may be seeked, else a
forward-only reader over the chunks) and yields exactly ``size`` bytes; a count off the
plan is an ``InternalError``.

``FilePipeline`` is the planned file: its steps in order, its exact ``size``, and
``chunks()`` pulling the bytes through them, hashing on the way out (SHA-256, the
manifest's ``hash`` stage: ``sha256`` is set once the last byte passed).

Stages here: ``ReadStage`` (the source file, or bytes the plan holds such as the
DICOMDIR), ``TranscodeStage`` (implicit VR LE or deflated -> Explicit VR LE),
``ProtectStage`` (the Secure DICOM File: signed or digested, then enveloped). The
``sign_dataset`` stage is ``mediasec.media.dsign.SignDatasetStage`` (PS3.15 Annex C
signatures; without a signer it only removes signatures a conversion broke). The
``deidentify`` slot is empty for now (``build --deidentify`` de-identifies at the read).

A stage whose plan depends on the bytes (not only their count) sets ``reads_upstream``:
``prepare`` then gets a third argument, the upstream of the steps before it, and may read
it at plan time (the file is then read again when it is written).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator, Protocol

from mediasec.cms.secure import ProtectOptions, SecureFileProducer
from mediasec.dicom.part10 import CHUNK, CONVERTIBLE, converted_size, iter_converted
from mediasec.dicom.scan import TS_EXPLICIT_LE, ScannedFile
from mediasec.errors import InputError, InternalError
from mediasec.policy import AlgorithmPolicy

__all__ = ["STAGE_ORDER", "FileItem", "Upstream", "Step", "Stage", "FileStages",
           "FilePipeline", "ReadStage", "TranscodeStage", "ProtectStage", "ChunkReader"]

#: the declared order; ``FileStages.steps`` runs them in this order
STAGE_ORDER = ("read", "transcode", "deidentify", "sign_dataset", "protect", "hash")
Opener = Callable[[str], BinaryIO]


@dataclass(frozen=True)
class FileItem:
    """What a stage may know of the file it prepares for."""

    role: str                                  # "instance" | "dicomdir"
    source: str | None = None                  # the input path (instances)
    scanned: ScannedFile | None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)   # bytes the plan holds
    size: int = 0                              # the input's size

    @property
    def transfer_syntax(self) -> str | None:
        return self.scanned.transfer_syntax if self.scanned is not None else TS_EXPLICIT_LE


class Upstream(Protocol):
    def chunks(self) -> Iterator[bytes]: ...

    def open(self) -> contextlib.AbstractContextManager[BinaryIO]: ...


class Step(Protocol):
    """One stage's work on one file: exactly ``size`` bytes out of ``run``."""

    size: int

    def run(self, upstream: Upstream) -> Iterator[bytes]: ...


class Stage(Protocol):
    name: str

    def prepare(self, item: FileItem, in_size: int) -> Step | None: ...
    # with ``reads_upstream = True``: prepare(item, in_size, upstream)


# -- a forward-only file over chunks -------------------------------------------------------

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


# -- the stages ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _ReadFile:
    source: str
    size: int
    opener: Opener = field(repr=False, compare=False)

    def run(self, upstream=None) -> Iterator[bytes]:
        with self.opener(self.source) as f:
            left = self.size
            # one buffer, reused: a chunk is valid until the next (plan.Producer)
            view = memoryview(bytearray(min(left, CHUNK)))
            while left:
                n = f.readinto(view[:min(left, CHUNK)])
                if not n:
                    break
                left -= n
                yield view[:n]
            if left or f.read(1):
                raise InputError("file changed while the File-set was being written",
                                 path=self.source, code="INPUT_CHANGED")


@dataclass(frozen=True)
class _ReadBytes:
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)

    def run(self, upstream=None) -> Iterator[bytes]:
        for i in range(0, len(self.data), CHUNK):
            yield self.data[i:i + CHUNK]


@dataclass(frozen=True)
class ReadStage:
    """The source: a file (checked unchanged since the scan) or bytes the plan holds."""

    opener: Opener = field(repr=False, compare=False)
    name: str = "read"

    def prepare(self, item: FileItem, in_size: int):
        if item.data is not None:
            return _ReadBytes(item.data)
        return _ReadFile(item.source, in_size, self.opener)


@dataclass(frozen=True)
class _Transcode:
    scanned: ScannedFile = field(repr=False)

    @property
    def size(self) -> int:
        return converted_size(self.scanned)

    def run(self, upstream: Upstream) -> Iterator[bytes]:
        with upstream.open() as f:
            yield from iter_converted(f, self.scanned)


@dataclass(frozen=True)
class TranscodeStage:
    """Implicit VR LE and deflated sources -> Explicit VR LE (every profile allows it)."""

    name: str = "transcode"

    def prepare(self, item: FileItem, in_size: int):
        if item.scanned is None or item.scanned.transfer_syntax not in CONVERTIBLE:
            return None
        return _Transcode(item.scanned)


class _Protect:
    def __init__(self, cms: SecureFileProducer):
        self.cms = cms
        self.size = cms.size

    def run(self, upstream: Upstream) -> Iterator[bytes]:
        opener = getattr(upstream, "open", None)
        if opener is None:      # a bare producer: its chunks
            yield from self.cms.chunks(ChunkReader(upstream.chunks()))
            return
        try:
            # the source file itself when the read step is right before (one copy less)
            with opener() as f:
                yield from self.cms.chunks(f)
        except InputError as exc:
            source = getattr(upstream, "source", None)
            raise (exc.with_path(source) if source else exc)


@dataclass(frozen=True)
class ProtectStage:
    """The Secure DICOM File (PS3.15 D.1): signed or digested, then enveloped for every
    recipient; the content key and IV are drawn here, at plan time, once per file. One
    signingTime and SignedData template per job."""

    recipients: tuple
    signers: tuple = ()
    options: ProtectOptions = ProtectOptions()
    policy: AlgorithmPolicy = AlgorithmPolicy()
    rng: Callable[[int], bytes] | None = field(default=None, repr=False, compare=False)
    template: Any = field(default=None, repr=False, compare=False)
    name: str = "protect"

    @classmethod
    def for_job(cls, *, recipients, signers=(), options: ProtectOptions = ProtectOptions(),
                policy: AlgorithmPolicy = AlgorithmPolicy(), rng=None) -> "ProtectStage":
        signers = tuple(signers)
        return cls(tuple(recipients), signers, options, policy, rng,
                   SecureFileProducer.make_template(list(signers), options))

    def prepare(self, item: FileItem, in_size: int):
        extra = {} if self.rng is None else {"rng": self.rng}
        return _Protect(SecureFileProducer(in_size, recipients=self.recipients,
                                           signers=self.signers, options=self.options,
                                           policy=self.policy, template=self.template,
                                           **extra))


@dataclass(frozen=True)
class FileStages:
    """The job's stages, one slot per name of ``STAGE_ORDER`` (``hash`` is the pipeline's
    own). ``None`` in a slot: the stage is not part of this job."""

    read: Any
    transcode: Any = TranscodeStage()
    deidentify: Any = None
    sign_dataset: Any = None
    protect: Any = None

    def stages(self) -> list:
        return [s for s in (self.read, self.transcode, self.deidentify, self.sign_dataset,
                            self.protect) if s is not None]

    def pipeline(self, item: FileItem) -> "FilePipeline":
        """Prepare every stage for ``item`` (exact sizes, per-file keys): nothing is read."""
        steps = []
        size = item.size
        for stage in self.stages():
            if getattr(stage, "reads_upstream", False):
                done = tuple(s for _n, s in steps)
                step = stage.prepare(item, size, _Link(done, len(done)))
            else:
                step = stage.prepare(item, size)
            if step is not None:
                steps.append((stage.name, step))
                size = step.size
        return FilePipeline(item, tuple(steps))


class _Link:
    """What step ``i`` reads: the chunks of step ``i - 1``; as a file, the source itself
    when step ``i - 1`` reads it (a transcoder may seek), else a forward-only reader."""

    def __init__(self, steps, i: int):
        self._steps = steps
        self._i = i

    def chunks(self) -> Iterator[bytes]:
        return iter(self._steps[self._i - 1].run(_Link(self._steps, self._i - 1)))

    @property
    def direct(self) -> bool:
        """Whether these are the source's own bytes (the step before reads the file)."""
        return isinstance(self._steps[self._i - 1], _ReadFile)

    def open(self):
        prev = self._steps[self._i - 1]
        if isinstance(prev, _ReadFile):
            return prev.opener(prev.source)
        return contextlib.nullcontext(ChunkReader(self.chunks()))

    @property
    def source(self) -> str | None:
        """The input file the steps read from (None: bytes the plan holds)."""
        first = self._steps[0]
        return first.source if isinstance(first, _ReadFile) else None


class FilePipeline:
    """A planned file: its steps, its exact ``size``, and ``chunks()`` through them all
    (hashed on the way out: ``sha256`` once the last chunk passed)."""

    computes_sha256 = True

    def __init__(self, item: FileItem, steps: tuple):
        if not steps:
            raise InternalError("a planned file needs at least its read step")
        self.item = item
        self.steps = steps
        self.size = steps[-1][1].size
        self.sha256: str | None = None

    @property
    def source(self) -> str | None:
        return self.item.source

    @property
    def stage_names(self) -> tuple[str, ...]:
        return (*(n for n, _ in self.steps), "hash")

    @property
    def kind(self) -> str:
        """The producer kind of ``mediasec.build/1`` (``outputs[].producer``)."""
        names = {n for n, _ in self.steps}
        if "protect" in names:
            return "secure"
        if any(getattr(s, "signs", False) for _n, s in self.steps):
            return "sign"
        if "transcode" in names:
            ts = self.item.transfer_syntax or ""
            return "inflate" if ts.endswith(".99") else "convert-vr"
        return "bytes" if self.item.data is not None else "copy"

    @property
    def content_key(self) -> bytes | None:
        """The protect step's content-encryption key (None for a file not protected)."""
        for n, s in self.steps:
            if n == "protect":
                return s.cms.content_key
        return None

    @property
    def plain_size(self) -> int:
        """Bytes before protection (the inner file's size)."""
        sizes = [s.size for n, s in self.steps if n != "protect"]
        return sizes[-1]

    def chunks(self) -> Iterator[bytes]:
        steps = [s for _n, s in self.steps]
        h = hashlib.sha256()
        done = 0
        for c in steps[-1].run(_Link(steps, len(steps) - 1)):
            done += len(c)
            if done > self.size:
                raise InternalError(f"{self.source or self.item.role}: the "
                                    f"{self.steps[-1][0]} step made more than the planned "
                                    f"{self.size} bytes")
            h.update(c)
            yield c
        if done != self.size:
            raise InternalError(f"{self.source or self.item.role}: the {self.steps[-1][0]} "
                                f"step made {done} bytes, planned {self.size}")
        self.sha256 = h.hexdigest()
