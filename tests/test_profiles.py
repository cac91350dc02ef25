"""profiles/ as data: the profiles the issue names, the record-type table, the loader."""

from __future__ import annotations

import json
import pathlib

import pytest
from pydicom import fileset as pydicom_fileset

import _dicomgen as g
from mediasec import _data
from mediasec.errors import InternalError, UsageError

ELE = "1.2.840.10008.1.2.1"
PROFILES = pathlib.Path(__file__).resolve().parents[1] / "profiles"


@pytest.mark.parametrize("pid", ["STD-GEN-CD", "STD-GEN-DVD-JPEG", "STD-GEN-DVD-J2K",
                                 "STD-GEN-USB-JPEG", "STD-GEN-USB-J2K", "STD-GEN-BD-JPEG",
                                 "STD-GEN-BD-J2K", "STD-GEN-BD-MPEG2-MPML",
                                 "STD-GEN-BD-MPEG4-HPLV41", "STD-GEN-DVD-RAM"])
def test_named_profiles_and_secure_variants(pid):
    p = _data.media_profile(pid)
    assert p.id == pid and not p.secure and ELE in p.transfer_syntaxes
    assert p.key_set in ("D.3-2", "H.3-2") and "FSC" in p.roles
    sec = pid.replace("STD-GEN-", "STD-GEN-SEC-")
    if "MPEG" not in pid:
        s = _data.media_profile(sec)
        assert s.secure and s.transfer_syntaxes == p.transfer_syntaxes


def test_transfer_syntaxes_per_annex():
    assert _data.media_profile("STD-GEN-CD").transfer_syntaxes == (ELE,)
    jpeg = set(_data.media_profile("STD-GEN-USB-JPEG").transfer_syntaxes)
    assert jpeg == {ELE, "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                    "1.2.840.10008.1.2.4.70"}
    assert "1.2.840.10008.1.2.4.90" in _data.media_profile("STD-GEN-DVD-J2K").transfer_syntaxes
    assert _data.media_profile("STD-GEN-USB-JPEG").max_file_bytes == 2 ** 32 - 1
    assert _data.media_profile("STD-GEN-CD").capacity_bytes == 737_280_000
    assert "FSU" not in _data.media_profile("STD-GEN-DVD-JPEG").roles
    assert _data.media_profile("std-gen-cd").id == "STD-GEN-CD"
    with pytest.raises(UsageError) as e:
        _data.media_profile("STD-GEN-USB")
    assert "STD-GEN-USB-JPEG" in e.value.message


def test_key_sets():
    cd = _data.media_profile("STD-GEN-CD")
    assert [k.keyword for k in cd.keys_for("IMAGE")] == ["ImageType", "ReferencedImageSequence"]
    usb = _data.media_profile("STD-GEN-USB-J2K")
    assert {k.keyword for k in usb.keys_for("PATIENT")} == {"PatientBirthDate", "PatientSex"}
    rows = next(k for k in usb.keys_for("IMAGE") if k.keyword == "Rows")
    assert rows.tag == 0x00280010 and rows.vr == "US" and rows.type == "1"


def test_record_type_table_is_consistent():
    types = _data.record_types()
    h = _data.hierarchy()
    for uid, (rt, name) in _data._sop_map().items():
        assert rt in types, uid
        level = types[rt].level
        assert (rt in h["SERIES"]) if level == "leaf" else (rt in h["ROOT"]), (uid, rt)
    assert set(h["ROOT"]) >= {"PATIENT", "HANGING PROTOCOL", "PALETTE"}
    retired = {"MRDR", "HL7 STRUC DOC", "OVERLAY", "VISIT", "CURVE", "RESULTS"}
    assert not retired & set(types)


def test_agrees_with_pydicom_fileset_where_pydicom_has_a_mapping():
    mapping = {**pydicom_fileset._FOUR_LEVEL_SOP_CLASSES,
               **pydicom_fileset._SINGLE_LEVEL_SOP_CLASSES}
    disagreements = {uid: (rt, _data.record_type_for(uid)) for uid, rt in mapping.items()
                     if _data.record_type_for(uid) != rt}
    assert disagreements == {}


@pytest.mark.parametrize("kind", sorted(g.KINDS))
def test_generator_kinds_map_as_expected(kind):
    uid, expected = g.KINDS[kind]
    assert _data.record_type_for(uid) == expected


def test_every_sop_class_of_the_fixtures_manifest_has_the_expected_type():
    manifest = PROFILES.parent / "fixtures" / "dicom" / "MANIFEST.json"
    if not manifest.exists():
        pytest.skip("fixtures/dicom/MANIFEST.json not generated yet")
    for f in json.loads(manifest.read_text())["files"]:
        assert _data.record_type_for(f["sop_class_uid"]) == f["directory_record_type"], f


def test_required_keys_per_record_type():
    def keys(rt):
        return {k.keyword: k.type for k in _data.record_type(rt).keys}
    assert keys("PATIENT") == {"PatientName": "2", "PatientID": "1"}
    assert keys("STUDY")["StudyInstanceUID"] == "1" and keys("STUDY")["AccessionNumber"] == "2"
    assert keys("SR DOCUMENT")["ConceptNameCodeSequence"] == "1"
    assert keys("RT PLAN") == {"InstanceNumber": "1", "RTPlanLabel": "1", "RTPlanDate": "2",
                               "RTPlanTime": "2"}
    assert keys("ENCAP DOC")["MIMETypeOfEncapsulatedDocument"] == "1"
    with pytest.raises(InternalError):
        _data.record_type("NOPE")


def test_data_is_read_through_the_one_loader_and_documented():
    assert _data.read_data("record_types.json").startswith(b"{")
    with pytest.raises(InternalError):
        _data.read_data("missing.toml")
    readme = (PROFILES / "README.md").read_text()
    for name in ("media_profiles.toml", "record_types.json", "PS3.11", "PS3.3", "2024c"):
        assert name in readme
