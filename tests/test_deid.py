"""De-identification (PS3.15 Annex E) in process: every action code, every option, the
escrow round trip, keyed mapping, cross-references and refusals. Test objects are made
from Table E.1-1 itself (``_deidgen``)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

import _deidgen as G
import _dicomgen as g
from conftest import PKI
from mediasec.cms.keys import (KeyDecrypter, KeyTransportRecipient, PasswordDecrypter,
                               PasswordRecipient)
from mediasec.deid import DeidJob, reidentify
from mediasec.deid import profile as P
from mediasec.deid.escrow import open_escrow
from mediasec.errors import (DecryptionError, InputError, NoRecipientError, PolicyRefusal,
                             UsageError, WrongPasswordError)
from mediasec.pki import certs
from mediasec.policy import AlgorithmPolicy

KEY = b"test mapping key, 32 bytes long!"


@pytest.fixture(scope="module")
def rsa():
    cert = certs.load_certificates((PKI / "recipient-2048.pem").read_bytes())[0]
    key, _ = certs.load_private_key((PKI / "recipient-2048.key.pem").read_bytes(), None)
    return cert, key


def job(rsa, *options, **kw):
    kw.setdefault("recipients", [KeyTransportRecipient(rsa[0])])
    return DeidJob(options=options, mapping_key=KEY, **kw)


def run(j, raw: bytes):
    rewritten, res = j.prepare(io.BytesIO(raw))
    out = io.BytesIO()
    rewritten.write_to(out)
    assert rewritten.size == len(out.getvalue())     # a build stage plans with it
    return out.getvalue(), dcmread(io.BytesIO(out.getvalue())), res


@pytest.fixture(scope="module")
def everything():
    return G.part10(G.everything())


@pytest.fixture(scope="module")
def basic(rsa, everything):
    return run(job(rsa), everything)


def nested(ds, depth):
    for _ in range(depth):
        ds = ds[G.NEST].value[0]
    return ds


def rows_with(column, code):
    return [(G.tag_of(r), r) for r in G.TABLE if r.get(column) == code and G.tag_of(r)
            and G.tag_of(r) >> 16 not in (0, 2, 4)
            and G.tag_of(r) not in (0x00080018, 0x0020000D, 0x0020000E, 0x00100020,
                                    0x00100010, 0x00080016, 0x04000500)]


# -- round trip, escrow layout, marks ---------------------------------------------------------

def test_reidentify_restores_every_attribute_at_every_depth(rsa, everything, basic):
    raw, ds, res = basic
    back = io.BytesIO()
    rr = reidentify(io.BytesIO(raw), back, decrypters=[KeyDecrypter(rsa[1], rsa[0])])
    orig = dcmread(io.BytesIO(everything))
    again = dcmread(io.BytesIO(back.getvalue()))
    assert again.PatientIdentityRemoved == "NO"
    del again.PatientIdentityRemoved
    assert set(again.keys()) == set(orig.keys())
    for tag in orig.keys():
        assert again[tag] == orig[tag], tag
    for tag in (0x04000500, 0x00120063, 0x00120064, 0x00280303):
        assert tag not in again
    assert again.file_meta.MediaStorageSOPInstanceUID == orig.SOPInstanceUID
    assert rr.sop_instance_uid == orig.SOPInstanceUID
    assert res.removed > 400 and res.replaced > 100


def test_escrow_layout_as_a_strict_reader_expects(rsa, basic):
    raw, ds, _ = basic
    seq = ds.EncryptedAttributesSequence
    assert len(seq) == 1
    assert seq[0].EncryptedContentTransferSyntaxUID == "1.2.840.10008.1.2.1"
    content = seq[0].EncryptedContent
    assert len(content) % 2 == 0 and content[:2] == b"\x30\x82"
    opened = open_escrow(ds, [KeyDecrypter(rsa[1], rsa[0])])
    assert opened.cipher == "aes-256"
    assert 0x00080018 in opened.originals
    assert opened.originals.SOPInstanceUID != ds.SOPInstanceUID


def test_marks_preamble_and_file_meta(basic):
    raw, ds, _ = basic
    assert raw[:128] == b"\x00" * 128
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == "Basic Application Confidentiality Profile"
    assert [(c.CodeValue, c.CodingSchemeDesignator) for c in
            ds.DeidentificationMethodCodeSequence] == [("113100", "DCM")]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    fm = ds.file_meta
    assert fm.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in fm
    assert ds.SOPInstanceUID.startswith("2.25.")


def test_no_identifier_left_in_clear(basic):
    raw = basic[0]
    ds = dcmread(io.BytesIO(raw))
    # everything but the escrow, and the U* sequences the table keeps (their UIDs mapped)
    for tag in (0x04000500, 0x00081140, 0x00082112):
        for d in (ds, nested(ds, 1), nested(ds, 2)):
            if tag in d:
                del d[tag]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    clear = buf.getvalue().upper()
    assert b"SMITH" not in clear
    assert b"1.2.826.0.1.999." not in clear


# -- one test per action code -----------------------------------------------------------------

@pytest.mark.parametrize("depth", [0, 1, 2])
def test_action_X_removes(basic, depth):
    ds = nested(basic[1], depth)
    rows = rows_with("basicProfile", "X")
    assert len(rows) > 300
    for tag, r in rows:
        assert tag not in ds, r["name"]


@pytest.mark.parametrize("depth", [0, 2])
def test_action_Z_empties(basic, depth):
    ds = nested(basic[1], depth)
    rows = rows_with("basicProfile", "Z")
    assert len(rows) > 20
    for tag, r in rows:
        assert tag in ds, r["name"]
        v = ds[tag].value
        assert v in (None, "", b"") or (ds[tag].VR == "SQ" and len(v) == 0), r["name"]


def test_action_Z_patient_id_is_a_consistent_pseudonym(rsa):
    j = job(rsa)
    a = run(j, G.part10(g.make_dataset("ct", patient="PX", number=1)))[1]
    b = run(j, G.part10(g.make_dataset("ct", patient="PX", number=2)))[1]
    c = run(j, G.part10(g.make_dataset("ct", patient="PY", number=1)))[1]
    assert a.PatientID == b.PatientID != c.PatientID
    assert "PX" not in a.PatientID


@pytest.mark.parametrize("depth", [0, 2])
def test_action_D_gives_a_dummy(basic, everything, depth):
    ds = nested(basic[1], depth)
    orig = nested(dcmread(io.BytesIO(everything)), depth)
    rows = rows_with("basicProfile", "D")
    assert len(rows) > 50
    for tag, r in rows:
        if tag not in orig:
            continue
        assert tag in ds, r["name"]
        v = ds[tag].value
        assert v not in (None, "", b""), r["name"]
        if ds[tag].VR != "SQ":
            assert v != orig[tag].value, r["name"]


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_action_U_maps_uids_consistently(rsa, basic, everything, depth):
    from mediasec.deid.mapping import Mapper
    ds = nested(basic[1], depth)
    orig = nested(dcmread(io.BytesIO(everything)), depth)
    m = Mapper(KEY)
    rows = rows_with("basicProfile", "U")
    assert len(rows) > 40
    for tag, r in rows:
        if tag not in orig or orig[tag].VR != "UI":
            continue
        assert ds[tag].value == m.uid(orig[tag].value), r["name"]
        assert ds[tag].value.startswith("2.25.") and len(ds[tag].value) <= 64


def test_compound_codes_follow_the_attribute_type():
    p = P.Profile()
    ct, sr = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.88.33"
    assert p.action(0x00080023, ct)[0] == "Z"      # Z/D, Content Date Type 2C in images
    assert p.action(0x00080023, sr)[0] == "D"      # ... Type 1 in SR documents
    assert p.action(0x00080080, ct)[0] == "X"      # X/Z/D Institution Name, Type 3
    assert p.action(0x00102203, ct)[0] == "Z"      # X/Z Patient's Sex Neutered, Type 2C
    assert p.action(0x00181030, ct)[0] == "D"      # X/D Protocol Name, unknown Type: D
    assert p.action(0x00081140, ct)[0] == "U*"     # X/Z/U* Referenced Image Sequence
    for tag, r in rows_with("basicProfile", "X/Z"):
        if r["stdCompIOD"] == "N":
            assert p.action(tag, ct)[0] == "X"     # not in any IOD: the first letter


def test_compound_codes_in_output(basic, everything):
    ds = basic[1]
    orig = dcmread(io.BytesIO(everything))
    assert ds.ContentDate == "" and "InstitutionName" not in ds
    assert ds.ProtocolName == "DEIDENTIFIED"
    ref = ds.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID.startswith("2.25.")
    assert ref.ReferencedSOPInstanceUID != orig.ReferencedImageSequence[0].ReferencedSOPInstanceUID


# -- one test per option ----------------------------------------------------------------------

@pytest.mark.parametrize("option", [o for o in P.OPTIONS if o != "retain-safe-private"])
def test_option_keeps_and_cleans_what_its_column_says(rsa, everything, option):
    column = P.OPTIONS[option][0]
    raw, ds, _ = run(job(rsa, option), everything)
    orig = dcmread(io.BytesIO(everything))
    p = P.Profile([option])
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == \
        ["113100", P.OPTIONS[option][1]]
    kept = rows_with(column, "K")
    cleaned = rows_with(column, "C")
    assert kept or cleaned
    for tag, r in kept:
        if tag in orig and p.action(tag, orig.SOPClassUID)[0] == "K":
            assert tag in ds, r["name"]
            if orig[tag].VR != "SQ":     # a kept sequence is still walked item by item
                assert ds[tag].value == orig[tag].value, r["name"]
    for tag, r in cleaned:
        if tag not in orig:
            continue
        vr = orig[tag].VR
        if vr in ("OB", "OW", "UN"):
            assert tag not in ds, r["name"]        # binary cannot be cleaned
            continue
        assert tag in ds, r["name"]
        if vr in ("LO", "LT", "ST", "UT", "UC", "SH", "PN", "AE", "UI"):
            assert ds[tag].value != orig[tag].value, r["name"]
        if vr == "SQ":
            assert all("SMITH" not in str(i).upper() for i in ds[tag].value), r["name"]


def test_option_clean_descriptors_keeps_safe_words(rsa, everything):
    ds = run(job(rsa, "clean-descriptors"), everything)[1]
    assert ds.SeriesDescription == "chest"          # "Smith chest"
    assert ds.StudyDescription == "Study"           # "Study S1"


def test_option_modified_dates_shift_per_patient(rsa, everything):
    from mediasec.deid.mapping import Mapper
    ds = run(job(rsa, "retain-long-modified-dates"), everything)[1]
    again = run(job(rsa, "retain-long-modified-dates"), everything)[1]
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    shifted = dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date()
    days = (shifted - dt.date(2024, 1, 31)).days
    issuer = dcmread(io.BytesIO(everything)).IssuerOfPatientID
    assert days == Mapper(KEY).date_offset(issuer, "P1")
    assert days < 0 and days % 7 == 0               # whole weeks back: weekdays kept
    assert ds.AcquisitionDateTime == shifted.strftime("%Y%m%d") + "101500"
    assert nested(ds, 2).StudyDate == ds.StudyDate   # the same shift at any depth
    assert again.StudyDate == ds.StudyDate           # keyed: the same on another run
    other = run(job(rsa, "retain-long-modified-dates"),
                G.part10(g.make_dataset("ct", patient="P2")))[1]
    other_days = (dt.datetime.strptime(other.StudyDate, "%Y%m%d").date()
                  - dt.date(2024, 1, 31)).days
    assert other_days == Mapper(KEY).date_offset("", "P2") != days   # its own offset


def test_option_full_dates(rsa, everything):
    ds = run(job(rsa, "retain-long-full-dates"), everything)[1]
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert ds.StudyDate == "20240131" and nested(ds, 2).StudyDate == "20240131"


def test_full_and_modified_dates_exclude_each_other():
    with pytest.raises(UsageError):
        P.Profile(["retain-long-full-dates", "retain-long-modified-dates"])


def test_option_retain_uids(rsa, everything):
    ds = run(job(rsa, "retain-uids"), everything)[1]
    orig = dcmread(io.BytesIO(everything))
    assert ds.SOPInstanceUID == orig.SOPInstanceUID
    assert ds.StudyInstanceUID == orig.StudyInstanceUID
    assert nested(ds, 2).FrameOfReferenceUID == nested(orig, 2).FrameOfReferenceUID


@pytest.mark.parametrize("depth", [0, 1])
def test_private_removed_without_option(basic, depth):
    ds = nested(basic[1], depth)
    assert not [t for t in ds.keys() if t.group & 1]


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_option_retain_safe_private(rsa, everything, depth):
    raw, ds, res = run(job(rsa, "retain-safe-private"), everything)
    ds = nested(ds, depth)
    grp = G.SAFE_GROUP
    low = int(G.SAFE_ROW["element_low_byte"], 16)
    kept = [t for t in ds.keys() if t.group & 1]
    assert (grp << 16 | 0x0010) in ds and ds[grp << 16 | 0x0010].value == \
        G.SAFE_ROW["private_creator"]
    assert (grp << 16 | 0x1000 | low) in ds
    assert set(kept) == {grp << 16 | 0x0010, grp << 16 | 0x1000 | low}
    assert any(f.code == "DEID_PRIVATE_REMOVED" and G.UNSAFE_CREATOR in f.message
               for f in res.findings)


def test_unknown_attribute_removed_and_reported(basic):
    raw, ds, res = basic
    assert G.UNKNOWN_PUBLIC not in ds
    assert any(f.code == "DEID_UNKNOWN_REMOVED" for f in res.findings)


def test_signatures_removed_and_reported(rsa):
    d = g.make_dataset("ct")
    sig = Dataset()
    sig.MACIDNumber = 1
    sig.DigitalSignatureUID = "1.2.3.4"
    sig.Signature = b"\x01" * 256
    d.add(DataElement(0xFFFAFFFA, "SQ", Sequence([sig])))
    mac = Dataset()
    mac.MACIDNumber = 1
    d.add(DataElement(0x4FFE0001, "SQ", Sequence([mac])))
    raw, ds, res = run(job(rsa), G.part10(d))
    assert 0xFFFAFFFA not in ds and 0x4FFE0001 not in ds
    assert [f.code for f in res.findings].count("DEID_SIGNATURE_REMOVED") == 1


def test_original_attributes_sequence_only_inside_the_escrow(rsa):
    d = g.make_dataset("ct")
    oa = Dataset()
    oa.SourceOfPreviousValues = "SMITH HOSPITAL"
    mod = Dataset()
    mod.PatientName = "SMITH^OLD"
    oa.ModifiedAttributesSequence = [mod]
    d.OriginalAttributesSequence = [oa]
    raw, ds, _ = run(job(rsa), G.part10(d))
    assert "OriginalAttributesSequence" not in ds and b"SMITH" not in raw
    opened = open_escrow(ds, [KeyDecrypter(rsa[1], rsa[0])])
    assert opened.originals.OriginalAttributesSequence[0].ModifiedAttributesSequence[0] \
        .PatientName == "SMITH^OLD"


# -- keyed mapping and cross-references -------------------------------------------------------

def test_same_input_and_key_same_output(rsa, everything):
    a = run(job(rsa), everything)[1]
    b = run(job(rsa), everything)[1]
    c = run(DeidJob(recipients=[KeyTransportRecipient(rsa[0])], mapping_key=b"x" * 32),
            everything)[1]
    for d in (a, b):
        del d.EncryptedAttributesSequence
    assert a == b
    assert c.SOPInstanceUID != a.SOPInstanceUID


def _refs(ds, out):
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _refs(item, out)
        elif elem.tag in (0x00081155, 0x0040A124, 0x00200052, 0x0020000D, 0x0020000E,
                          0x00081160):
            out.append((int(elem.tag), str(elem.value)))
    return out


def test_cross_references_resolve_after_uid_replacement(rsa):
    cts = [g.make_dataset("ct", number=i) for i in (1, 2)]
    cts[1].SourceImageSequence = [Dataset()]
    cts[1].SourceImageSequence[0].ReferencedSOPClassUID = cts[0].SOPClassUID
    cts[1].SourceImageSequence[0].ReferencedSOPInstanceUID = cts[0].SOPInstanceUID
    pr = g.make_dataset("gsps", series="PR")
    sr = g.make_dataset("sr", series="SR")
    ev = Dataset()
    ev.StudyInstanceUID = cts[0].StudyInstanceUID
    ser = Dataset()
    ser.SeriesInstanceUID = cts[0].SeriesInstanceUID
    ser.ReferencedSOPSequence = [Dataset()]
    ser.ReferencedSOPSequence[0].ReferencedSOPClassUID = cts[0].SOPClassUID
    ser.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = cts[1].SOPInstanceUID
    ev.ReferencedSeriesSequence = [ser]
    sr.CurrentRequestedProcedureEvidenceSequence = [ev]
    img = Dataset()
    img.RelationshipType, img.ValueType = "CONTAINS", "IMAGE"
    img.ConceptNameCodeSequence = [G._code_item("121233", "DCM", "Source image")]
    img.ReferencedSOPSequence = [Dataset()]
    img.ReferencedSOPSequence[0].ReferencedSOPClassUID = cts[0].SOPClassUID
    img.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = cts[0].SOPInstanceUID
    sr.ContentSequence = list(sr.ContentSequence) + [img]
    j = job(rsa, "clean-structured-content")
    out = [run(j, G.part10(d))[1] for d in cts + [pr, sr]]
    instances = {d.SOPInstanceUID for d in out}
    series = {d.SeriesInstanceUID for d in out}
    assert len({d.StudyInstanceUID for d in out}) == 1
    assert out[0].FrameOfReferenceUID == out[1].FrameOfReferenceUID
    refs = []
    for d in out[1:]:
        _refs(d, refs)
    sop_refs = [v for t, v in refs if t == 0x00081155]
    assert len(sop_refs) >= 4 and all(v in instances for v in sop_refs)
    assert out[2].ReferencedSeriesSequence[0].SeriesInstanceUID in series
    ev = out[3].CurrentRequestedProcedureEvidenceSequence[0]
    assert ev.ReferencedSeriesSequence[0].SeriesInstanceUID in series
    assert out[3].ContentSequence[-1].ReferencedSOPSequence[0].ReferencedSOPInstanceUID \
        == out[0].SOPInstanceUID
    assert j.dangling_references() == 0
    lone = job(rsa)
    run(lone, G.part10(pr))
    assert lone.dangling_references() == 1    # its CT is not in this job


def test_structured_content_clean(rsa):
    sr = g.make_dataset("sr")
    name = Dataset()
    name.RelationshipType, name.ValueType = "HAS OBS CONTEXT", "PNAME"
    name.ConceptNameCodeSequence = [G._code_item("121008", "DCM", "Person Observer Name")]
    name.PersonName = "SMITH^JOHN"
    txt = Dataset()
    txt.RelationshipType, txt.ValueType = "CONTAINS", "TEXT"
    txt.ConceptNameCodeSequence = [G._code_item("121071", "DCM", "Finding")]
    txt.TextValue = "Mr Smith chest nodule"
    sr.ContentSequence = [name, txt]
    basic = run(job(rsa), G.part10(sr))[1]
    struct = run(job(rsa, "clean-structured-content"), G.part10(sr))[1]
    both = run(job(rsa, "clean-structured-content", "clean-descriptors"), G.part10(sr))[1]
    for ds in (basic, struct, both):
        assert "SMITH" not in str(ds.ContentSequence).upper()
        assert ds.ContentSequence[0].PersonName == "ANONYMOUS"   # E.3.4-1: D
    # "Finding" is X/D in Table E.3.4-1 and C under Clean Descriptors
    texts = [i.TextValue for i in both.ContentSequence if i.ValueType == "TEXT"]
    assert texts == ["chest nodule"]
    assert [i.TextValue for i in struct.ContentSequence if i.ValueType == "TEXT"] == \
        ["DEIDENTIFIED"]


# -- refusals and bad inputs -------------------------------------------------------------------

@pytest.mark.parametrize("kind,extra", [("sc", None), ("pdf", None),
                                        ("ct", {"BurnedInAnnotation": "YES"})])
def test_burned_in_refused_unless_accepted(rsa, kind, extra):
    raw = G.part10(g.make_dataset(kind, extra=extra))
    with pytest.raises(InputError) as ei:
        run(job(rsa), raw)
    assert ei.value.code == "DEID_BURNED_IN"
    res = run(job(rsa, accept_burned_in=True), raw)[2]
    assert any(f.code == "DEID_BURNED_IN_ACCEPTED" for f in res.findings)


def test_already_deidentified_refused(rsa, basic):
    with pytest.raises(InputError) as ei:
        run(job(rsa), basic[0])
    assert ei.value.code == "DEID_ALREADY_DEIDENTIFIED"


def test_escrow_needs_a_choice(rsa):
    with pytest.raises(UsageError):
        DeidJob(recipients=[])
    raw, ds, res = run(DeidJob(escrow=False, recipients=[]),
                       G.part10(g.make_dataset("ct")))
    assert "EncryptedAttributesSequence" not in ds and not res.escrowed


def test_3des_only_with_legacy(rsa):
    with pytest.raises(PolicyRefusal):
        job(rsa, cipher="3des")
    j = job(rsa, cipher="3des", policy=AlgorithmPolicy(allow_legacy=True))
    ds = run(j, G.part10(g.make_dataset("ct")))[1]
    opened = open_escrow(ds, [KeyDecrypter(rsa[1], rsa[0])])
    assert opened.cipher == "3des" and any(c == "ALG_LEGACY" for c, _ in opened.legacy)


def test_password_escrow_and_bad_keys(rsa):
    pw = PasswordRecipient(b"correct horse", iterations=100_000)
    raw, ds, _ = run(job(rsa, recipients=[KeyTransportRecipient(rsa[0]), pw]),
                     G.part10(g.make_dataset("ct")))
    assert open_escrow(ds, [PasswordDecrypter(b"correct horse")]).originals.PatientName \
        == "DOE^JANE"
    with pytest.raises(WrongPasswordError):
        open_escrow(ds, [PasswordDecrypter(b"wrong horse")])
    other = certs.load_certificates((PKI / "recipient-3072.pem").read_bytes())[0]
    okey, _ = certs.load_private_key((PKI / "recipient-3072.key.pem").read_bytes(), None)
    with pytest.raises(NoRecipientError):
        open_escrow(ds, [KeyDecrypter(okey, other)])


def test_tampered_content_is_damage_not_garbage(rsa):
    raw, ds, _ = run(job(rsa), G.part10(g.make_dataset("ct", patient_name="SMITH^JOHN")))
    content = bytearray(ds.EncryptedAttributesSequence[0].EncryptedContent)
    for pos in range(len(content) - 300, len(content) - 20, 16):
        bad = bytearray(content)
        bad[pos] ^= 0x5A
        ds.EncryptedAttributesSequence[0].EncryptedContent = bytes(bad)
        with pytest.raises(DecryptionError):
            open_escrow(ds, [KeyDecrypter(rsa[1], rsa[0])])


def test_missing_escrow_is_an_input_error(rsa):
    ds = run(DeidJob(escrow=False, recipients=[]), G.part10(g.make_dataset("ct")))[1]
    with pytest.raises(InputError) as ei:
        open_escrow(ds, [KeyDecrypter(rsa[1], rsa[0])])
    assert ei.value.code == "DEID_NO_ESCROW"


def test_implicit_vr_input(rsa):
    raw = G.part10(g.make_dataset("ct"), ts="1.2.840.10008.1.2")
    out, ds, _ = run(job(rsa), raw)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    back = io.BytesIO()
    reidentify(io.BytesIO(out), back, decrypters=[KeyDecrypter(rsa[1], rsa[0])])
    assert dcmread(io.BytesIO(back.getvalue())).PatientName == "DOE^JANE"


# -- every fixture file, and the pixel data streamed -----------------------------------------

FIXTURES = sorted(p for p in (G.ROOT / "fixtures" / "dicom").glob("*.dcm"))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_round_trip_of_every_fixture_file(rsa, path):
    raw = path.read_bytes()
    out, ds, _ = run(job(rsa, accept_burned_in=True), raw)
    orig = dcmread(io.BytesIO(raw))
    assert ds.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID
    if "PixelData" in orig:
        assert ds.PixelData == orig.PixelData
    back = io.BytesIO()
    reidentify(io.BytesIO(out), back, decrypters=[KeyDecrypter(rsa[1], rsa[0])])
    again = dcmread(io.BytesIO(back.getvalue()))
    del again.PatientIdentityRemoved
    assert again == orig


def test_pixel_data_is_streamed_not_loaded(rsa, tmp_path):
    import hashlib
    import tracemalloc
    big = 24 << 20
    d = g.make_dataset("ct", rows=4096, cols=(big // 2) // 4096)
    d.PixelData = bytes(range(256)) * (big // 256)
    d.add(DataElement(0xFFFCFFFC, "OB", b"\x00" * 64))      # after the pixels: X
    sig = Dataset()
    sig.MACIDNumber = 1
    d.add(DataElement(0xFFFAFFFA, "SQ", Sequence([sig])))    # after the pixels: removed
    src = tmp_path / "big.dcm"
    src.write_bytes(G.part10(d))
    want = hashlib.sha256(d.PixelData).hexdigest()
    del d
    out = tmp_path / "out.dcm"
    j = job(rsa)
    tracemalloc.start()
    try:
        with open(src, "rb") as s, open(out, "wb") as o:
            j.deidentify(s, o)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    ds = dcmread(out)
    assert hashlib.sha256(ds.PixelData).hexdigest() == want
    assert 0xFFFAFFFA not in ds and 0xFFFCFFFC not in ds
    back = tmp_path / "back.dcm"
    with open(out, "rb") as s, open(back, "wb") as o:
        reidentify(s, o, decrypters=[KeyDecrypter(rsa[1], rsa[0])])
    again = dcmread(back)
    assert again.PatientName == "DOE^JANE" and 0xFFFAFFFA in again
    assert again[0xFFFCFFFC].value == b"\x00" * 64
    assert hashlib.sha256(again.PixelData).hexdigest() == want
