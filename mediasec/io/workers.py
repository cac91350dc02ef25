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
import contextlib
import functools
import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from mediasec.errors import InternalError, UsageError
from mediasec.io.fs import env_error
from mediasec.io.medium import reopen
from mediasec.media.examine import ExamineTask, FileFacts, examine_file

__all__ = ["Pool", "ordered_map", "default_workers", "batches", "worker_init", "worker_examine",
           "worker_examine_batch", "examine_ahead", "worker_extract", "examine_fn",
           "SecretOutput"]


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
        inner = _worker_setup if setup is not None else initializer
        inner_args = (setup, args) if setup is not None else initargs
        # every worker: signals left to the parent, dies with it (see _worker_boot)
        self.initializer = _worker_boot
        self.initargs = (os.getpid(), inner, inner_args)
        self._inner = (inner, inner_args)
        self.state: Any = None
        self._executor: ProcessPoolExecutor | None = None
        self._inited_here = False

    def __enter__(self) -> "Pool":
        if self.workers == 1:
            if self.setup is not None:
                self.state = self.setup(*self.setup_args)
            elif self._inner[0] is not None:
                self._inner[0](*self._inner[1])
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

    def run_ahead(self, fn: Callable[[Any, Any], Any], items: Iterable) -> Iterator:
        """``run``, but the first ``max_inflight`` items are submitted now, so the workers
        start at once while the caller does other work before it reads the results (with
        ``workers=1`` nothing runs until then). Close the iterator (or the pool) to cancel
        what was not read."""
        if self.workers == 1:
            return self.run(fn, items)
        if self._executor is None:
            raise InternalError("Pool.run_ahead outside its with block")
        return _Ahead(self._executor, functools.partial(_with_state, fn), iter(items),
                      self.max_inflight)

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
        ahead = _Ahead(self._executor, fn, iter(items), self.max_inflight)
        try:
            yield from ahead
        finally:
            ahead.close()


@contextlib.contextmanager
def _closed_on_failure(results):
    """Awaiting a worker's result: any failure closes ``results`` (what was not started is
    cancelled); a dead worker is our ``InternalError``."""
    try:
        yield
    except BrokenProcessPool as exc:
        results.close()
        raise InternalError("a worker process died (killed or crashed)") from exc
    except BaseException:
        results.close()
        raise


