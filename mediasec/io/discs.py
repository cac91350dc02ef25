"""The build job's edge: ``BuildPorts`` over the file system, pycdlib and the workers.

``mediasec.media.jobs.run_build`` makes every decision; this module only does what needs
the operating system: collecting and opening inputs, checking that outputs do not exist,
laying out and writing an ISO image (``AtomicOutput``: an anonymous file named only on
commit) or a staging folder (``FolderSink``: renamed into place on commit), and forking
the worker processes that produce small files (``Prefetcher``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

from mediasec.errors import InputError, IntegrityError
from mediasec.io.folder import FolderSink, collect_inputs, open_input, resolve_file_id
from mediasec.io.fs import AtomicOutput, check_new_output, env_error
from mediasec.io.iso import IsoFile, IsoImage
from mediasec.io.medium import FolderSource, IsoSource
from mediasec.io.prefetch import Prefetcher
from mediasec.media.jobs import DiscFile, DiscLayout
from mediasec.media.plan import write_producer

__all__ = ["FileSystemPorts", "IsoDiscWriter", "FolderDiscWriter", "check_new_output"]


class _ReadBack:
    """A written medium for the read-back: its listing, and reads whose OS errors are ours
    (``EnvironmentFailure`` naming the output)."""

    def __init__(self, source, target: str):
        self._source = source
        self._target = target

    def entries(self):
        return self._source.entries()

    def open(self, handle):
        try:
            yield from self._source.open(handle)
        except OSError as exc:
            raise env_error(exc, self._target) from exc


class IsoDiscWriter:
    """An image laid out from the planned sizes (``size`` exact), written in one pass."""

    def __init__(self, path: str, files: list[DiscFile], layout: DiscLayout):
        self.out = AtomicOutput(path, anonymous=True)
        self.files = files
        self.image = IsoImage([IsoFile(f.components, f.producer, f.name) for f in files],
                              volume_id=layout.volume_id, udf=layout.udf,
                              interchange_level=layout.interchange_level,
                              set_size=layout.set_size, seqnum=layout.seqnum,
                              name=self.out.target)
        self.size = self.image.size

    def write(self, manifest: Callable[[], bytes] | None) -> int:
        patch = {f.components: manifest for f in self.files
                 if f.role == "manifest" and manifest is not None}
        return self.image.write(self.out, patch=patch)

    @contextlib.contextmanager
    def source(self):
        """The image as written, through its still-unnamed file (``/proc/self/fd/N``)."""
        try:
            src = IsoSource(f"/proc/self/fd/{self.out.fileno}")
        except InputError as exc:
            raise IntegrityError(f"read-back: the image as written cannot be read "
                                 f"({exc.message}); nothing was written",
                                 path=self.out.target, code="READBACK_MISMATCH") from exc
        with src:
            src.label = self.out.target
            yield _ReadBack(src, self.out.target)

    def commit(self) -> None:
        self.out.commit()

    def abort(self) -> None:
        if not self.out.committed:
            self.out.abort()


class FolderDiscWriter:
    """A File-set folder built beside its target and renamed into place on commit."""

    size = None

    def __init__(self, path: str, files: list[DiscFile], on_bytes: Callable[[int, str], None]):
        self.files = files
        self.on_bytes = on_bytes
        self.sink = FolderSink(path)
        self.sink.__enter__()
        self._open = True

    def write(self, manifest: Callable[[], bytes] | None) -> int:
        for f in self.files:
            content = f.role in ("content", "manifest")
            with self.sink.open_file(f.components, f.producer.size, content=content) as out:
                if f.role == "manifest":
                    data = manifest() if manifest is not None else b""
                    out.write(data)
                    self.on_bytes(len(data), f.name)
                else:
                    write_producer(f.producer, out)
        return sum(f.producer.size for f in self.files)

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


class FileSystemPorts:
    """``BuildPorts`` for paths on this machine."""

    collect = staticmethod(collect_inputs)
    open_input = staticmethod(open_input)
    resolve = staticmethod(resolve_file_id)
    check_output = staticmethod(check_new_output)
    absolute = staticmethod(os.path.abspath)

    def open_disc(self, path: str, files: list[DiscFile], layout: DiscLayout,
                  on_bytes: Callable[[int, str], None]):
        if layout.kind == "iso":
            return IsoDiscWriter(path, files, layout)
        return FolderDiscWriter(path, files, on_bytes)

    def prefetch(self, producers: list, workers: int | None) -> Prefetcher:
        return Prefetcher(producers, workers=workers)
