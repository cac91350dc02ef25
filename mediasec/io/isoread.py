"""A fast, strict reader of the file listing of an ISO 9660 / Joliet / UDF image.

``read_listing(fd, size)`` parses the volume descriptors and directory hierarchies
straight from the image with ``os.pread`` and returns what ``IsoSource`` lists: the
namespace it shows (UDF > Joliet > ISO 9660), the Volume Identifier, and, in pycdlib's
walk order, each file's path and byte extents in the ISO 9660 tree and in the shown one.
It covers the subset our builds and the common mastering tools write - ISO 9660 without
system use areas, one Joliet SVD, UDF with one type-1 partition map, strategy-4 ICBs and
short or long allocation descriptors - and checks every field it relies on: descriptor
tags (checksum, CRC over the whole descriptor, location), both-endian copies, path tables,
every extent against the image size, loops and depth.

Anything else raises ``Decline`` and the caller reads the image with pycdlib, which then
reads it or refuses it (Rock Ridge or any system use area, El Torito, isohybrid, CD-XA,
multi-extent files, associated files, interleaving, extended attribute records,
metadata/virtual/sparable partitions, strategy 4096, extended, inline or non-recorded
allocation descriptors, deleted File Identifiers, a UDF path mixing 8- and 16-bit names,
duplicate names, a damaged or inconsistent structure). It also declines wherever pycdlib
would refuse the image (data in unused descriptor fields, an unreadable ``;version``, UDF
fields and timestamps out of its range), so no image pycdlib refuses gets a listing here.
A wrong listing is worse than a slow one: when in doubt, this module declines.
"""

from __future__ import annotations

import binascii
import os
import struct

__all__ = ["Decline", "Listing", "read_listing"]

SECTOR = 2048
_VD_START = 16
#: at most this many bytes of one directory's records are read (a hostile length declines)
_MAX_DIR_BYTES = 64 << 20
#: at most this many entries in one image (a sane DVD holds tens of thousands)
_MAX_ENTRIES = 4_000_000
#: File Entries are read through a window of this many bytes
_WINDOW = 64 << 10

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HHBBHHHI")
#: a directory record up to its File Identifier (ECMA-119 9.1)
_DR = struct.Struct("<BBII" "II" "7sBBBHHB")
_DR_BE = struct.Struct(">6xI4xI")
#: a File Identifier Descriptor, its tag first, up to its implementation use (ECMA-167 4/14.4)
_FID = struct.Struct("<HHBBHHHI" "HBBIIH6sH")
#: a (Extended) File Entry: its tag; ICB strategy, parameter, file type, flags; record
#: format, display attributes, record length; information length (ECMA-167 4/14.6, 4/14.9)
_FE = struct.Struct("<HHBBHHHI" "4xHH3xB6xH14xBBIQ")
_ICB = struct.Struct("<IIH")
_L_EA_AD = struct.Struct("<II")
_FE_TAGS = (261, 266)
_FID_TAGS = (257,)
_ZERO16 = bytes(16)


class Decline(Exception):
    """The image is outside what this reader vouches for: read it with pycdlib."""


class Listing:
    """The fast reader's result.

    ``iso_files``: (ISO 9660 path, extents) in walk order; ``files``: (path, extents or
    None for a symbolic link) in the shown namespace's walk order (the same list as
    ``iso_files`` when that namespace is ISO 9660). Paths are as pycdlib's ``walk`` spells
    them (``/DIR/NAME.;1``); extents are ``((byte offset, length), ...)``.
    """

    __slots__ = ("namespace", "volume_id", "iso_files", "files")

    def __init__(self, namespace, volume_id, iso_files, files):
        self.namespace = namespace
        self.volume_id = volume_id
        self.iso_files = iso_files
        self.files = files


