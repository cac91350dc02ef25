"""Received media at the edge: ISO images (pycdlib, never mounted) and folders (or mounts).

Both implement ``mediasec.media.validate.MediumSource``: a listing of regular files with
sizes, chunked reads by picklable handle, and a ``worker_spec()`` from which a worker
process reopens the same medium (``reopen``).

**ISO images** (``IsoSource``). pycdlib parses the volume descriptors and directory
records once, in the calling process; the listing uses the richest namespace present -
Rock Ridge (POSIX names), else UDF, else Joliet, else ISO 9660 (whose ``NAME.;1`` is shown
as ``NAME``) - and keeps each file's ISO 9660 name beside it for the ``ISO_NAME`` check.
A file's handle is its list of byte extents in the image (``get_file_byte_extents``, which
covers multi-extent ISO 9660 files and UDF allocation descriptors); reading is ``preadv``
of those ranges into two reused 1 MiB buffers, checked against the image size, so a worker
needs only the image path, not a second pycdlib parse of thousands of directory records.
Nothing is mounted and nothing outside the image is ever read. Rock Ridge symbolic links are
listed (``kind="link"``) and never followed.

**Folders** (``FolderSource``): the tree is walked without following symlinked folders; a
symlinked file is followed only if its real path stays inside the root's real path, else it
is listed as ``kind="escape"`` and never opened. ``open`` re-checks containment on the real
path at open time and opens it with ``O_NOFOLLOW``.

Worker glue: ``worker_init(spec, decrypters, trust, extra)`` (the pool's ``setup``: its
arguments, keys included, are inherited by the forked workers, never pickled - see
``io.workers``) returns the worker's state; ``worker_examine(state, task)`` and
``worker_extract(state, task)`` are the tasks.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import Any, Iterator

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from mediasec.errors import InputError, UsageError
from mediasec.io.fs import env_error
from mediasec.media.validate import ExamineTask, FileFacts, MediumEntry, examine_file

__all__ = ["IsoSource", "FolderSource", "open_medium", "medium_spec",
           "worker_extract", "SecretOutput", "reopen", "worker_init",
           "worker_examine", "CHUNK"]

CHUNK = 1 << 20
_VERSION = re.compile(r";\d*\Z")
_MAX_DEPTH = 32


def _display(name: str) -> str:
    """An ISO 9660/Joliet identifier as a user sees it: ``;1`` and a trailing ``.`` cut."""
    n = _VERSION.sub("", name)
    return n[:-1] if n.endswith(".") and len(n) > 1 else n


def _read_ranges(fd: int, ranges, image_size: int, bufs) -> Iterator[memoryview]:
    """Yield the ranges as views into the two reused ``bufs``; each is valid only until the
    next is requested (the byte-path contract, ``mediasec.media.plan.Producer``; the reader
    serves one file at a time)."""
    i = 0
    for off, length in ranges:
        if off < 0 or length < 0 or off + length > image_size:
            raise OSError(errno.EIO, "the file's extent lies outside the image")
        end = off + length
        while off < end:
            mv = memoryview(bufs[i])[:min(CHUNK, end - off)]
            n = os.preadv(fd, [mv], off)
            if n <= 0:
                raise OSError(errno.EIO, "the image ended inside a file extent")
            off += n
            yield mv[:n]
            i ^= 1


class _RawImage:
    """Reads files of an image by extent, with no directory parse (for workers)."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
            self.size = _device_size(self._fd)
        except OSError as exc:
            raise env_error(exc, path) from exc
        # two 1 MiB buffers for the whole medium, not per file (zeroing 2 MiB per file
        # cost more than hashing a 500 KiB file)
        self._bufs = (bytearray(CHUNK), bytearray(CHUNK))

    def open(self, handle) -> Iterator[memoryview]:
        return _read_ranges(self._fd, handle, self.size, self._bufs)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _device_size(fd: int) -> int:
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    return os.lseek(fd, 0, os.SEEK_END)   # a block device (a disc in a drive)


