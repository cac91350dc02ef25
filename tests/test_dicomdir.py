"""dicom.dicomdir: our encoder against pydicom, dcmdump and dciodvfy; the bounded decoder."""

from __future__ import annotations

import struct

import pydicom
import pytest
from hypothesis import given, settings, strategies as st

from conftest import run_peer
from mediasec.dicom.dicomdir import (DirRecord, decode_dicomdir, encode_dicomdir)
from mediasec.errors import InputError

UID = "2.25.1234567890"
CT = "1.2.840.10008.5.1.4.1.1.2"
ELE = "1.2.840.10008.1.2.1"


def _t(tag, vr, text):
    b = text.encode()
    return (tag, vr, b + (b"\0" if vr == "UI" else b" ") * (len(b) % 2))


def sample_tree(n_series=2, n_images=3):
    series = []
    for s in range(n_series):
        leaves = tuple(DirRecord("IMAGE", (_t(0x00200013, "IS", str(i + 1)),), (),
                                 ("PT000000", "ST000000", f"SE{s:06d}", f"IM{i:06d}"),
                                 CT, f"2.25.{s + 1}{i + 1}7", ELE) for i in range(n_images))
        series.append(DirRecord("SERIES", (_t(0x00080060, "CS", "CT"),
                                           _t(0x0020000E, "UI", f"2.25.9{s}"),
                                           _t(0x00200011, "IS", str(s + 1))), leaves))
    study = DirRecord("STUDY", (_t(0x00080020, "DA", "20240101"), _t(0x00080030, "TM", "1200"),
                                _t(0x00081030, "LO", ""), _t(0x0020000D, "UI", "2.25.77"),
                                _t(0x00200010, "SH", "1"), _t(0x00080050, "SH", "")),
                      tuple(series))
    return [DirRecord("PATIENT", (_t(0x00100010, "PN", "DOE^J"), _t(0x00100020, "LO", "ID1")),
                      (study,))]


def test_offsets_land_on_item_tags_and_pydicom_agrees(tmp_path):
    data = encode_dicomdir(sample_tree(), fileset_uid=UID, fileset_id="MYSET")
    (tmp_path / "DICOMDIR").write_bytes(data)
    ds = pydicom.dcmread(tmp_path / "DICOMDIR")
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    assert ds.file_meta.MediaStorageSOPInstanceUID == UID
    assert ds.file_meta.TransferSyntaxUID == ELE
    assert ds.FileSetConsistencyFlag == 0 and ds.FileSetID == "MYSET"
    recs = ds.DirectoryRecordSequence
    assert [r.DirectoryRecordType for r in recs] == (
        ["PATIENT", "STUDY", "SERIES"] + ["IMAGE"] * 3 + ["SERIES"] + ["IMAGE"] * 3)
    offsets = {r.seq_item_tell for r in recs}
    for r in recs:
        assert r.RecordInUseFlag == 0xFFFF
        for off in (r.OffsetOfTheNextDirectoryRecord,
                    r.OffsetOfReferencedLowerLevelDirectoryEntity):
            assert off == 0 or off in offsets
            assert off == 0 or data[off:off + 4] == b"\xfe\xff\x00\xe0"
    first = ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity
    assert first == recs[0].seq_item_tell
    leaves = [r for r in recs if r.DirectoryRecordType == "IMAGE"]
    assert sorted(r.ReferencedSOPInstanceUIDInFile for r in leaves) == sorted(
        f"2.25.{s + 1}{i + 1}7" for s in range(2) for i in range(3))
    assert list(leaves[0].ReferencedFileID) == ["PT000000", "ST000000", "SE000000", "IM000000"]


def test_decoder_round_trip():
    data = encode_dicomdir(sample_tree(), fileset_uid=UID, fileset_id="X")
    d = decode_dicomdir(data)
    assert d.fileset_uid == UID and d.fileset_id == "X" and d.record_count == 10
    types = [r.type for r in d.walk()]
    assert types[:3] == ["PATIENT", "STUDY", "SERIES"]
    leaves = [r for r in d.walk() if r.type == "IMAGE"]
    assert leaves[0].file_id == ("PT000000", "ST000000", "SE000000", "IM000000")
    assert not d.findings