class _Image:
    def __init__(self, fd: int, size: int):
        self.fd = fd
        self.size = size
        self.entries = 0
        self._win = b""
        self._wlo = 0

    def read(self, off: int, length: int) -> bytes:
        if off < 0 or length < 0 or off + length > self.size:
            raise Decline("a structure lies outside the image")
        out = []
        got = 0
        while got < length:
            b = os.pread(self.fd, length - got, off + got)
            if not b:
                raise Decline("the image ended early")
            out.append(b)
            got += len(b)
        return out[0] if len(out) == 1 else b"".join(out)

    def small(self, off: int, length: int) -> bytes:
        """``read`` for a descriptor of at most a sector, served from a window of
        ``_WINDOW`` bytes read ahead (File Entries lie one after another)."""
        lo = self._wlo
        if lo <= off and off + length <= lo + len(self._win):
            return self._win[off - lo:off - lo + length]
        if off < 0 or length < 0 or off + length > self.size:
            raise Decline("a structure lies outside the image")
        win = os.pread(self.fd, min(_WINDOW, self.size - off), off)
        if len(win) < length:
            raise Decline("the image ended early")
        self._win, self._wlo = win, off
        return win[:length]

    def sector(self, n: int) -> bytes:
        return self.read(n * SECTOR, SECTOR)

    def count(self, n: int = 1) -> None:
        self.entries += n
        if self.entries > _MAX_ENTRIES:
            raise Decline("too many directory entries")


def read_listing(fd: int, size: int, *, max_depth: int) -> Listing:
    """The listing of the image open on ``fd`` (``size`` bytes), or ``Decline``; an
    ``OSError`` reading the image is raised as it is."""
    try:
        return _read(_Image(fd, size), max_depth)
    except (struct.error, IndexError, ValueError, OverflowError, RecursionError) as exc:
        # a bound this reader forgot to check is still a decline, never a crash
        raise Decline(f"malformed structure ({exc})") from exc


def _read(img: _Image, max_depth: int) -> Listing:
    size = img.size
    if size < (_VD_START + 2) * SECTOR or size % SECTOR:
        raise Decline("too small for an ISO 9660 image")
    head = img.read(0, SECTOR)
    if head[510:512] == b"\x55\xaa":
        raise Decline("a boot record (isohybrid) in the system area")
    pvd = None
    joliet = None
    udf_marks = []
    terminated = False
    n = _VD_START
    while True:
        if (n + 1) * SECTOR > size or n > _VD_START + 64:
            raise Decline("the volume descriptor set runs past the image or is too long")
        vd = img.sector(n)
        typ, ident = vd[0], vd[1:6]
        if typ not in (0, 1, 2, 255) or ident not in (b"CD001", b"CDW02", b"BEA01", b"NSR02",
                                                   b"NSR03", b"TEA01", b"BOOT2"):
            break
        if ident == b"CD001":
            if terminated:
                raise Decline("an ISO 9660 descriptor after the terminator")
            if vd[6] != 1:
                raise Decline("volume descriptor version")
            if typ == 1:
                if pvd is not None:
                    raise Decline("more than one Primary Volume Descriptor")
                pvd = vd
            elif typ == 2:
                if (vd[7] & 1) == 0 and vd[88:91] in (b"%/@", b"%/C", b"%/E") and vd[881] == 1:
                    if joliet is not None:
                        raise Decline("more than one Joliet descriptor")
                    joliet = vd
                else:
                    raise Decline("a supplementary or enhanced descriptor other than Joliet")
            elif typ == 255:
                terminated = True
            else:
                raise Decline("a boot record (El Torito)")
        elif typ == 0 and ident in (b"BEA01", b"NSR02", b"NSR03", b"TEA01"):
            if vd[6] != 1:
                raise Decline("volume recognition descriptor version")
            udf_marks.append(ident)
        else:
            raise Decline(f"volume descriptor {typ} {ident!r}")
        n += 1
    if pvd is None or not terminated:
        raise Decline("no Primary Volume Descriptor or terminator")
    if udf_marks and udf_marks not in ([b"BEA01", b"NSR02", b"TEA01"],
                                       [b"BEA01", b"NSR03", b"TEA01"]):
        raise Decline("an unusual UDF volume recognition sequence")

    space = _both32(pvd, 80)
    _both16(pvd, 120)
    _both16(pvd, 124)
    if _both16(pvd, 128) != SECTOR:
        raise Decline("a logical block size other than 2048")
    if pvd[881] != 1 or pvd[7] != 0:
        raise Decline("file structure version or flags")
    for vd in (pvd, joliet):
        # pycdlib refuses data in the unused fields
        if vd is not None and (vd[72:80] != bytes(8) or vd[882] != 0):
            raise Decline("data in an unused field of a volume descriptor")
    if pvd[883 + 141:883 + 149] == b"CD-XA001":
        raise Decline("CD-XA")
    volume_id = pvd[40:72].decode("latin-1").strip()
    if joliet is not None and (_both16(joliet, 128) != SECTOR or _both32(joliet, 80) != space):
        raise Decline("the Joliet descriptor disagrees with the primary one")

    iso_files = _iso_tree(img, pvd, _utf8, max_depth, primary=True)
    joliet_files = (_iso_tree(img, joliet, _utf16, max_depth, primary=False)
                    if joliet is not None else None)
    if udf_marks:
        files = _udf_tree(img, space, max_depth)
        return Listing("udf_path", volume_id, iso_files, files)
    if joliet_files is not None:
        return Listing("joliet_path", volume_id, iso_files, joliet_files)
    return Listing("iso_path", volume_id, iso_files, iso_files)


