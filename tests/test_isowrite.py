"""Our ISO 9660 / UDF writer (``mediasec.io.isowrite``), the one the build uses.

* **Oracle: pycdlib.** For the same files, pinned clock and pinned random part of the UDF
  Volume Set Identifier, our image equals pycdlib's (``_pycdlib_image.PycdlibImage``)
  byte for byte, CD (ISO 9660 only) and DVD (the UDF bridge): one file, empty files, seven levels
  deep, hundreds of files in one directory (directory records and UDF File Identifier
  Descriptors over several sectors), hundreds of directories (path tables over several
  sectors), files at the sector thresholds, over 1 GiB (two UDF allocation descriptors)
  and over 4 GiB (multi-extent ISO 9660 records), a non-UTC time zone.
  Where pycdlib is wrong or names itself, the reference is corrected before the
  comparison (``_corrected``) and the field is checked by peers instead:
  - the UDF implementation identifiers say ``*MEDIASEC`` (pycdlib writes ``*pycdlib``);
  - a subdirectory's parent File Identifier Descriptor points to its parent's File Entry
    (pycdlib points all of them to the root's);
  - a ``..`` directory record carries its parent's data length (pycdlib keeps the length
    the parent had when the subdirectory was added);
  - both UDF Primary Volume Descriptors carry one Volume Set Identifier (pycdlib draws its
    random part twice; pinned here);
  - a UDF timestamp's time zone is in minutes (ECMA-167 1/7.3.1; pycdlib writes the ISO
    9660 count of 15 minutes, which only shows outside UTC).
  Two cases pycdlib cannot make at all are checked by peers only: files at depth 8 (eight
  components, which ECMA-119 6.8.2.1 and PS3.12 allow and pycdlib refuses) and the
  ECMA-119 9.3 order of ``X.T;1`` before ``X.T1;1`` (pycdlib sorts bytewise).
* **Peers:** isoinfo (``-d``, ``-f``, ``-x``), xorriso (``-find``, ``-osirrox`` extract),
  7z (``l`` shows UDF on the DVD image, ``x`` extracts) and pycdlib's parse each list every
  file under its name and give back its bytes; udfinfo (udftools) reads the UDF side's
  identifiers and counts; every UDF descriptor tag (checksum, location, CRC) is checked by
  a reader written here, walking the directories from the root.
* Bad layouts are refused with one clear error; the size the image takes stays within the
  ``media.disc.Overhead`` estimate the planner uses.
"""

from __future__ import annotations

import contextlib
import os
import random
import time

import pytest

from conftest import run_peer
from mediasec.errors import InternalError, UsageError
from mediasec.io.fs import AtomicOutput
from mediasec.io.iso import IsoSource
from _pycdlib_image import PycdlibImage
from mediasec.io.isowrite import SECTOR, IsoFile, IsoImage
from mediasec.media.disc import Overhead

PINNED = 1_764_700_000.5
RNG = random.Random(15)


class Bytes:
    """A producer of known bytes (chunks of odd sizes)."""

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)

    def chunks(self):
        for i in range(0, len(self.data), 70_001):
            yield self.data[i:i + 70_001]


class Sized:
    """A producer that only has a size: for layouts compared without their data."""

    def __init__(self, size: int):
        self.size = size

    def chunks(self):
        raise AssertionError("not written")


@pytest.fixture
def pinned(monkeypatch):
    """One clock and one random number for both writers (pycdlib reads ``time.time()`` and
    ``random.getrandbits`` through the modules)."""
    monkeypatch.setattr(time, "time", lambda: PINNED)
    monkeypatch.setattr(random, "getrandbits", lambda n: 0x2ABCDEF & ((1 << n) - 1))
    import pycdlib.udf as udf
    orig = udf.UDFEntityID.new

    def ours(self, flags, identifier=b"", suffix=b""):
        return orig(self, flags, b"*MEDIASEC" if identifier == b"*pycdlib" else identifier,
                    suffix)
    monkeypatch.setattr(udf.UDFEntityID, "new", ours)
    stamp = udf.UDFTimestamp.new

    def minutes(self, date_seconds):   # ECMA-167 1/7.3.1: the offset is in minutes
        stamp(self, date_seconds)
        self.tz *= 15
    monkeypatch.setattr(udf.UDFTimestamp, "new", minutes)


