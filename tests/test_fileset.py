"""dicom.scan, dicom.part10 and media.fileset: pydicom is the oracle."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset

import _dicomgen as g
from mediasec._data import media_profile
from mediasec.dicom.part10 import converted_size, iter_converted
from mediasec.dicom.scan import scan_file
from mediasec.errors import InputError, NotDicomError
from mediasec.media.fileset import index_fileset, wanted_tags

PROFILE = media_profile("STD-GEN-USB-JPEG")
TAGS = wanted_tags(PROFILE)


def scan(path):
    with open(path, "rb") as f:
        return scan_file(f, path.stat().st_size, source=str(path), tags=TAGS)


def convert(path) -> bytes:
    s = scan(path)
    with open(path, "rb") as f:
        out = b"".join(iter_converted(f, s, chunk=4096))
    assert len(out) == converted_size(s)
    return out


@pytest.mark.parametrize("ts", [g.ELE, g.ILE, g.DEFL, g.BE])
@pytest.mark.parametrize("kind", sorted(g.KINDS))
def test_scan_agrees_with_pydicom(tmp_path, kind, ts):
    p = g.write_instance(tmp_path / "f", kind, ts=ts, charset="ISO_IR 100")
    s = scan(p)
    ds = pydicom.dcmread(p, stop_before_pixels=True)
    assert s.transfer_syntax == ts and s.size == p.stat().st_size
    assert s.sop_class_uid == ds.SOPClassUID and s.sop_instance_uid == ds.SOPInstanceUID
    for tag in sorted(TAGS):
        if tag not in ds or ds[tag].VR == "SQ":
            continue
        if ts == g.BE and ds[tag].VR in ("US", "UL", "SS", "SL", "FL", "FD"):
            continue
        assert s.has(tag), hex(tag)
        value = ds[tag].value
        expect = "\\".join(map(str, value)) if isinstance(value, (list, pydicom.multival.MultiValue)) else str(value)
        got = s.text(tag) if ds[tag].VR not in ("US", "UL") else str(
            int.from_bytes(s.values[tag][1], "little"))
        assert got.replace(" ", "") == expect.replace(" ", ""), (hex(tag), got, expect)
    if ts == g.ELE and "PixelData" in ds:
        with open(p, "rb") as f:
            f.seek(s.pixel_data_offset)
            assert f.read(4) == b"\xe0\x7f\x10\x00"


@pytest.mark.parametrize("kind", sorted(g.KINDS))
@pytest.mark.parametrize("ts", [g.ILE, g.DEFL])
def test_conversion_is_lossless_and_exactly_sized(tmp_path, kind, ts):
    p = g.write_instance(tmp_path / "f", kind, ts=ts)
    out = convert(p)
    a, b = pydicom.dcmread(p), pydicom.dcmread(io.BytesIO(out))
    assert b.file_meta.TransferSyntaxUID == g.ELE
    assert b.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert [e.tag for e in a] == [e.tag for e in b]
    for e in a:
        assert b[e.tag].value == e.value, e


def test_conversion_streams_large_pixel_data_and_resolves_ambiguous_vr(tmp_path):
    p = g.write_instance(tmp_path / "big", "ct", ts=g.ILE, rows=800, cols=800)
    out = convert(p)
    b = pydicom.dcmread(io.BytesIO(out))
    assert b["SmallestImagePixelValue"].VR == "SS" and b.SmallestImagePixelValue == -1000
    assert b["PixelData"].VR == "OW"
    assert b.PixelData == pydicom.dcmread(p).PixelData and len(b.PixelData) == 1_280_000


def test_private_undefined_sequence_survives_conversion(tmp_path):
    ds = g.make_dataset("ct")
    block = ds.private_block(0x0011, "MEDIASEC TEST", create=True)
    inner = Dataset()
    inner.PatientID = "INNER"
    block.add_new(0x01, "SQ", [inner])
    ds[0x00111001].is_undefined_length = True
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = g.ILE
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    p = tmp_path / "priv"
    ds.save_as(p, enforce_file_format=True, implicit_vr=True, little_endian=True)
    raw = p.read_bytes()
    assert b"\xfe\xff\xdd\xe0" in raw          # written with undefined length
    out = convert(p)
    assert b"\x11\x00\x01\x10UN\0\0\xff\xff\xff\xff" in out   # kept verbatim as UN
    b = pydicom.dcmread(io.BytesIO(out))
    assert b.PatientID == ds.PatientID and b.PixelData == ds.PixelData


def test_non_dicom_and_truncated(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"hello" * 100)
    with pytest.raises(NotDicomError) as e:
        scan(p)
    assert e.value.path == str(p)
    good = g.write_instance(tmp_path / "t", "sr", ts=g.ELE)
    data = good.read_bytes()
    for cut in (131, 140, 200, len(data) - 3):
        q = tmp_path / f"cut{cut}"
        q.write_bytes(data[:cut])
        with pytest.raises(InputError) as e:
            scan(q)
        assert e.value.path == str(q)
    q = tmp_path / "ile"
    q.write_bytes(g.write_instance(tmp_path / "i", "ct", ts=g.ILE).read_bytes()[:-5])
    with pytest.raises(InputError) as e:   # implicit sources are walked to the end
        scan(q)
    assert e.value.code == "DICOM_TRUNCATED"


def _index(scans, **kw):
    def same(a, b):
        return open(a.source, "rb").read() == open(b.source, "rb").read()
    return index_fileset(scans, profile=PROFILE, same_content=same, **kw)


def test_hierarchy_and_order(tmp_path):
    files = (g.ct_series(tmp_path / "a", 3, series="SE1")
             + g.ct_series(tmp_path / "b", 2, series="SE2", patient="P2")
             + [g.write_instance(tmp_path / "sr", "sr", series="SR")])
    model = _index([scan(p) for p in reversed(files)])
    assert [p.uid for p in model.patients] == ["P1", "P2"]
    p1 = model.patients[0]
    assert len(p1.children) == 1 and len(p1.children[0].children) == 2
    ct = next(se for se in p1.children[0].children if se.children[0].record_type == "IMAGE")
    numbers = [i.scanned.text(0x00200013) for i in ct.children]
    assert numbers == ["1", "2", "3"]
    assert len(model.instances) == 6


def test_identical_duplicate_kept_once_and_conflict_named(tmp_path):
    a = g.write_instance(tmp_path / "a.dcm", "ct")
    b = tmp_path / "copy.dcm"
    b.write_bytes(a.read_bytes())
    model = _index([scan(a), scan(b)])
    assert len(model.instances) == 1 and model.duplicates == ((str(a), str(b)),)
    c = g.write_instance(tmp_path / "c.dcm", "ct", extra={"StudyDescription": "changed"})
    with pytest.raises(InputError) as e:
        _index([scan(a), scan(c)])
    assert e.value.code == "FILESET_DUPLICATE_CONFLICT"
    assert str(a) in e.value.message and str(c) in e.value.message


def test_type1_missing_is_refused_with_the_list(tmp_path):
    files = [g.write_instance(tmp_path / f"{i}", "ct", number=i + 1,
                              extra={"PatientID": None, "StudyID": None}) for i in range(3)]
    with pytest.raises(InputError) as e:
        _index([scan(p) for p in files])
    assert e.value.code == "FILESET_TYPE1_MISSING"
    assert "PATIENT PatientID in 3 files" in e.value.message
    assert "STUDY StudyID in 3 files" in e.value.message
    assert e.value.missing["PATIENT.PatientID"] == sorted(map(str, files))
    assert "--fill-missing" in e.value.hint


def test_fill_missing_is_consistent_and_reported(tmp_path):
    files = [g.write_instance(tmp_path / f"a{i}", "ct", number=i + 1, patient="A",
                              patient_name="ALPHA^A",
                              extra={"PatientID": None, "StudyID": None, "InstanceNumber": None})
             for i in range(3)]
    files += [g.write_instance(tmp_path / "b", "ct", patient="B", patient_name="BETA^B",
                               extra={"PatientID": None, "StudyID": None})]
    m1 = _index([scan(p) for p in files], fill_missing=True)
    m2 = _index([scan(p) for p in reversed(files)], fill_missing=True)
    assert [p.uid for p in m1.patients] == [p.uid for p in m2.patients]
    assert len(m1.patients) == 2 and all(p.uid.startswith("MS") for p in m1.patients)
    made = {(m.record, m.keyword) for m in m1.made_up}
    assert made == {("PATIENT", "PatientID"), ("STUDY", "StudyID"), ("IMAGE", "InstanceNumber")}
    pid = [m for m in m1.made_up if m.keyword == "PatientID"]
    assert len(pid) == 2 and sorted(len(m.files) for m in pid) == [1, 3]
    numbers = sorted(m.value for m in m1.made_up if m.keyword == "InstanceNumber")
    assert numbers == ["1", "2", "3"]
    study_ids = {m.value for m in m1.made_up if m.keyword == "StudyID"}
    assert study_ids == {m.value for m in m2.made_up if m.keyword == "StudyID"}


def test_unknown_sop_class_is_skipped(tmp_path):
    p = g.write_instance(tmp_path / "x", "ct", extra={"SOPClassUID": "1.3.12.2.1107.5.9.1"})
    model = _index([scan(p)])
    assert model.instances == [] and model.skipped[0].code == "SKIP_SOP_CLASS_UNKNOWN"
