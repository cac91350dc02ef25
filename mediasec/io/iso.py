"""ISO 9660 images: the reader (``IsoSource``: ``io.isoread``, else pycdlib) and pycdlib's
writer, kept as the reference our own writer (``io.isowrite.IsoImage``, which the build
uses) is checked against byte for byte (tests/test_isowrite.py).

``PycdlibImage`` lays an image out from the planned sizes with pycdlib, so each file's place
(``offsets``) and the image's exact ``size`` are known before any byte is made;
``write_metadata`` writes pycdlib's volume descriptors, path tables, directories and UDF
side without the files' data; ``write`` is pycdlib's ``write_fp``, which pulls every file's
bytes, in extent order, from its producer through a ``LazyReader``. Names follow PS3.12:
ISO 9660 Level 1 ``NAME.;1`` for a File ID component, ``/DICOMDIR.;1``; a UDF bridge
(UDF 1.02 structures; pycdlib calls it "2.60") with the same names for DVD and BD
profiles. The Volume Identifier is the File-set ID; "disc n of m" is the volume set size
and sequence number.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
from typing import Iterator


from mediasec.errors import InputError, InternalError, UsageError
from mediasec.io.fs import env_error
from mediasec.io.isoread import Decline, read_listing
from mediasec.io.isowrite import IsoFile, IsoImage  # noqa: F401 (our writer, re-exported)
from mediasec.media.source import MediumEntry

# pycdlib is imported on first use: the fast reader (``io.isoread``) lists most images and
# the build writes with ``io.isowrite``, so verify and build rarely need it at all.
_LAZY: dict[str, object] = {}


def _pycdlib():
    """The pycdlib module (imported on first use)."""
    mod = _LAZY.get("pycdlib")
    if mod is None:
        import pycdlib as mod
        _LAZY["pycdlib"] = mod
    return mod


def _pycdlib_error() -> type:
    """pycdlib's own exception class."""
    _pycdlib()
    from pycdlib.pycdlibexception import PyCdlibException
    return PyCdlibException


def _iso_damage() -> tuple:
    """What pycdlib raises on a damaged image besides its own exception: it decodes names,
    unpacks records and indexes lists straight from the image's bytes. A function (evaluated
    by ``except`` only when something is raised) so pycdlib loads only when it is used."""
    damage = _LAZY.get("damage")
    if damage is None:
        damage = _LAZY["damage"] = (_pycdlib_error(), ValueError, struct.error, IndexError,
                                    KeyError, TypeError, AttributeError, ZeroDivisionError,
                                    OverflowError, RecursionError)
    return damage  # type: ignore[return-value]

__all__ = ["LazyReader", "IsoFile", "IsoImage", "PycdlibImage", "SECTOR", "IsoSource",
           "RawImage", "CHUNK"]

SECTOR = 2048


