"""Dataset signatures against DCMTK's dcmsign, both ways, plus the command line.

* dcmsign --verify accepts what ``mediasec sign`` writes (each profile, each MAC we write,
  nested items, several transfer syntaxes, a second signature);
* ``mediasec check-signatures`` verifies what dcmsign writes (every MAC, profile, tag list,
  purpose, item, ECDSA, implicit VR, big endian, JPEG, undefined lengths) and reports the
  old format (-fo) as a signature that does not verify;
* our MAC byte stream is byte-identical to ``dcmsign +d``;
* tampering: each case the right reason code and exit 1, and dcmsign agrees it is broken.
"""

from __future__ import annotations

import json
import shutil

import pydicom
import pytest

from _dicomgen import BE, DEFL, ELE, ILE, JPEG, write_instance
from _sign import ec_signer_files, flip, nested_ct
from conftest import PKI, assert_one_line_error, peer, run_cli, run_peer
from mediasec.sign import open_part10
from mediasec.sign.signature import mac_stream

KEY = ["--key", PKI / "signer.key.pem", "--cert", PKI / "signer.pem"]
TRUST = ["--trust", PKI / "trust.pem", "--intermediates", PKI / "chain.pem"]
DCM_TRUST = ["+cf", str(PKI / "trust.pem"), "+uf", str(PKI / "chain.pem")]
DS = [str(PKI / "signer.key.pem"), str(PKI / "signer.pem"), "-pw"]

pytestmark = pytest.mark.peer("dcmsign")


def dcmsign_verify(path, *extra):
    return run_peer(["dcmsign", "--verify", *DCM_TRUST, *extra, str(path)], check=False)


def dcmsign_sign(src, dst, *opts, sign=("+s",), keys=DS):
    run_peer(["dcmsign", *sign[:1], *keys[:2], *sign[1:], *keys[2:], *opts, str(src),
              str(dst)])
    return dst


def check(*files, extra=()):
    res = run_cli("check-signatures", *files, *TRUST, "--json", "-", *extra)
    doc = json.loads(res.stdout) if res.stdout.strip().startswith("{") else None
    return res, doc


