"""De-identification against independent peers: GDCM's gdcmanon both ways (every cipher it
offers, and its password mode), OpenSSL for our password recipients, dciodvfy for the IODs."""

from __future__ import annotations

import io
import re

import pytest
from pydicom import dcmread

import _dicomgen as g
from conftest import DICOM, PKI, run_peer
from mediasec.cms.keys import KeyTransportRecipient, PasswordRecipient
from mediasec.deid import DeidJob
from mediasec.deid.escrow import decode_modified, encode_modified
from mediasec.pki import certs

CERT, KEY = PKI / "recipient-2048.pem", PKI / "recipient-2048.key.pem"
ENV = {"MAPKEY": "a mapping key of 32 characters!!", "PW": "escrow password"}
#: gdcmanon rewrites these (its own File Meta, its marks); everything else must be original
_IGNORED = {0x00120062, 0x00120063, 0x00120064, 0x00280303}


def _same(a, b):
    ta = {t for t in a.keys() if int(t) not in _IGNORED}
    tb = {t for t in b.keys() if int(t) not in _IGNORED}
    assert ta == tb
    for t in ta:
        assert a[t] == b[t], t


def _source(tmp_path, kind="ct", **kw):
    return g.write_instance(tmp_path / f"src_{kind}.dcm", kind, patient_name="DOE^JANE",
                            **kw)


@pytest.mark.peer("gdcmanon")
@pytest.mark.parametrize("kind", ["ct", "sr", "gsps"])
def test_gdcmanon_reidentifies_what_we_deidentify(cli, tmp_path, kind):
    src = _source(tmp_path, kind)
    ours = tmp_path / "ours.dcm"
    res = cli("deidentify", src, "-o", ours, "--escrow-to", CERT, "--mapping-key-env",
              "MAPKEY", env=ENV)
    assert res.code == 0, res
    assert dcmread(ours).PatientName == ""
    back = tmp_path / "gdcm_back.dcm"
    run_peer(["gdcmanon", "-d", "-k", str(KEY), "-i", str(ours), "-o", str(back)])
    _same(dcmread(back), dcmread(src))


@pytest.mark.peer("gdcmanon")
def test_gdcmanon_password_reidentifies_ours(cli, tmp_path):
    src = _source(tmp_path)
    ours = tmp_path / "ours.dcm"
    res = cli("deidentify", src, "-o", ours, "--escrow-password-env", "PW",
              "--pbkdf2-iterations", "100000", env=ENV)
    assert res.code == 0, res
    back = tmp_path / "gdcm_back.dcm"
    run_peer(["gdcmanon", "-d", "-p", ENV["PW"], "-i", str(ours), "-o", str(back)])
    _same(dcmread(back), dcmread(src))


@pytest.mark.peer("gdcmanon")
@pytest.mark.parametrize("cipher", ["aes128", "aes192", "aes256", "des3"])
def test_we_reidentify_what_gdcmanon_writes(cli, tmp_path, cipher):
    src = _source(tmp_path)
    theirs = tmp_path / "gdcm.dcm"
    run_peer(["gdcmanon", "-e", "-c", str(CERT), f"--{cipher}", "-i", str(src),
              "-o", str(theirs)])
    assert dcmread(theirs).PatientName == ""
    back = tmp_path / "back.dcm"
    res = cli("reidentify", theirs, "-o", back, "--key", KEY, env=ENV)
    assert res.code == 0, res
    assert ("3DES" in res.stderr) == (cipher == "des3")
    _same(dcmread(back), dcmread(src))


@pytest.mark.peer("gdcmanon")
def test_we_reidentify_gdcmanon_password_mode(cli, tmp_path):
    src = _source(tmp_path)
    theirs = tmp_path / "gdcm.dcm"
    run_peer(["gdcmanon", "-e", "-p", ENV["PW"], "-i", str(src), "-o", str(theirs)])
    back = tmp_path / "back.dcm"
    res = cli("reidentify", theirs, "-o", back, "--password-env", "PW", env=ENV)
    assert res.code == 0, res
    assert "2048 iterations" in res.stderr          # gdcmanon's PBKDF2: reported as legacy
    _same(dcmread(back), dcmread(src))


