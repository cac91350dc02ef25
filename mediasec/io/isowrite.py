"""Our own ISO 9660 (+ UDF bridge) writer, for exactly the images a build makes.

The layout is computed from the planned sizes in one pass over the File-set's paths, so
each file's place in the image (``IsoImage.offsets``) and the image's exact ``size`` are
known before any byte is made. ``write_metadata`` writes everything but the files' data
(volume descriptors, path tables, directory records, the UDF side) in a few large writes;
the write engine's workers write the files' data at their extents. ``write`` is the serial
writer (the reference the engine's image is compared with, in tests/test_build_engine.py).

What is written (ECMA-119; ECMA-167 / OSTA UDF for the bridge), sector by sector:

* 0-15 system area (zeros); 16 Primary Volume Descriptor; 17 Volume Descriptor Set
  Terminator; with UDF 18-20 the Volume Recognition Sequence (BEA01, NSR02, TEA01); then an
  empty "version" sector (as genisoimage and pycdlib write).
* UDF only: the Main (32-37) and Reserve (48-53) Volume Descriptor Sequences (Primary,
  Implementation Use, Partition, Logical Volume, Unallocated Space, Terminating), the
  Logical Volume Integrity Descriptor (64) and its terminator (65), the first Anchor (256);
  the partition starts at 257 with the File Set Descriptor and its terminator, then every
  directory's File Entry followed by its File Identifier Descriptors (breadth first), then
  every file's File Entry.
* The path tables (little- then big-endian, each ``ptr_blocks`` sectors), every directory's
  records (breadth first, records never straddling a sector, sorted as ECMA-119 9.3 says:
  by name, then extension, each as if padded with spaces), then the files' data (in the
  directories' breadth-first order), and with UDF the closing Anchor in the last sector.

Names follow PS3.12: ISO 9660 ``NAME.;1`` for a File ID component (a component with a dot
keeps it as the extension: ``README.TXT;1``), the same components as UDF names; the Volume
Identifier is the File-set ID; "disc n of m" is the volume set size and sequence number; the
Application Identifier is ``MEDIASEC``. One time (taken when the image is laid out) is used
for every date in the image.

The layout is pycdlib's (1.22) to the byte, which the tests check image against image,
except where pycdlib is wrong or names itself (see ``tests/test_isowrite.py``):

* UDF implementation identifiers say ``*MEDIASEC``, not ``*pycdlib``;
* a subdirectory's parent File Identifier Descriptor points to the parent directory's File
  Entry (pycdlib points every one to the root's);
* a ``..`` record's data length is its parent's (pycdlib keeps the length the parent had
  when the subdirectory was added);
* both UDF Primary Volume Descriptors carry the same Volume Set Identifier (pycdlib draws a
  random part twice);
* a UDF timestamp's time zone is in minutes (pycdlib writes the ISO 9660 15-minute count;
  the same in UTC);
* directory records sort by ECMA-119 9.3 (pycdlib sorts whole identifiers bytewise, which
  differs only when an extension is a prefix of another followed by a digit);
* a file may be at depth 8 (8 components: the root and seven directory levels, ECMA-119
  6.8.2.1 and PS3.12 F.3.2); pycdlib refuses it.
"""

from __future__ import annotations

import binascii
import os
import random
import struct
import time
from collections import deque

from mediasec.errors import InternalError, UsageError
from mediasec.io.fs import env_error

__all__ = ["IsoFile", "IsoImage", "SECTOR"]

SECTOR = 2048
#: the largest extent of one ISO 9660 directory record (a bigger file at level 3 has one
#: record per piece, all but the last flagged multi-extent): 4 GiB less one sector
_ISO_EXTENT_MAX = 0xFFFFF800
#: the largest extent of one UDF short allocation descriptor (30 bits, whole sectors)
_UDF_AD_MAX = 0x3FFFF800
_D1 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_MAX_LEVELS = 8
_WRITE_CHUNK = 4 << 20

_DR = struct.Struct("<BBL4sL4s7sBBBH2sB")
_PTR = struct.Struct("<BBLH")
_PTR_BE = struct.Struct(">BBLH")
_TAG = struct.Struct("<HHBBHHHL")
_SHORT_AD = struct.Struct("<LL")
_LONG_AD = struct.Struct("<LLHHL")
_FID_BODY = struct.Struct("<HBBLLHHLH")   # with its ICB long_ad spelled out
_FE = struct.Struct("<20sLLLHBBLQQ12s12s12sL16s32sQLL")
_ICB_TAG = struct.Struct("<LHHHBB6sH")


