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


# -- the Python API ---------------------------------------------------------------------------

def test_api_dataset_signing_runs_in_the_build_workers(tmp_path):
    """``BuildRequest(sign_datasets=, dataset_signer=)``: the sign_dataset stage plans each
    signed size up front and makes the per-file RSA signature in the build's worker
    processes (like the CMS stage), never in the calling process."""
    import os

    import mediasec
    from _sign import trust
    from mediasec.cms.keys import RSASigner
    from mediasec.pki.certs import load_certificates, load_private_key

    log = tmp_path / "pids"

    class Recording(RSASigner):
        def sign_digest_info(self, digest_info):
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
            return super().sign_digest_info(digest_info)

    key, _ = load_private_key((PKI / "signer.key.pem").read_bytes())
    cert = load_certificates((PKI / "signer.pem").read_bytes())[0]
    recipient = mediasec.KeyTransportRecipient(
        load_certificates((PKI / "recipient-2048.pem").read_bytes())[0])
    out = tmp_path / "stick"
    result = mediasec.build(mediasec.BuildRequest(
        PILE, out, recipients=[recipient], sign_datasets="creator",
        dataset_signer=Recording(key, cert), workers=2))
    assert result.to_dict()["dataset_signatures"]["profile"] == "creator"
    pids = log.read_text().split()
    assert len(pids) == len(PILE)
    assert str(os.getpid()) not in pids
    rkey, _ = load_private_key((PKI / "recipient-2048.key.pem").read_bytes())
    report = mediasec.verify(mediasec.VerifyRequest(
        str(out), decrypters=[mediasec.KeyDecrypter(rkey, recipient.certificate)],
        trust=trust()))
    assert not report.failed
    codes = [r["code"] for f in report.to_dict()["files"] for r in f["reasons"]]
    assert codes.count("SIG_VALID") == len(PILE)


def test_api_build_refusals_for_dataset_signing(tmp_path):
    import mediasec
    from _sign import signer
    from mediasec.errors import UsageError
    for kw, words in (({"sign_datasets": "creator"}, "--sign-key"),
                      ({"sign_datasets": "base", "authorized_copy": True,
                        "dataset_signer": signer()}, "authorization profile"),
                      ({"sign_datasets": "nonsense", "dataset_signer": signer()},
                       "unknown signature profile")):
        with pytest.raises(UsageError, match=words):
            mediasec.check_build(mediasec.BuildRequest(PILE, tmp_path / "o", **kw))
    assert not (tmp_path / "o").exists()


def test_api_sign_files_and_check_signatures(tmp_path):
    import mediasec
    from _sign import signer, trust
    from mediasec.errors import UsageError
    src = nested_ct(tmp_path / "in.dcm")
    out = tmp_path / "out.dcm"
    res = mediasec.sign_files(mediasec.SignFilesRequest(
        [src], signer(), output=out, signature=mediasec.SignRequest(profile="creator")))
    assert res.files[0].size == out.stat().st_size
    assert res.to_dict()["schema"] == "mediasec.sign/1"
    assert src.read_bytes() != out.read_bytes()
    # dcmsign accepts it as a creator signature
    v = run_peer(["dcmsign", "--verify", "+cf", str(PKI / "trust.pem"), "+uf",
                  str(PKI / "chain.pem"), "+rc", str(out)], check=False)
    assert v.returncode == 0, v.stdout + v.stderr
    with pytest.raises(UsageError, match="already exists"):
        mediasec.sign_files(mediasec.SignFilesRequest([src], signer(), output=out))
    with pytest.raises(UsageError, match="--in-place"):
        mediasec.sign_files(mediasec.SignFilesRequest([src], signer()))
    chk = mediasec.check_signatures(mediasec.CheckSignaturesRequest(
        [out, src, tmp_path / "missing.dcm"], trust=trust()))
    assert [s.status for s in chk.reports[0][1].signatures] == ["valid"]
    assert [f.code for f in chk.reports[1][1].findings] == ["SIG_NONE"]
    assert chk.failed and chk.outcome == "error"
    assert [(p, e.code) for p, e in chk.errors] == [(str(tmp_path / "missing.dcm"),
                                                     "USAGE_NO_SUCH_FILE")]
    ok = mediasec.check_signatures(mediasec.CheckSignaturesRequest([out], trust=trust()))
    assert not ok.failed and ok.outcome == "passed"


