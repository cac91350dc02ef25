"""Reading ISO 9660 images: ``IsoSource`` lists an image with the fast, strict reader
(``io.isoread``), else through pycdlib, and reads each file by its byte extents
(``RawImage``). Our own writer (``io.isowrite.IsoImage``) is re-exported here; pycdlib's
writer, its byte-for-byte oracle, lives with the tests (tests/_pycdlib_image.py). Names
follow PS3.12: ISO 9660 Level 1 ``NAME.;1`` for a File ID component, ``/DICOMDIR.;1``; a
UDF bridge (UDF 1.02 structures) with the same names for DVD and BD profiles.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
from typing import Iterator

from mediasec.errors import InputError
from mediasec.io.fs import env_error
from mediasec.io.isoread import Decline, read_listing
from mediasec.io.isowrite import SECTOR, IsoFile, IsoImage  # noqa: F401 (re-exported)
from mediasec.media.source import MediumEntry

# pycdlib is imported only when the fast reader (``io.isoread``) declines an image


def _iso_damage() -> tuple:
    """What pycdlib raises on a damaged image besides its own exception: it decodes names,
    unpacks records and indexes lists straight from the image's bytes (a function, which
    ``except`` evaluates only when something is raised)."""
    from pycdlib.pycdlibexception import PyCdlibException
    return (PyCdlibException, ValueError, struct.error, IndexError, KeyError, TypeError,
            AttributeError, ZeroDivisionError, OverflowError, RecursionError)


__all__ = ["IsoFile", "IsoImage", "SECTOR", "IsoSource", "RawImage", "CHUNK"]



# -- reading a received image: the MediumSource -----------------------------------------
#
# ``IsoSource``: the fast reader (``mediasec.io.isoread``) parses the volume descriptors and
# directory records once, in the calling process, with ``pread``; an image outside the subset
# it vouches for (Rock Ridge, El Torito, multi-extent files, unusual UDF, any damage) is
# parsed by pycdlib instead, which lists it or refuses it. The listing (either reader, the
# same entries: tests/test_isoread.py) uses the richest namespace present -
# Rock Ridge (POSIX names), else UDF, else Joliet, else ISO 9660 (whose ``NAME.;1`` is shown
# as ``NAME``) - and keeps each file's ISO 9660 name beside it for the ``ISO_NAME`` check.
# A file's handle is its list of byte extents in the image (``get_file_byte_extents``, which
# covers multi-extent ISO 9660 files and UDF allocation descriptors); reading is ``preadv``
# of those ranges into two reused buffers, checked against the image size, so a worker
# needs only the image path, not a second pycdlib parse of thousands of directory records.
# Nothing is mounted and nothing outside the image is ever read. Rock Ridge symbolic links are
# listed (``kind="link"``) and never followed.

CHUNK = 1 << 20
#: a file is read from an image in pieces of this size: each piece is hashed, decrypted and
#: its plaintext hashed while it is still in the core's cache (256 KiB pieces verify ~15%
#: faster than 1 MiB ones, measured by benchmarks/verify.py)
READ_CHUNK = 256 << 10
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
            mv = memoryview(bufs[i])[:min(len(bufs[i]), end - off)]
            n = os.preadv(fd, [mv], off)
            if n <= 0:
                raise OSError(errno.EIO, "the image ended inside a file extent")
            off += n
            yield mv[:n]
            i ^= 1


class RawImage:
    """Reads files of an image by extent, with no directory parse (for workers)."""

    def __init__(self, path: str):
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
            self.size = _device_size(self._fd)
        except OSError as exc:
            raise env_error(exc, path) from exc
        # two READ_CHUNK buffers for the whole medium, not per file (zeroing them per file
        # cost more than hashing a 500 KiB file); made at the first read, not for a parse
        self._bufs: tuple | None = None

    def open(self, handle) -> Iterator[memoryview]:
        if self._bufs is None:
            self._bufs = (bytearray(READ_CHUNK), bytearray(READ_CHUNK))
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


def _entries(namespace: str, iso_files, files) -> list[MediumEntry]:
    """The listing from (path, extents) pairs in walk order, from either reader:
    ``iso_files`` in the ISO 9660 tree (for each file's ISO 9660 name, matched by its first
    extent), ``files`` in the shown namespace (extents None: a link, listed, never opened)."""
    iso9660_by_extent: dict[int, str] = {}
    for full, ext in iso_files:
        if ext:
            iso9660_by_extent.setdefault(ext[0][0], full)
    out = []
    iso_like = namespace in ("iso_path", "joliet_path")
    for full, ext in files:
        shown = ("/".join(_display(c) for c in full.strip("/").split("/")) if iso_like
                 else full.strip("/"))
        if ext is None:
            out.append(MediumEntry(shown, 0, None, "link"))
            continue
        size = sum(n for _, n in ext)
        iso_name = (iso9660_by_extent.get(ext[0][0]) if ext else None)
        if namespace == "iso_path":
            iso_name = full
        out.append(MediumEntry(shown, size, ext, "file", iso_name))
    return out


class IsoSource:
    """An ISO 9660 image (with Joliet, Rock Ridge or UDF): listed by the fast reader
    (``mediasec.io.isoread``) when the image is in the subset it vouches for, else read
    through pycdlib."""

    _NAMES = {"rr_path": "Rock Ridge", "udf_path": "UDF", "joliet_path": "Joliet",
              "iso_path": "ISO 9660"}

    def __init__(self, path: str):
        self.label = path
        self.path = os.path.abspath(path)
        self._raw = RawImage(self.path)
        self._iso = None
        try:
            fast = read_listing(self._raw._fd, self._raw.size, max_depth=_MAX_DEPTH)
        except Decline:
            fast = None
        except OSError as exc:
            self._raw.close()
            raise env_error(exc, path) from exc
        #: which reader listed the image ("fast" or "pycdlib"), for tests and benchmarks
        self.reader = "fast" if fast is not None else "pycdlib"
        if fast is not None:
            self.namespace = fast.namespace
            self.volume_id = fast.volume_id
            self.description = f"ISO 9660 image ({self._NAMES[self.namespace]} names)"
            self._entries = _entries(self.namespace, fast.iso_files, fast.files)
            return
        import pycdlib
        iso = pycdlib.PyCdlib()
        try:
            iso.open(self.path)
        except _iso_damage() as exc:
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
        self.description = f"ISO 9660 image ({self._NAMES[self.namespace]} names)"
        pvd = getattr(iso, "pvd", None)
        vol = getattr(pvd, "volume_identifier", b"") if pvd is not None else b""
        self.volume_id = (vol.decode("latin-1") if isinstance(vol, bytes) else str(vol)).strip()
        try:
            self._entries = self._list()
        except _iso_damage() as exc:
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
            except _iso_damage():
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

    def _walk_extents(self, ns: str, *, skip_bad: bool):
        """(path, extents) through pycdlib; a file whose extents pycdlib cannot give is
        skipped (``skip_bad``) or given as None (a link)."""
        for full in self._walk(ns):
            try:
                yield full, self._extents(ns, full)
            except _iso_damage():
                if not skip_bad:
                    yield full, None

    def _list(self) -> list[MediumEntry]:
        return _entries(self.namespace, self._walk_extents("iso_path", skip_bad=True),
                        self._walk_extents(self.namespace, skip_bad=False))

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
