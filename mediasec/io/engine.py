"""The write engine: worker processes make each file straight into its planned place.

A medium's layout is fixed before a byte is written (an image's extents come from the
exactly planned sizes; a folder's paths from the File IDs), so no byte needs to pass
through this process: each worker runs a file's pipeline (read -> transcode -> protect ->
hash) and writes what comes out

* of an image: with ``os.pwrite`` at the file's extent, into the image file (the open,
  anonymous ``AtomicOutput``, inherited at fork), the sector's zero padding included;
* of a folder: into its own new file in the staging tree (folders made here first);

and sends back only the file's SHA-256 (for ``MANIFEST.SHA`` and the result). This
process meanwhile writes the image's metadata (volume descriptors, path tables,
directories, the UDF side: ``IsoImage.write_metadata``), then the manifest, once every
digest is in.

Scheduling: files go out largest first (so the last ones to finish are small and both
cores stay busy to the end), small ones in batches of about ``BATCH_BYTES`` (one round
trip per batch, not per file), to whichever worker is free (``Pool.run_unordered``).

Writeback: as each file is done, a thread of this process asks the kernel to start
writing it back (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, Linux; elsewhere nothing),
so the ``fsync`` of the commit finds little left to do. Not the workers: that call
blocks while the disk's queue is full, and a worker waiting there leaves a core idle.
A folder is synced at commit with one ``syncfs`` (else file by file).

Secrets reach the workers only by inheritance at fork (``Pool(setup=...)``, see
``io.workers``): the producers hold the content keys and the signing keys.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import hashlib
import os
import queue
import threading
from typing import Callable, Sequence

from mediasec.errors import InternalError
from mediasec.io.fs import env_error
from mediasec.io.workers import Pool, default_workers
from mediasec.media.readback import new_check

__all__ = ["Digests", "write_image_files", "write_folder_files", "start_writeback",
           "sync_filesystem", "batches", "BATCH_BYTES", "BATCH_FILES", "GATHER", "SECTOR"]

SECTOR = 2048
#: small files go to a worker in batches of about this many bytes ...
BATCH_BYTES = 4 << 20
#: ... or of this many files
BATCH_FILES = 64
#: chunks shorter than this are gathered into one buffer before they are written
GATHER = 64 << 10
_ZEROS = memoryview(bytes(SECTOR))   # a sector's padding at most

_SYNC_FILE_RANGE_WRITE = 2
_libc = None


def _c():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(None, use_errno=True)
            lib.sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                            ctypes.c_uint)
            lib.syncfs.argtypes = (ctypes.c_int,)
        except (OSError, AttributeError):
            lib = False
        _libc = lib
    return _libc


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` (0: to the end) back
    to the disk, without waiting for it (a hint: nothing where the call is missing)."""
    lib = _c()
    if lib:
        lib.sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class _Writeback(threading.Thread):
    """Starts the writeback of each file made, beside the workers: ``put((fd, offset,
    length))`` for a range of the image, ``put((path, 0, 0))`` for a folder's file."""

    def __init__(self):
        super().__init__(name="mediasec-writeback", daemon=True)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self.start()

    def put(self, item) -> None:
        self._q.put(item)

    def run(self) -> None:
        while (item := self._q.get()) is not None:
            where, offset, length = item
            try:
                if isinstance(where, str):
                    fd = os.open(where, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        start_writeback(fd, 0, 0)
                    finally:
                        os.close(fd)
                else:
                    start_writeback(where, offset, length)
            except OSError:
                pass   # a hint: the commit's fsync makes it durable either way

    def close(self, *, drop: bool = False) -> None:
        """Wait until every range given was handed to the kernel (``drop``: forget those
        not handed yet - on a failure nothing will be committed)."""
        if drop:
            while True:
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    break
        self._q.put(None)
        self.join()



def sync_filesystem(fd: int) -> bool:
    """``syncfs`` the file system holding ``fd``; False where it is unavailable."""
    lib = _c()
    if not lib:
        return False
    if lib.syncfs(fd) != 0:
        e = ctypes.get_errno()
        if e in (errno.ENOSYS, errno.EINVAL):
            return False
        raise OSError(e, os.strerror(e))
    return True


def batches(sizes: Sequence[int], indices: Sequence[int]) -> list[list[int]]:
    """``indices`` largest file first, small files grouped: each batch holds about
    ``BATCH_BYTES`` (a larger file alone) and at most ``BATCH_FILES`` files."""
    order = sorted(indices, key=lambda i: -sizes[i])   # stable: equal sizes in plan order
    out: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for i in order:
        cur.append(i)
        total += sizes[i]
        if total >= BATCH_BYTES or len(cur) >= BATCH_FILES:
            out.append(cur)
            cur, total = [], 0
    if cur:
        out.append(cur)
    return out


# -- in a worker ---------------------------------------------------------------------------

class _Shared:
    """What the workers inherit: the producers and where each file goes."""

    def __init__(self, producers: list, names: list[str], *, fd: int | None = None,
                 offsets: list | None = None, paths: list | None = None, pad: bool = False,
                 where: str | list[str] | None = None, close: tuple[int, ...] = ()):
        self.producers = producers
        self.names = names
        #: what an I/O error names: the image, or each file's final path
        self.where = where
        self.fd = fd
        self.offsets = offsets
        self.paths = paths
        self.pad = pad
        self.buffer: bytearray | None = None   # made in each process that writes
        self.parent = os.getpid()
        #: descriptors a forked worker closes at once (a staging folder's lock: it must go
        #: with this process, not outlive it in a worker - see ``io.fs.clean_stale``)
        self.close = close


def _setup(shared: _Shared) -> _Shared:
    # in a forked worker: what it inherited (the plan, the layout) is never garbage, so the
    # collector need not walk it again and again (nor copy its pages by touching them)
    if os.getpid() != shared.parent:
        gc.freeze()
        for fd in shared.close:
            try:
                os.close(fd)
            except OSError:
                pass
    return shared


class _Writer:
    """One file's bytes to ``fd`` from ``base``: short chunks gathered in ``buf``, long ones
    written where they are (one ``pwritev`` with what was gathered before them)."""

    def __init__(self, fd: int, base: int, buf: bytearray):
        self.fd = fd
        self.written = base        # bytes before this offset are written
        self.buf = buf
        self.view = memoryview(buf)
        self.fill = 0              # gathered bytes, to go at ``written``

    @property
    def pos(self) -> int:
        return self.written + self.fill

    def _put(self, parts: list, n: int) -> None:
        at = self.written
        left = n
        while left:
            k = os.pwritev(self.fd, parts, at)
            if k <= 0:
                raise OSError(errno.EIO, "short write")
            at += k
            left -= k
            if left:   # a partial write: drop what went out, retry the rest
                rest = []
                for p in parts:
                    if k >= len(p):
                        k -= len(p)
                    else:
                        rest.append(p[k:])
                        k = 0
                parts = rest
        self.written += n
        self.fill = 0

    def write(self, chunk) -> None:
        n = len(chunk)
        if n < GATHER:
            if self.fill + n > len(self.buf):
                self.flush()
            self.buf[self.fill:self.fill + n] = chunk
            self.fill += n
        elif self.fill:
            self._put([self.view[:self.fill], chunk], self.fill + n)
        else:
            self._put([chunk], n)

    def zeros(self, n: int) -> None:
        if self.fill + n > len(self.buf):
            self.flush()
        self.buf[self.fill:self.fill + n] = bytes(n)
        self.fill += n

    def last(self, chunk, pad: int) -> None:
        """A file's last chunk and then ``pad`` zero bytes (its sector's padding): one
        ``pwritev`` with what was gathered before, not one for the chunk and one more for
        the padding (a syscall per file saved on piles of small files)."""
        n = len(chunk)
        if n < GATHER or self.fill + n + pad <= len(self.buf):
            self.write(chunk)
            self.zeros(pad)
            return
        parts = [self.view[:self.fill]] if self.fill else []
        parts += [chunk, _ZEROS[:pad]]
        self._put(parts, self.fill + n + pad)

    def flush(self) -> None:
        if self.fill:
            self._put([self.view[:self.fill]], self.fill)

    def close(self) -> None:
        self.flush()


def _where(shared: _Shared, index: int) -> str:
    w = shared.where
    if w is None:
        return shared.names[index]
    return w if isinstance(w, str) else w[index]


def _make_one(shared: _Shared, index: int) -> str:
    producer = shared.producers[index]
    size = producer.size
    if shared.buffer is None:
        shared.buffer = bytearray(GATHER)
    own_fd = shared.fd is None
    if own_fd:
        try:
            fd = os.open(shared.paths[index], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            os.fchmod(fd, 0o644)   # whatever the umask
        except OSError as exc:
            raise env_error(exc, _where(shared, index)) from exc
        base = 0
    else:
        fd, base = shared.fd, shared.offsets[index]
    # a file pipeline hashes its own output (the manifest's hash stage): no second pass
    hashes_itself = getattr(producer, "computes_sha256", False)
    h = None if hashes_itself else hashlib.sha256()
    check = new_check()   # the read-back's checksum of the same bytes (media.readback)
    # an image's file ends with zeros to a whole sector (as pycdlib pads: no hole in the
    # image), written with the file's last chunk
    pad = -size % SECTOR if shared.pad else 0
    try:
        out = _Writer(fd, base, shared.buffer)
        made = 0
        try:
            for c in producer.chunks():
                n = len(c)
                if made + n > size:
                    raise InternalError(f"{shared.names[index]}: made more than the planned "
                                        f"{size} bytes")
                if h is not None:
                    h.update(c)
                check.update(c)
                made += n
                if pad and made == size:
                    out.last(c, pad)
                    pad = 0
                else:
                    out.write(c)
            if made != size:
                raise InternalError(f"{shared.names[index]}: made {made} bytes, "
                                    f"planned {size}")
            if pad:
                out.zeros(pad)
            out.close()
        finally:
            out.view.release()
    except OSError as exc:
        raise env_error(exc, _where(shared, index)) from exc
    finally:
        if own_fd:
            os.close(fd)
    return producer.sha256 if hashes_itself else h.hexdigest(), check.hexdigest()


def _make(shared: _Shared, batch: list[int]) -> list[tuple[int, tuple[str, str]]]:
    return [(i, _make_one(shared, i)) for i in batch]


# -- in this process -----------------------------------------------------------------------

class Digests(list):
    """Each file's SHA-256 (None: not made), and in ``checks`` its read-back checksum
    (``media.readback.new_check``) of the same bytes."""

    def __init__(self, n: int):
        super().__init__([None] * n)
        self.checks: list[str | None] = [None] * n


def _run(shared: _Shared, todo: list[int], workers: int | None,
         on_file: Callable[[int], None] | None, meanwhile: Callable[[], None] | None
         ) -> Digests:
    sizes = [p.size for p in shared.producers]
    digests = Digests(len(sizes))
    n = default_workers() if workers is None else workers
    with Pool(n, max_inflight=2 * n, setup=_setup, args=(shared,)) as pool:
        # forked already: threads of ours are safe now
        writeback = _Writeback() if _c() else None
        side = None
        if meanwhile is not None:
            if pool.workers > 1:
                side = _Side(meanwhile)
            else:
                meanwhile()
        # one process: no round trips to save, so file by file in plan order (progress
        # after each file); else largest first, in batches
        jobs = batches(sizes, todo) if pool.workers > 1 else [[i] for i in todo]
        results = pool.run_unordered(_make, jobs)
        ok = False
        try:
            for done in results:
                for i, (digest, check) in done:
                    digests[i] = digest
                    digests.checks[i] = check
                    if writeback is not None:
                        writeback.put((shared.paths[i], 0, 0) if shared.fd is None else
                                      (shared.fd, shared.offsets[i], sizes[i]))
                    if on_file is not None:
                        on_file(i)
            ok = True
        finally:
            results.close()
            if side is not None:
                side.join()   # even on an error: nothing of ours writes after we return
            if writeback is not None:
                writeback.close(drop=not ok)
        if side is not None:
            side.result()
    return digests


class _Side(threading.Thread):
    """Runs ``fn`` beside the workers; ``result()`` re-raises what it raised."""

    def __init__(self, fn: Callable[[], None]):
        super().__init__(name="mediasec-write-side", daemon=True)
        self._fn = fn
        self._exc: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:   # handed to the caller by result()
            self._exc = exc

    def result(self) -> None:
        if self._exc is not None:
            raise self._exc


def write_image_files(fd: int, producers: list, offsets: list, names: list[str], *,
                      image: str | None = None, skip: Sequence[int] = (),
                      workers: int | None = None,
                      on_file: Callable[[int], None] | None = None,
                      meanwhile: Callable[[], None] | None = None) -> Digests:
    """Make every file (but ``skip``) into the image open at ``fd``: file ``i`` at byte
    ``offsets[i]``, padded with zeros to a whole sector. ``meanwhile()`` runs in this
    process while the workers write (the image's metadata). Returns the SHA-256 of each
    file made (None for those skipped), their read-back checksums in ``.checks``
    (``Digests``). An I/O error names ``image``."""
    skip = set(skip)
    shared = _Shared(producers, names, fd=fd, offsets=offsets, pad=True, where=image)
    return _run(shared, [i for i in range(len(producers)) if i not in skip], workers,
                on_file, meanwhile)


def write_folder_files(producers: list, paths: list[str], names: list[str], *,
                       targets: list[str] | None = None, skip: Sequence[int] = (),
                       workers: int | None = None, close_in_workers: tuple[int, ...] = (),
                       on_file: Callable[[int], None] | None = None) -> Digests:
    """Make every file (but ``skip``) as the new file ``paths[i]`` (its folder exists).
    Returns the SHA-256 of each file made (None for those skipped; ``Digests``: their
    read-back checksums in ``.checks``). An I/O error names
    ``targets[i]`` (the file's final path); ``close_in_workers``: descriptors of this
    process a worker must not keep (the staging folder's lock)."""
    skip = set(skip)
    shared = _Shared(producers, names, paths=paths, where=targets, close=close_in_workers)
    return _run(shared, [i for i in range(len(producers)) if i not in skip], workers,
                on_file, None)
