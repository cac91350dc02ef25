"""Per-job state: what used to be process globals, owned by one job object.

A *job* is one run of a verb (a build, a verify, an extract...). Everything that was
remembered across files for speed - the certificate conversions and facts, the parsed
CMS parts and signer plans, the chain-validation results - lives in the ``Job`` that runs,
not in module globals, so two jobs in two threads of one process (a network receiver
runs its handlers in threads) share nothing but immutable data.

The job is *passed down* explicitly to the orchestration (``mediasec.api`` creates one per
call and hands it to the domain drivers and the worker pool); the format layers deep
below reach its memos through ``current_job()``, a ``contextvars`` lookup that the job
sets while it runs (``with job.active():``). A context variable belongs to one thread
(and is inherited by a forked worker process), so the lookup never sees another thread's
job. Code running outside any job (a test calling a primitive directly) gets a job of its
own thread (a new thread starts with an empty context), made on first use.

The cycle-collector pause is process-wide by nature (``gc`` is one switch for the
interpreter); ``Job.collector_paused()`` counts the jobs that asked for it and switches
the collector back on only when the last one is done, and only if it was on before the
first.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import threading
from collections import OrderedDict
from typing import Iterator

__all__ = ["Job", "current_job", "collector_paused"]


class Job:
    """One job's state. Cheap to make; nothing is shared between two instances."""

    def __init__(self, name: str = "job"):
        self.name = name
        self._memos: dict[int, OrderedDict] = {}

    def memo(self, owner: object) -> OrderedDict:
        """The job's map for ``owner`` (a ``_Memo`` declared by a format module)."""
        d = self._memos.get(id(owner))
        if d is None:
            d = self._memos[id(owner)] = OrderedDict()
        return d

    @contextlib.contextmanager
    def active(self) -> Iterator["Job"]:
        """Make this the job that ``current_job()`` returns in this thread (and in worker
        processes forked from it) until the block ends."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def collector_paused(self):
        return collector_paused()


_CURRENT: contextvars.ContextVar[Job | None] = contextvars.ContextVar("mediasec_job",
                                                                      default=None)


def current_job() -> Job:
    """The job running in this thread; outside any job, this thread's own."""
    job = _CURRENT.get()
    if job is None:
        job = Job("thread")
        _CURRENT.set(job)
    return job


_GC_LOCK = threading.Lock()
_GC_PAUSES = 0
_GC_WAS_ENABLED = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while the block runs (see ``media.build``), counted
    across threads: the collector comes back when the last pausing job ends."""
    global _GC_PAUSES, _GC_WAS_ENABLED
    with _GC_LOCK:
        if _GC_PAUSES == 0:
            _GC_WAS_ENABLED = gc.isenabled()
            gc.disable()
        _GC_PAUSES += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_PAUSES -= 1
            if _GC_PAUSES == 0 and _GC_WAS_ENABLED:
                gc.enable()