def _corrected(ref: PycdlibImage) -> PycdlibImage:
    """pycdlib's layout with its two link bugs fixed (see the module docstring)."""
    iso = ref._iso
    stack = [iso.pvd.root_directory_record()]
    while stack:
        d = stack.pop()
        for c in d.children[2:]:
            if c.is_dir():
                c.children[1].data_length = d.data_length
                stack.append(c)
    if iso.udf_root is not None:
        stack = [iso.udf_root]
        while stack:
            fe = stack.pop()
            fids = list(fe.fi_descs.values())
            if fe.parent is not None:
                fids[0].set_icb(fe.parent.new_extent_loc, fe.parent.desc_tag.tag_location)
            stack += [f.file_entry for f in fids[1:] if f.is_dir()]
    return ref


def _files(spec, producer=Bytes):
    return [IsoFile(tuple(p.split("/")), producer(d)) for p, d in spec]


def _both(spec, udf: bool, producer=Bytes, **kw):
    kw = {"volume_id": "FILESET1", "udf": udf, "interchange_level": 3 if udf else 1,
          "set_size": 2, "seqnum": 2, **kw}
    return (_corrected(PycdlibImage(_files(spec, producer), **kw)),
            IsoImage(_files(spec, producer), **kw))


def _written(image, path) -> bytes:
    out = AtomicOutput(path)
    image.write(out)
    out.commit()
    return path.read_bytes()


def _metadata(image, path, files) -> bytes:
    """What ``write_metadata`` writes, read back from the image file: the sectors before
    the first file's data and after the last's (the files' extents are not read: they may
    be gigabytes of holes)."""
    with open(path, "wb+") as fp:
        fp.truncate(image.size)
        image.write_metadata(fp)
        first = min((o for o in image.offsets if o is not None), default=image.size)
        fp.seek(0)
        head = fp.read(first)
        last = max(sum(image.extent(f.components)) for f in files)
        last += -last % SECTOR
        fp.seek(last)
        return head + fp.read()


def _same(a: bytes, b: bytes) -> None:
    if a != b:
        assert len(a) == len(b), (len(a), len(b))
        sectors = [i // SECTOR for i in range(0, len(a), SECTOR)
                   if a[i:i + SECTOR] != b[i:i + SECTOR]]
        pytest.fail(f"the images differ in sectors {sectors[:10]} ({len(sectors)} in all)")


def _rand(n: int) -> bytes:
    return RNG.randbytes(n)


TREES = {
    "one file": [("DICOMDIR", _rand(5))],
    "empty files": [("A", b""), ("DIR/B", b""), ("DIR/C", _rand(3000)), ("DICOMDIR", b"")],
    "seven levels": [("/".join("ABCDEFG"[:k]) + f"/F{k}", _rand(100 * k)) for k in range(1, 7)]
                    + [("A/B/C/D/E/F/LAST", _rand(9)), ("DICOMDIR", _rand(700))],
    "sector thresholds": [(f"T/F{n}", _rand(n)) for n in (1, 2047, 2048, 2049, 4095, 4096,
                                                          (1 << 20) + 1)],
    # 8-character names: 44-byte records, 46 to a sector; 48-byte UDF FIDs, 42 to a sector
    "one big directory": [(f"P/S/F{i:07d}", _rand(i % 5000)) for i in range(300)],
    # path tables of 200 * 16 bytes: two sectors each
    "many directories": [(f"D{i:07d}/S{i % 7}/F", _rand(i % 3)) for i in range(200)],
    "dicom shaped": [(f"DICOM/P{p:07d}/S{s:07d}/I{i:07d}", _rand(RNG.randint(0, 9000)))
                     for p in range(3) for s in range(4) for i in range(12)]
                    + [("DICOMDIR", _rand(40_000)), ("MANIFEST.SHA", _rand(1000))],
}


