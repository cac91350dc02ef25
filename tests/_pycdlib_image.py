"""pycdlib's writer of the images a build makes: the test oracle for our own writer
(``mediasec.io.isowrite.IsoImage``, same interface), which tests/test_isowrite.py compares
with it byte for byte, and the serial reference of tests/test_bytepath.py.

``PycdlibImage`` lays an image out from the planned sizes with pycdlib, so each file's place
(``offsets``) and the image's exact ``size`` are known before any byte is made;
``write_metadata`` writes pycdlib's volume descriptors, path tables, directories and UDF
side without the files' data; ``write`` is pycdlib's ``write_fp``, which pulls every file's
bytes, in extent order, from its producer through a ``LazyReader``.
"""

from __future__ import annotations

import os

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from mediasec.errors import InternalError, UsageError
from mediasec.io.fs import env_error
from mediasec.io.isowrite import SECTOR, IsoFile

__all__ = ["LazyReader", "PycdlibImage"]


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


class _PyCdlib(pycdlib.PyCdlib):
    """pycdlib, able to write an image's metadata without the files' data."""

    __slots__ = ("metadata_only",)

    def _output_file_data(self, outfp, blocksize, ino):
        if getattr(self, "metadata_only", False):
            return iter(())
        return super()._output_file_data(outfp, blocksize, ino)


class PycdlibImage:
    """pycdlib's image of the same files (the reference for ``io.isowrite.IsoImage``, same
    interface): ``size`` is exact before any byte is made."""

    def __init__(self, files: list[IsoFile], *, volume_id: str = "", udf: bool = False,
                 interchange_level: int = 1, set_size: int = 1, seqnum: int = 1,
                 name: str = "image"):
        self._iso = iso = _PyCdlib()
        self._closed = False
        try:
            iso.new(interchange_level=interchange_level, sys_ident="", vol_ident=volume_id,
                    set_size=set_size, seqnum=seqnum, udf="2.60" if udf else None,
                    app_ident_str="MEDIASEC")
        except PyCdlibException as exc:
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
        except PyCdlibException as exc:
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
