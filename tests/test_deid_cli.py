"""``mediasec deidentify`` / ``reidentify`` as a user runs them: outputs, JSON, and the
bad-input matrix (one line, documented exit code, nothing written)."""

from __future__ import annotations

import json

import pytest
from pydicom import dcmread

import _deidgen as G
import _dicomgen as g
from conftest import PKI, assert_one_line_error

CERT, KEY = PKI / "recipient-2048.pem", PKI / "recipient-2048.key.pem"
ENV = {"MAPKEY": "a mapping key of 32 characters!!", "PW": "escrow password",
       "BADPW": "not the password"}


@pytest.fixture
def ct(tmp_path):
    return g.write_instance(tmp_path / "in" / "DOE_JANE.dcm", "ct", patient_name="DOE^JANE")


def deid(cli, *args):
    return cli("deidentify", *args, "--mapping-key-env", "MAPKEY", env=ENV)


def test_single_file_with_cert_and_password_escrow(cli, ct, tmp_path):
    out = tmp_path / "out.dcm"
    res = deid(cli, ct, "-o", out, "--escrow-to", CERT, "--escrow-password-env", "PW",
               "--pbkdf2-iterations", "100000", "--option", "retain-patient-characteristics",
               "--json", "-")
    assert res.code == 0, res
    doc = json.loads(res.stdout)
    assert doc["schema"] == "mediasec.deidentify/1"
    assert doc["escrow"] == {"recipients": 2, "cipher": "aes-256"}
    assert doc["method_codes"] == ["113100", "113108"]
    assert doc["files"][0]["escrowed"] is True
    ds = dcmread(out)
    assert ds.PatientName == "" and ds.PatientSex == "F"
    for how in (("--key", KEY), ("--key", KEY, "--cert", CERT), ("--password-env", "PW")):
        back = tmp_path / f"back{len(how)}{how[0]}.dcm"
        res = cli("reidentify", out, "-o", back, *how, "--json", "-", env=ENV)
        assert res.code == 0, res
        assert json.loads(res.stdout)["schema"] == "mediasec.reidentify/1"
        again = dcmread(back)
        assert again.PatientName == "DOE^JANE"
        assert again.SOPInstanceUID == dcmread(ct).SOPInstanceUID


def test_folder_in_folder_out_named_by_uid(cli, tmp_path):
    src = tmp_path / "in"
    g.ct_series(src / "SMITH_JOHN", 3)
    out = tmp_path / "out"
    res = deid(cli, src, "-o", out, "--escrow-to", CERT)
    assert res.code == 0, res
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 and all(n.startswith("2.25.") and n.endswith(".dcm") for n in names)
    assert {dcmread(out / n).SOPInstanceUID + ".dcm" for n in names} == set(names)
    back = tmp_path / "back"
    res = cli("reidentify", out, "-o", back, "--key", KEY, env=ENV)
    assert res.code == 0, res
    assert {str(dcmread(p).PatientName) for p in back.iterdir()} == {"DOE^JANE"}


def test_same_key_same_uids_across_runs(cli, ct, tmp_path):
    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    assert deid(cli, ct, "-o", a, "--no-escrow").code == 0
    assert deid(cli, ct, "-o", b, "--no-escrow").code == 0
    assert a.read_bytes() == b.read_bytes()
    assert b"2.25." in a.read_bytes() and dcmread(ct).SOPInstanceUID.encode() not in a.read_bytes()


def _nothing(path):
    assert not path.exists()
    assert not [p for p in path.parent.iterdir() if ".partial" in p.name]


@pytest.fixture
def deidentified(cli, ct, tmp_path):
    out = tmp_path / "deid.dcm"
    assert deid(cli, ct, "-o", out, "--escrow-to", CERT, "--escrow-password-env", "PW",
                "--pbkdf2-iterations", "100000").code == 0
    return out


def test_bad_wrong_key(cli, deidentified, tmp_path):
    out = tmp_path / "x.dcm"
    res = cli("reidentify", deidentified, "-o", out, "--key", PKI / "recipient-3072.key.pem",
              "--cert", PKI / "recipient-3072.pem", env=ENV)
    assert_one_line_error(res, 2, "deid.dcm", "recipient")
    _nothing(out)


def test_bad_wrong_password(cli, deidentified, tmp_path):
    out = tmp_path / "x.dcm"
    res = cli("reidentify", deidentified, "-o", out, "--password-env", "BADPW", env=ENV)
    assert_one_line_error(res, 2, "wrong password")
    _nothing(out)


def test_bad_missing_escrow(cli, ct, tmp_path):
    plain = tmp_path / "noescrow.dcm"
    assert deid(cli, ct, "-o", plain, "--no-escrow").code == 0
    out = tmp_path / "x.dcm"
    res = cli("reidentify", plain, "-o", out, "--key", KEY, env=ENV)
    assert_one_line_error(res, 2, "Encrypted Attributes Sequence")
    _nothing(out)