@pytest.mark.parametrize("udf", [False, True], ids=["cd", "dvd"])
@pytest.mark.parametrize("tree", sorted(TREES))
def test_image_equals_pycdlibs(tmp_path, pinned, tree, udf):
    ref, ours = _both(TREES[tree], udf)
    assert ours.size == ref.size
    assert ours.offsets == ref.offsets
    for f in _files(TREES[tree]):
        assert ours.extent(f.components) == ref.extent(f.components)
    _same(_written(ref, tmp_path / "ref.iso"), _written(ours, tmp_path / "ours.iso"))


@contextlib.contextmanager
def _time_zone(name: str):
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_metadata_equals_pycdlibs_in_another_time_zone(tmp_path, pinned):
    with _time_zone("America/St_Johns"):   # UTC-3:30: a non-zero GMT offset
        assert time.localtime(PINNED).tm_gmtoff == -12600
        for udf in (False, True):
            ref, ours = _both(TREES["dicom shaped"], udf)
            files = _files(TREES["dicom shaped"])
            _same(_metadata(ref, tmp_path / "ref", files),
                  _metadata(ours, tmp_path / "ours", files))


@pytest.mark.parametrize("sizes", [[(1 << 30) * 3 // 2], [(1 << 32) - 1, 5],
                                   [(5 << 30) + 3, (1 << 32) + 4096]],
                         ids=["over-1GiB", "4GiB-less-1", "over-4GiB"])
def test_large_files_layout_equals_pycdlibs(tmp_path, pinned, sizes):
    """Metadata only (sparse files): a file over 1 GiB has two UDF allocation descriptors;
    one over 4 GiB has several ISO 9660 records, all but the last flagged multi-extent."""
    spec = [(f"BIG/F{i}", n) for i, n in enumerate(sizes)] + [("DICOMDIR", 10)]
    ref, ours = _both(spec, True, producer=Sized)
    assert (ours.size, ours.offsets) == (ref.size, ref.offsets)
    files = _files(spec, Sized)
    _same(_metadata(ref, tmp_path / "ref", files), _metadata(ours, tmp_path / "ours", files))


def test_write_metadata_leaves_the_files_extents_alone(tmp_path, pinned):
    """Into an image already holding the files' data, the metadata writes around it."""
    spec = TREES["dicom shaped"]
    for udf in (False, True):
        _, ours = _both(spec, udf)
        full = _written(ours, tmp_path / "full.iso")
        path = tmp_path / "meta.iso"
        with open(path, "wb") as fp:
            fp.truncate(ours.size)
        with open(path, "r+b") as fp:
            for f, off in zip(_files(spec), ours.offsets):
                if off is not None:
                    fp.seek(off)
                    fp.write(f.producer.data)
            ours.write_metadata(fp)
        _same(path.read_bytes(), full)


def test_udf_time_zone_in_minutes(tmp_path):
    with _time_zone("America/St_Johns"):   # UTC-3:30
        image = IsoImage(_files([("A", b"x")]), udf=True, interchange_level=3)
        fsd = _written(image, tmp_path / "i.iso")[257 * SECTOR:258 * SECTOR]
    type_and_zone = int.from_bytes(fsd[16:18], "little")
    assert type_and_zone >> 12 == 1   # local time
    zone = type_and_zone & 0xFFF
    assert zone - (1 << 12 if zone & 0x800 else 0) == -210


def test_volume_identifiers_and_dates(tmp_path, pinned):
    _, ours = _both(TREES["one file"], True)
    img = _written(ours, tmp_path / "o.iso")
    pvd = img[16 * SECTOR:17 * SECTOR]
    assert pvd[40:72] == b"FILESET1".ljust(32)
    assert pvd[574:702] == b"MEDIASEC".ljust(128)
    assert pvd[120:124] == (2).to_bytes(2, "little") + (2).to_bytes(2, "big")
    assert pvd[124:128] == (2).to_bytes(2, "little") + (2).to_bytes(2, "big")
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(PINNED)).encode() + b"00"
    assert pvd[813:829] == stamp and pvd[830:846] == stamp   # creation, modification
    assert b"*MEDIASEC" in img and b"pycdlib" not in img


