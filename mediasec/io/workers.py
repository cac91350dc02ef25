"""A small process pool: ordered results, bounded lookahead, secrets through the initializer.

``ordered_map(fn, items, workers=2, initializer=..., initargs=(...), max_inflight=N)`` runs
``fn(item)`` in ``workers`` processes and yields the results **in input order**, keeping at
most ``max_inflight`` items submitted but not yet yielded (so memory does not grow with the
number of items, and a slow consumer throttles the producers). ``workers=1`` runs everything
in this process, in order, with the initializer called once first - the path for tests and
debugging (and the same code runs in both cases).

Rules for callers:

* ``fn`` and ``initializer`` must be module-level functions (they are pickled by name).
* Per-job state: ``Pool(workers, setup=make_state, args=(...))`` calls ``make_state(*args)``
  once per worker process (or once here, for ``workers=1``) and ``pool.run(fn, items)``
  calls ``fn(state, item)``. This is **the one way secrets reach a worker**, for build and
  verify alike: ``args`` (decrypters, signers, producers holding keys) are *inherited* by
  the forked workers, never pickled, so no key or password crosses a pipe, argv, the
  environment or a file. Without ``fork`` a pool with ``setup`` runs in this process
  (``workers=1``) rather than send secrets through a pipe. The state lives in the Pool
  (here) or in the worker process, never in a module global of the calling process, so
  two jobs in two threads each have their own.
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
import functools
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
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
                 context: str | None = None, setup: Callable[..., Any] | None = None,
                 args: tuple = ()):
        if workers < 1:
            raise UsageError("workers must be at least 1", code="USAGE_WORKERS")
        if setup is not None and initializer is not None:
            raise InternalError("a Pool takes setup= or initializer=, not both")
        self.max_inflight = max_inflight or 4 * workers
        if self.max_inflight < 1:
            raise UsageError("max_inflight must be at least 1", code="USAGE_WORKERS")
        if context is None:
            context = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        if setup is not None and context != "fork":
            workers = 1   # setup args may hold secrets: inherited at fork, never pickled
        self.workers = workers
        self.context = context
        self.setup = setup
        self.setup_args = args
        self.initializer = _worker_setup if setup is not None else initializer
        self.initargs = (setup, args) if setup is not None else initargs
        self.state: Any = None
        self._executor: ProcessPoolExecutor | None = None
        self._inited_here = False

    def __enter__(self) -> "Pool":
        if self.workers == 1:
            if self.setup is not None:
                self.state = self.setup(*self.setup_args)
            elif self.initializer is not None:
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

    def run(self, fn: Callable[[Any, Any], Any], items: Iterable) -> Iterator:
        """``fn(state, item)`` for every item (``state`` from ``setup``), in input order."""
        if self.setup is None:
            raise InternalError("Pool.run needs a Pool made with setup=")
        if self.workers == 1:
            if not self._inited_here:
                raise InternalError("Pool.run outside its with block")
            state = self.state
            return (fn(state, item) for item in items)
        return self.map(functools.partial(_with_state, fn), items)

    def run_unordered(self, fn: Callable[[Any, Any], Any], items: Iterable) -> Iterator:
        """``fn(state, item)`` for every item, yielded **as they complete** (any order), at
        most ``max_inflight`` submitted at once: a long item does not hold the others up."""
        if self.setup is None:
            raise InternalError("Pool.run_unordered needs a Pool made with setup=")
        if self.workers == 1:
            yield from self.run(fn, items)
            return
        if self._executor is None:
            raise InternalError("Pool.run_unordered outside its with block")
        call = functools.partial(_with_state, fn)
        pending: set = set()
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
                    pending.add(self._executor.submit(call, item))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    try:
                        result = fut.result()
                    except BrokenProcessPool as exc:
                        raise InternalError("a worker process died (killed or crashed)") \
                            from exc
                    yield result
        finally:
            for fut in pending:
                fut.cancel()

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


#: in a worker process only: what ``setup`` made (a worker serves one pool, one job)
_WORKER_STATE: Any = None


def _worker_setup(setup: Callable[..., Any], args: tuple) -> None:
    """Initializer of a ``setup`` pool, in the (forked) worker: its own job, its state."""
    global _WORKER_STATE
    from mediasec._job import Job, _CURRENT
    _CURRENT.set(Job("worker"))
    _WORKER_STATE = setup(*args)


def _with_state(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_WORKER_STATE, item)


def ordered_map(fn: Callable[[Any], Any], items: Iterable, *, workers: int = 2,
                initializer: Callable | None = None, initargs: tuple = (),
                max_inflight: int | None = None, context: str | None = None) -> Iterator:
    """One-shot form of ``Pool(...).map(fn, items)`` (the pool lives as long as the
    iteration; closing the generator stops the workers)."""
    with Pool(workers, initializer=initializer, initargs=initargs,
              max_inflight=max_inflight, context=context) as pool:
        yield from pool.map(fn, items)