# -- ISO 9660 and Joliet -------------------------------------------------------------------

def _both32(b: bytes, off: int) -> int:
    le = _U32.unpack_from(b, off)[0]
    if le != struct.unpack_from(">I", b, off + 4)[0]:
        raise Decline("both-endian fields disagree")
    return le


def _both16(b: bytes, off: int) -> int:
    le = _U16.unpack_from(b, off)[0]
    if le != struct.unpack_from(">H", b, off + 2)[0]:
        raise Decline("both-endian fields disagree")
    return le


def _utf8(fi: bytes) -> str:
    try:
        return fi.decode("utf-8")
    except UnicodeDecodeError:
        raise Decline("an ISO 9660 name that is not UTF-8") from None


def _utf16(fi: bytes) -> str:
    if len(fi) % 2:
        raise Decline("a Joliet name of odd length")
    try:
        return fi.decode("utf-16-be")
    except UnicodeDecodeError:
        raise Decline("a Joliet name that is not UCS-2") from None


def _path_table(img: _Image, vd: bytes) -> set[int]:
    """Both path tables parsed and compared; the set of directory extents they name."""
    size = _both32(vd, 132)
    if size < 10 or size > _MAX_DIR_BYTES:
        raise Decline("path table size")
    lt = img.read(_U32.unpack_from(vd, 140)[0] * SECTOR, size)
    mt = img.read(struct.unpack_from(">I", vd, 148)[0] * SECTOR, size)
    extents = set()
    off = 0
    first = True
    while off < size:
        ln = lt[off]
        if ln == 0 or mt[off] != ln or off + 8 + ln > size:
            raise Decline("path table record")
        xa = lt[off + 1]
        ext, parent = _U32.unpack_from(lt, off + 2)[0], _U16.unpack_from(lt, off + 6)[0]
        if (mt[off + 1] != xa or struct.unpack_from(">I", mt, off + 2)[0] != ext
                or struct.unpack_from(">H", mt, off + 6)[0] != parent
                or lt[off + 8:off + 8 + ln] != mt[off + 8:off + 8 + ln]):
            raise Decline("the path tables disagree")
        if first and (lt[off + 8:off + 9] != b"\x00" or ln != 1):
            raise Decline("the path table does not start with the root")
        first = False
        extents.add(ext)
        off += 8 + ln + (ln & 1)
    if off != size:
        raise Decline("path table size")
    return extents


