"""The fast image reader (``mediasec.io.isoread``) against pycdlib, its oracle, and peers.

A corpus of images is made here (tmp_path): ours (``build`` with a CD profile: ISO 9660
only; with a DVD profile: the UDF bridge; and ``IsoImage`` directly for a deep tree and a
directory of several sectors), ``genisoimage`` plain, ``-J``, ``-udf``, ``-J -udf`` and
``-R -J``, and ``xorriso`` with Rock Ridge off (with and without Joliet) and as
``mkisofs -R -J``. For each, the listing ``IsoSource`` gives with the fast reader equals
pycdlib's entry for entry (path, size, extents, kind, ISO 9660 name; namespace,
description, Volume Identifier); the images with Rock Ridge or any system use area are
declined and listed by pycdlib. Files read by extent equal ``isoinfo -x`` and ``7z x``
output byte for byte. Damaged copies (truncated, bytes flipped in descriptors and
directories, directory loops, huge lengths) either list as pycdlib lists them or are
refused with ``MEDIUM_NOT_ISO``: never a crash, a hang or another listing.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import time
from unittest import mock

import pytest

import _dicomgen as g
from _media import build
from conftest import peer, run_peer
from mediasec.errors import InputError
from mediasec.io import iso
from mediasec.io.isoread import Decline, read_listing
from mediasec.media.plan import BytesProducer

SECTOR = 2048
ODD_NAMES = ["é ñ ü.txt", "日本語.txt", "a b+c;d.txt", "Ω≈ç√.bin", "x" * 60 + ".dat"]


def listing(path, *, slow: bool = False):
    """(reader, the listing as plain data) of ``IsoSource(path)``; ``slow``: pycdlib alone."""
    def decline(*_a, **_k):
        raise Decline("test: pycdlib alone")
    ctx = mock.patch.object(iso, "read_listing", decline) if slow else _Null()
    with ctx:
        src = iso.IsoSource(str(path))
    try:
        return src.reader, (src.namespace, src.description, src.volume_id,
                            [(e.path, e.size, e.handle, e.kind, e.iso9660)
                             for e in src.entries()])
    finally:
        src.close()


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def outcome(path, *, slow: bool):
    try:
        return listing(path, slow=slow)[1]
    except InputError as exc:
        assert exc.code == "MEDIUM_NOT_ISO", exc
        return "MEDIUM_NOT_ISO"


def _tree(root):
    """Deep directories, empty files, a directory of several sectors, odd names."""
    deep = root.joinpath("deep", *"abcdefghij")
    deep.mkdir(parents=True)
    (deep / "leaf.txt").write_bytes(b"at the bottom\n")
    (root / "empty.dat").write_bytes(b"")
    (root / "deep" / "empty2").write_bytes(b"")
    (root / "rand.bin").write_bytes(random.Random(5).randbytes(300_000))
    big = root / "big"
    big.mkdir()
    for i in range(160):
        (big / f"long_file_name_number_{i:03d}.txt").write_bytes(b"file %d\n" % i * (i % 5))
    odd = root / "odd dir"
    odd.mkdir()
    for i, name in enumerate(ODD_NAMES):
        (odd / name).write_bytes(name.encode() * (i + 1))
    (root / "README").write_bytes(b"readme\n")


def _ours_direct(path, udf: bool):
    """``IsoImage`` (our writer) on a deep tree and a directory of several sectors."""
    files = [iso.IsoFile(("DICOMDIR",), BytesProducer(b"D" * 3000))]
    files += [iso.IsoFile(("P0", "S0", "SE00", f"IM{i:05d}"), BytesProducer(b"%06d" % i * (i % 3)))
              for i in range(300)]
    files.append(iso.IsoFile(tuple(f"D{i}" for i in range(6)) + ("DEEP",),
                             BytesProducer(b"deep")))
    image = iso.IsoImage(files, volume_id="OURS", udf=udf)
    from mediasec.io.fs import AtomicOutput
    out = AtomicOutput(str(path))
    image.write(out)
    out.commit()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("isoread")
    tree = root / "tree"
    tree.mkdir()
    _tree(tree)
    images = {}
    pile = root / "pile"
    g.ct_series(pile / "a", 3, rows=4, cols=4)
    g.ct_series(pile / "b", 2, series="SE2", kind="mr", rows=4, cols=4)
    images["ours-cd"] = root / "cd.iso"
    build(pile, images["ours-cd"], "--profile", "STD-GEN-CD")
    images["ours-dvd"] = root / "dvd.iso"
    build(pile, images["ours-dvd"], "--profile", "STD-GEN-DVD-JPEG")
    images["ours-direct-cd"] = root / "direct-cd.iso"
    _ours_direct(images["ours-direct-cd"], False)
    images["ours-direct-dvd"] = root / "direct-dvd.iso"
    _ours_direct(images["ours-direct-dvd"], True)
    for name, opts in {"geniso": [], "geniso-J": ["-J", "-joliet-long"], "geniso-udf": ["-udf"],
                       "geniso-J-udf": ["-J", "-udf"], "geniso-R-J": ["-R", "-J"]}.items():
        images[name] = root / f"{name}.iso"
        run_peer(["genisoimage", "-quiet", "-D", *opts, "-o", str(images[name]), str(tree)])
    for name, joliet in {"xorriso": "off", "xorriso-J": "on"}.items():
        images[name] = root / f"{name}.iso"
        run_peer(["xorriso", "-report_about", "SORRY", "-outdev", str(images[name]),
                  "-rockridge", "off", "-joliet", joliet, "-map", str(tree), "/"])
    images["xorriso-mkisofs-R-J"] = root / "xorriso-mkisofs.iso"
    run_peer(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-o",
              str(images["xorriso-mkisofs-R-J"]), str(tree)])
    return images


#: image -> (the reader expected, the namespace expected)
EXPECT = {
    "ours-cd": ("fast", "iso_path"), "ours-dvd": ("fast", "udf_path"),
    "ours-direct-cd": ("fast", "iso_path"), "ours-direct-dvd": ("fast", "udf_path"),
    "geniso": ("fast", "iso_path"), "geniso-J": ("fast", "joliet_path"),
    "geniso-udf": ("fast", "udf_path"), "geniso-J-udf": ("fast", "udf_path"),
    "geniso-R-J": ("pycdlib", "rr_path"),
    "xorriso": ("fast", "iso_path"), "xorriso-J": ("fast", "joliet_path"),
    "xorriso-mkisofs-R-J": ("pycdlib", "rr_path"),
}


@pytest.mark.peer("genisoimage")
@pytest.mark.peer("xorriso")
@pytest.mark.parametrize("name", sorted(EXPECT))
def test_fast_listing_equals_pycdlib(corpus, name):
    reader, fast = listing(corpus[name])
    _, slow = listing(corpus[name], slow=True)
    assert (reader, fast[0]) == EXPECT[name]
    assert fast == slow
    paths = [e[0] for e in fast[3]]
    assert len(paths) == len(set(paths)) and paths
    if name.startswith(("geniso", "xorriso")) and fast[0] != "iso_path":
        # the long-name namespaces show the odd names as written
        # (genisoimage writes ``;`` as ``_`` in Joliet and UDF names)
        assert {f"odd dir/{n}" for n in ODD_NAMES if ";" not in n} <= set(paths)
        assert "deep/a/b/c/d/e/f/g/h/i/j/leaf.txt" in paths
        assert sum(1 for p in paths if p.startswith("big/")) == 160
        sizes = dict((e[0], e[1]) for e in fast[3])
        assert sizes["empty.dat"] == 0 and sizes["rand.bin"] == 300_000


def _read(src, entry) -> bytes:
    return b"".join(bytes(c) for c in src.open(entry.handle))


@pytest.mark.peer("isoinfo")
@pytest.mark.peer("7z")
@pytest.mark.parametrize("name", ["ours-dvd", "geniso-J-udf", "xorriso-J"])
def test_read_by_extent_equals_isoinfo_and_7z(corpus, name):
    image = corpus[name]
    with iso.IsoSource(str(image)) as src:
        assert src.reader == "fast"
        entries = [e for e in src.entries() if e.kind == "file"]
        picked = sorted(entries, key=lambda e: -e.size)[:2] + [
            e for e in entries if e.size == 0][:1] + [
            e for e in entries if e.path.startswith("odd dir/")][:2]
        assert len(picked) >= 2
        for e in picked:
            data = _read(src, e)
            assert len(data) == e.size
            # isoinfo reads the ISO 9660 tree by the file's ISO 9660 name (``;1``)
            if e.size:
                got = run_peer(["isoinfo", "-i", str(image), "-x", e.iso9660]).stdout
                assert got == data, e.path
            # 7z reads the richest tree it knows (UDF, else Joliet) by the shown name
            got = subprocess.run([peer("7z"), "x", "-so", str(image), e.path],
                                 capture_output=True, check=True).stdout
            assert got == data, e.path


# -- damaged images ---------------------------------------------------------------------

def _patch(src, dst, at: int, data: bytes, truncate: int | None = None):
    b = bytearray(src.read_bytes())
    b[at:at + len(data)] = data
    if truncate is not None:
        del b[truncate:]
    dst.write_bytes(bytes(b))
    return dst


def _root_record(image) -> tuple[int, int]:
    pvd = image.read_bytes()[16 * SECTOR:17 * SECTOR]
    return struct.unpack_from("<I", pvd, 156 + 2)[0], struct.unpack_from("<I", pvd, 156 + 10)[0]


def _first_subdir(image):
    """(byte offset of the first subdirectory's record in the root, its extent)."""
    data = image.read_bytes()
    loc, _ = _root_record(image)
    off = loc * SECTOR
    off += data[off]          # .
    off += data[off]          # ..
    while data[off]:
        if data[off + 25] & 2:
            return off, struct.unpack_from("<I", data, off + 2)[0]
        off += data[off]
    raise AssertionError("no subdirectory")


def _same_or_refused(path):
    """The fast reader's outcome is pycdlib's, or a clean refusal; never another listing."""
    t = time.monotonic()
    fast = outcome(path, slow=False)
    assert time.monotonic() - t < 20, "the reader took too long"
    slow = outcome(path, slow=True)
    if fast != slow:
        assert fast == "MEDIUM_NOT_ISO", (fast, slow)
    return fast


def _udf_sectors(image) -> dict:
    """Sector numbers of UDF descriptors, by tag identifier (first seen)."""
    data = image.read_bytes()
    out = {}
    for n in range(16, len(data) // SECTOR):
        ident = struct.unpack_from("<H", data, n * SECTOR)[0]
        if ident in (1, 2, 5, 6, 8, 256, 257, 261, 266) and \
                struct.unpack_from("<H", data, n * SECTOR + 2)[0] in (2, 3):
            out.setdefault(ident, n)
    return out


@pytest.mark.peer("genisoimage")
@pytest.mark.parametrize("name", ["ours-dvd", "geniso-J-udf", "geniso-J"])
def test_damaged_images_list_as_pycdlib_or_are_refused(corpus, tmp_path, name):
    image = corpus[name]
    size = image.stat().st_size
    root_loc, root_len = _root_record(image)
    sub_off, sub_ext = _first_subdir(image)
    cases = {
        "truncated-in-descriptors": (0, b"", 17 * SECTOR + 100),
        "truncated-half": (0, b"", size // 2),
        "truncated-last-sector": (0, b"", size - SECTOR),
        "pvd-space-size": (16 * SECTOR + 80, b"\xff\xff\xff\x7f"),
        "pvd-block-size": (16 * SECTOR + 128, b"\x00\x04"),
        "root-huge-length": (16 * SECTOR + 156 + 10, b"\xf0\xff\xff\xff\xff\xff\xff\xf0"),
        "root-extent-past-end": (16 * SECTOR + 156 + 2, struct.pack("<I", size) +
                                 struct.pack(">I", size)),
        "dir-loop": (sub_off + 2, struct.pack("<I", root_loc) + struct.pack(">I", root_loc)),
        "subdir-le-only": (sub_off + 2, struct.pack("<I", sub_ext + 1)),
        "subdir-huge": (sub_off + 10, struct.pack("<I", 1 << 31) + struct.pack(">I", 1 << 31)),
        "root-dir-sector-zeroed": (root_loc * SECTOR, bytes(SECTOR)),
        "dot-record-garbage": (root_loc * SECTOR, b"\x05\x01\x02"),
        "path-table-flip": (struct.unpack_from("<I", image.read_bytes(), 16 * SECTOR + 140)[0]
                            * SECTOR + 2, b"\x99"),
    }
    root_dir = image.read_bytes()[root_loc * SECTOR:(root_loc + 1) * SECTOR]
    cases["version-not-a-number"] = (root_loc * SECTOR + root_dir.index(b";1") + 1, b"q")
    for ident, n in _udf_sectors(image).items():
        cases[f"udf-tag-{ident}-crc"] = (n * SECTOR + 40, b"\x5a")
        cases[f"udf-tag-{ident}-checksum"] = (n * SECTOR + 4, b"\x00")
        cases[f"udf-tag-{ident}-location"] = (n * SECTOR + 12, b"\x07")
    results = {}
    for case, spec in cases.items():
        at, data, *trunc = spec
        p = _patch(image, tmp_path / f"{case}.iso", at, data, trunc[0] if trunc else None)
        results[case] = _same_or_refused(p)
        p.unlink()
    assert results["dir-loop"] == "MEDIUM_NOT_ISO"
    assert results["version-not-a-number"] == "MEDIUM_NOT_ISO"   # pycdlib's int(version)
    assert results["truncated-in-descriptors"] == "MEDIUM_NOT_ISO"


@pytest.mark.parametrize("name", ["ours-dvd", "ours-direct-dvd"])
def test_random_flips_in_metadata(corpus, tmp_path, name):
    """Bytes flipped at random in the volume descriptors, path tables, directories and
    UDF structures (sector 16 up to the first file's data), 150 times per image."""
    image = corpus[name]
    seed = image.read_bytes()
    with iso.IsoSource(str(image)) as src:
        first = min(e.handle[0][0] for e in src.entries() if e.handle)
    rng = random.Random(15)
    path = tmp_path / "flip.iso"
    for _ in range(150):
        b = bytearray(seed)
        for _ in range(rng.choice((1, 1, 2, 8))):
            b[rng.randrange(16 * SECTOR, first)] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(b))
        _same_or_refused(path)


def test_read_listing_declines_rock_ridge_and_garbage(corpus, tmp_path):
    """The reader itself: Decline (never another exception) on what it does not vouch for."""
    junk = tmp_path / "junk.iso"
    for content in (b"", b"\x00" * (40 * SECTOR), random.Random(1).randbytes(300 * SECTOR)):
        junk.write_bytes(content)
        fd = os.open(junk, os.O_RDONLY)
        try:
            with pytest.raises(Decline):
                read_listing(fd, len(content), max_depth=iso._MAX_DEPTH)
        finally:
            os.close(fd)
        with pytest.raises(InputError) as exc:
            iso.IsoSource(str(junk))
        assert exc.value.code == "MEDIUM_NOT_ISO"


def _retag(b: bytearray, off: int) -> None:
    """Make the UDF descriptor tag at ``off`` right again (CRC, then checksum) after a
    patch: the damage then reaches the reader's structural checks, not only the CRC."""
    crclen = struct.unpack_from("<H", b, off + 10)[0]
    import binascii
    struct.pack_into("<H", b, off + 8, binascii.crc_hqx(bytes(b[off + 16:off + 16 + crclen]), 0))
    b[off + 4] = (sum(b[off:off + 4]) + sum(b[off + 5:off + 16])) & 0xFF


def _udf_root_fids(b: bytes):
    """(offset of the root's parent FID, offset of its first subdirectory FID)."""
    for n in range(257, len(b) // SECTOR):
        off = n * SECTOR
        if struct.unpack_from("<H", b, off)[0] == 257 and b[off + 18] & 8:
            pos = off
            while struct.unpack_from("<H", b, pos)[0] == 257:
                l_fi, l_iu = b[pos + 19], struct.unpack_from("<H", b, pos + 36)[0]
                if b[pos + 18] & 2 and not b[pos + 18] & 8:
                    return off, pos
                pos += (38 + l_iu + l_fi + 3) & ~3
    raise AssertionError("no UDF subdirectory")


@pytest.mark.parametrize("damage", ["loop", "huge-icb", "icb-past-partition", "deleted",
                                    "bad-compression", "fe-strategy", "fe-huge-ad",
                                    "fe-timestamp"])
def test_udf_structural_damage_with_good_tags(corpus, tmp_path, damage):
    """UDF damage behind a valid tag (CRC and checksum recomputed): a directory pointing
    back at the root, ICB lengths and places out of range, a deleted entry, an unknown
    name compression, an unsupported ICB strategy, an extent of almost 1 GiB in a File
    Entry, a timestamp pycdlib refuses."""
    image = corpus["ours-dvd"]
    b = bytearray(image.read_bytes())
    parent, fid = _udf_root_fids(b)
    root_lbn = struct.unpack_from("<I", b, parent + 24)[0]
    sub_lbn = struct.unpack_from("<I", b, fid + 24)[0]
    part_start = parent // SECTOR - struct.unpack_from("<I", b, parent + 12)[0]
    fe = (part_start + sub_lbn) * SECTOR
    if damage == "loop":
        struct.pack_into("<I", b, fid + 24, root_lbn)
    elif damage == "huge-icb":
        struct.pack_into("<I", b, fid + 20, 0x3FFFFFFF)
    elif damage == "icb-past-partition":
        struct.pack_into("<I", b, fid + 24, 0x7FFFFFF0)
    elif damage == "deleted":
        b[fid + 18] |= 4
    elif damage == "bad-compression":
        b[fid + 38 + struct.unpack_from("<H", b, fid + 36)[0]] = 0xFE
    elif damage == "fe-strategy":
        struct.pack_into("<H", b, fe + 20, 4096)
    elif damage == "fe-timestamp":   # a month 13: pycdlib refuses the whole image
        b[fe + (72 if struct.unpack_from("<H", b, fe)[0] == 261 else 80) + 4] = 13
    elif damage == "fe-huge-ad":
        l_ea = struct.unpack_from("<I", b, fe + 168)[0]
        struct.pack_into("<I", b, fe + 176 + l_ea, 0x3FFFF800)
    _retag(b, fe if damage.startswith("fe-") else fid)
    path = tmp_path / "udf.iso"
    path.write_bytes(bytes(b))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(Decline):
            read_listing(fd, len(b), max_depth=iso._MAX_DEPTH)
    finally:
        os.close(fd)
    got = _same_or_refused(path)
    if damage in ("loop", "fe-timestamp"):
        assert got == "MEDIUM_NOT_ISO"