class _Ahead:
    """Ordered results of ``fn(item)`` with at most ``limit`` submitted and not yet read;
    the first ``limit`` are submitted when this is made."""

    def __init__(self, executor, fn, it: Iterator, limit: int):
        self._executor, self._fn, self._it, self._limit = executor, fn, it, limit
        self._pending: collections.deque = collections.deque()
        self._exhausted = False
        self._fill()

    def _fill(self) -> None:
        while not self._exhausted and len(self._pending) < self._limit:
            try:
                item = next(self._it)
            except StopIteration:
                self._exhausted = True
                return
            self._pending.append(self._executor.submit(self._fn, item))

    def __iter__(self):
        return self

    def __next__(self):
        if not self._pending:
            raise StopIteration
        fut = self._pending.popleft()
        self._fill()   # keep ``limit`` in flight while this one is awaited
        with _closed_on_failure(self):
            return fut.result()

    def close(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._exhausted = True


def batches(items: Iterable, size: Callable[[Any], int], *, max_items: int = 32,
            max_size: int = 8 << 20) -> Iterator[tuple]:
    """Consecutive items grouped into tuples of at most ``max_items`` items and, unless an
    item alone is larger, ``max_size`` in ``size``: one pool task per group, so that many
    small files do not cost one process round trip each."""
    group: list = []
    total = 0
    for item in items:
        n = size(item)
        if group and (len(group) >= max_items or total + n > max_size):
            yield tuple(group)
            group, total = [], 0
        group.append(item)
        total += n
    if group:
        yield tuple(group)


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this worker when the process that forked it dies, even by
    kill -9 (otherwise a worker blocked on its task queue waits forever, orphaned)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:   # the parent died before the prctl took effect
        os._exit(1)


def _worker_boot(parent: int, inner: Callable | None, inner_args: tuple) -> None:
    """Initializer of every worker. Ctrl-C reaches the whole process group and a service
    manager may SIGTERM it: the parent alone handles both (it cancels the tasks, removes
    its temporary outputs and shuts the pool down); a worker never prints a traceback of
    its own and finishes or drops its one task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent)
    if inner is not None:
        inner(*inner_args)


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


# -- the medium jobs' tasks (verify, extract) --------------------------------------------
#
# ``worker_init(spec, decrypters, trust, extra)`` is a pool's ``setup`` (its arguments, keys
# included, are inherited by the forked workers, never pickled: see above) and returns the
# worker's state; ``worker_examine(state, task)`` and ``worker_extract(state, task)`` are
# the tasks.

def worker_init(spec: tuple, decrypters=(), trust=None, extra: dict | None = None) -> dict:
    """Pool ``setup``: reopen the medium; the decrypters and trust context are the caller's
    own objects (inherited at fork, see ``io.workers``)."""
    return dict(reader=reopen(spec), decrypters=list(decrypters), trust=trust,
                extra=dict(extra or {}))


def worker_examine(state: dict, task: ExamineTask) -> FileFacts:
    """Pool task: read one file once (see ``examine_file``)."""
    return examine_file(state["reader"].open(task.handle), path=task.path, size=task.size,
                        decrypters=state["decrypters"], trust=state["trust"])


def worker_examine_batch(state: dict, tasks: tuple) -> list[FileFacts]:
    """Pool task: ``worker_examine`` of a few consecutive files (one round trip)."""
    return [worker_examine(state, t) for t in tasks]


def examine_ahead(pool: Pool, tasks: Iterable[ExamineTask]) -> Iterator[FileFacts]:
    """``verify``'s reading of every file: ``worker_examine_batch`` over ``batches`` of
    ``tasks``, submitted **largest batch first** and started now (the workers read while
    the caller indexes the DICOMDIR), the facts yielded **in the order of** ``tasks`` (the
    report's order). Largest first, a 150 MB cine is not left for the end while the other
    worker idles. ``close()`` the iterator (or the pool) to cancel what was not read."""
    groups = list(batches(tasks, lambda t: t.size))
    if pool.workers == 1:
        return _Flat(pool.run(worker_examine_batch, groups))
    if pool._executor is None:
        raise InternalError("examine_ahead outside the pool's with block")
    order = sorted(range(len(groups)), key=lambda i: -sum(t.size for t in groups[i]))
    return _Flat(_Reordered(pool._executor, functools.partial(_with_state, worker_examine_batch),
                            groups, order, pool.max_inflight))


class _Flat:
    """The items of an iterator of lists, with the iterator's ``close``."""

    def __init__(self, groups: Iterator):
        self._groups = groups
        self._cur: Iterator = iter(())

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            for item in self._cur:
                return item
            self._cur = iter(next(self._groups))

    def close(self) -> None:
        close = getattr(self._groups, "close", None)
        if close is not None:
            close()


class _Reordered:
    """``fn(items[i])`` for every i, submitted in the order ``order`` with at most ``limit``
    running or queued, yielded in index order. A result that is done but not yet read does
    not count against ``limit`` (the reader may be waiting for an item submitted later); it
    is a small value (a batch's facts), and there are at most ``len(items)`` of them."""

    def __init__(self, executor, fn, items: list, order: list[int], limit: int):
        self._executor, self._fn, self._items, self._limit = executor, fn, items, limit
        self._queue = collections.deque(order)
        self._futures: dict[int, Any] = {}
        self._running: set = set()
        self._next = 0
        self._fill()

    def _fill(self) -> None:
        while self._queue and len(self._running) < self._limit:
            i = self._queue.popleft()
            fut = self._executor.submit(self._fn, self._items[i])
            self._futures[i] = fut
            self._running.add(fut)

    def __iter__(self):
        return self

    def __next__(self):
        if self._next >= len(self._items):
            raise StopIteration
        with _closed_on_failure(self):
            while True:
                fut = self._futures.get(self._next)
                if fut is not None and fut.done():
                    break
                if not self._running:
                    raise InternalError("the reordered results lost an item")
                _, self._running = wait(self._running, return_when=FIRST_COMPLETED)
                self._fill()
            del self._futures[self._next]
            self._next += 1
            return fut.result()

    def close(self) -> None:
        for fut in self._futures.values():
            fut.cancel()
        self._futures.clear()
        self._running.clear()
        self._queue.clear()
        self._next = len(self._items)


def examine_fn(source, decrypters, trust) -> Any:
    """An in-process examiner bound to ``source`` (the ``workers=1`` path)."""
    def run(task: ExamineTask) -> FileFacts:
        return examine_file(source.open(task.handle), path=task.path, size=task.size,
                            decrypters=decrypters, trust=trust)
    return run


# -- extract: plaintext only into anonymous files in the output's staging folder ---------------

class SecretOutput:
    """An ``O_TMPFILE`` output at ``root/rel`` (folders made as needed); named only on
    ``commit()``. Raises ``AnonymousUnsupported`` at once where the file system has none."""

    def __init__(self, root: str, rel: str, *, private: bool = False):
        from mediasec.io.fs import AtomicOutput

        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise UsageError(f"bad output path {rel!r}", code="INTERNAL_OUTPUT_PATH")
        folder = _output_folders(root, parts[:-1], private)
        self._out = AtomicOutput(os.path.join(folder, parts[-1]), secret=True,
                                 mode=0o600 if private else 0o644)
        self._f = self._out.open()

    def write(self, mv) -> None:
        try:
            while mv:
                n = self._f.write(mv)
                mv = mv[n:]
        except OSError as exc:
            raise env_error(exc, self._out.target) from exc

    def commit(self) -> None:
        self._out.commit()

    def abort(self) -> None:
        self._out.abort()


def _output_folders(root: str, parts, private: bool) -> str:
    """Make ``root/parts...`` with mode 0755 (0700 when ``private``) whatever the umask."""
    folder = root
    for p in parts:
        folder = os.path.join(folder, p)
        try:
            os.mkdir(folder)
            os.chmod(folder, 0o700 if private else 0o755)
        except FileExistsError:
            pass
        except OSError as exc:
            raise env_error(exc, folder) from exc
    return folder


class _NullOutput:
    def write(self, mv) -> None:
        pass

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


def worker_extract(st: dict, task):
    """Pool task for ``extract``: one read, plaintext into an anonymous file, committed only
    when the checks pass. Without ``O_TMPFILE`` the file is checked in a first read and
    written (named temp file) in a second one."""
    from mediasec.io.fs import AnonymousUnsupported, AtomicOutput
    from mediasec.media.extract import extract_file

    root = st["extra"]["staging"]
    private = st["extra"].get("private", False)
    kw = dict(decrypters=st["decrypters"], trust=st["trust"],
              include_invalid=st["extra"].get("include_invalid", False))
    try:
        return extract_file(st["reader"].open(task.handle), task,
                            open_output=lambda rel: SecretOutput(root, rel, private=private),
                            **kw)
    except AnonymousUnsupported:
        pass
    first = extract_file(st["reader"].open(task.handle), task,
                         open_output=lambda rel: _NullOutput(), **kw)
    if first.output is None:
        return first

    def named(rel):
        out = SecretOutput.__new__(SecretOutput)
        path = os.path.join(root, *rel.split("/"))
        _output_folders(root, rel.split("/")[:-1], private)
        out._out = AtomicOutput(path, mode=0o600 if private else 0o644)
        out._f = out._out.open()
        return out
    return extract_file(st["reader"].open(task.handle), task, open_output=named, **kw)