def sig_statuses(doc, i=0):
    return [(s["path"], s["status"]) for s in doc["files"][i]["signatures"]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    files = {name: nested_ct(d / f"{name}.dcm", ts=ts)
             for name, ts in (("ele", ELE), ("ile", ILE), ("be", BE), ("jpeg", JPEG),
                              ("defl", DEFL))}
    files["sr"] = write_instance(d / "sr.dcm", "sr")
    return d, files


# -- we sign, dcmsign verifies -----------------------------------------------------------------

@pytest.mark.parametrize("profile,mac,require", [
    ("base", "sha256", None), ("creator", "sha384", "+rc"), ("authorization", "sha512", "+ru"),
])
def test_dcmsign_accepts_our_profiles_and_macs(corpus, tmp_path, profile, mac, require):
    peer("dcmsign")
    _d, files = corpus
    out = tmp_path / "s.dcm"
    res = run_cli("sign", files["ele"], *KEY, "--profile", profile, "--mac", mac, "-o", out)
    assert res.code == 0, res
    v = dcmsign_verify(out, *([require] if require else []))
    assert v.returncode == 0, v.stdout + v.stderr
    assert b"Verification : OK" in v.stdout + v.stderr


def test_dcmsign_accepts_sr_profile_and_legacy_macs(corpus, tmp_path):
    _d, files = corpus
    out = tmp_path / "sr.dcm"
    assert run_cli("sign", files["sr"], *KEY, "--profile", "sr", "--purpose", "1",
                   "-o", out).code == 0
    assert dcmsign_verify(out, "+rs").returncode == 0
    for mac in ("sha1", "ripemd160"):
        o = tmp_path / f"{mac}.dcm"
        assert run_cli("sign", files["ele"], *KEY, "--mac", mac, "--allow-legacy",
                       "-o", o).code == 0
        assert dcmsign_verify(o).returncode == 0


@pytest.mark.parametrize("name", ["ile", "be", "jpeg", "defl"])
def test_dcmsign_accepts_nested_and_second_signatures_in_any_syntax(corpus, tmp_path, name):
    _d, files = corpus
    one, two = tmp_path / "one.dcm", tmp_path / "two.dcm"
    assert run_cli("sign", files[name], *KEY, "--item", "OtherPatientIDsSequence[1]",
                   "-o", one).code == 0
    assert run_cli("sign", one, *KEY, "--profile", "creator", "-o", two).code == 0
    v = dcmsign_verify(two, "+rc")
    assert v.returncode == 0, v.stdout + v.stderr
    out = (v.stdout + v.stderr).decode()
    assert out.count("Verification : OK") == 2
    assert pydicom.dcmread(two).file_meta.TransferSyntaxUID == {
        "ile": ILE, "be": BE, "jpeg": JPEG, "defl": DEFL}[name]
    # and a dcmsign signature on top of ours: all three still valid for both
    three = dcmsign_sign(two, tmp_path / "three.dcm", "+m2")
    assert dcmsign_verify(three).returncode == 0
    res, doc = check(three)
    assert res.code == 0, res
    assert sorted(s for _p, s in sig_statuses(doc)) == ["valid"] * 3


# -- dcmsign signs, we verify ------------------------------------------------------------------

def test_we_verify_every_dcmsign_mac_and_profile(corpus, tmp_path):
    _d, files = corpus
    made = []
    for opt in ("+mr", "+ms", "+mm", "+m2", "+m3", "+m5"):
        made.append(dcmsign_sign(files["ele"], tmp_path / f"m{opt}.dcm", opt))
    for opt in ("+pb", "+pc", "+pa"):
        made.append(dcmsign_sign(files["ele"], tmp_path / f"p{opt}.dcm", opt, "+m2"))
    made.append(dcmsign_sign(files["sr"], tmp_path / "pr.dcm", "+pr", "+sp", "1", "+m2"))
    made.append(dcmsign_sign(files["ele"], tmp_path / "t.dcm", "+m2", "-t", "PatientName",
                             "-t", "0010,0020", "+sp", "14"))
    res, doc = check(*made)
    assert res.code == 0, res
    by = {f["path"]: f["signatures"][0] for f in doc["files"]}
    for f in made:
        assert by[str(f)]["status"] == "valid", (f, by[str(f)])
    macs_seen = [by[str(m)]["mac_algorithm"] for m in made[:6]]
    assert macs_seen == ["RIPEMD160", "SHA1", "MD5", "SHA256", "SHA384", "SHA512"]
    weak = {f["path"] for f in doc["files"]
            if "SIG_WEAK_ALGORITHM" in [x["code"] for x in f["findings"]]}
    assert weak == {str(m) for m in made[:3]}
    assert "creator" in by[str(tmp_path / "p+pc.dcm")]["profiles"]
    assert "authorization" in by[str(tmp_path / "p+pa.dcm")]["profiles"]
    assert "sr" in by[str(tmp_path / "pr.dcm")]["profiles"]
    sel = by[str(tmp_path / "t.dcm")]
    assert sel["purpose"]["code"] == "14" and sel["profiles"] == ["base"]
    assert set(sel["signed_elements"]) == {"0010,0010", "0010,0020"}


def test_we_verify_dcmsign_items_syntaxes_and_ecdsa(corpus, tmp_path):
    _d, files = corpus
    item = dcmsign_sign(files["ele"], tmp_path / "item.dcm", "+m2",
                        sign=("+si", "OtherPatientIDsSequence[0]"))
    made = [item]
    for name in ("ile", "be", "jpeg"):
        made.append(dcmsign_sign(files[name], tmp_path / f"{name}.dcm", "+m2"))
    # converted after signing: implicit VR, big endian, undefined lengths keep it valid
    for opt, name in (("+ti", "c-ile"), ("+tb", "c-be"), ("-e", "c-undef")):
        run_peer(["dcmconv", opt, str(item), str(tmp_path / f"{name}.dcm")])
        made.append(tmp_path / f"{name}.dcm")
    kp, cp = ec_signer_files(tmp_path)
    ecd = dcmsign_sign(files["ele"], tmp_path / "ec.dcm", "+m2", keys=[str(kp), str(cp), "-pw"])
    res, doc = check(*made)
    assert res.code == 0, res
    for f in doc["files"]:
        assert [s["status"] for s in f["signatures"]] == ["valid"], f
    assert doc["files"][0]["signatures"][0]["path"] == "OtherPatientIDsSequence[0]"
    res, doc = check(ecd)
    assert res.code == 0
    s = doc["files"][0]["signatures"][0]
    assert s["status"] == "valid" and s["key"].startswith("ECDSA") and s["profiles"] == []
    assert "SIG_NO_DICOM_PROFILE" in [x["code"] for x in doc["files"][0]["findings"]]
    assert check(ecd, extra=["--strict"])[0].code == 1


def test_old_format_is_reported_not_crashed(corpus, tmp_path):
    _d, files = corpus
    old = dcmsign_sign(files["jpeg"], tmp_path / "old.dcm", "+m2", "-fo")
    res, doc = check(old)
    assert res.code == 1
    assert sig_statuses(doc) == [("", "old_format")]
    assert doc["files"][0]["signatures"][0]["code"] == "SIG_OLD_FORMAT"
    # without encapsulated pixel data the old and new formats hash the same bytes
    plain = dcmsign_sign(files["ele"], tmp_path / "old-plain.dcm", "+m2", "-fo")
    assert sig_statuses(check(plain)[1]) == [("", "valid")]


@pytest.mark.parametrize("name,opts", [
    ("ele", ["+pb"]), ("ile", ["+pc"]), ("be", ["+pa"]), ("jpeg", []),
    ("ele", ["-t", "PatientName", "-t", "0010,0020", "+sp", "14"]),
])
def test_our_mac_stream_is_dcmsign_s_byte_for_byte(corpus, tmp_path, name, opts):
    _d, files = corpus
    dump = tmp_path / "mac.bin"
    out = dcmsign_sign(files[name], tmp_path / "s.dcm", "+m2", *opts, "+d", str(dump))
    assert mac_stream(open_part10(out.read_bytes())) == dump.read_bytes()


def test_nested_stream_is_dcmsign_s(corpus, tmp_path):
    _d, files = corpus
    dump = tmp_path / "mac.bin"
    out = dcmsign_sign(files["ele"], tmp_path / "s.dcm", "+m2", "+d", str(dump),
                       sign=("+si", "OtherPatientIDsSequence[0]"))
    assert mac_stream(open_part10(out.read_bytes()), "OtherPatientIDsSequence[0]") == \
        dump.read_bytes()


# -- tampering, through the command line, with dcmsign as a second opinion ---------------------

def _tampered(tmp_path, data, name):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_tampering_exit_1_and_dcmsign_agrees(corpus, tmp_path):
    _d, files = corpus
    good = tmp_path / "good.dcm"
    assert run_cli("sign", files["ele"], *KEY, "-o", good).code == 0
    data = good.read_bytes()
    part = open_part10(data)
    top = part.dataset
    cases = {}
    name_el = top.get(0x00100010)
    cases["element"] = (flip(data, name_el.val), "SIG_MAC_MISMATCH")
    pix = top.get(0x7FE00010)
    cases["pixels"] = (flip(data, pix.val + 3), "SIG_MAC_MISMATCH")
    at = top.get(0x4FFE0001).items[0].get(0x04000015)
    cases["mac-params"] = (data[:at.val] + b"SHA512" + data[at.val + 6:], "SIG_MAC_MISMATCH")
    sig = top.get(0xFFFAFFFA).items[0].get(0x04000120)
    cases["signature"] = (flip(data, sig.val + 10), "SIG_BAD_SIGNATURE")
    ds = pydicom.dcmread(good)
    del ds.PatientID
    removed = tmp_path / "removed.dcm"
    ds.save_as(removed)
    cases["removed"] = (removed.read_bytes(), "SIG_ELEMENTS_MISSING")
    ds = pydicom.dcmread(good)
    other = pydicom.dcmread(dcmsign_sign(files["ele"], tmp_path / "o.dcm", "+m2",
                                         keys=[str(PKI / "signer-3072.key.pem"),
                                               str(PKI / "signer-3072.pem"), "-pw"]))
    ds[0xFFFAFFFA].value[0][0x04000115].value = \
        other[0xFFFAFFFA].value[0][0x04000115].value
    swapped = tmp_path / "swapped.dcm"
    ds.save_as(swapped)
    cases["cert-swapped"] = (swapped.read_bytes(), "SIG_BAD_SIGNATURE")
    untrusted = tmp_path / "untrusted.dcm"
    assert run_cli("sign", files["ele"], "--key", PKI / "signer-untrusted.key.pem", "--cert",
                   PKI / "signer-untrusted.pem", "-o", untrusted).code == 0
    cases["untrusted"] = (untrusted.read_bytes(), "SIG_UNTRUSTED")
    expired = dcmsign_sign(files["ele"], tmp_path / "exp.dcm", "+m2",
                           keys=[str(PKI / "signer-expired.key.pem"),
                                 str(PKI / "signer-expired.pem"), "-pw"])
    cases["expired-at-signing"] = (expired.read_bytes(), "SIG_EXPIRED_AT_SIGNING")
    for name, (content, code) in cases.items():
        p = _tampered(tmp_path, content, f"t-{name}.dcm")
        res, doc = check(p)
        assert res.code == 1, (name, res)
        assert doc["files"][0]["signatures"][0]["code"] == code, (name, doc)
        assert doc["outcome"] == "failed"
        assert dcmsign_verify(p).returncode != 0, name
    # still fine: the untouched original
    assert check(good)[0].code == 0


# -- the command line: status, outputs, bad input ----------------------------------------------

def test_cli_authorize_and_covering_signatures(tmp_path):
    src = nested_ct(tmp_path / "in.dcm", extra={"SOPInstanceStatus": "OR"})
    ao = tmp_path / "ao.dcm"
    res = run_cli("sign", src, *KEY, "--authorize", "--equipment-cert-number", "EQ-7",
                  "-o", ao, "--json", "-")
    assert res.code == 0, res
    assert json.loads(res.stdout)["files"][0]["signature"]["profile"] == "authorization"
    ds = pydicom.dcmread(ao)
    assert ds.SOPInstanceStatus == "AO" and ds[0x01000426].value == "EQ-7"
    v = dcmsign_verify(ao, "+ru")
    assert v.returncode == 0, v.stdout + v.stderr
    res, doc = check(ao)
    assert res.code == 0 and doc["files"][0]["status_signed"] is True
    res = run_cli("sign", ao, *KEY, "--authorize", "-o", tmp_path / "again.dcm")
    assert_one_line_error(res, 2, "only an original")
    # a covering signature blocks a status change, unless dropped on request
    shutil.copy(src, tmp_path / "or.dcm")
    auth = tmp_path / "auth.dcm"
    assert run_cli("sign", tmp_path / "or.dcm", *KEY, "--profile", "authorization",
                   "-o", auth).code == 0
    res = run_cli("sign", auth, *KEY, "--authorize", "-o", tmp_path / "x.dcm")
    assert_one_line_error(res, 2, "covers 0100,0410", "--drop-covering-signatures")
    assert not (tmp_path / "x.dcm").exists()
    res = run_cli("sign", auth, *KEY, "--authorize", "--drop-covering-signatures",
                  "-o", tmp_path / "x.dcm", "--json", "-")
    assert res.code == 0, res
    assert "removed signature 0" in res.stderr
    assert len(json.loads(res.stdout)["files"][0]["dropped"]) == 1
    assert dcmsign_verify(tmp_path / "x.dcm").returncode == 0


def test_cli_outputs_and_bad_input(corpus, tmp_path):
    _d, files = corpus
    out = tmp_path / "o.dcm"
    assert run_cli("sign", files["ele"], *KEY, "-o", out).code == 0
    assert_one_line_error(run_cli("sign", files["ele"], *KEY, "-o", out), 2, "already exists")
    assert run_cli("sign", files["ele"], *KEY, "-o", out, "--force").code == 0
    inplace = tmp_path / "inplace.dcm"
    shutil.copy(files["ele"], inplace)
    assert run_cli("sign", inplace, *KEY, "--in-place").code == 0
    assert dcmsign_verify(inplace).returncode == 0
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom" * 30)
    bad = tmp_path / "bad.dcm"
    assert_one_line_error(run_cli("sign", junk, *KEY, "-o", bad), 2, "junk.dcm", "DICM")
    assert_one_line_error(run_cli("sign", tmp_path / "nope.dcm", *KEY, "-o", bad), 2,
                          "no such file")
    assert_one_line_error(run_cli("sign", files["ele"], *KEY, "--mac", "md5", "-o", bad), 2,
                          "never")
    assert_one_line_error(run_cli("sign", files["ele"], *KEY, "--mac", "sha1", "-o", bad), 2,
                          "--allow-legacy")
    assert_one_line_error(run_cli("sign", files["ele"], "--key", PKI / "signer.key.pem",
                                  "--cert", PKI / "signer-3072.pem", "-o", bad), 2,
                          "does not belong")
    assert_one_line_error(run_cli("sign", files["ele"], "--key",
                                  PKI / "signer-expired.key.pem", "--cert",
                                  PKI / "signer-expired.pem", "-o", bad), 2, "not valid now")
    assert_one_line_error(run_cli("sign", files["ele"], *KEY, "--item", "Nope[0]",
                                  "-o", bad), 2, "unknown attribute")
    assert_one_line_error(run_cli("sign", files["ele"], *KEY, "--profile", "sr",
                                  "--purpose", "1", "-o", bad), 2, "SR documents")
    truncated = tmp_path / "trunc.dcm"
    truncated.write_bytes(files["ele"].read_bytes()[:-100])
    assert_one_line_error(run_cli("sign", truncated, *KEY, "-o", bad), 2, "trunc.dcm")
    assert not bad.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    res = run_cli("check-signatures", junk, files["ele"], *TRUST)
    assert res.code == 2 and "junk.dcm" in res.stderr and "SIG_NONE" in res.stdout
    res, doc = check(files["ele"])
    assert res.code == 1 and doc["files"][0]["findings"][0]["code"] == "SIG_NONE"
    # valid but no trust anchor: exit 0 with --strict failing it
    assert run_cli("check-signatures", out).code == 0
    assert run_cli("check-signatures", out, "--strict").code == 1


def test_certified_timestamp_is_read_and_reported(corpus, tmp_path):
    """dcmsign +ts (query) -> openssl ts -reply (a test TSA) -> dcmsign +t (insert): the
    certified timestamp is reported with its time and whether it covers the signature; the
    signature itself stays valid (the timestamp is outside the MAC)."""
    from _sign import tsa_files
    _d, files = corpus
    tsq, uid = tmp_path / "q.tsq", tmp_path / "uid.txt"
    signed = dcmsign_sign(files["ele"], tmp_path / "s.dcm", "+m2", "+ts", str(tsq), str(uid))
    kp, cp, cfg = tsa_files(tmp_path)
    tsr = tmp_path / "r.tsr"
    run_peer(["openssl", "ts", "-reply", "-config", str(cfg), "-queryfile", str(tsq),
              "-signer", str(cp), "-inkey", str(kp), "-out", str(tsr)])
    stamped = tmp_path / "stamped.dcm"
    run_peer(["dcmsign", "+t", str(tsq), str(tsr), str(uid), str(signed), str(stamped)])
    res, doc = check(stamped)
    assert res.code == 0, res
    s = doc["files"][0]["signatures"][0]
    assert s["status"] == "valid"
    assert s["timestamp"]["type"] == "CMS_TSP"
    assert s["timestamp"]["covers_signature"] is True
    assert s["timestamp"]["gen_time"][:4] >= "2026"