class LazyReader:
    """A file object for pycdlib: ``read(n)`` pulls from ``chunks()`` on first use."""

    mode = "rb"  # pycdlib checks for a binary file object

    def __init__(self, producer, name: str):
        self._producer = producer
        self.name = name
        self._it = None
        self._cur = memoryview(b"")
        self._left = producer.size

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) not in ((0, 0), (0, 1)) or (self._it is not None and offset):
            raise InternalError("a planned file is read once, from the start")
        return 0

    def tell(self) -> int:
        return self._producer.size - self._left

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes, copied out of the producer's chunks as they are consumed.

        A producer's chunk is valid only until its next chunk is asked for (the CMS
        producer reuses two buffers), so no view of a chunk may outlive a ``next()``:
        every piece is copied into the result before the iterator is advanced.
        """
        if self._it is None:
            if self._left == 0 and self.tell():
                return b""   # at the end (a file object reads empty there; no restart)
            self._it = iter(self._producer.chunks())
        if n < 0:
            n = self._left
        n = min(n, self._left)
        out = bytearray(n)
        got = 0
        while got < n:
            if not self._cur:
                nxt = next(self._it, None)
                if nxt is None:
                    raise InternalError(f"{self.name}: producer ended {self._left} bytes "
                                        "before its planned size")
                self._cur = memoryview(nxt)
                continue
            k = min(n - got, len(self._cur))
            out[got:got + k] = self._cur[:k]
            # an empty slice would still pin the whole chunk: pycdlib keeps every reader
            self._cur = self._cur[k:] if k < len(self._cur) else memoryview(b"")
            got += k
        self._left -= got
        if self._left == 0 and self._it is not None:
            if self._cur or next(self._it, None) is not None:
                raise InternalError(f"{self.name}: producer wrote more than planned")
            self._it = None
        return out

    def close(self) -> None:
        self._it = None


def _iso_name(components: tuple[str, ...]) -> str:
    """PS3.12 F: ``A/B/C`` -> ``/A/B/C.;1``; a name with an extension keeps it (``README.TXT;1``)."""
    last = components[-1]
    return "/" + "/".join(components[:-1] + (last + (";1" if "." in last else ".;1"),))


def _metadata_writer():
    """pycdlib, able to write an image's metadata without the files' data (the class is
    made on first use, with pycdlib)."""
    cls = _LAZY.get("writer")
    if cls is None:
        class _PyCdlib(_pycdlib().PyCdlib):
            __slots__ = ("metadata_only",)

            def _output_file_data(self, outfp, blocksize, ino):
                if getattr(self, "metadata_only", False):
                    return iter(())
                return super()._output_file_data(outfp, blocksize, ino)
        cls = _LAZY["writer"] = _PyCdlib
    return cls()


class PycdlibImage:
    """pycdlib's image of the same files (the reference for ``io.isowrite.IsoImage``, same
    interface): ``size`` is exact before any byte is made."""

    def __init__(self, files: list[IsoFile], *, volume_id: str = "", udf: bool = False,
                 interchange_level: int = 1, set_size: int = 1, seqnum: int = 1,
                 name: str = "image"):
        self._iso = iso = _metadata_writer()
        self._closed = False
        try:
            iso.new(interchange_level=interchange_level, sys_ident="", vol_ident=volume_id,
                    set_size=set_size, seqnum=seqnum, udf="2.60" if udf else None,
                    app_ident_str="MEDIASEC")
        except _pycdlib_error() as exc:
            raise UsageError(f"cannot make the image: {exc}", path=name,
                             code="ISO_PARAMETERS") from exc
        made = set()
        readers = []
        try:
            for f in files:
                for depth in range(1, len(f.components)):
                    d = f.components[:depth]
                    if d not in made:
                        made.add(d)
                        iso.add_directory("/" + "/".join(d),
                                          udf_path=("/" + "/".join(d)) if udf else None)
                reader = LazyReader(f.producer, f.name)
                readers.append(reader)
                iso.add_fp(reader, f.producer.size, iso_path=_iso_name(f.components),
                           udf_path=("/" + "/".join(f.components)) if udf else None)
            # looking a record up makes pycdlib assign every extent now
            first = files[0].components
            iso.get_record(iso_path=_iso_name(first))
            self.size = iso.pvd.space_size * SECTOR
            # where each file's data starts (its inode's extent; None: an empty file)
            at = {id(ino.data_fp): ino.extent_location() * SECTOR for ino in iso.inodes
                  if ino.get_data_length() > 0}
            self.offsets: list[int | None] = [at.get(id(r)) if f.producer.size else None
                                              for f, r in zip(files, readers)]
        except _pycdlib_error() as exc:
            raise InternalError(f"image layout failed: {exc}") from exc
        if any(o is None for f, o in zip(files, self.offsets) if f.producer.size):
            raise InternalError("image layout failed: a file has no extent")

    def extent(self, components: tuple[str, ...]) -> tuple[int, int]:
        """(byte offset, length) of a file's data in the image."""
        rec = self._iso.get_record(iso_path=_iso_name(components))
        return rec.extent_location() * SECTOR, rec.get_data_length()

    def write_metadata(self, fp) -> None:
        """Everything of the image but the files' data (volume descriptors, path tables,
        directory records, the UDF side) into ``fp``, an image file already ``size`` bytes
        long; the files' extents are left untouched (``mediasec.io.engine`` fills them).

        pycdlib writes a file's data in ``_output_file_data``, which ``_PyCdlib`` leaves
        out here (tests/test_build_engine.py checks the result byte for byte against
        ``write``)."""
        iso = self._iso
        iso.metadata_only = True
        try:
            iso.write_fp(fp)
        finally:
            iso.metadata_only = False

    def close(self) -> None:
        """Free pycdlib's state (again: nothing)."""
        if not self._closed:
            self._closed = True
            self._iso.close()

    def write(self, out, *, patch: dict | None = None, blocksize: int = 1 << 20) -> int:
        """Write into the open ``AtomicOutput`` ``out``; the caller commits it.

        ``patch`` maps a file's components to a callable returning its final bytes, called
        after every other file has been written (the manifest: its size is planned, its
        content known only at the end); the image is then patched in place.
        """
        iso = self._iso
        fp = out.open()
        try:
            iso.write_fp(fp, blocksize=blocksize)
            for components, make in (patch or {}).items():
                rec = iso.get_record(iso_path=_iso_name(components))
                data = make()
                if len(data) != rec.get_data_length():
                    raise InternalError(f"{'/'.join(components)}: planned "
                                        f"{rec.get_data_length()} bytes, made {len(data)}")
                os.pwrite(out.fileno, data, rec.extent_location() * SECTOR)
            size = os.fstat(out.fileno).st_size
        except OSError as exc:
            raise env_error(exc, out.target) from exc
        finally:
            self.close()
        if size != self.size:
            raise InternalError(f"laid out {self.size} bytes, wrote {size}")
        return size


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
        iso = _pycdlib().PyCdlib()
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