# -- peers -----------------------------------------------------------------------------------

#: a tree no pycdlib image can hold: eight components; ECMA-119 9.3 order of extensions
PEER_TREE = ([("A/B/C/D/E/F/G/H", _rand(4)), ("A/B/C/D/E/F/G/I", b""),
              ("X.T", _rand(3)), ("X.T1", _rand(4)), ("DICOMDIR", _rand(5000))]
             + [(f"P/S/F{i:07d}", _rand(i * 13)) for i in range(150)]
             + [(f"D{i:07d}/F", _rand(i)) for i in range(140)])


def _iso9660(path: str) -> str:
    head, _, last = path.rpartition("/")
    return "/" + (head + "/" if head else "") + last + (";1" if "." in last else ".;1")


@pytest.fixture(scope="module")
def peer_images(tmp_path_factory):
    d = tmp_path_factory.mktemp("isowrite-peers")
    out = {}
    for udf in (False, True):
        image = IsoImage(_files(PEER_TREE), volume_id="PEERVOL", udf=udf,
                         interchange_level=3 if udf else 1, set_size=3, seqnum=2)
        path = d / ("dvd.iso" if udf else "cd.iso")
        _written(image, path)
        out[udf] = path
    return out


EXPECTED = {p: data for p, data in PEER_TREE}


def _check_tree(root) -> None:
    got = {}
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            with open(full, "rb") as fh:
                got[os.path.relpath(full, root)] = fh.read()
    assert got == EXPECTED


@pytest.mark.peer("isoinfo")
@pytest.mark.parametrize("udf", [False, True], ids=["cd", "dvd"])
def test_isoinfo_lists_and_extracts(peer_images, udf):
    img = str(peer_images[udf])
    info = run_peer(["isoinfo", "-d", "-i", img]).stdout.decode()
    assert "Volume id: PEERVOL" in info and "Application id: MEDIASEC" in info
    assert "Volume set size is: 3" in info and "Volume set sequence number is: 2" in info
    listed = run_peer(["isoinfo", "-f", "-i", img]).stdout.decode().split()
    files = {_iso9660(p) for p in EXPECTED}
    assert files <= set(listed)
    assert set(listed) - files == {"/" + "/".join(p.split("/")[:k]) for p in EXPECTED
                                   for k in range(1, p.count("/") + 1)}
    # ECMA-119 9.3: the shorter extension first
    assert listed.index("/X.T;1") < listed.index("/X.T1;1")
    for p in ["A/B/C/D/E/F/G/H", "A/B/C/D/E/F/G/I", "X.T", "X.T1", "DICOMDIR",
              "P/S/F0000000", "P/S/F0000149", "D0000139/F"]:
        got = run_peer(["isoinfo", "-i", img, "-x", _iso9660(p)]).stdout
        assert got == EXPECTED[p], p
    # every record of the long directory, in order
    recs = run_peer(["isoinfo", "-l", "-i", img]).stdout.decode()
    block = recs.split("Directory listing of /P/S/")[1].split("Directory listing")[0]
    names = [ln.split()[-1] for ln in block.splitlines() if ln.strip()][2:]
    assert names == [f"F{i:07d}.;1" for i in range(150)]


@pytest.mark.peer("xorriso")
@pytest.mark.parametrize("udf", [False, True], ids=["cd", "dvd"])
def test_xorriso_finds_and_extracts(peer_images, tmp_path, udf):
    img = str(peer_images[udf])
    found = run_peer(["xorriso", "-indev", img, "-find", "/", "-type", "f"])
    names = {ln.strip("'")[1:] for ln in found.stdout.decode().splitlines() if ln}
    assert names == set(EXPECTED)
    assert b"FAILURE" not in found.stderr and b"SORRY" not in found.stderr, found.stderr
    dest = tmp_path / "x"
    run_peer(["xorriso", "-osirrox", "on", "-indev", img, "-extract", "/", str(dest)])
    _check_tree(dest)