#: ICB tags (ECMA-167 4/14.6): strategy 4, one entry, short ADs; directory and file
_ICB_DIR = _ICB_TAG.pack(0, 4, 0, 1, 0, 4, bytes(6), 560)
_ICB_FILE = _ICB_TAG.pack(0, 4, 0, 1, 0, 5, bytes(6), 560)
_NO_AD = _LONG_AD.pack(0, 0, 0, 0, 0)


class IsoFile:
    """One file to put in the image: its path components and its producer."""

    __slots__ = ("components", "producer", "name")

    def __init__(self, components: tuple[str, ...], producer, name: str | None = None):
        self.components = components
        self.producer = producer
        self.name = name or "/".join(components)


# -- encodings -----------------------------------------------------------------------------

def _dr_date(t: float) -> bytes:
    """ECMA-119 9.1.5: years since 1900, month, day, hour, minute, second, GMT offset in
    15-minute units (local time, as genisoimage and pycdlib write it)."""
    lt = time.localtime(t)
    return struct.pack("<BBBBBBb", lt.tm_year - 1900, lt.tm_mon, lt.tm_mday, lt.tm_hour,
                       lt.tm_min, lt.tm_sec, _gmtoffset(t, lt))


def _vd_date(t: float) -> bytes:
    """ECMA-119 8.4.26.1: ``YYYYMMDDHHMMSScc`` digits and the GMT offset."""
    lt = time.localtime(t)
    return time.strftime("%Y%m%d%H%M%S", lt).encode() + b"00" + struct.pack("<b",
                                                                          _gmtoffset(t, lt))


def _udf_time(t: float) -> bytes:
    """ECMA-167 1/7.3 timestamp (type 1, local time; the offset from UTC in minutes, a
    12-bit two's complement)."""
    lt = time.localtime(t)
    tz = (_gmtoffset(t, lt) * 15) & 0xFFFF
    return struct.pack("<BBHBBBBBBBB", tz & 0xFF, ((tz >> 8) & 0x0F) | (1 << 4), lt.tm_year,
                       lt.tm_mon, lt.tm_mday, lt.tm_hour, lt.tm_min, lt.tm_sec, 0, 0, 0)


def _gmtoffset(t: float, lt) -> int:
    gt = time.gmtime(t)
    yday = lt.tm_yday - gt.tm_yday
    if lt.tm_year != gt.tm_year:
        yday = lt.tm_year - gt.tm_year
    return (lt.tm_min - gt.tm_min + 60 * (lt.tm_hour - gt.tm_hour + 24 * yday)) // 15


def _pad(text: str, n: int) -> bytes:
    return text.encode("ascii").ljust(n, b" ")


def _dstring(text: str, n: int) -> bytes:
    """ECMA-167 1/7.2.12 dstring: OSTA compressed unicode (8-bit if it fits), zero padded,
    its length in the last byte."""
    try:
        enc = b"\x08" + text.encode("latin-1")
    except UnicodeEncodeError:
        enc = b"\x10" + text.encode("utf-16_be")
    return enc + bytes(n - 1 - len(enc)) + bytes((len(enc),))


def _entity(identifier: bytes, suffix: bytes = b"", flags: int = 0) -> bytes:
    """ECMA-167 1/7.4 regid: flags, 23-byte identifier, 8-byte suffix."""
    return bytes((flags,)) + identifier.ljust(23, b"\x00") + suffix.ljust(8, b"\x00")


_CHARSPEC = b"\x00" + b"OSTA Compressed Unicode".ljust(63, b"\x00")
_IMPL = _entity(b"*MEDIASEC")
_DOMAIN = _entity(b"*OSTA UDF Compliant", b"\x02\x01\x03")


def _tagged(ident: int, location: int, body: bytes) -> bytes:
    """A UDF descriptor: its tag (ECMA-167 3/7.2: version 2, CRC of the body, checksum of
    the tag) then the body."""
    crc = binascii.crc_hqx(body, 0)
    checksum = sum(_TAG.pack(ident, 2, 0, 0, 0, crc, len(body), location)) & 0xFF
    return _TAG.pack(ident, 2, checksum, 0, 0, crc, len(body), location) + body