def test_converted_signed_input_keeps_a_valid_signature(tmp_path):
    """Without --sign-datasets: an implicit VR input signed by dcmsign is converted to
    explicit VR on the medium; its signature still verifies there (dcmsign agrees), and
    nothing was stripped."""
    from _dicomgen import ILE
    src = nested_ct(tmp_path / "src" / "ile.dcm", ts=ILE)
    signed = tmp_path / "in" / "signed.dcm"
    signed.parent.mkdir()
    run_peer(["dcmsign", "--sign", str(PKI / "signer.key.pem"), str(PKI / "signer.pem"),
              "+pc", str(src), str(signed)])
    out = tmp_path / "stick"
    res = run_cli("build", signed.parent, "-o", out, "--json", tmp_path / "r.json")
    assert res.code == 0, res
    doc = json.loads((tmp_path / "r.json").read_text())
    assert "dataset_signatures" not in doc
    assert doc["counts"]["converted"] == 1
    (written,) = _instances(out)
    assert pydicom.dcmread(written).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    v = run_peer(["dcmsign", "--verify", "+cf", str(PKI / "trust.pem"), "+uf",
                  str(PKI / "chain.pem"), str(written)], check=False)
    assert v.returncode == 0, v.stdout + v.stderr


def test_api_deidentified_then_signed(tmp_path):
    """``build --deidentify --sign-datasets``: the signature is made over the
    de-identified object (the signer vouches for what is on the medium); dcmsign agrees."""
    import mediasec
    from _dicomgen import ILE
    from _sign import signer
    nested_ct(tmp_path / "src" / "a.dcm")
    nested_ct(tmp_path / "src" / "b.dcm", ts=ILE, series="B")
    out = tmp_path / "stick"
    result = mediasec.build(mediasec.BuildRequest(
        [tmp_path / "src"], out, sign_datasets="creator", dataset_signer=signer(),
        deidentify=mediasec.DeidJob(escrow=False)))
    doc = result.to_dict()
    assert doc["deidentify"]["files"] == 2
    assert {o["producer"] for o in doc["outputs"] if o["role"] == "instance"} == {"sign"}
    files = _instances(out)
    assert len(files) == 2
    for f in files:
        assert b"DOE^JANE" not in f.read_bytes()
        v = run_peer(["dcmsign", "--verify", "+cf", str(PKI / "trust.pem"), "+uf",
                      str(PKI / "chain.pem"), "+rc", str(f)], check=False)
        assert v.returncode == 0, (f, v.stdout + v.stderr)


def test_plain_medium_with_signed_datasets(tmp_path):
    """Without recipients, ``--sign-datasets`` makes a plain (non-secure) medium whose
    instances carry the signature; the key is not used for CMS."""
    out = tmp_path / "stick"
    res = run_cli("build", DICOM / "ct1.dcm", DICOM / "ct3_ile.dcm", "-o", out, *SIGN,
                  "--sign-datasets", "base", "--json", tmp_path / "r.json")
    assert res.code == 0, res
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["secure"] is False and doc["dataset_signatures"]["profile"] == "base"
    files = _instances(out)
    assert len(files) == 2
    res = run_cli("check-signatures", *files, "--trust", PKI / "trust.pem",
                  "--intermediates", PKI / "chain.pem", "--json", "-")
    assert res.code == 0, res
    assert json.loads(res.stdout)["outcome"] == "passed"
    # without --sign-datasets the same key still means a secure (CMS-signed) medium
    res = run_cli("build", DICOM / "ct1.dcm", "-o", tmp_path / "s2", *SIGN)
    assert_one_line_error(res, 2, "--encrypt-to")