class IsoSource:
    """An ISO 9660 image (with Joliet, Rock Ridge or UDF) read through pycdlib."""

    def __init__(self, path: str):
        self.label = path
        self.path = os.path.abspath(path)
        self._raw = _RawImage(self.path)
        iso = pycdlib.PyCdlib()
        try:
            iso.open(self.path)
        except PyCdlibException as exc:
            self._raw.close()
            raise InputError(f"not a readable ISO 9660 image ({' '.join(str(exc).split())})",
                             path=path, code="MEDIUM_NOT_ISO") from exc
        except OSError as exc:
            self._raw.close()
            raise env_error(exc, path) from exc
        self._iso = iso
        if iso.has_rock_ridge():
            self.namespace = "rr_path"
        elif iso.has_udf():
            self.namespace = "udf_path"
        elif iso.has_joliet():
            self.namespace = "joliet_path"
        else:
            self.namespace = "iso_path"
        names = {"rr_path": "Rock Ridge", "udf_path": "UDF", "joliet_path": "Joliet",
                 "iso_path": "ISO 9660"}
        self.description = f"ISO 9660 image ({names[self.namespace]} names)"
        pvd = getattr(iso, "pvd", None)
        vol = getattr(pvd, "volume_identifier", b"") if pvd is not None else b""
        self.volume_id = (vol.decode("latin-1") if isinstance(vol, bytes) else str(vol)).strip()
        try:
            self._entries = self._list()
        except PyCdlibException as exc:
            self.close()
            raise InputError(f"the image's directory structure is damaged "
                             f"({' '.join(str(exc).split())})", path=path,
                             code="MEDIUM_NOT_ISO") from exc
        # the listing and extents are all we need: drop pycdlib's parse (tens of MB for a
        # DVD of thousands of files) before the files are read
        self._release()

    def _release(self) -> None:
        if self._iso is not None:
            try:
                self._iso.close()
            except PyCdlibException:
                pass
            self._iso = None

    def _walk(self, ns: str):
        for dirpath, _dirs, files in self._iso.walk(**{ns: "/"}):
            depth = dirpath.strip("/").count("/") + 1 if dirpath.strip("/") else 0
            if depth > _MAX_DEPTH:
                continue
            base = "" if dirpath in ("", "/") else dirpath.rstrip("/")
            for name in sorted(files):
                yield f"{base}/{name}"

    def _extents(self, ns: str, full: str):
        return tuple(self._iso.get_file_byte_extents(**{ns: full}))

    def _list(self) -> list[MediumEntry]:
        iso9660_by_extent: dict[int, str] = {}
        for full in self._walk("iso_path"):
            try:
                ext = self._extents("iso_path", full)
            except PyCdlibException:
                continue
            if ext:
                iso9660_by_extent.setdefault(ext[0][0], full)
        out = []
        for full in self._walk(self.namespace):
            shown = "/".join(_display(c) if self.namespace in ("iso_path", "joliet_path")
                             else c for c in full.strip("/").split("/"))
            try:
                ext = self._extents(self.namespace, full)
            except PyCdlibException:
                out.append(MediumEntry(shown, 0, None, "link"))
                continue
            size = sum(n for _, n in ext)
            iso_name = (iso9660_by_extent.get(ext[0][0]) if ext else None)
            if self.namespace == "iso_path":
                iso_name = full
            out.append(MediumEntry(shown, size, ext, "file", iso_name))
        return out

    def entries(self) -> list[MediumEntry]:
        return list(self._entries)

    def open(self, handle) -> Iterator[memoryview]:
        return self._raw.open(handle)

    def worker_spec(self) -> tuple:
        return ("iso", self.path)

    def close(self) -> None:
        self._release()
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


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


def medium_spec(path: str) -> tuple:
    """``("iso"|"folder", absolute path)`` after the usage checks (exists, readable kind),
    without parsing anything: a pool can be started from it before the medium is opened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError("no such file or folder", path=path, code="USAGE_NO_MEDIUM") from None
    except OSError as exc:
        raise env_error(exc, path) from exc
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise env_error(OSError(errno.EACCES, "permission denied", path), path)
        return ("folder", os.path.realpath(path))
    if stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode):
        if not os.access(path, os.R_OK):
            raise env_error(OSError(errno.EACCES, "permission denied", path), path)
        return ("iso", os.path.abspath(path))
    raise InputError("neither an ISO image nor a folder", path=path, code="MEDIUM_NOT_ISO")


def open_medium(path: str):
    """``IsoSource`` for an image file or block device, ``FolderSource`` for a folder."""
    kind, _ = medium_spec(path)
    return FolderSource(path) if kind == "folder" else IsoSource(path)


def reopen(spec: tuple):
    """What a worker reads with: ``open(handle)`` for the medium ``worker_spec()`` named."""
    kind, path = spec
    if kind == "iso":
        return _RawImage(path)
    if kind == "folder":
        return FolderSource(path)
    raise UsageError(f"unknown medium kind {kind!r}", code="USAGE")


# -- worker glue -------------------------------------------------------------------------------

def worker_init(spec: tuple, decrypters=(), trust=None, extra: dict | None = None) -> dict:
    """Pool ``setup``: reopen the medium; the decrypters and trust context are the caller's
    own objects (inherited at fork, see ``io.workers``)."""
    return dict(reader=reopen(spec), decrypters=list(decrypters), trust=trust,
                extra=dict(extra or {}))


def worker_examine(state: dict, task: ExamineTask) -> FileFacts:
    """Pool task: read one file once (see ``examine_file``)."""
    return examine_file(state["reader"].open(task.handle), path=task.path, size=task.size,
                        decrypters=state["decrypters"], trust=state["trust"])


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
