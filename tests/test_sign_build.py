"""``build --sign-datasets`` / ``--authorized-copy``: every instance on a secure disc carries a
DICOM digital signature under its CMS protection; the disc verifies clean, and every extracted
instance passes ``dcmsign --verify``."""

from __future__ import annotations

import json

import pydicom
import pytest

from _sign import nested_ct
from conftest import DICOM, PKI, assert_one_line_error, run_cli, run_peer

RECIP = ["--encrypt-to", PKI / "recipient-2048.pem"]
SIGN = ["--sign-key", PKI / "signer.key.pem", "--sign-cert", PKI / "signer.pem",
        "--sign-chain", PKI / "chain.pem"]
KEY = ["--key", PKI / "recipient-2048.key.pem", "--cert", PKI / "recipient-2048.pem"]
PILE = [DICOM / n for n in ("ct1.dcm", "ct3_ile.dcm", "mr2_deflate.dcm", "sr1.dcm",
                            "pdf1.dcm")]

pytestmark = pytest.mark.peer("dcmsign")


def _instances(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "DICOMDIR"
                  and p.read_bytes()[128:132] == b"DICM")


def test_secure_disc_with_creator_signatures(tmp_path):
    src = tmp_path / "src"
    nested_ct(src / "nested.dcm")
    disc = tmp_path / "disc.iso"
    res = run_cli("build", *PILE, src, "-o", disc, *RECIP, *SIGN, "--sign-datasets", "creator",
                  "--json", tmp_path / "r.json")
    assert res.code == 0, res
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["dataset_signatures"]["profile"] == "creator"
    assert {o["producer"] for o in doc["outputs"] if o["role"] == "instance"} == {"secure"}
    trust = ["--trust", PKI / "trust.pem", "--trust", PKI / "chain.pem"]
    res = run_cli("verify", disc, *KEY, *trust, "--json", "-")
    assert res.code == 0, res
    reasons = [r["code"] for f in json.loads(res.stdout)["files"] for r in f["reasons"]]
    assert reasons.count("SIG_VALID") == len(PILE) + 1      # one per instance, checked
    out = tmp_path / "out"
    res = run_cli("extract", disc, "-o", out, *KEY, *trust)
    assert res.code == 0, res
    files = _instances(out)
    assert len(files) == len(PILE) + 1
    for f in files:
        v = run_peer(["dcmsign", "--verify", "+cf", str(PKI / "trust.pem"), "+uf",
                      str(PKI / "chain.pem"), "+rc", str(f)], check=False)
        assert v.returncode == 0, (f, v.stdout + v.stderr)
    res = run_cli("check-signatures", *files, "--trust", PKI / "trust.pem",
                  "--intermediates", PKI / "chain.pem", "--json", "-")
    assert res.code == 0, res
    for f in json.loads(res.stdout)["files"]:
        assert [s["status"] for s in f["signatures"]] == ["valid"]
        assert "creator" in f["signatures"][0]["profiles"]


def test_authorized_copy_only_for_authorized_sources(tmp_path):
    src = tmp_path / "src"
    nested_ct(src / "ao.dcm", series="A", extra={"SOPInstanceStatus": "OR"})
    nested_ct(src / "or.dcm", series="B", extra={"SOPInstanceStatus": "OR"})
    ao = src / "ao.dcm"
    res = run_cli("sign", ao, "--key", PKI / "signer.key.pem", "--cert", PKI / "signer.pem",
                  "--authorize", "--in-place")
    assert res.code == 0, res
    out = tmp_path / "stick"
    res = run_cli("build", src, "-o", out, *RECIP, *SIGN, "--authorized-copy",
                  "--json", tmp_path / "r.json")
    assert_one_line_error(res, 2, "covers 0100,0410")
    res = run_cli("build", src, "-o", out, *RECIP, *SIGN, "--authorized-copy",
                  "--drop-covering-signatures", "--json", tmp_path / "r.json")
    assert res.code == 0, res
    doc = json.loads((tmp_path / "r.json").read_text())
    codes = sorted(f["code"] for f in doc["dataset_signatures"]["findings"])
    assert codes == ["SIG_DROPPED_FOR_STATUS", "STATUS_NOT_AUTHORIZED"]
    ext = tmp_path / "ext"
    assert run_cli("extract", out, "-o", ext, *KEY).code == 0
    status = {}
    for f in _instances(ext):
        ds = pydicom.dcmread(f)
        status[ds.SeriesInstanceUID] = ds.SOPInstanceStatus
        v = run_peer(["dcmsign", "--verify", "+cf", str(PKI / "trust.pem"), "+uf",
                      str(PKI / "chain.pem"), "+ru", str(f)], check=False)
        assert v.returncode == 0, (f, v.stdout + v.stderr)
    assert sorted(status.values()) == ["AC", "OR"]


