"""The build job's edge: ``BuildPorts`` over the file system, our ISO writer and the workers.

``mediasec.media.jobs.run_build`` makes every decision; this module only does what needs
the operating system: collecting and opening inputs, checking that outputs do not exist,
laying out an ISO image (``AtomicOutput``: an anonymous file named only on commit) or a
staging folder (``FolderSink``: renamed into place on commit), and writing it with the
write engine (``io.engine``: worker processes make every file straight into its place).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import os
from typing import Any, Callable

from mediasec._job import collector_paused
from mediasec.errors import InputError, IntegrityError, InternalError, MediasecError
from mediasec.io.engine import batches, write_folder_files, write_image_files
from mediasec.io.folder import FolderSink, FolderSource, WatchedInputs, resolve_file_id
from mediasec.io.fs import AtomicOutput, check_new_output, env_error
from mediasec.io.iso import IsoSource
from mediasec.io.isowrite import SECTOR, IsoFile, IsoImage
from mediasec.io.workers import Pool, default_workers
from mediasec.media.jobs import DiscFile, DiscLayout

__all__ = ["FileSystemPorts", "DeidentifyingPorts", "IsoDiscWriter", "FolderDiscWriter"]


#: a read-back of fewer bytes than this runs in this process (forking costs more)
READBACK_SPREAD_MIN = 16 << 20


class _ReadBack:
    """A written medium for the read-back: its listing, reads whose OS errors are ours
    (``EnvironmentFailure`` naming the output), and ``map_files``: the files checked by
    worker processes."""

    def __init__(self, source, target: str):
        self._source = source
        self._target = target
        #: which names the listing shows (an ISO image's; a folder has none)
        self.namespace = getattr(source, "namespace", None)

    def map_files(self, check: Callable[[int], Any], items: list[int], sizes: list[int],
                  workers: int | None = None):
        """``check(i)`` for every item, in any order, over ``workers`` processes:
        largest files first, small ones in batches (``io.engine.batches``), so both cores
        stay busy to the end. ``check`` (with the content keys it holds) is inherited at
        fork, never pickled; the results come back pickled (digests, counts)."""
        n = default_workers() if workers is None else workers
        if n < 2 or len(items) < 2 or sum(sizes) < READBACK_SPREAD_MIN:
            yield from map(check, items)
            return
        with Pool(n, max_inflight=2 * n, setup=_keep,
                  args=(check, os.getpid())) as pool:
            for out in pool.run_unordered(_map_batch, batches(sizes, items)):
                yield from out

    def entries(self):
        return self._source.entries()

    def open(self, handle):
        try:
            yield from self._source.open(handle)
        except OSError as exc:
            raise env_error(exc, self._target) from exc


def _progress(files: list[DiscFile], on_bytes: Callable[[int, str], None] | None):
    if on_bytes is None:
        return None
    return lambda i: on_bytes(files[i].producer.size, files[i].name)


def _manifest_of(files: list[DiscFile], digests: list, manifest) -> dict[int, bytes]:
    """The manifest's bytes (index -> data), made once every other file's digest is in."""
    out = {}
    for i, f in enumerate(files):
        if f.role == "manifest":
            data = manifest(digests) if manifest is not None else b""
            if len(data) != f.producer.size:
                raise InternalError(f"{f.name}: planned {f.producer.size} bytes, made "
                                    f"{len(data)}")
            out[i] = data
    return out


class IsoDiscWriter:
    """An image laid out from the planned sizes (``size`` exact), written in one pass by
    the write engine: workers write each file at its extent, this process the image's
    metadata and, at the end, the manifest."""

    def __init__(self, path: str, files: list[DiscFile], layout: DiscLayout,
                 on_bytes: Callable[[int, str], None] | None = None,
                 workers: int | None = None):
        self.out = AtomicOutput(path)
        self.files = files
        self.on_bytes = on_bytes
        self.workers = workers
        self.image = IsoImage([IsoFile(f.components, f.producer, f.name) for f in files],
                              volume_id=layout.volume_id, udf=layout.udf,
                              interchange_level=layout.interchange_level,
                              set_size=layout.set_size, seqnum=layout.seqnum,
                              name=self.out.target)
        self.size = self.image.size
        self.digests: list[str | None] = []
        #: parse the image back beside the workers (``source``): only for a read-back
        self.readback = layout.readback
        self._early: tuple | None = None   # (IsoSource | InputError, structures' digest)

    def _structures(self) -> list[tuple[int, int]]:
        """The image's byte ranges outside every file's data (its padding included): what
        ``write_metadata`` writes, and all a parse of the image's structures reads."""
        data = sorted((o, -(-f.producer.size // SECTOR) * SECTOR)
                      for f, o in zip(self.files, self.image.offsets) if o is not None)
        out, at = [], 0
        for off, n in data:
            if off > at:
                out.append((at, off - at))
            at = max(at, off + n)
        if at < self.size:
            out.append((at, self.size - at))
        return out

    def _structures_digest(self) -> bytes:
        h = hashlib.sha256()
        fd = self.out.fileno
        for off, n in self._structures():
            while n:
                chunk = os.pread(fd, min(n, 1 << 20), off)
                if not chunk:
                    raise OSError(errno.EIO, "the image ended inside its structures")
                h.update(chunk)
                off += len(chunk)
                n -= len(chunk)
        return h.digest()

    def _metadata(self, fp) -> None:
        """Beside the workers: the image's metadata, then (for the read-back) its parse,
        from the image as written, with a digest of every byte outside the files' data;
        ``source`` checks that digest again once every file is in, so the early parse is
        the parse of the final image."""
        self.image.write_metadata(fp)
        if not self.readback:
            return
        try:
            src: Any = IsoSource(f"/proc/self/fd/{self.out.fileno}")
        except InputError as exc:
            src = exc
        self._early = (src, self._structures_digest())

    def write(self, manifest: Callable[[list], bytes] | None) -> int:
        files = self.files
        fp = self.out.open()
        fd = self.out.fileno
        skip = [i for i, f in enumerate(files) if f.role == "manifest"]
        try:
            os.ftruncate(fd, self.size)   # the image's final size, before any extent
            digests = write_image_files(
                fd, [f.producer for f in files], self.image.offsets,
                [f.name for f in files], image=self.out.target, skip=skip,
                workers=self.workers, on_file=_progress(files, self.on_bytes),
                meanwhile=lambda: self._metadata(fp))
            for i, data in _manifest_of(files, digests, manifest).items():
                os.pwrite(fd, data + bytes(-len(data) % SECTOR), self.image.offsets[i])
                digests[i] = hashlib.sha256(data).hexdigest()
                if self.on_bytes is not None:
                    self.on_bytes(len(data), files[i].name)
            size = os.fstat(fd).st_size
        except OSError as exc:
            raise env_error(exc, self.out.target) from exc
        if size != self.size:
            raise InternalError(f"laid out {self.size} bytes, wrote {size}")
        self.digests = digests
        self.checks = digests.checks   # read-back checksums (io.engine.Digests)
        return size

    @contextlib.contextmanager
    def source(self):
        """The image as written, through its still-unnamed file (``/proc/self/fd/N``):
        parsed beside the workers (``_metadata``) if its structures are unchanged since
        (every byte outside the files' data, by digest), else parsed now."""
        early, self._early = self._early, None
        src: Any = None
        if early is not None:
            try:
                same = self._structures_digest() == early[1]
            except OSError as exc:
                raise env_error(exc, self.out.target) from exc
            if same:
                src = early[0]
            elif isinstance(early[0], IsoSource):
                early[0].close()   # changed since: parsed again below, as it is now
        try:
            if src is None:
                src = IsoSource(f"/proc/self/fd/{self.out.fileno}")
            elif isinstance(src, InputError):
                raise src
        except InputError as exc:
            raise IntegrityError(f"read-back: the image as written cannot be read "
                                 f"({exc.message}); nothing was written",
                                 path=self.out.target, code="READBACK_MISMATCH") from exc
        with src:
            src.label = self.out.target
            yield _ReadBack(src, self.out.target)

    def _drop_early(self) -> None:
        early, self._early = self._early, None
        if early is not None and isinstance(early[0], IsoSource):
            early[0].close()

    def commit(self) -> None:
        self._drop_early()
        self.out.commit()
        self.image.close()

    def abort(self) -> None:
        self._drop_early()
        if not self.out.committed:
            self.out.abort()
        self.image.close()


class FolderDiscWriter:
    """A File-set folder built beside its target and renamed into place on commit; the
    write engine's workers write each file."""

    size = None

    def __init__(self, path: str, files: list[DiscFile],
                 on_bytes: Callable[[int, str], None] | None = None,
                 workers: int | None = None):
        self.files = files
        self.on_bytes = on_bytes
        self.workers = workers
        self.sink = FolderSink(path)
        self.sink.__enter__()
        self._open = True
        self.digests: list[str | None] = []

    def write(self, manifest: Callable[[list], bytes] | None) -> int:
        files = self.files
        skip = [i for i, f in enumerate(files) if f.role == "manifest"]
        paths = [None if i in skip else self.sink.place(f.components,
                                                        content=f.role == "content")
                 for i, f in enumerate(files)]
        digests = write_folder_files([f.producer for f in files], paths,
                                     [f.name for f in files], skip=skip,
                                     targets=[os.path.join(self.sink.target, *f.components)
                                              for f in files],
                                     workers=self.workers,
                                     close_in_workers=tuple(
                                         fd for fd in (self.sink.lock_fd,) if fd is not None),
                                     on_file=_progress(files, self.on_bytes))
        for i, data in _manifest_of(files, digests, manifest).items():
            with self.sink.open_file(files[i].components, len(data), content=True) as out:
                out.write(data)
            digests[i] = hashlib.sha256(data).hexdigest()
            if self.on_bytes is not None:
                self.on_bytes(len(data), files[i].name)
        self.digests = digests
        self.checks = digests.checks   # read-back checksums (io.engine.Digests)
        return sum(f.producer.size for f in files)

    @contextlib.contextmanager
    def source(self):
        """The folder as written, in its staging place."""
        yield _ReadBack(FolderSource(self.sink.root), self.sink.target)

    def commit(self) -> None:
        self.sink.commit()
        self.sink.__exit__(None, None, None)
        self._open = False

    def abort(self) -> None:
        if self._open:
            self._open = False
            self.sink.__exit__(RuntimeError, None, None)


#: fewer inputs than this are scanned here: a pool would cost more than it saves
MAP_MIN = 256


def _keep(fn, parent: int):
    if os.getpid() != parent:
        gc.freeze()   # a forked worker: what it inherited is not garbage (io.engine._setup)
    return fn


def _map_batch(fn, batch: list) -> list:
    with collector_paused():   # many small acyclic objects: no collection walks them
        return [fn(item) for item in batch]


class FileSystemPorts:
    """``BuildPorts`` for paths on this machine (one per job: the inputs it watches)."""

    resolve = staticmethod(resolve_file_id)
    check_output = staticmethod(check_new_output)
    absolute = staticmethod(os.path.abspath)

    def __init__(self) -> None:
        self._inputs = WatchedInputs()

    def collect(self, paths):
        return self._inputs.collect(paths)

    def open_input(self, path: str):
        return self._inputs.open(path)

    @staticmethod
    def mapper(workers: int | None):
        """``map(fn, items)`` in order over worker processes (``fn`` inherited at fork,
        so a closure holding an opener is fine; results come back pickled)."""
        n = default_workers() if workers is None else workers

        def run(fn, items: list):
            if n < 2 or len(items) < MAP_MIN:
                yield from map(fn, items)
                return
            size = max(16, min(256, len(items) // (8 * n)))
            with Pool(n, max_inflight=4 * n, setup=_keep, args=(fn, os.getpid())) as pool:
                for out in pool.run(_map_batch, [items[i:i + size]
                                                 for i in range(0, len(items), size)]):
                    yield from out
        return run

    def open_disc(self, path: str, files: list[DiscFile], layout: DiscLayout,
                  on_bytes: Callable[[int, str], None], workers: int | None = None):
        if layout.kind == "iso":
            return IsoDiscWriter(path, files, layout, on_bytes, workers)
        return FolderDiscWriter(path, files, on_bytes, workers)


# -- build --deidentify: the inputs as their de-identified versions -----------------------

class _Rewrite:
    """Where a de-identified input's bytes come from: a new header (in memory), the source's
    pixel data element copied raw from ``span``, then a new tail. ``size`` is exact."""

    __slots__ = ("head", "path", "span", "tail", "size")

    def __init__(self, rewritten, path: str):
        self.head = rewritten.head
        self.path = path
        self.span = rewritten.source.pixel_span
        self.tail = rewritten.tail
        self.size = rewritten.size


class _RewrittenFile:
    """A read-only, seekable file over a ``_Rewrite``: the source is opened only while the
    pixel data is read, so thousands of planned inputs hold no open files."""

    def __init__(self, rw: _Rewrite, opener: Callable[[str], Any]):
        self._rw = rw
        self._opener = opener
        self._src = None
        self._pos = 0
        span = rw.span or (0, 0)
        self._parts = ((0, rw.head), (len(rw.head), span),
                       (len(rw.head) + span[1] - span[0], rw.tail))

    def read(self, n: int = -1) -> bytes:
        size = self._rw.size
        if n is None or n < 0:
            n = size - self._pos
        n = max(0, min(n, size - self._pos))
        out = bytearray()
        while len(out) < n:
            out += self._piece(n - len(out))
        return bytes(out)

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        memoryview(buf).cast("B")[:len(data)] = data
        return len(data)

    def _piece(self, want: int) -> bytes:
        pos = self._pos
        for start, part in reversed(self._parts):
            if pos >= start:
                break
        off = pos - start
        if isinstance(part, bytes):
            data = part[off:off + want]
        else:
            if self._src is None:
                self._src = self._opener(self._rw.path)
            self._src.seek(part[0] + off)
            data = self._src.read(min(want, part[1] - part[0] - off))
            if not data:
                raise InputError("file changed while the File-set was being written",
                                 path=self._rw.path, code="INPUT_CHANGED")
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._rw.size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class DeidentifyingPorts:
    """``BuildPorts`` whose DICOM inputs are their de-identified versions (PS3.15 E.1, the
    originals sealed in the Encrypted Attributes Sequence by ``job``): each header is
    de-identified once, when the inputs are collected, and kept in memory; the pixel data
    is read from the source when the file is written. So the scan, the DICOMDIR, the labels
    and the PDI pages see only de-identified values, and no de-identified (or original)
    plaintext is ever written anywhere but into the medium's own protected files.
    Input DICOMDIRs are dropped (the File-set's is rebuilt); non-DICOM files pass through
    (the scan skips and lists them)."""

    def __init__(self, base: "FileSystemPorts", job):
        self.base = base
        self.job = job
        self.findings: list[tuple[str, Any]] = []     # (input path, Finding)
        self.deidentified = 0
        self._rewrites: dict[str, _Rewrite] = {}

    def __getattr__(self, name):
        return getattr(self.base, name)

    def collect(self, sources) -> list[tuple[str, int]]:
        out = []
        for path, size in self.base.collect(sources):
            with self.base.open_input(path) as f:
                try:
                    head = f.read(132)
                    f.seek(0)
                    if len(head) < 132 or head[128:132] != b"DICM":
                        out.append((path, size))        # not DICOM: the scan lists it
                        continue
                    rewritten, result = self.job.prepare(f)
                except InputError as exc:
                    if exc.code == "DEID_DICOMDIR":
                        continue                        # rebuilt from the new files
                    raise exc.with_path(path)
                except MediasecError as exc:
                    raise exc.with_path(path)
                except OSError as exc:
                    raise env_error(exc, path) from exc
            rw = _Rewrite(rewritten, path)
            self._rewrites[path] = rw
            self.deidentified += 1
            self.findings += [(path, x) for x in result.findings]
            out.append((path, rw.size))
        return out

    def open_input(self, source: str):
        rw = self._rewrites.get(source)
        if rw is None:
            return self.base.open_input(source)
        return _RewrittenFile(rw, self.base.open_input)