def test_empty_directory_has_zero_offsets():
    d = decode_dicomdir(encode_dicomdir([], fileset_uid=UID))
    assert d.roots == () and d.record_count == 0


keys = st.lists(st.tuples(st.sampled_from([0x00200013, 0x00080060, 0x00100020, 0x0020000E]),
                          st.text("ABC123", min_size=0, max_size=9)), max_size=4,
                unique_by=lambda t: t[0])


@st.composite
def trees(draw, depth=0):
    n = draw(st.integers(0, 3 if depth < 3 else 0))
    out = []
    for i in range(n):
        kids = draw(trees(depth + 1)) if depth < 3 else []
        vrs = {0x00200013: "IS", 0x00080060: "CS", 0x00100020: "LO", 0x0020000E: "UI"}
        out.append(DirRecord(("PATIENT", "STUDY", "SERIES", "IMAGE")[depth],
                             tuple(_t(t, vrs[t], v) for t, v in draw(keys)), tuple(kids)))
    return out


@settings(max_examples=60, derandomize=True, deadline=None)
@given(trees())
def test_round_trip_property(roots):
    data = encode_dicomdir(roots, fileset_uid=UID)
    d = decode_dicomdir(data)

    def shape(rs):
        return [(r.type, shape(r.children)) for r in rs]
    assert shape(d.roots) == shape(roots)
    for rec in d.walk():
        assert data[rec.offset:rec.offset + 4] == b"\xfe\xff\x00\xe0"


def _patch_ul(data: bytes, offset_of_value: int, value: int) -> bytes:
    return data[:offset_of_value] + struct.pack("<I", value) + data[offset_of_value + 4:]


def test_decoder_refuses_bad_offset_cycle_and_meta():
    data = encode_dicomdir(sample_tree(1, 1), fileset_uid=UID)
    d = decode_dicomdir(data)
    patient = d.roots[0]
    # (0004,1400) is the first element of every record: value at offset + 8 + 8
    bad = _patch_ul(data, patient.offset + 16, 12345)
    with pytest.raises(InputError) as e:
        decode_dicomdir(bad)
    assert e.value.code == "DIR_OFFSET"
    cyc = _patch_ul(data, patient.offset + 16, patient.offset)
    with pytest.raises(InputError) as e:
        decode_dicomdir(cyc)
    assert e.value.code == "DIR_CYCLE"
    with pytest.raises(InputError) as e:
        decode_dicomdir(data[:len(data) - 7])
    assert e.value.code == "DIR_TRUNCATED"
    with pytest.raises(InputError) as e:
        decode_dicomdir(data.replace(b"1.2.840.10008.1.3.10", b"1.2.840.10008.1.3.11"))
    assert e.value.code == "DIR_META"
    with pytest.raises(InputError):
        decode_dicomdir(b"\0" * 200)


def test_orphans_are_reported():
    data = encode_dicomdir(sample_tree(1, 2), fileset_uid=UID)
    d = decode_dicomdir(data)
    series = d.roots[0].children[0].children[0]
    first_image = series.children[0]
    cut = _patch_ul(data, first_image.offset + 16, 0)   # drop the second image from the chain
    d2 = decode_dicomdir(cut)
    assert ("DIR_ORPHAN", "1 records are not reachable from the root") in d2.findings


def test_dcmdump_and_dciodvfy_accept_it(tmp_path):
    p = tmp_path / "DICOMDIR"
    p.write_bytes(encode_dicomdir(sample_tree(), fileset_uid=UID, fileset_id="T"))
    out = run_peer(["dcmdump", "-M", str(p)]).stdout.decode()
    assert "DirectoryRecordSequence" in out and out.count("IMAGE") >= 6
    proc = run_peer(["dciodvfy", str(p)], check=False)
    errors = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("Error")]
    assert errors == []
