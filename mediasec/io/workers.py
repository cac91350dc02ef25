"""A small process pool: ordered results, bounded lookahead, secrets through the initializer.

``ordered_map(fn, items, workers=2, initializer=..., initargs=(...), max_inflight=N)`` runs
``fn(item)`` in ``workers`` processes and yields the results **in input order**, keeping at
most ``max_inflight`` items submitted but not yet yielded (so memory does not grow with the
number of items, and a slow consumer throttles the producers). ``workers=1`` runs everything
in this process, in order, with the initializer called once first - the path for tests and
debugging (and the same code runs in both cases).

Rules for callers:

* ``fn`` and ``initializer`` must be module-level functions (they are pickled by name).
* Secrets (key bytes, passwords) go in ``initargs``: they reach each worker once, in memory,
  never through argv, the environment or a file. The initializer typically stores what it
  builds in a module global that ``fn`` reads.
* Workers open their own resources (files, images) from what ``initargs`` names; nothing
  with an OS handle crosses the process boundary.
* ``fn`` should return results rather than raise; an exception is re-raised in the caller
  (``MediasecError`` keeps its ``code``/``path``); a worker that dies (killed, segfault)
  raises ``InternalError``.

Start method: ``fork`` where the platform has it. It starts in milliseconds and re-imports
nothing; ``spawn``/``forkserver`` would re-execute the unguarded ``python -m mediasec``
entry module in every worker. The pool is started (all workers forked) when the ``Pool`` is
entered, so create it *before* building large in-memory state that the workers do not need,
otherwise they inherit it (copy-on-write pages still count in their RSS).
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from mediasec.errors import InternalError, UsageError

__all__ = ["Pool", "ordered_map", "default_workers"]


def default_workers() -> int:
    """Two, or one on a single-CPU machine."""
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1)))


def _noop() -> int:
    return os.getpid()


class Pool:
    """``with Pool(workers, initializer, initargs) as pool: pool.map(fn, items)``.

    Entering forks the workers at once (see the module docstring); ``map`` may be called
    several times. ``workers=1`` makes no process at all.
    """

    def __init__(self, workers: int = 2, *, initializer: Callable | None = None,
                 initargs: tuple = (), max_inflight: int | None = None,
                 context: str | None = None):
        if workers < 1:
            raise UsageError("workers must be at least 1", code="USAGE_WORKERS")
        self.workers = workers
        self.initializer = initializer
        self.initargs = initargs
        self.max_inflight = max_inflight or 4 * workers
        if self.max_inflight < 1:
            raise UsageError("max_inflight must be at least 1", code="USAGE_WORKERS")
        if context is None:
            context = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        self.context = context
        self._executor: ProcessPoolExecutor | None = None
        self._inited_here = False

    def __enter__(self) -> "Pool":
        if self.workers == 1:
            if self.initializer is not None:
                self.initializer(*self.initargs)
            self._inited_here = True
            return self
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context(self.context),
            initializer=self.initializer, initargs=self.initargs)
        # submitting once starts every worker now (fork: before any helper thread exists)
        try:
            self._executor.submit(_noop).result()
        except BrokenProcessPool as exc:
            self.close()
            raise InternalError("a worker process failed to start (its initializer "
                                "raised or it was killed)") from exc
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def map(self, fn: Callable[[Any], Any], items: Iterable) -> Iterator:
        """``fn(item)`` for every item, yielded in input order, bounded lookahead."""
        if self.workers == 1:
            if not self._inited_here:
                raise InternalError("Pool.map outside its with block")
            for item in items:
                yield fn(item)
            return
        if self._executor is None:
            raise InternalError("Pool.map outside its with block")
        pending: collections.deque = collections.deque()
        it = iter(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.max_inflight:
                    try:
                        item = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append(self._executor.submit(fn, item))
                if not pending:
                    return
                fut = pending.popleft()
                try:
                    result = fut.result()
                except BrokenProcessPool as exc:
                    raise InternalError("a worker process died (killed or crashed)") from exc
                yield result
        finally:
            for fut in pending:
                fut.cancel()


def ordered_map(fn: Callable[[Any], Any], items: Iterable, *, workers: int = 2,
                initializer: Callable | None = None, initargs: tuple = (),
                max_inflight: int | None = None, context: str | None = None) -> Iterator:
    """One-shot form of ``Pool(...).map(fn, items)`` (the pool lives as long as the
    iteration; closing the generator stops the workers)."""
    with Pool(workers, initializer=initializer, initargs=initargs,
              max_inflight=max_inflight, context=context) as pool:
        yield from pool.map(fn, items)