@pytest.mark.peer("7z")
@pytest.mark.parametrize("udf", [False, True], ids=["cd", "dvd"])
def test_7z_lists_udf_and_extracts(peer_images, tmp_path, udf):
    img = str(peer_images[udf])
    listing = run_peer(["7z", "l", "-slt", img]).stdout.decode()
    assert f"Type = {'Udf' if udf else 'Iso'}" in listing
    paths = {ln[7:] for ln in listing.splitlines() if ln.startswith("Path = ")} - {img}
    assert set(EXPECTED) <= paths
    dest = tmp_path / "x"
    run_peer(["7z", "x", "-y", f"-o{dest}", img])
    _check_tree(dest)


@pytest.mark.peer("udfinfo")
def test_udfinfo_reads_the_udf_side(peer_images):
    """udftools' reader: the identifiers, the integrity descriptor's counts, the extents."""
    img = peer_images[True]
    info = dict(ln.split("=", 1) for ln in
                run_peer(["udfinfo", str(img)]).stdout.decode().splitlines() if "=" in ln
                and not ln.startswith("start="))
    assert info["label"] == info["lvid"] == info["vid"] == info["fsid"] == "PEERVOL"
    assert info["impid"] == "*MEDIASEC" and info["integrity"] == "closed"
    dirs = {"/".join(p.split("/")[:k]) for p in EXPECTED for k in range(1, p.count("/") + 1)}
    assert int(info["numfiles"]) == len(EXPECTED) and int(info["numdirs"]) == len(dirs) + 1
    assert int(info["blocks"]) * 2048 == os.path.getsize(img)


def _tag_ok(buf: bytes, at: int, location: int) -> int:
    """ECMA-167 3/7.2, read independently of the writer: the tag's checksum, its location
    and the CRC of the body; returns the descriptor's tag identifier."""
    import binascii
    import struct
    tag = buf[at:at + 16]
    ident, version, checksum, _, _, crc, crc_len, loc = struct.unpack("<HHBBHHHL", tag)
    assert version == 2 and loc == location, (at, ident, loc, location)
    assert checksum == (sum(tag) - tag[4]) & 0xFF, (at, ident)
    assert crc == binascii.crc_hqx(buf[at + 16:at + 16 + crc_len], 0), (at, ident)
    return ident