def test_sign_datasets_needs_a_signing_key(tmp_path):
    res = run_cli("build", *PILE, "-o", tmp_path / "d.iso", *RECIP, "--sign-datasets", "base")
    assert_one_line_error(res, 2, "--sign-key")
    assert not (tmp_path / "d.iso").exists()


def test_unprotect_reports_dataset_signatures(tmp_path):
    src = nested_ct(tmp_path / "in.dcm")
    signed = tmp_path / "signed.dcm"
    assert run_cli("sign", src, "--key", PKI / "signer.key.pem", "--cert",
                   PKI / "signer.pem", "-o", signed).code == 0
    sec = tmp_path / "s.sec"
    assert run_cli("protect", signed, "-o", sec, *RECIP).code == 0
    res = run_cli("unprotect", sec, "-o", tmp_path / "plain.dcm", *KEY, "--json", "-")
    assert res.code == 0, res
    block = json.loads(res.stdout)["dataset_signatures"]
    assert [s["status"] for s in block["signatures"]] == ["trust_not_checked"]
    # a protected file whose dataset signature is broken: reported, the CMS layer is intact
    data = bytearray(signed.read_bytes())
    i = data.index(b"DOE^JANE")
    data[i] ^= 1
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(bytes(data))
    assert run_cli("protect", bad, "-o", tmp_path / "b.sec", *RECIP).code == 0
    res = run_cli("unprotect", tmp_path / "b.sec", "-o", tmp_path / "b.dcm", *KEY,
                  "--json", "-")
    assert res.code == 0, res
    assert "SIG_MAC_MISMATCH" in res.stderr
    assert json.loads(res.stdout)["dataset_signatures"]["outcome"] == "failed"


def test_verify_and_extract_check_dataset_signatures(tmp_path):
    src = tmp_path / "src"
    for i, name in enumerate(("a", "b")):
        p = nested_ct(src / f"{name}.dcm", series=name, extra={"SOPInstanceStatus": "AO"})
        assert run_cli("sign", p, "--key", PKI / "signer.key.pem", "--cert",
                       PKI / "signer.pem", "--profile", "creator", "--in-place").code == 0
    out = tmp_path / "stick"
    assert run_cli("build", src, "-o", out, "--no-manifest").code == 0
    # DICOM carries the signer's certificate only: the intermediate comes as a --trust file
    res = run_cli("verify", out, "--trust", PKI / "trust.pem", "--trust", PKI / "chain.pem",
                  "--json", "-")
    assert res.code == 0, res
    doc = json.loads(res.stdout)
    codes = [r["code"] for f in doc["files"] for r in f["reasons"]]
    assert codes.count("SIG_VALID") == 2
    # the AO status is not covered by the creator signatures: reported, not a failure
    assert codes.count("STATUS_UNSUPPORTED") == 2
    # the root alone does not reach the signer
    res = run_cli("verify", out, "--trust", PKI / "trust.pem", "--json", "-")
    assert res.code == 1
    assert "SIG_UNTRUSTED" in [r["code"] for f in json.loads(res.stdout)["files"]
                               for r in f["reasons"]]
    # tamper one instance on the medium: verify fails with the dataset signature's reason
    victim = next(p for p in out.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    data = bytearray(victim.read_bytes())
    data[data.index(b"DOE^JANE")] ^= 1
    victim.write_bytes(bytes(data))
    res = run_cli("verify", out, "--json", "-")
    assert res.code == 1, res
    codes = [r["code"] for f in json.loads(res.stdout)["files"] for r in f["reasons"]]
    assert "SIG_MAC_MISMATCH" in codes
    ext = tmp_path / "ext"
    res = run_cli("extract", out, "-o", ext)
    assert res.code == 1, res
    assert len(_instances(ext)) == 1            # the tampered one is not handed out