@pytest.mark.peer("openssl")
def test_openssl_opens_our_password_escrow(tmp_path):
    src = g.make_dataset("ct", patient_name="DOE^JANE")
    cert = certs.load_certificates(CERT.read_bytes())[0]
    job = DeidJob(recipients=[KeyTransportRecipient(cert),
                              PasswordRecipient(ENV["PW"].encode(), iterations=100_000)])
    meta_src = io.BytesIO()
    src.file_meta = g.FileMetaDataset()
    src.file_meta.TransferSyntaxUID = g.ELE
    src.file_meta.MediaStorageSOPClassUID = src.SOPClassUID
    src.file_meta.MediaStorageSOPInstanceUID = src.SOPInstanceUID
    src.save_as(meta_src, enforce_file_format=True)
    out = io.BytesIO()
    job.deidentify(io.BytesIO(meta_src.getvalue()), out)
    ds = dcmread(io.BytesIO(out.getvalue()))
    content = ds.EncryptedAttributesSequence[0].EncryptedContent
    der = tmp_path / "escrow.der"
    der.write_bytes(content[:2 + 2 + int.from_bytes(content[2:4], "big")])
    for args in (["-pwri_password", ENV["PW"]], ["-recip", str(CERT), "-inkey", str(KEY)]):
        plain = run_peer(["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(der),
                          "-binary", *args]).stdout
        item = decode_modified(plain)
        assert str(item.PatientName) == "DOE^JANE"
        assert item.SOPInstanceUID == src.SOPInstanceUID
        assert plain == encode_modified(item)


@pytest.mark.peer("openssl")
def test_we_open_an_openssl_pwri_escrow(tmp_path, cli):
    """A third party's password escrow (OpenSSL: PBKDF2-SHA1, 2048 iterations, AES-128
    content) placed in a file: re-identified with the password."""
    src = _source(tmp_path)
    ours = tmp_path / "ours.dcm"
    assert cli("deidentify", src, "-o", ours, "--escrow-to", CERT, env=ENV).code == 0
    ds = dcmread(ours)
    item = dcmread(src)
    from pydicom.dataset import Dataset
    originals = Dataset()
    for kw in ("SOPInstanceUID", "PatientName", "PatientID", "StudyInstanceUID",
               "SeriesInstanceUID"):
        originals.add(item[kw])
    plain = tmp_path / "plain.bin"
    plain.write_bytes(encode_modified(originals))
    env_der = tmp_path / "env.der"
    run_peer(["openssl", "cms", "-encrypt", "-in", str(plain), "-binary", "-outform", "DER",
              "-out", str(env_der), "-aes128", "-pwri_password", ENV["PW"]])
    content = env_der.read_bytes()
    ds.EncryptedAttributesSequence[0].EncryptedContent = content + b"\x00" * (len(content) % 2)
    theirs = tmp_path / "theirs.dcm"
    ds.save_as(theirs, enforce_file_format=True)
    back = tmp_path / "back.dcm"
    res = cli("reidentify", theirs, "-o", back, "--password-env", "PW", env=ENV)
    assert res.code == 0, res
    again = dcmread(back)
    assert str(again.PatientName) == "DOE^JANE" and again.SOPInstanceUID == item.SOPInstanceUID


def _errors(path) -> set:
    proc = run_peer(["dciodvfy", str(path)], check=False)
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    return {re.sub(r"\s+", " ", ln) for ln in text.splitlines() if ln.startswith("Error")}


@pytest.mark.peer("dciodvfy")
@pytest.mark.parametrize("name", ["ct1", "mr1", "sr1", "pr1", "ct3_ile", "mr2_deflate"])
@pytest.mark.parametrize("option", [None, "retain-long-modified-dates"])
def test_dciodvfy_finds_no_new_errors(cli, tmp_path, name, option):
    src = DICOM / f"{name}.dcm"
    out = tmp_path / "out.dcm"
    args = ["--option", option] if option else []
    res = cli("deidentify", src, "-o", out, "--escrow-to", CERT, *args, env=ENV)
    assert res.code == 0, res
    assert _errors(out) <= _errors(src), _errors(out) - _errors(src)
