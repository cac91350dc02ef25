"""Folders at the edge: collecting an input pile, resolving File IDs, and ``FolderSink``.

* ``collect_inputs(paths)`` walks files and folders recursively (sorted, symlinked folders
  not followed, each real file once) and yields ``(path, size)`` without opening anything.
* ``open_input`` / ``resolve_file_id`` are the opener and resolver ``media.build`` takes;
  a File ID resolves only inside the DICOMDIR's folder, case-insensitively (``;1`` and a
  trailing ``.`` tolerated), never through ``..`` or a symlink leaving that folder.
* ``FolderSink(target)`` fills a ``StagingDir`` beside the target (files 0644, folders
  0755) and renames it into place on ``commit()``; on error nothing is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import BinaryIO, Iterable, Iterator

from mediasec.dicom.fileid import FileId, match_component, validate_file_id
from mediasec.errors import EnvironmentFailure, InputError, UsageError
from mediasec.io.fs import StagingDir, env_error
from mediasec.io.iso import CHUNK
from mediasec.media.source import MediumEntry

__all__ = ["collect_inputs", "open_input", "resolve_file_id", "FolderSink", "FolderSource",
           "WatchedInputs", "identity"]


def collect_inputs(paths: Iterable[str | os.PathLike],
                   stats: dict[str, os.stat_result] | None = None) -> list[tuple[str, int]]:
    """All regular files under ``paths`` as ``(absolute path, size)``, sorted per folder;
    ``stats`` (if given) gets each file's ``stat`` (the one its size comes from)."""
    out: list[tuple[str, int]] = []
    seen: set[tuple[int, int]] = set()

    def add(path: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            out.append((path, st.st_size))
            if stats is not None:
                stats[path] = st

    def walk(folder: str) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise env_error(exc, folder) from exc
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    walk(e.path)
                elif e.is_file():
                    add(e.path, e.stat())
            except OSError as exc:
                raise env_error(exc, e.path) from exc

    for p in paths:
        path = os.path.abspath(os.fspath(p))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise UsageError("no such file or folder", path=os.fspath(p),
                             code="USAGE_NO_INPUT") from None
        except OSError as exc:
            raise env_error(exc, path) from exc
        if stat.S_ISDIR(st.st_mode):
            walk(path)
        elif stat.S_ISREG(st.st_mode):
            add(path, st)
        else:
            raise UsageError("not a regular file or folder", path=os.fspath(p),
                             code="USAGE_BAD_INPUT")
    return out


def open_input(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise env_error(exc, path) from exc


def identity(st: os.stat_result) -> tuple:
    """What changes when a file is rewritten, even at the same size and with its mtime
    put back (the ctime cannot be): device, inode, size, mtime and ctime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class WatchedInputs:
    """Inputs of one build, each pinned to its identity when first seen (collected or
    opened): a later open of a file that changed since, or a file that changes while it
    is read, is refused (``INPUT_CHANGED``) - the DICOMDIR, the manifest and the file on
    the medium would disagree."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple] = {}

    def collect(self, paths: Iterable[str | os.PathLike]) -> list[tuple[str, int]]:
        stats: dict[str, os.stat_result] = {}
        out = collect_inputs(paths, stats)   # one stat per file: its size and its identity
        for path, _size in out:
            self.seen.setdefault(path, identity(stats[path]))
        return out

    def open(self, path: str) -> BinaryIO:
        f = open_input(path)
        try:
            now = identity(os.fstat(f.fileno()))
        except OSError as exc:
            f.close()
            raise env_error(exc, path) from exc
        before = self.seen.setdefault(path, now)
        if before != now:
            f.close()
            raise InputError("file changed while the build ran (since it was first read)",
                             path=path, code="INPUT_CHANGED")
        return _Watched(f, path, now)


class _Watched:
    """A read-only input file that, when closed, says if it changed while it was open."""

    def __init__(self, f, path: str, ident: tuple):
        self._f = f
        self._path = path
        self._ident = ident

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __iter__(self):
        return iter(self._f)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(check=exc_type is None)
        return False

    def close(self, check: bool = True) -> None:
        if self._f.closed:
            return
        try:
            changed = identity(os.fstat(self._f.fileno())) != self._ident
        except OSError:
            changed = False
        self._f.close()
        if changed and check:
            raise InputError("file changed while it was being read", path=self._path,
                             code="INPUT_CHANGED")


def resolve_file_id(dicomdir_path: str, file_id: FileId) -> tuple[str, int] | None:
    """The file a DICOMDIR record names, inside the DICOMDIR's folder, or None."""
    try:
        validate_file_id(file_id)
    except InputError:
        return None
    base = os.path.realpath(os.path.dirname(dicomdir_path))
    here = base
    for comp in file_id:
        try:
            names = os.listdir(here)
        except OSError:
            return None
        name, _exact = match_component(comp, names)
        if name is None:
            return None
        here = os.path.join(here, name)
    real = os.path.realpath(here)
    if os.path.commonpath([base, real]) != base or not os.path.isfile(real):
        return None
    return real, os.path.getsize(real)


_CONTENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _check_content_name(components) -> None:
    """Non-DICOM content names: ISO 9660 level 1 style, ``NAME`` or ``NAME.EXT``."""
    for i, c in enumerate(components):
        stem, _, ext = c.partition(".") if i == len(components) - 1 else (c, "", "")
        if (not 1 <= len(stem) <= 8 or len(ext) > 3 or not set(stem + ext) <= _CONTENT_CHARS):
            raise UsageError(f"content name {'/'.join(components)!r} is not an 8.3 upper-case "
                             "name", code="USAGE_CONTENT_NAME")


class FolderSink:
    """A File-set folder that appears atomically at ``target`` on ``commit()``."""

    def __init__(self, target: str | os.PathLike):
        self.target = os.path.abspath(os.fspath(target))
        self._staging = StagingDir(self.target)
        self._root: str | None = None
        self._dirs: set[str] = set()
        self._placed: list[str] = []

    def __enter__(self) -> "FolderSink":
        self._root = self._staging.__enter__()   # 0700 until the commit makes it 0755
        return self

    def __exit__(self, exc_type, exc, tb):
        return self._staging.__exit__(exc_type, exc, tb)

    @property
    def root(self) -> str:
        """The staging folder (named only until ``commit()``)."""
        assert self._root is not None
        return self._root

    def _mkdirs(self, parts: tuple[str, ...]) -> str:
        assert self._root is not None
        here = self._root
        for p in parts:
            here = os.path.join(here, p)
            if here not in self._dirs:
                try:
                    os.mkdir(here, 0o755)
                    os.chmod(here, 0o755)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise env_error(exc, os.path.join(self.target, *parts)) from exc
                self._dirs.add(here)
        return here

    def place(self, file_id: FileId, *, content: bool = False) -> str:
        """The path a file of the File-set gets in the staging tree, its folders made
        (``content=True``: a non-DICOM file such as README.TXT, whose last component may
        have an 8.3 extension). Whoever writes it there (a worker process of
        ``io.engine``) creates it 0644; ``commit`` syncs it."""
        path = self._path_for(file_id, content)
        self._placed.append(path)
        return path

    def _path_for(self, file_id: FileId, content: bool) -> str:
        """``file_id`` checked (a File ID, or a content file's 8.3 name) and its staging
        path, its folders made."""
        if content:
            _check_content_name(file_id)
        else:
            validate_file_id(file_id)
        return os.path.join(self._mkdirs(tuple(file_id[:-1])), file_id[-1])

    @contextlib.contextmanager
    def open_file(self, file_id: FileId, size: int, *, content: bool = False
                  ) -> Iterator[BinaryIO]:
        """A file of the File-set (``content=True``: a non-DICOM file such as README.TXT,
        whose last component may have an 8.3 extension)."""
        path = self._path_for(file_id, content)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.fchmod(fd, 0o644)
        except OSError as exc:
            raise env_error(exc, os.path.join(self.target, *file_id)) from exc
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise env_error(exc, os.path.join(self.target, *file_id)) from exc
        if os.path.getsize(path) != size:
            raise EnvironmentFailure(f"wrote {os.path.getsize(path)} bytes, planned {size}",
                                     path=os.path.join(self.target, *file_id))

    @property
    def lock_fd(self) -> int | None:
        """The descriptor holding the staging folder's lock (``io.fs.clean_stale``)."""
        return self._staging._fd

    def _sync_placed(self) -> None:
        """Every placed file on the disk: one ``syncfs`` (Linux), else file by file."""
        from mediasec.io.engine import sync_filesystem   # engine -> workers -> medium -> here
        if not self._placed:
            return
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if sync_filesystem(fd):
                return
        finally:
            os.close(fd)
        for path in self._placed:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def commit(self) -> None:
        assert self._root is not None
        try:
            self._sync_placed()
        except OSError as exc:
            raise env_error(exc, self.target) from exc
        for d in sorted(self._dirs, key=len, reverse=True):
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._staging.commit()


# -- reading a received folder (or mount): the MediumSource ------------------------------
#
# ``FolderSource``: the tree is walked without following symlinked folders; a
# symlinked file is followed only if its real path stays inside the root's real path, else it
# is listed as ``kind="escape"`` and never opened. ``open`` re-checks containment on the real
# path at open time and opens it with ``O_NOFOLLOW``.

_MAX_DEPTH = 32


class FolderSource:
    """A File-set folder or a mounted disc; nothing outside its real root is opened."""

    volume_id = None
    description = "folder"

    def __init__(self, path: str):
        self.label = path
        self.root = os.path.realpath(path)
        self._entries: list[MediumEntry] | None = None
        self._bufs = (bytearray(CHUNK), bytearray(CHUNK))  # reused: one file at a time

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def entries(self) -> list[MediumEntry]:
        if self._entries is None:
            out: list[MediumEntry] = []
            self._walk(self.root, "", 0, out)
            self._entries = out
        return list(self._entries)

    def _walk(self, folder: str, rel: str, depth: int, out: list) -> None:
        if depth > _MAX_DEPTH:
            return
        try:
            items = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise env_error(exc, folder) from exc
        for e in items:
            r = f"{rel}{e.name}"
            try:
                if e.is_symlink():
                    real = os.path.realpath(e.path)
                    if not self._inside(real):
                        out.append(MediumEntry(r, 0, None, "escape"))
                    elif os.path.isfile(real):
                        out.append(MediumEntry(r, os.path.getsize(real), r, "file"))
                    # a symlinked folder inside the root is not walked (no loops)
                elif e.is_dir(follow_symlinks=False):
                    self._walk(e.path, r + "/", depth + 1, out)
                elif e.is_file(follow_symlinks=False):
                    out.append(MediumEntry(r, e.stat(follow_symlinks=False).st_size, r, "file"))
            except OSError as exc:
                raise env_error(exc, e.path) from exc

    def open(self, handle: str) -> Iterator[memoryview]:
        full = os.path.join(self.root, *handle.split("/"))
        real = os.path.realpath(full)
        if not self._inside(real):
            raise OSError(errno.EACCES, "the path leads outside the medium", handle)
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        return self._chunks(fd)

    def _chunks(self, fd: int) -> Iterator[memoryview]:
        try:
            bufs = self._bufs
            i = 0
            while True:
                mv = memoryview(bufs[i])
                n = os.readv(fd, [mv])
                if not n:
                    return
                yield mv[:n]
                i ^= 1
        finally:
            os.close(fd)

    def worker_spec(self) -> tuple:
        return ("folder", self.root)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