def test_every_udf_descriptor_tag_checks_out(peer_images):
    """Every descriptor of the DVD image: checksum, location (partition-relative inside the
    partition) and CRC, the File Identifier Descriptors walked through each directory."""
    import struct
    buf = peer_images[True].read_bytes()
    part = 257
    seen = {}
    for sector in [32, 33, 34, 35, 36, 37, 48, 49, 50, 51, 52, 53, 64, 65, 256,
                   len(buf) // SECTOR - 1]:
        ident = _tag_ok(buf, sector * SECTOR, sector)
        seen[ident] = seen.get(ident, 0) + 1
    assert _tag_ok(buf, part * SECTOR, 0) == 256 and _tag_ok(buf, 258 * SECTOR, 1) == 8
    queue, dirs, fes = [2], 0, 0
    while queue:   # File Entries from the root (partition block 2), breadth first
        block = queue.pop(0)
        at = (part + block) * SECTOR
        assert _tag_ok(buf, at, block) == 261
        fes += 1
        if buf[at + 16 + 11] != 4:   # the ICB tag's file type: not a directory
            continue
        dirs += 1
        length, ad_block = struct.unpack_from("<LL", buf, at + 176)
        pos, end = (part + ad_block) * SECTOR, (part + ad_block) * SECTOR + length
        while pos < end:
            assert _tag_ok(buf, pos, (pos // SECTOR) - part) == 257
            chars, len_fi = buf[pos + 18], buf[pos + 19]
            icb_block = struct.unpack_from("<L", buf, pos + 24)[0]
            if not chars & 8:   # not the parent's
                queue.append(icb_block)
            pos += (38 + len_fi + 3) // 4 * 4
        assert pos == end
    assert seen == {1: 2, 4: 2, 5: 2, 6: 2, 7: 2, 8: 3, 9: 1, 2: 2}
    assert fes == len(EXPECTED) + dirs


@pytest.mark.parametrize("udf", [False, True], ids=["cd", "dvd"])
def test_pycdlib_parses_every_file(peer_images, udf):
    """pycdlib's parse (the reader): UDF names on the DVD, ISO 9660 names on the CD."""
    with IsoSource(str(peer_images[udf])) as src:
        assert src.namespace == ("udf_path" if udf else "iso_path")
        assert src.volume_id == "PEERVOL"
        got = {e.path: b"".join(bytes(c) for c in src.open(e.handle)) for e in src.entries()}
    assert got == EXPECTED
    if udf:   # the UDF side's own structures, walked by pycdlib (parent links included)
        import pycdlib
        iso = pycdlib.PyCdlib()
        iso.open(str(peer_images[udf]))
        try:
            dirs = {d for d, _, _ in iso.walk(udf_path="/")}
            assert "/A/B/C/D/E/F/G" in dirs
            rec = iso.get_record(udf_path="/A/B/C/D/E/F/G")
            parent = next(iter(rec.fi_descs.values()))
            up = iso.get_record(udf_path="/A/B/C/D/E/F")
            assert parent.is_parent() and parent.icb.log_block_num == \
                up.extent_location() - iso.udf_main_descs.partitions[0].part_start_location
        finally:
            iso.close()


# -- refused layouts, overhead ---------------------------------------------------------------

@pytest.mark.parametrize("kw", [{"volume_id": "X" * 33}, {"volume_id": "VOLUMÉ"},
                                {"set_size": 1, "seqnum": 2}])
def test_bad_volume_parameters_are_a_usage_error(kw):
    with pytest.raises(UsageError) as exc:
        IsoImage(_files([("A", b"x")]), **kw)
    assert exc.value.code == "ISO_PARAMETERS"


@pytest.mark.parametrize("paths", [
    ["A", "A"],                       # twice
    ["A", "A/B"],                     # a file and a directory of one name
    ["A/B", "A"],
    ["/".join("ABCDEFGHI")],          # nine components
    ["LONGNAME9/F"],                  # a 9-character directory at level 1
    ["NAME.EXTN"],                    # an extension of 4 at level 1
    ["lower"], ["A.B.C"], [""],
], ids=["dup", "file-dir", "dir-file", "depth", "dir-name", "ext", "lower", "dots", "empty"])
def test_bad_layouts_are_refused(paths):
    with pytest.raises(InternalError, match="image layout failed"):
        IsoImage(_files([(p, b"x") for p in paths]))


def test_4gib_file_needs_level_3():
    with pytest.raises(InternalError, match="interchange level 3"):
        IsoImage([IsoFile(("BIG",), Sized(1 << 32))], interchange_level=1)
    assert IsoImage([IsoFile(("BIG",), Sized(1 << 32))], interchange_level=3).size > 1 << 32


@pytest.mark.parametrize("udf", [False, True], ids=["cd", "dvd"])
@pytest.mark.parametrize("tree", ["one big directory", "many directories", "dicom shaped"])
def test_size_within_the_planners_overhead(tree, udf):
    spec = TREES[tree]
    image = IsoImage(_files(spec), udf=udf, interchange_level=3 if udf else 1)
    ov = Overhead(udf=udf)
    dirs = {tuple(p.split("/")[:k]) for p, _ in spec for k in range(1, p.count("/") + 1)}
    data = sum(-(-len(d) // SECTOR) * SECTOR for _, d in spec)
    assert image.size <= data + ov.fixed + ov.per_dir * len(dirs) + ov.per_file * len(spec)
