"""Both cores for writing media: produce small files in worker processes, in write order.

pycdlib writes file data in the order files were added, and ``FolderSink`` in plan order,
so the order of reads is known before writing starts. ``Prefetcher`` forks the workers
*after* planning (they inherit the planned producers, keys included, copy-on-write; no
secret crosses a pipe or touches a file), hands each of them the index of the next small
file, and each returns that file's stored bytes (ciphertext, for a secure medium) and
their SHA-256, in order, with a bounded number in flight. Files over ``max_file`` bytes
are produced in this process, streamed, as before: memory stays bounded by
``max_inflight * max_file``.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

from mediasec.errors import InternalError
from mediasec.io.workers import Pool, default_workers

__all__ = ["Prefetcher", "PrefetchedProducer"]

_JOBS: list = []


def _produce(index: int) -> tuple[int, bytearray, str]:
    producer = _JOBS[index]
    out = bytearray(producer.size)
    h = hashlib.sha256()
    pos = 0
    for c in producer.chunks():
        n = len(c)
        if pos + n > len(out):
            raise InternalError(f"a producer made more than its planned {len(out)} bytes")
        out[pos:pos + n] = c
        h.update(c)
        pos += n
    if pos != len(out):
        raise InternalError(f"planned {len(out)} bytes, a producer made {pos}")
    return index, out, h.hexdigest()


class PrefetchedProducer:
    """Stands in for a planned producer; its bytes come from the prefetcher's workers."""

    computes_sha256 = True

    def __init__(self, inner, index: int, prefetcher: "Prefetcher"):
        self.inner = inner
        self.kind = inner.kind
        self.index = index
        self._prefetcher = prefetcher
        self.sha256: str | None = None

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def source(self):
        return getattr(self.inner, "source", None)

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

    def __enter__(self) -> "Prefetcher":
        if self._order:
            global _JOBS
            _JOBS = self._producers
            self._pool = Pool(self.workers, max_inflight=self.max_inflight).__enter__()
            self._results = self._pool.map(_produce, self._order)
        return self

    def __exit__(self, *exc) -> bool:
        global _JOBS
        if self._results is not None:
            self._results.close()
        if self._pool is not None:
            self._pool.__exit__(*exc)
        _JOBS = []
        return False

    def take(self, index: int) -> tuple[bytes, str]:
        if self._results is None:
            raise InternalError("prefetcher used outside its with block")
        got, data, digest = next(self._results)
        if got != index:
            raise InternalError(f"files were read out of the planned order ({got} != {index})")
        return data, digest