def _dir_records(img: _Image, loc: int, length: int):
    """The records of one directory: (file identifier, flags, extent, data length)."""
    if length <= 0 or length % SECTOR or length > _MAX_DIR_BYTES:
        raise Decline("directory length")
    data = img.read(loc * SECTOR, length)
    out = []
    off = 0
    unpack = _DR.unpack_from
    unpack_be = _DR_BE.unpack_from
    while off < length:
        ln = data[off]
        if ln == 0:
            end = (off // SECTOR + 1) * SECTOR
            if data.count(0, off, end) != end - off:
                raise Decline("directory padding")
            off = end
            continue
        (ln, xattr, ext, _e, dlen, _d, _date, flags, unit, gap, seq, _s,
         lfi) = unpack(data, off)
        if (off % SECTOR) + ln > SECTOR:
            raise Decline("a directory record crosses a sector")
        base = 33 + lfi + (0 if lfi & 1 else 1)
        if lfi == 0 or ln != base:
            # a longer record carries a system use area (Rock Ridge, SUSP, AAIP, XA)
            raise Decline("a directory record with a system use area or a bad length")
        ext_be, dlen_be = unpack_be(data, off)
        if (ext_be != ext or dlen_be != dlen
                or seq != struct.unpack_from(">H", data, off + 30)[0]):
            raise Decline("both-endian fields disagree")
        if xattr or unit or gap or flags & ~0x03:
            raise Decline("extended attributes, interleaving, associated or multi-extent file")
        out.append((data[off + 33:off + 33 + lfi], flags, ext, dlen))
        off += ln
    return out


def _iso_tree(img: _Image, vd: bytes, decode, max_depth: int, *, primary: bool):
    root = vd[156:190]
    if root[0] != 34 or root[32] != 1 or root[33] != 0:
        raise Decline("root directory record")
    (_ln, xattr, root_loc, _e, root_len, _d, _date, flags, unit, gap, _s, _s2,
     _lfi) = _DR.unpack_from(root, 0)
    if xattr or unit or gap or not flags & 2:
        raise Decline("root directory record")
    ptr = _path_table(img, vd)
    if root_loc not in ptr:
        raise Decline("the root is not in the path table")
    seen = {root_loc}
    out = []
    size = img.size
    stack = [("", root_loc, root_len, 0)]
    while stack:
        path, loc, length, depth = stack.pop()
        recs = _dir_records(img, loc, length)
        img.count(len(recs))
        if (len(recs) < 2 or recs[0][0] != b"\x00" or recs[1][0] != b"\x01"
                or recs[0][2] != loc or not recs[0][1] & 2 or not recs[1][1] & 2):
            raise Decline("a directory without its . and .. records")
        files = []
        dirs = []
        names = set()
        for fi, flags, ext, dlen in recs[2:]:
            if fi in names or fi in (b"\x00", b"\x01"):
                raise Decline("a duplicate name in a directory")
            names.add(fi)
            name = decode(fi)
            if "/" in name or "\x00" in name or name in (".", ".."):
                raise Decline("a name pycdlib cannot look up")
            if flags & 2:
                if depth + 1 > max_depth:
                    raise Decline("directories nested too deep")
                if ext in seen:
                    raise Decline("directory records form a loop")
                if ext not in ptr:
                    raise Decline("a directory missing from the path table")
                seen.add(ext)
                dirs.append((fi, name, ext, dlen))
            else:
                if primary and b";" in fi:
                    try:   # pycdlib reads the version number of every ISO 9660 file name
                        int(fi.rpartition(b";")[2] or b"1")
                    except ValueError:
                        raise Decline("a version number that is not a number") from None
                if dlen:
                    if ext * SECTOR + dlen > size:
                        raise Decline("a file extent outside the image")
                    files.append((name, ((ext * SECTOR, dlen),)))
                else:
                    files.append((name, ()))
        files.sort()
        out.extend((f"{path}/{name}", ext) for name, ext in files)
        dirs.sort(reverse=True)   # pycdlib visits children in identifier order, depth first
        stack.extend((f"{path}/{name}", ext, dlen, depth + 1) for _fi, name, ext, dlen in dirs)
    return out


# -- UDF (ECMA-167 / OSTA UDF 2.x) ---------------------------------------------------------

def _tag(b: bytes, off: int, idents, location: int) -> int:
    """Check the descriptor tag at ``off``; its identifier."""
    if len(b) - off < 16:
        raise Decline("a truncated UDF descriptor")
    ident, ver, csum, res, _serial, crc, crclen, loc = _TAG.unpack_from(b, off)
    if (sum(b[off:off + 16]) - csum) & 0xFF != csum:
        raise Decline("UDF tag checksum")
    if res != 0 or ver not in (2, 3):
        raise Decline("UDF tag version")
    if ident not in idents:
        raise Decline(f"UDF descriptor {ident} where {sorted(idents)} was expected")
    if loc != location:
        raise Decline("UDF tag location")
    end = off + 16 + crclen
    if end > len(b) or binascii.crc_hqx(b[off + 16:end], 0) != crc:
        raise Decline("UDF descriptor CRC")
    return ident


def _crclen(b: bytes, off: int) -> int:
    return _U16.unpack_from(b, off + 10)[0]


_TS = struct.Struct("<BBHBBBBB")


def _timestamps(b: bytes, *offsets: int) -> None:
    """UDF timestamps as pycdlib checks them (it refuses a volume with one out of range)."""
    for off in offsets:
        tz, ttype, year, month, day, hour, minute, second = _TS.unpack_from(b, off)
        zone = ((ttype & 0xF) << 8) | tz
        if zone & 0x800:
            zone -= 0x1000
        if ((not -1440 <= zone <= 1440 and zone != -2047) or not 1 <= year <= 9999
                or not 1 <= month <= 12 or not 1 <= day <= 31 or hour > 23 or minute > 59
                or second > 59):
            raise Decline("a UDF timestamp pycdlib refuses")


def _anchor(img: _Image, loc: int):
    """The (main, reserve) extents of an anchor at ``loc``, None where pycdlib finds none;
    Decline where pycdlib would fail or would silently fix a wrong tag location."""
    b = img.sector(loc)
    ident, ver, csum, res, _serial, crc, crclen, tloc = _TAG.unpack_from(b, 0)
    if res != 0 or (sum(b[:16]) - csum) & 0xFF != csum or ver not in (2, 3):
        return None
    if crclen > SECTOR - 16:
        raise Decline("a UDF anchor place whose tag pycdlib cannot check")
    if binascii.crc_hqx(b[16:16 + crclen], 0) != crc or ident != 2:
        return None
    if tloc != loc:
        raise Decline("UDF tag location")
    return struct.unpack_from("<IIII", b, 16)


def _vds(img: _Image, length: int, loc: int):
    """A volume descriptor sequence: (partition descriptors, logical volume descriptors)."""
    if length < SECTOR or length > 256 * SECTOR:
        raise Decline("UDF volume descriptor sequence length")
    data = img.read(loc * SECTOR, length - length % SECTOR)
    pds, lvds, pvd_nums = [], [], []
    for i in range(len(data) // SECTOR):
        off = i * SECTOR
        ident = _tag(data, off, (1, 4, 5, 6, 7, 8), loc + i)
        d = data[off:off + SECTOR]
        if ident == 8:
            break
        if ident == 1:
            pvd_nums.append(_U32.unpack_from(d, 20)[0])
            seq, max_seq, level, _max_level, cs, max_cs = struct.unpack_from("<HHHHII", d, 56)
            if (seq, max_seq, cs, max_cs) != (1, 1, 1, 1) or level not in (2, 3) \
                    or _U16.unpack_from(d, 488)[0] > 1 or d[490:512] != bytes(22):
                raise Decline("a UDF primary volume descriptor pycdlib refuses")
            _timestamps(d, 376)
        elif ident == 4:
            if d[21:33] != b"*UDF LV Info":
                raise Decline("a UDF implementation use descriptor pycdlib refuses")
        elif ident == 5:
            if _crclen(d, 0) < 512 - 16:
                raise Decline("UDF partition descriptor CRC length")
            if _U16.unpack_from(d, 20)[0] > 1 or _U32.unpack_from(d, 184)[0] > 0x1F:
                raise Decline("a UDF partition descriptor pycdlib refuses")
            pds.append(d)
        elif ident == 6:
            if _crclen(d, 0) < 440 - 16 + _U32.unpack_from(d, 264)[0]:
                raise Decline("UDF logical volume descriptor CRC length")
            if d[217:236] != b"*OSTA UDF Compliant":
                raise Decline("a UDF logical volume outside the OSTA domain")
            lvds.append(d)
    else:
        raise Decline("no terminating descriptor in the UDF volume descriptor sequence")
    if not pvd_nums or pvd_nums.count(0) > 1:
        raise Decline("UDF primary volume descriptors")
    return pds, lvds


def _udf_tree(img: _Image, space: int, max_depth: int):
    size = img.size
    last_phys = size // SECTOR - 1
    where = {256, space - 1 - 256, space - 1, last_phys, last_phys - 256}
    if min(where) < 0 or max(where) > last_phys:
        # pycdlib reads every candidate place of an anchor and fails past the end
        raise Decline("a place for a UDF anchor lies outside the image")
    anchors = [a for a in (_anchor(img, x) for x in sorted(where)) if a is not None]
    if len(anchors) < 2 or any(a != anchors[0] for a in anchors) or _anchor(img, 256) is None:
        raise Decline("UDF anchors missing or disagreeing")
    main_len, main_loc, res_len, res_loc = anchors[0]
    pds, lvds = _vds(img, main_len, main_loc)
    if res_len:
        _vds(img, res_len, res_loc)
    if len(pds) != 1 or len(lvds) != 1:
        raise Decline("not exactly one UDF partition and logical volume")
    pd, lvd = pds[0], lvds[0]
    if pd[25:31] not in (b"+NSR02", b"+NSR03"):
        raise Decline("UDF partition contents")
    part_num = _U16.unpack_from(pd, 22)[0]
    part_start, part_len = struct.unpack_from("<II", pd, 188)
    if part_start < 1 or (part_start + part_len) * SECTOR > size or part_len < 2:
        raise Decline("UDF partition outside the image")
    if _U32.unpack_from(lvd, 212)[0] != SECTOR:
        raise Decline("UDF logical block size")
    maps_len, n_maps = struct.unpack_from("<II", lvd, 264)
    if n_maps != 1 or maps_len != 6 or lvd[440] != 1 or lvd[441] != 6:
        raise Decline("a UDF partition map other than one type-1 map")
    if _U16.unpack_from(lvd, 444)[0] != part_num:
        raise Decline("the UDF partition map names another partition")
    fsd_len, fsd_lbn, fsd_ref = struct.unpack_from("<IIH", lvd, 248)
    if fsd_lbn != 0 or fsd_ref != 0 or fsd_len & 0xC0000000:
        raise Decline("the UDF file set descriptor is not at the partition's start")
    int_len, int_loc = struct.unpack_from("<II", lvd, 432)
    if int_len:
        if int_len > 64 * SECTOR:
            raise Decline("UDF integrity sequence length")
        lvid = img.read(int_loc * SECTOR, min(int_len, 2 * SECTOR) // SECTOR * SECTOR or SECTOR)
        _tag(lvid, 0, (9,), int_loc)
        _timestamps(lvid, 16)
        if _U32.unpack_from(lvid, 28)[0] > 1:
            raise Decline("a UDF integrity type pycdlib refuses")
        if len(lvid) >= 2 * SECTOR:
            _tag(lvid, SECTOR, (8,), int_loc + 1)

    def in_part(lbn: int, length: int) -> int:
        if lbn >= part_len or (part_start + lbn) * SECTOR + length > min(
                size, (part_start + part_len) * SECTOR):
            raise Decline("a UDF extent outside its partition")
        return (part_start + lbn) * SECTOR

    fsd = img.read(in_part(0, 2 * SECTOR), 2 * SECTOR)
    _tag(fsd, 0, (256,), 0)
    if _crclen(fsd, 0) < 512 - 16:
        raise Decline("UDF file set descriptor CRC length")
    _timestamps(fsd, 16)
    if struct.unpack_from("<HHII", fsd, 28) != (3, 3, 1, 1) or _U32.unpack_from(fsd, 44)[0]:
        raise Decline("a UDF file set descriptor pycdlib refuses")
    if _U16.unpack_from(fsd, SECTOR)[0] == 8:
        _tag(fsd, SECTOR, (8,), 1)
    root_len, root_lbn, root_ref = struct.unpack_from("<IIH", fsd, 400)
    if root_ref != 0:
        raise Decline("the UDF root names another partition")

    good_times: set[bytes] = set()   # File Entries' times already checked (often all alike)

    def entry(icb_len: int, lbn: int):
        """(file type, allocation descriptors as byte extents) of a (Extended) File Entry."""
        if icb_len <= 0 or icb_len > SECTOR:
            raise Decline("UDF ICB length")
        b = img.small(in_part(lbn, icb_len), icb_len)
        (ident, ver, csum, res, _serial, crc, crclen, tloc, strategy, _param, ftype,
         icb_flags, rfmt, rdisp, rlen, info_len) = _FE.unpack_from(b, 0)
        if (ident not in _FE_TAGS or ver not in (2, 3) or res or tloc != lbn
                or (sum(b[:16]) - csum) & 0xFF != csum):
            _tag(b, 0, _FE_TAGS, lbn)   # says which
            raise Decline("UDF file entry tag")
        if strategy != 4:
            raise Decline("a UDF ICB strategy other than 4")
        ad_type = icb_flags & 7
        if ident == 261:
            fixed, ckpt = 176, 108
            times = b[72:108]
            if times not in good_times:
                _timestamps(b, 72, 84, 96)
                good_times.add(times)
        else:
            fixed, ckpt = 216, 128
            if b[152:168] != _ZERO16:
                raise Decline("UDF named streams")
            times = b[80:128]
            if times not in good_times:
                _timestamps(b, 80, 92, 104, 116)
                good_times.add(times)
        if rfmt or rdisp or rlen:
            raise Decline("UDF record format")
        if _U32.unpack_from(b, ckpt)[0] != 1:
            raise Decline("UDF checkpoint")
        l_ea, l_ad = _L_EA_AD.unpack_from(b, fixed - 8)
        end = fixed + l_ea + l_ad
        if end > icb_len or crclen != end - 16:
            raise Decline("UDF file entry lengths")
        if binascii.crc_hqx(b[16:end], 0) != crc:
            raise Decline("UDF descriptor CRC")
        if ftype not in (4, 5, 12):
            raise Decline(f"UDF file type {ftype}")
        if ad_type == 0:
            step, fmt = 8, _L_EA_AD
        elif ad_type == 1:
            step, fmt = 16, _ICB
        else:
            raise Decline("UDF extended or inline allocation descriptors")
        if l_ad % step:
            raise Decline("UDF allocation descriptor length")
        exts = []
        total = 0
        ended = False
        for off in range(fixed + l_ea, end, step):
            t = fmt.unpack_from(b, off)
            raw, pos = t[0], t[1]
            if raw >> 30:
                raise Decline("an unrecorded or continued UDF extent")
            if ended:
                raise Decline("a UDF allocation descriptor after an empty one")
            if ad_type == 1 and t[2] != 0:
                raise Decline("a UDF extent in another partition")
            ended = raw == 0
            exts.append((in_part(pos, raw), raw))
            total += raw
        if total != info_len:
            raise Decline("UDF extents do not add up to the file's length")
        return ftype, tuple(exts)

    ftype, root_exts = entry(root_len, root_lbn)
    if ftype != 4:
        raise Decline("the UDF root is not a directory")
    seen = {root_lbn}
    out = []
    # (path, extents, name encoding of this directory's chain or None for the root, depth)
    stack = [("", root_exts, root_lbn, None, 0)]
    while stack:
        path, exts, lbn, chain_enc, depth = stack.pop()
        kids = []
        raw_names = set()
        shown = set()
        first = True
        for off, length in exts:
            if length > _MAX_DIR_BYTES:
                raise Decline("UDF directory length")
            data = img.read(off, length)
            pos = 0
            while pos < length:
                at = off + pos
                sector_lbn = at // SECTOR - part_start
                if length - pos < 38:
                    raise Decline("a truncated UDF file identifier")
                (ident, tver, csum, res, _serial, crc, crclen, tloc, ver, chars, l_fi,
                 icb_len, icb_lbn, icb_ref, _iu, l_iu) = _FID.unpack_from(data, pos)
                if (ident != 257 or tver not in (2, 3) or res or tloc != sector_lbn
                        or (sum(data[pos:pos + 16]) - csum) & 0xFF != csum):
                    _tag(data, pos, _FID_TAGS, sector_lbn)   # says which
                    raise Decline("UDF file identifier tag")
                d_len = 38 + l_iu + l_fi
                padded = (d_len + 3) & ~3
                if ver != 1 or pos + padded > length or not d_len - 16 <= crclen <= padded - 16:
                    raise Decline("UDF file identifier lengths")
                if binascii.crc_hqx(data[pos + 16:pos + 16 + crclen], 0) != crc:
                    raise Decline("UDF descriptor CRC")
                if chars & 0x04 or chars & ~0x0F:
                    raise Decline("a deleted UDF file identifier")
                if chars & 0x08:
                    if not first or l_fi:
                        raise Decline("a misplaced UDF parent entry")
                    first = False
                    pos += padded
                    continue
                first = False
                if l_fi < 2 or icb_ref != 0 or icb_len & 0xC0000000:
                    raise Decline("UDF file identifier")
                fi = data[pos + 38 + l_iu + 1:pos + d_len]
                comp = data[pos + 38 + l_iu]
                if comp == 8:
                    name = fi.decode("latin-1")
                elif comp == 16:
                    name = _utf16(fi)
                else:
                    raise Decline("an OSTA CS0 compression other than 8 or 16")
                if fi in raw_names or name in shown:
                    raise Decline("a duplicate UDF name")
                if "/" in name or "\x00" in name or name in (".", ".."):
                    raise Decline("a UDF name pycdlib cannot look up")
                raw_names.add(fi)
                shown.add(name)
                kids.append((name, chars & 0x02, icb_len, icb_lbn, comp))
                pos += padded
        img.count(len(kids))
        files = []
        dirs = []
        for name, is_dir, icb_len, icb_lbn, comp in kids:
            ftype, fexts = entry(icb_len, icb_lbn)
            if bool(is_dir) != (ftype == 4):
                raise Decline("a UDF file identifier and its entry disagree on the kind")
            if ftype == 4:
                if depth + 1 > max_depth:
                    raise Decline("directories nested too deep")
                if icb_lbn in seen:
                    raise Decline("UDF directories form a loop")
                if chain_enc is not None and chain_enc != comp:
                    # pycdlib decodes a directory's whole path with its own name's encoding
                    raise Decline("a UDF path mixing 8- and 16-bit names")
                seen.add(icb_lbn)
                dirs.append((f"{path}/{name}", fexts, icb_lbn, comp, depth + 1))
            else:
                files.append((name, fexts if ftype == 5 else None))
        files.sort(key=lambda f: f[0])
        out.extend((f"{path}/{name}", ext) for name, ext in files)
        stack.extend(reversed(dirs))   # disk order, depth first, as pycdlib walks
    return out
