"""Poisoned byte paths: chunks that are scribbled over as soon as the next one is requested.

The byte-path contract (``mediasec.media.plan.Producer``): a yielded chunk is valid only
until the next chunk is requested. Real producers break a consumer that keeps a view too
long only when their buffers happen to be reused at the wrong moment (the CMS producer's
two buffers, a prefetch slot, the medium readers' buffers), which is how secure images
came out corrupted while plain ones were fine. These wrappers make every violation show,
on every chunk, whatever the sizes:

* ``poisoned(chunks, sizes)`` re-cuts a chunk stream at the given sizes (cycled; ``None``
  keeps the original cuts) and yields each piece as a ``memoryview`` of its own buffer,
  which is overwritten with ``POISON`` bytes the moment the consumer asks for the next
  piece (or for the end);
* ``PoisonProducer(inner, sizes)``: a ``Producer`` whose ``chunks()`` are poisoned;
* ``PoisonSource(source, sizes)``: a ``MediumSource`` whose ``open()`` is poisoned.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator, Sequence

POISON = 0xA5


def _recut(chunks: Iterable, sizes: Sequence[int] | None) -> Iterator[bytes]:
    if not sizes:
        for c in chunks:
            if len(c):
                yield bytes(c)
        return
    cycle = itertools.cycle([max(1, s) for s in sizes])
    want = next(cycle)
    held = bytearray()
    for c in chunks:
        held += c          # copy now: the inner chunk is valid only until we pull again
        while len(held) >= want:
            yield bytes(held[:want])
            del held[:want]
            want = next(cycle)
    if held:
        yield bytes(held)


def poisoned(chunks: Iterable, sizes: Sequence[int] | None = None) -> Iterator[memoryview]:
    """Yield ``chunks`` re-cut at ``sizes``; each piece is poisoned once the next is asked."""
    prev: bytearray | None = None
    for piece in _recut(chunks, sizes):
        if prev is not None:
            prev[:] = bytes((POISON,)) * len(prev)
        prev = bytearray(piece)
        yield memoryview(prev)
    if prev is not None:
        prev[:] = bytes((POISON,)) * len(prev)


class PoisonProducer:
    """A producer passing ``inner``'s bytes through ``poisoned``."""

    def __init__(self, inner, sizes: Sequence[int] | None = None):
        self.inner = inner
        self.sizes = sizes
        self.kind = getattr(inner, "kind", "poison")
        self.source = getattr(inner, "source", None)

    @property
    def size(self) -> int:
        return self.inner.size

    def chunks(self) -> Iterator[memoryview]:
        return poisoned(self.inner.chunks(), self.sizes)


class PoisonSource:
    """A ``MediumSource`` whose files are read through ``poisoned``."""

    def __init__(self, source, sizes: Sequence[int] | None = None):
        self._source = source
        self.sizes = sizes
        self.description = source.description
        self.label = source.label
        self.volume_id = source.volume_id

    def entries(self):
        return self._source.entries()

    def open(self, handle):
        return poisoned(self._source.open(handle), self.sizes)

    def worker_spec(self):
        return self._source.worker_spec()

    def close(self):
        self._source.close()