def _long_ad(length: int, block: int, unique: int = 0) -> bytes:
    """ECMA-167 4/14.14.2 long_ad; its implementation use holds the UDF unique ID (UDF
    2.3.4.3) of the File Entry it points to (0: none given)."""
    return _LONG_AD.pack(length, block, 0, 0, unique)


# -- the tree ------------------------------------------------------------------------------

class _Dir:
    is_dir = True
    __slots__ = ("udf", "name", "ident", "parent", "entries", "iso", "blocks", "extent", "number",
                 "fids", "fid_len", "fe", "fid_block", "fid_blocks", "subdirs")

    def __init__(self, name: str, parent: "_Dir | None"):
        self.name = name
        self.ident = name.encode("ascii")
        self.parent = parent
        self.entries: list = []   # _Dir and _File, in the order first met (UDF order)
        self.subdirs = 0


class _File:
    is_dir = False
    __slots__ = ("udf", "index", "name", "ident", "size", "extent", "fe", "parent")

    def __init__(self, index: int, name: str, ident: bytes, size: int, parent: _Dir):
        self.index = index
        self.name = name
        self.ident = ident
        self.size = size
        self.parent = parent
        self.extent = 0


def _sort_key(ident: bytes) -> tuple:
    """ECMA-119 9.3: by name, then extension (each as if padded with spaces, which is plain
    comparison for d-characters: every one sorts above the space), then the identifier."""
    body = ident.split(b";", 1)[0]
    name, _, ext = body.partition(b".")
    return (name, ext, ident)