def test_bad_tampered_content(cli, deidentified, tmp_path):
    ds = dcmread(deidentified)
    content = bytearray(ds.EncryptedAttributesSequence[0].EncryptedContent)
    content[len(content) - 100] ^= 0x01
    ds.EncryptedAttributesSequence[0].EncryptedContent = bytes(content)
    bad = tmp_path / "tampered.dcm"
    ds.save_as(bad, enforce_file_format=True)
    out = tmp_path / "x.dcm"
    res = cli("reidentify", bad, "-o", out, "--key", KEY, env=ENV)
    assert_one_line_error(res, 1, "tampered")
    _nothing(out)


def test_bad_already_deidentified(cli, deidentified, tmp_path):
    out = tmp_path / "x.dcm"
    res = deid(cli, deidentified, "-o", out, "--escrow-to", CERT)
    assert_one_line_error(res, 2, "already de-identified")
    _nothing(out)


def test_bad_no_escrow_choice_and_legacy(cli, ct, tmp_path):
    out = tmp_path / "x.dcm"
    assert_one_line_error(deid(cli, ct, "-o", out), 2, "--no-escrow")
    assert_one_line_error(deid(cli, ct, "-o", out, "--escrow-to", CERT, "--cipher", "3des"),
                          2, "--allow-legacy")
    assert_one_line_error(deid(cli, ct, "-o", out, "--no-escrow", "--option",
                               "retain-long-full-dates", "--option",
                               "retain-long-modified-dates"), 2, "exclude")
    _nothing(out)


def test_bad_burned_in_and_a_failure_mid_job_leaves_no_folder(cli, ct, tmp_path):
    sc = g.write_instance(tmp_path / "in" / "zz_sc.dcm", "sc")
    out = tmp_path / "outdir"
    res = deid(cli, ct, sc, "-o", out, "--escrow-to", CERT)
    assert_one_line_error(res, 2, "zz_sc.dcm", "--accept-burned-in")
    _nothing(out)
    res = deid(cli, ct, sc, "-o", out, "--escrow-to", CERT, "--accept-burned-in")
    assert res.code == 0 and len(list(out.iterdir())) == 2
    assert "warning" in res.stderr


def test_bad_not_dicom(cli, tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"hello" * 100)
    out = tmp_path / "x.dcm"
    assert_one_line_error(deid(cli, junk, "-o", out, "--no-escrow"), 2, "junk.dcm")
    _nothing(out)


def test_everything_fixture_through_the_cli(cli, tmp_path):
    src = tmp_path / "every.dcm"
    src.write_bytes(G.part10(G.everything()))
    out = tmp_path / "out.dcm"
    res = deid(cli, src, "-o", out, "--escrow-to", CERT, "--json", "-")
    assert res.code == 0, res
    codes = {f["code"] for f in json.loads(res.stdout)["files"][0]["findings"]}
    assert {"DEID_UNKNOWN_REMOVED", "DEID_SIGNATURE_REMOVED"} <= codes


def test_build_deidentify_no_patient_name_anywhere_on_the_medium(cli, tmp_path):
    src = tmp_path / "in"
    g.ct_series(src / "DOE_JANE", 2)
    g.write_instance(src / "sr.dcm", "sr", series="SR")
    out, label = tmp_path / "disc", tmp_path / "label.json"
    res = cli("build", src, "-o", out, "--deidentify", "--escrow-to", CERT,
              "--mapping-key-env", "MAPKEY", "--pdi", "--label", label, env=ENV)
    assert res.code == 0, res
    assert not [p for p in tmp_path.iterdir() if ".deid-" in p.name]   # staging removed
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 6
    for p in files + [label]:
        data = p.read_bytes().upper()
        assert b"DOE" not in data and b"JANE" not in data, p
    assert json.loads(label.read_text())["discs"][0]["patients"][0]["name"] == ""
    dicomdir = dcmread(out / "DICOMDIR")
    pat = [r for r in dicomdir.DirectoryRecordSequence if r.DirectoryRecordType == "PATIENT"]
    assert len(pat) == 1 and str(pat[0].PatientName) == ""
    inst = next(p for p in files if p.name.startswith("IM"))
    back = tmp_path / "back.dcm"
    assert cli("reidentify", inst, "-o", back, "--key", KEY, env=ENV).code == 0
    assert str(dcmread(back).PatientName) == "DOE^JANE"


def test_build_deid_flags_need_deidentify(cli, ct, tmp_path):
    res = cli("build", ct.parent, "-o", tmp_path / "disc", "--escrow-to", CERT, env=ENV)
    assert_one_line_error(res, 2, "--deidentify")
    assert not (tmp_path / "disc").exists()
