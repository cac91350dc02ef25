"""Both cores for writing media: produce small files in worker processes, in write order.

pycdlib writes file data in the order files were added, and ``FolderSink`` in plan order,
so the order of reads is known before writing starts. ``Prefetcher`` forks the workers
*after* planning; the planned producers (keys included) and the shared mapping are the
pool's ``setup`` arguments, inherited copy-on-write (``io.workers``: the one way secrets
reach a worker; none crosses a pipe or touches a file). Nothing is kept in a module global
of this process: two builds in two threads each own their prefetcher, mapping and pool.
It hands each worker the index of the next small
file, and each writes that file's stored bytes (ciphertext, for a secure medium) into a
slot of a shared anonymous mapping (made before the fork) and returns its length and
SHA-256, in order, with ``max_inflight`` in flight: no bytes are pickled through a pipe.
Files over ``max_file`` bytes are produced in this process, streamed, as before: memory
stays bounded by ``max_inflight * max_file`` (only the pages a file touches count).
"""

from __future__ import annotations

import hashlib
import mmap
from typing import Iterator

from mediasec.errors import InternalError
from mediasec.io.workers import Pool, default_workers
from mediasec.media.plan import WrappedProducer

__all__ = ["Prefetcher", "PrefetchedProducer"]

class _Shared:
    """What the workers inherit: the producers and the slots they write into."""

    def __init__(self, producers: list, slots: mmap.mmap, slot_size: int):
        self.producers = producers
        self.slots = slots
        self.slot_size = slot_size


def _setup(shared: _Shared) -> _Shared:
    return shared


def _produce(shared: _Shared, job: tuple[int, int]) -> tuple[int, int, int, str]:
    """In a worker: make file ``index`` into shared slot ``slot``."""
    index, slot = job
    producer = shared.producers[index]
    base = slot * shared.slot_size
    view = memoryview(shared.slots)[base:base + shared.slot_size]
    # a file pipeline hashes its own output (the manifest's hash stage): no second pass
    own = getattr(producer, "computes_sha256", False)
    h = None if own else hashlib.sha256()
    pos = 0
    try:
        for c in producer.chunks():
            n = len(c)
            if pos + n > producer.size:
                raise InternalError(f"a producer made more than its planned {producer.size} "
                                    "bytes")
            view[pos:pos + n] = c
            if h is not None:
                h.update(c)
            pos += n
    finally:
        view.release()
    if pos != producer.size:
        raise InternalError(f"planned {producer.size} bytes, a producer made {pos}")
    return index, slot, pos, producer.sha256 if own else h.hexdigest()


class PrefetchedProducer(WrappedProducer):
    """Stands in for a planned producer; its bytes come from the prefetcher's workers."""

    computes_sha256 = True

    def __init__(self, inner, index: int, prefetcher: "Prefetcher"):
        super().__init__(inner)
        self.index = index
        self._prefetcher = prefetcher
        self.sha256: str | None = None

    def chunks(self) -> Iterator[bytes]:
        data, self.sha256 = self._prefetcher.take(self.index)
        if len(data) != self.inner.size:
            raise InternalError(f"planned {self.inner.size} bytes, a worker made {len(data)}")
        yield data


class Prefetcher:
    """``with Prefetcher(producers) as pf: producers = pf.wrapped`` (same order)."""

    def __init__(self, producers: list, *, workers: int | None = None,
                 max_file: int = 8 << 20, max_inflight: int = 8):
        self.workers = default_workers() if workers is None else workers
        self.max_file = max_file
        self.max_inflight = max_inflight
        self._producers = producers
        picked = [i for i, p in enumerate(producers) if p.size <= max_file] \
            if self.workers > 1 else []
        self._order = picked
        self.wrapped = list(producers)
        for i in picked:
            self.wrapped[i] = PrefetchedProducer(producers[i], i, self)
        self._pool: Pool | None = None
        self._results: Iterator | None = None
        self._slots: mmap.mmap | None = None
        self._slot_size = 0

    def __enter__(self) -> "Prefetcher":
        if self._order:
            self._slot_size = max(self._producers[i].size for i in self._order)
            # slot k serves the k-th, (k+N)-th ... file: a slot is reused only after its file
            # was taken and the next one asked for (Pool.map submits lazily)
            self._slots = mmap.mmap(-1, max(1, self._slot_size) * self.max_inflight)
            shared = _Shared(self._producers, self._slots, self._slot_size)
            self._pool = Pool(self.workers, max_inflight=self.max_inflight, setup=_setup,
                              args=(shared,)).__enter__()
            jobs = [(i, k % self.max_inflight) for k, i in enumerate(self._order)]
            self._results = self._pool.run(_produce, jobs)
        return self

    def __exit__(self, *exc) -> bool:
        if self._results is not None:
            self._results.close()
        if self._pool is not None:
            self._pool.__exit__(*exc)
        if self._slots is not None:
            try:
                self._slots.close()
            except BufferError:  # a view is still alive (an error mid-file): let GC free it
                pass
            self._slots = None
        return False

    def take(self, index: int) -> tuple[bytes, str]:
        """File ``index``'s bytes (valid until the next ``take``) and their SHA-256."""
        if self._results is None:
            raise InternalError("prefetcher used outside its with block")
        got, slot, length, digest = next(self._results)
        if got != index:
            raise InternalError(f"files were read out of the planned order ({got} != {index})")
        base = slot * self._slot_size
        return memoryview(self._slots)[base:base + length], digest