class IsoImage:
    """An image laid out from planned sizes: ``size`` is exact before any byte is made."""

    def __init__(self, files: list[IsoFile], *, volume_id: str = "", udf: bool = False,
                 interchange_level: int = 1, set_size: int = 1, seqnum: int = 1,
                 name: str = "image"):
        if (not 1 <= interchange_level <= 3 or not 1 <= seqnum <= set_size <= 0xFFFF
                or len(volume_id) > 32 or not volume_id.isascii()):
            raise UsageError(f"cannot make the image: volume identifier {volume_id!r}, "
                             f"disc {seqnum} of {set_size}, level {interchange_level}",
                             path=name, code="ISO_PARAMETERS")
        self._files = files
        self._udf = udf
        self._level = interchange_level
        self._volume_id = volume_id
        self._set_size = set_size
        self._seqnum = seqnum
        self._closed = False
        self._time = time.time()
        # ECMA-167 3/10.1.11, UDF 2.2.2.5: the Volume Set Identifier starts with 16
        # characters unique to this volume (the time and a random number, in hex)
        self._vol_set = (format(int(self._time), "08x") + format(random.getrandbits(26), "08x")
                         if udf else "")
        self._layout()

    # -- layout ----------------------------------------------------------------------------

    def _layout(self) -> None:
        level = self._level
        root = _Dir("", None)
        dirs = {(): root}
        files: list[_File] = []
        seen: set[tuple] = set()
        for i, f in enumerate(self._files):
            comps = tuple(f.components)
            if not comps or comps in seen or len(comps) > _MAX_LEVELS or comps in dirs:
                raise InternalError(f"image layout failed: {f.name}: " + (
                    "duplicate path" if comps in seen else
                    "a file and a directory share a name" if comps in dirs else
                    f"{len(comps)} path components"))
            seen.add(comps)
            parent = dirs.get(comps[:-1])
            if parent is None:
                parent = self._make_dirs(comps[:-1], dirs, seen, f.name)
            size = f.producer.size
            if size > 0xFFFFFFFF and level < 3:
                raise InternalError(f"image layout failed: {f.name}: a file of 4 GiB or more "
                                    "needs interchange level 3")
            last = comps[-1]
            ident = (last + (";1" if "." in last else ".;1")).encode("ascii", "replace")
            if not self._file_ok(ident):
                raise InternalError(f"image layout failed: {f.name}: {ident.decode()!r} is "
                                    f"not an ISO 9660 file name at level {level}")
            fl = _File(i, last, ident, size, parent)
            parent.entries.append(fl)
            files.append(fl)
        self._root = root
        self._file_list = files
        self._by_path = {tuple(f.components): fl for f, fl in zip(self._files, files)}

        # ISO 9660 directories, breadth first, each one's records sorted
        order: list[_Dir] = []
        queue = deque([root])
        ptr_size = 10
        while queue:
            d = queue.popleft()
            d.number = len(order) + 1
            order.append(d)
            d.iso = sorted(d.entries, key=lambda e: _sort_key(e.ident))
            sub = [e for e in d.iso if e.is_dir]
            ptr_size += sum(8 + len(e.ident) + (len(e.ident) & 1) for e in sub)
            queue.extend(sub)
        self._dirs = order
        self._ptr_size = ptr_size
        self._ptr_blocks = -(-(-(-ptr_size // SECTOR)) // 2) * 2

        # each directory's records, packed: (sector index, record) per record
        for d in order:
            at, blocks = 68, 1   # "." and "..": 34 bytes each
            for e in d.iso:
                n = 33 + len(e.ident)
                n += n & 1
                pieces = 1 if e.is_dir or e.size <= _ISO_EXTENT_MAX else \
                    -(-e.size // _ISO_EXTENT_MAX)
                for _ in range(pieces):
                    if at + n > SECTOR:
                        blocks += 1
                        at = 0
                    at += n
            d.blocks = blocks

        extent = 19   # 16 PVD, 17 terminator, 18 version
        if self._udf:
            extent = self._udf_layout()
        self._ptr_le = extent
        self._ptr_be = extent + self._ptr_blocks
        extent += 2 * self._ptr_blocks
        for d in order:
            d.extent = extent
            extent += d.blocks
        self._dirs_end = extent
        # files' data: in the breadth-first order of the directories' sorted records
        self._data_order: list[_File] = []
        for d in order:
            for e in d.iso:
                if not e.is_dir:
                    if e.size:
                        e.extent = extent
                        extent += -(-e.size // SECTOR)
                        self._data_order.append(e)
        self._data_end = extent
        if self._udf:
            self._anchor2 = extent
            extent += 1
        self._space = extent
        self.size = extent * SECTOR
        self.offsets: list[int | None] = [f.extent * SECTOR if f.size else None
                                          for f in files]

    def _make_dirs(self, key: tuple, dirs: dict, seen: set, name: str) -> _Dir:
        """The directory ``key`` and any of its parents not made yet (each added to its
        parent's entries, in the order first met)."""
        parent = dirs[()]
        for depth in range(1, len(key) + 1):
            d = dirs.get(key[:depth])
            if d is None:
                comp = key[depth - 1]
                b = comp.encode("ascii", "replace")
                if key[:depth] in seen:
                    raise InternalError(f"image layout failed: {name}: a file and a "
                                        "directory share a name")
                if not b or len(b) > (8 if self._level == 1 else 207) or \
                        not _D1.issuperset(b):
                    raise InternalError(f"image layout failed: {name}: {comp!r} is not an "
                                        f"ISO 9660 directory name at level {self._level}")
                d = dirs[key[:depth]] = _Dir(comp, parent)
                parent.entries.append(d)
                parent.subdirs += 1
            parent = d
        return parent

    def _file_ok(self, ident: bytes) -> bool:
        """ECMA-119 7.5: d-characters, one dot, version 1; at level 1 an 8.3 name."""
        body = ident[:-2]
        stem, _, ext = body.rpartition(b".")
        return (ident.endswith(b";1") and bool(stem or ext) and _D1.issuperset(stem)
                and _D1.issuperset(ext) and len(body) <= 207
                and (self._level != 1 or (len(stem) <= 8 and len(ext) <= 3)))

    def _udf_layout(self) -> int:
        """Place the UDF side (ECMA-167 / UDF 1.02 structures, NSR02); return the next free sector."""
        self._part_start = 257
        extent = 259   # 257 File Set Descriptor, 258 its terminator
        # directories breadth first (in the order first met): the File Entry, then its File
        # Identifier Descriptors, which may cross a sector boundary
        queue = deque([self._root])
        udf_dirs = []
        file_fes: list[_File] = []
        while queue:
            d = queue.popleft()
            udf_dirs.append(d)
            d.fe = extent
            extent += 1
            d.fid_block = extent
            fids = [(None, extent)]   # (entry, its FID's first sector): the parent's first
            at = 40   # the parent's File Identifier Descriptor: 38 bytes, padded to 4
            total = at
            for e in d.entries:
                if at >= SECTOR:
                    extent += 1
                    at -= SECTOR
                fids.append((e, extent))
                e.udf = name = _udf_name(e.name)
                n = 38 + len(name)
                n += -n % 4
                at += n
                total += n
                if e.is_dir:
                    queue.append(e)
                else:
                    file_fes.append(e)
            d.fids = fids
            if at > SECTOR:
                extent += 1
            extent += 1
            d.fid_len = total
            d.fid_blocks = -(-total // SECTOR)
        for f in file_fes:
            f.fe = extent
            extent += 1
        self._udf_dirs = udf_dirs
        self._udf_file_fes = file_fes
        self._unique_next = extent
        # the Partition Descriptor's length and the integrity descriptor's size table, as
        # pycdlib counts them (every sector its additions need after the first nine)
        n_sub = len(self._dirs) - 1
        self._part_length = (9 + sum(d.blocks - 1 for d in self._dirs) + 2 * n_sub
                             + sum(d.fid_blocks for d in udf_dirs) - 1
                             + 2 * (self._ptr_blocks - 2)
                             + len(self._file_list)
                             + sum(-(-f.size // SECTOR) for f in self._file_list))
        return extent

    # -- the interface ---------------------------------------------------------------------

    def extent(self, components: tuple[str, ...]) -> tuple[int, int]:
        """(byte offset, length) of a file's data in the image (offset 0: an empty file)."""
        fl = self._by_path.get(tuple(components))
        if fl is None:
            raise InternalError(f"{'/'.join(components)}: not in the image")
        return fl.extent * SECTOR, fl.size

    def close(self) -> None:
        self._closed = True

    def write_metadata(self, fp) -> None:
        """Everything of the image but the files' data (volume descriptors, path tables,
        directory records, the UDF side) into ``fp``, an image file already ``size`` bytes
        long; the files' extents are left untouched (``mediasec.io.engine`` fills them).
        Written in pieces of a few MiB, in sector order."""
        out = _SectorWriter(fp)
        for at, data in self._metadata():
            if at >= self._dirs_end:
                out.flush()   # past the files' data: never bridged with zeros
            out.put(at, data)
        out.flush()

    def write(self, out, *, patch: dict | None = None, blocksize: int = 1 << 20) -> int:
        """Write into the open ``AtomicOutput`` ``out``; the caller commits it. Serially:
        the metadata, then every file's data from its producer, in extent order.

        ``patch`` maps a file's components to a callable returning its final bytes, called
        after every other file has been written (the manifest: its size is planned, its
        content known only at the end); the image is then patched in place.
        """
        fp = out.open()
        fd = out.fileno
        try:
            os.ftruncate(fd, self.size)
            self.write_metadata(fp)
            for f in self._data_order:
                src = self._files[f.index]
                at = f.extent * SECTOR
                left = f.size
                for chunk in src.producer.chunks():
                    n = len(chunk)
                    if n > left:
                        raise InternalError(f"{src.name}: producer wrote more than planned")
                    view = memoryview(chunk)
                    while view:
                        k = os.pwrite(fd, view[:blocksize], at)
                        view = view[k:]
                        at += k
                    left -= n
                if left:
                    raise InternalError(f"{src.name}: producer ended {left} bytes before "
                                        "its planned size")
            for components, make in (patch or {}).items():
                at, length = self.extent(components)
                data = make()
                if len(data) != length:
                    raise InternalError(f"{'/'.join(components)}: planned {length} bytes, "
                                        f"made {len(data)}")
                os.pwrite(fd, data, at)
            size = os.fstat(fd).st_size
        except OSError as exc:
            raise env_error(exc, out.target) from exc
        finally:
            self.close()
        if size != self.size:
            raise InternalError(f"laid out {self.size} bytes, wrote {size}")
        return size

    # -- the bytes -------------------------------------------------------------------------

    def _metadata(self):
        """(sector, bytes) pieces in increasing sector order, none overlapping a file."""
        t = self._time
        self._dr_date = _dr_date(t)
        yield 16, self._pvd(_vd_date(t))
        yield 17, b"\xffCD001\x01".ljust(SECTOR, b"\x00")
        if self._udf:
            for i, ident in enumerate((b"BEA01", b"NSR02", b"TEA01")):
                yield 18 + i, (b"\x00" + ident + b"\x01").ljust(SECTOR, b"\x00")
            # (sector 21: the empty version descriptor, zeros already)
            ut = _udf_time(t)
            yield 32, self._vds(32, ut)
            yield 48, self._vds(48, ut)
            yield 64, self._lvid(ut)
            yield 65, _tagged(8, 65, bytes(496))
            yield 256, self._anchor(256)
            yield 257, self._fsd(ut)
            yield 258, _tagged(8, 1, bytes(496))
            yield from self._udf_entries(ut)
        yield from self._path_tables()
        yield from self._directories()
        if self._udf:
            yield self._anchor2, self._anchor(self._anchor2)

    def _pvd(self, vd_date: bytes) -> bytes:
        root = self._root
        space = self._space
        rec = b"".join((
            b"\x01CD001\x01\x00", _pad("", 32), _pad(self._volume_id, 32), bytes(8),
            struct.pack("<L", space), struct.pack(">L", space), bytes(32),
            struct.pack("<H", self._set_size), struct.pack(">H", self._set_size),
            struct.pack("<H", self._seqnum), struct.pack(">H", self._seqnum),
            struct.pack("<H", SECTOR), struct.pack(">H", SECTOR),
            struct.pack("<L", self._ptr_size), struct.pack(">L", self._ptr_size),
            struct.pack("<L", self._ptr_le), bytes(4), struct.pack(">L", self._ptr_be),
            bytes(4),
            self._dr(b"\x00", root.extent, root.blocks * SECTOR, 2),
            _pad(" ", 128), _pad("", 128), _pad("", 128), _pad("MEDIASEC", 128),
            _pad("", 37), _pad("", 37), _pad("", 37),
            vd_date, vd_date, b"0" * 16 + b"\x00", vd_date,
            b"\x01\x00", _pad("", 512), bytes(653)))
        assert len(rec) == SECTOR
        return rec

    def _dr(self, ident: bytes, extent: int, length: int, flags: int) -> bytes:
        n = 33 + len(ident)
        pad = n & 1
        return _DR.pack(n + pad, 0, extent, extent.to_bytes(4, "big"), length,
                        length.to_bytes(4, "big"), self._dr_date, flags, 0, 0,
                        self._seqnum, self._seqnum.to_bytes(2, "big"),
                        len(ident)) + ident + (b"\x00" if pad else b"")

    def _path_tables(self):
        le, be = [], []
        for d in self._dirs:
            ident = d.ident or b"\x00"
            parent = d.parent.number if d.parent is not None else 1
            tail = ident + (b"\x00" if len(ident) & 1 else b"")
            le.append(_PTR.pack(len(ident), 0, d.extent, parent) + tail)
            be.append(_PTR_BE.pack(len(ident), 0, d.extent, parent) + tail)
        yield self._ptr_le, b"".join(le)
        yield self._ptr_be, b"".join(be)

    def _directories(self):
        for d in self._dirs:
            parent = d.parent or d
            out = bytearray(d.blocks * SECTOR)
            recs = [self._dr(b"\x00", d.extent, d.blocks * SECTOR, 2),
                    self._dr(b"\x01", parent.extent, parent.blocks * SECTOR, 2)]
            for e in d.iso:
                if e.is_dir:
                    recs.append(self._dr(e.ident, e.extent, e.blocks * SECTOR, 2))
                    continue
                left, at = e.size, e.extent
                while True:
                    n = min(left, _ISO_EXTENT_MAX)
                    left -= n
                    recs.append(self._dr(e.ident, at if e.size else 0, n,
                                         0x80 if left else 0))
                    at += n // SECTOR
                    if not left:
                        break
            pos = 0
            for r in recs:
                if pos % SECTOR + len(r) > SECTOR:
                    pos += SECTOR - pos % SECTOR
                out[pos:pos + len(r)] = r
                pos += len(r)
            yield d.extent, out

    # UDF ------------------------------------------------------------------------------------

    def _vol_ident(self) -> str:
        return self._volume_id or "CDROM"

    def _vds(self, start: int, ut: bytes):
        """A Volume Descriptor Sequence (main at 32 or reserve at 48), six sectors."""
        vid = self._vol_ident()
        pvd = _tagged(1, start, b"".join((
            struct.pack("<LL", 0, 0), _dstring(vid, 32), struct.pack("<HHHHLL", 1, 1, 2, 2,
                                                                     1, 1),
            _dstring(self._vol_set, 128), _CHARSPEC, _CHARSPEC, bytes(8), bytes(8),
            _entity(b""), ut, _IMPL, bytes(64), struct.pack("<LH", 0, 0), bytes(22))))
        iuvd = _tagged(4, start + 1, b"".join((
            struct.pack("<L", 1), _entity(b"*UDF LV Info", b"\x02\x01"),
            _CHARSPEC, _dstring(vid, 128), bytes(108), _IMPL, bytes(128))))
        header = b"".join(_SHORT_AD.pack(0, 0) for _ in range(5)) + bytes(88)
        pd = _tagged(5, start + 2, b"".join((
            struct.pack("<LHH", 2, 1, 0), _entity(b"+NSR02", flags=2), header,
            struct.pack("<LLL", 1, self._part_start, self._part_length), _IMPL, bytes(128),
            bytes(156))))
        lvd = _tagged(6, start + 3, b"".join((
            struct.pack("<L", 3), _CHARSPEC, _dstring(vid, 128), struct.pack("<L", SECTOR),
            _DOMAIN, _long_ad(4096, 0), struct.pack("<LL", 6, 1), _IMPL, bytes(128),
            struct.pack("<LL", 4096, 64), struct.pack("<BBHH", 1, 6, 1, 0).ljust(72, b"\x00"))))
        usd = _tagged(7, start + 4, struct.pack("<LL", 4, 0) + bytes(488))
        td = _tagged(8, start + 5, bytes(496))
        return b"".join(s.ljust(SECTOR, b"\x00") for s in (pvd, iuvd, pd, lvd, usd, td))

    def _lvid(self, ut: bytes) -> bytes:
        n_dirs = len(self._dirs)
        impl = (_IMPL + struct.pack("<LLHHH", len(self._file_list), n_dirs, 258, 258, 258)
                + bytes(378))
        return _tagged(9, 64, b"".join((
            ut, struct.pack("<L", 1), struct.pack("<LL", 0, 0),
            struct.pack("<Q", self._unique_next) + bytes(24),
            struct.pack("<LL", 1, 46), struct.pack("<LL", 0, self._part_length), impl)))

    def _anchor(self, at: int) -> bytes:
        return _tagged(2, at, struct.pack("<LLLL", 32768, 32, 32768, 48) + bytes(480))

    def _fsd(self, ut: bytes) -> bytes:
        vid = self._vol_ident()
        # the tag location stays 0: the descriptor is the partition's first block
        return _tagged(256, 0, b"".join((
            ut, struct.pack("<HHLLLL", 3, 3, 1, 1, 0, 0), _CHARSPEC, _dstring(vid, 128),
            _CHARSPEC, _dstring(vid, 32), bytes(32), bytes(32), _long_ad(SECTOR, 2),
            _DOMAIN, _long_ad(0, 0), _long_ad(0, 0), bytes(32))))

    def _fe(self, at: int, file_type: int, perms: int, links: int, length: int,
            blocks: int, ads: bytes, ut: bytes) -> bytes:
        """ECMA-167 4/14.9 File Entry (short allocation descriptors); its unique ID is its
        sector."""
        return _tagged(261, at - self._part_start, _FE.pack(
            _ICB_DIR if file_type == 4 else _ICB_FILE, 0xFFFFFFFF, 0xFFFFFFFF, perms, links,
            0, 0, 0, length, blocks, ut, ut, ut, 1, _NO_AD, _IMPL, at, 0, len(ads)) + ads)

    def _udf_entries(self, ut: bytes):
        """Every directory's File Entry and File Identifier Descriptors, then the files'
        File Entries (packed in place: 8,000 of each are most of the UDF side's time)."""
        part = self._part_start
        for d in self._udf_dirs:
            buf = bytearray(SECTOR + d.fid_len)
            mv = memoryview(buf)
            pos = SECTOR
            for e, block in d.fids:
                if e is None:   # the parent directory's
                    p = d.parent
                    pos = _fid_into(buf, mv, pos, block - part, 8 | 2, b"",
                                    SECTOR, 2, 0) if p is None else \
                        _fid_into(buf, mv, pos, block - part, 8 | 2, b"", SECTOR,
                                  p.fe - part, p.fe)
                else:
                    pos = _fid_into(buf, mv, pos, block - part, 2 if e.is_dir else 0, e.udf,
                                    SECTOR, e.fe - part, e.fe)
            n = d.fid_len
            fe = self._fe(d.fe, 4, 5285, 1 + d.subdirs, n, -(-n // SECTOR),
                          _SHORT_AD.pack(n, d.fid_block - part), ut)
            buf[:len(fe)] = fe
            yield d.fe, buf
        # the files' File Entries: consecutive sectors, yielded in runs of 512
        fes = self._udf_file_fes
        fe_size = 16 + _FE.size
        for k in range(0, len(fes), 512):
            batch = fes[k:k + 512]
            run = bytearray(len(batch) * SECTOR)
            mv = memoryview(run)
            pos = 0
            for f in batch:
                size = f.size
                ads = []
                left, block = size, f.extent - part
                while left > 0:
                    n = min(left, _UDF_AD_MAX)
                    ads.append((n, block))
                    block += -(-n // SECTOR)
                    left -= n
                _FE.pack_into(run, pos + 16, _ICB_FILE, 0xFFFFFFFF, 0xFFFFFFFF, 4228, 1, 0, 0,
                              0, size, -(-size // SECTOR), ut, ut, ut, 1, _NO_AD, _IMPL, f.fe,
                              0, 8 * len(ads))
                end = pos + fe_size
                for n, block in ads:
                    _SHORT_AD.pack_into(run, end, n, block)
                    end += 8
                _tag_into(run, mv, pos, 261, f.fe - part, end)
                pos += SECTOR
            yield batch[0].fe, run


def _udf_name(name: str) -> bytes:
    """A File Identifier as OSTA compressed unicode: 8-bit if it fits, else 16-bit."""
    try:
        return b"\x08" + name.encode("latin-1")
    except UnicodeEncodeError:
        return b"\x10" + name.encode("utf-16_be")


def _tag_into(buf: bytearray, mv: memoryview, pos: int, ident: int, location: int,
              end: int) -> None:
    """The tag of the descriptor at ``buf[pos:end]``, whose body is already in place."""
    _TAG.pack_into(buf, pos, ident, 2, 0, 0, 0, binascii.crc_hqx(mv[pos + 16:end], 0),
                   end - pos - 16, location)
    buf[pos + 4] = sum(mv[pos:pos + 16]) & 0xFF


def _fid_into(buf: bytearray, mv: memoryview, pos: int, tag_block: int, characteristics: int,
              ident: bytes, length: int, block: int, unique: int) -> int:
    """ECMA-167 4/14.4 File Identifier Descriptor at ``buf[pos:]`` (no implementation use;
    ``ident`` the OSTA compressed name, empty for the parent's; its ICB the long_ad of
    ``length``, ``block``, ``unique``), padded to 4 bytes; returns where it ends."""
    _FID_BODY.pack_into(buf, pos + 16, 1, characteristics, len(ident), length, block, 0, 0,
                        unique, 0)
    at = pos + 16 + _FID_BODY.size
    buf[at:at + len(ident)] = ident
    end = at + len(ident)
    end += -(end - pos) % 4
    _tag_into(buf, mv, pos, 257, tag_block, end)
    return end


class _SectorWriter:
    """Pieces at increasing sectors gathered into runs and written a few MiB at a time;
    the gaps between pieces are already zeros in the image and are not written."""

    def __init__(self, fp):
        self._fp = fp
        self._buf = bytearray()
        self._at = 0   # byte offset of _buf

    def put(self, sector: int, data) -> None:
        pos = sector * SECTOR
        end = self._at + len(self._buf)
        if pos < end:
            raise InternalError("image metadata pieces overlap")
        if self._buf and pos - end <= 64 * SECTOR and len(self._buf) < _WRITE_CHUNK:
            self._buf += bytes(pos - end)
        else:
            self.flush()
            self._at = pos
        self._buf += data

    def flush(self) -> None:
        if self._buf:
            self._fp.seek(self._at)
            self._fp.write(self._buf)
            self._at += len(self._buf)
            self._buf = bytearray()
        flush = getattr(self._fp, "flush", None)
        if flush is not None:
            flush()
