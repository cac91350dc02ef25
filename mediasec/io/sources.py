"""What ``send`` reads: disc images, folders, and files named one by one.

``open_sources(paths)`` gives one ``MediumSource`` per disc image or folder (the readers of
``io.medium``) plus, for the plain files named on the command line, one ``FilesSource``
that lists them (no DICOMDIR, nothing else of their folders is read).
"""

from __future__ import annotations

import os

from mediasec.errors import UsageError
from mediasec.io.fs import env_error
from mediasec.io.medium import FolderSource, open_medium
from mediasec.media.source import MediumEntry

__all__ = ["FilesSource", "open_sources", "looks_like_image"]


class FilesSource:
    """Files named on the command line, as a ``MediumSource`` (no DICOMDIR, no escapes)."""

    description = "files"
    volume_id = None

    def __init__(self, paths: list[str]):
        self.label = "files"
        self._entries = []
        for p in paths:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                raise UsageError("no such file or folder", path=p,
                                 code="USAGE_NO_MEDIUM") from None
            except OSError as exc:
                raise env_error(exc, p) from exc
            self._entries.append(MediumEntry(os.path.abspath(p).lstrip("/"), st.st_size,
                                             os.path.abspath(p), "file"))
        self._reader = FolderSource("/")

    def entries(self) -> list[MediumEntry]:
        return list(self._entries)

    def open(self, handle):
        try:
            fd = os.open(handle, os.O_RDONLY)
        except OSError as exc:
            raise env_error(exc, handle) from exc
        return self._reader._chunks(fd)

    def worker_spec(self) -> tuple:
        return ("folder", "/")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def looks_like_image(path: str) -> bool:
    """An ISO 9660 image (``CD001`` at 32769), not a DICOM file named on the line."""
    try:
        with open(path, "rb") as f:
            f.seek(32769)
            return f.read(5) == b"CD001"
    except OSError:
        return False


def open_sources(paths) -> list:
    """The sources to read, in the order given (the named files first, as one source)."""
    paths = [os.fspath(p) for p in paths]
    files = [s for s in paths if os.path.isfile(s) and not looks_like_image(s)]
    out = [FilesSource(files)] if files else []
    try:
        for s in paths:
            if s not in files:
                out.append(open_medium(s))
    except BaseException:
        for src in out:
            src.close()
        raise
    return out


def local_path(source, handle) -> str | None:
    """The file's own path on this machine, when it has one inside the source (a folder's
    file, a file named on the line); None for a file inside a disc image."""
    if isinstance(source, FilesSource):
        return handle
    if isinstance(source, FolderSource):
        real = os.path.realpath(os.path.join(source.root, *handle.split("/")))
        return real if real.startswith(source.root.rstrip(os.sep) + os.sep) else None
    return None


CHUNK = 1 << 20


def read_fd_chunks(fd: int, size: int):
    """``size`` bytes of ``fd`` from offset 0 through one reused buffer (the byte-path
    contract: a chunk is valid until the next is asked for)."""
    buf = bytearray(min(CHUNK, max(size, 1)))
    off = 0
    while off < size:
        mv = memoryview(buf)[:min(len(buf), size - off)]
        n = os.preadv(fd, [mv], off)
        if n <= 0:
            raise OSError(5, "the file ended early (changed while read?)")
        off += n
        yield mv[:n]
