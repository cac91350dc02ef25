"""protect / unprotect / inspect as a user runs them: results, bad input, exit codes.

Every bad input: one line on stderr naming the file, the documented exit code, and
nothing left at the output path.
"""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives import padding as sympad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from _cms import (PKI, SAMPLE, env_password, ktri, protect_bytes, signer, write)
from conftest import DICOM, assert_one_line_error, run_cli

R2048 = ["--key", PKI / "recipient-2048.key.pem", "--cert", PKI / "recipient-2048.pem"]
SIGN = ["--sign-key", PKI / "signer.key.pem", "--sign-cert", PKI / "signer.pem",
        "--sign-chain", PKI / "chain.pem"]
TRUST = ["--trust", PKI / "trust.pem"]


def protect_cli(tmp_path, *extra, name="out.sec", src=DICOM / "ct1.dcm"):
    out = tmp_path / name
    res = run_cli("protect", src, "-o", out, "--encrypt-to", PKI / "recipient-2048.pem",
                  *extra)
    assert res.code == 0, res
    return out


def assert_nothing_at(path):
    assert not path.exists()
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]
    assert leftovers == []


# -- happy paths --------------------------------------------------------------------------------

def test_protect_unprotect_round_trip_signed_and_trusted(tmp_path):
    sec = protect_cli(tmp_path, *SIGN)
    out = tmp_path / "plain.dcm"
    res = run_cli("unprotect", sec, "-o", out, *R2048, *TRUST, "--json", tmp_path / "r.json")
    assert res.code == 0, res
    assert out.read_bytes() == SAMPLE
    assert oct(out.stat().st_mode & 0o777) == "0o600"  # plaintext PHI: owner only
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["schema"] == "mediasec.unprotect/1"
    assert doc["inner"]["type"] == "signedData" and not doc["inner"]["wrapped"]
    assert doc["inner"]["signers"][0]["trusted"] is True
    assert doc["outcome"] == "passed"


def test_unprotect_without_trust_warns_but_succeeds(tmp_path):
    sec = protect_cli(tmp_path, *SIGN)
    res = run_cli("unprotect", sec, "-o", tmp_path / "p.dcm", *R2048)
    assert res.code == 0
    assert "warning" in res.stderr and "--trust" in res.stderr


def test_password_recipient_from_environment(tmp_path):
    out = tmp_path / "pw.sec"
    res = run_cli("protect", DICOM / "ct1.dcm", "-o", out, "--password-env", "MS_PW",
                  "--pbkdf2-iterations", "100000", env=env_password())
    assert res.code == 0, res
    res = run_cli("unprotect", out, "-o", tmp_path / "p.dcm", "--password-env", "MS_PW",
                  env=env_password())
    assert res.code == 0, res
    assert (tmp_path / "p.dcm").read_bytes() == SAMPLE


def test_inspect_without_key_lists_structure(tmp_path):
    sec = protect_cli(tmp_path, *SIGN)
    res = run_cli("inspect", sec, "--json")
    assert res.code == 0
    doc = json.loads(res.stdout)
    assert doc["schema"] == "mediasec.inspect/1"
    assert doc["envelope"]["content_type"] == "signedData"
    assert doc["envelope"]["cipher"] == "aes-256"
    assert doc["envelope"]["recipients"][0]["kind"] == "ktri"
    assert doc["inner"] is None
    assert doc["findings"][0]["code"] == "CMS_ENCRYPTED_NOT_CHECKED"
    text = run_cli("inspect", sec, *R2048, *TRUST)
    assert text.code == 0 and "signer: mediasec Test Signer" in text.stdout


def test_legacy_allowed_with_flag_and_reported_on_read(tmp_path):
    sec = protect_cli(tmp_path, "--cipher", "3des", "--digest", "sha1", "--allow-legacy")
    res = run_cli("inspect", sec, *R2048, "--json")
    doc = json.loads(res.stdout)
    assert doc["envelope"]["cipher"] == "3des"
    assert {f["code"] for f in doc["findings"]} >= {"ALG_LEGACY", "INTEGRITY_DIGEST_OK"}


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("flags,needle", [
    (["--cipher", "3des"], "3des is a legacy cipher"),
    (["--digest", "sha1"], "sha1 is a legacy digest"),
])
def test_legacy_refused_on_write(tmp_path, flags, needle):
    out = tmp_path / "x.sec"
    res = run_cli("protect", DICOM / "ct1.dcm", "-o", out, "--encrypt-to",
                  PKI / "recipient-2048.pem", *flags)
    assert_one_line_error(res, 2, needle, "ct1.dcm")
    assert_nothing_at(out)


@pytest.mark.parametrize("args,needle", [
    (["--encrypt-to", PKI / "recipient-1024.pem"], "RSA-1024"),
    (["--encrypt-to", PKI / "recipient-2048.pem", "--sign-key", PKI / "signer-rsa1024.key.pem",
      "--sign-cert", PKI / "signer-rsa1024.pem"], "RSA-1024"),
])
def test_small_rsa_refused_on_write(tmp_path, args, needle):
    out = tmp_path / "x.sec"
    res = run_cli("protect", DICOM / "ct1.dcm", "-o", out, *args)
    assert_one_line_error(res, 2, needle, "--allow-legacy")
    assert_nothing_at(out)


def test_protect_refuses_non_dicom_and_already_secure(tmp_path):
    txt = write(tmp_path, "notes.txt", b"hello")
    res = run_cli("protect", txt, "-o", tmp_path / "o", "--encrypt-to",
                  PKI / "recipient-2048.pem")
    assert_one_line_error(res, 2, "notes.txt", "not a DICOM Part 10 file")
    sec = protect_cli(tmp_path)
    res = run_cli("protect", sec, "-o", tmp_path / "o2", "--encrypt-to",
                  PKI / "recipient-2048.pem")
    assert_one_line_error(res, 2, "already a Secure DICOM File")
    assert_nothing_at(tmp_path / "o2")


def test_protect_needs_a_recipient(tmp_path):
    res = run_cli("protect", DICOM / "ct1.dcm", "-o", tmp_path / "o")
    assert_one_line_error(res, 2, "no recipient")


def test_unprotect_not_cms(tmp_path):
    txt = write(tmp_path, "junk.bin", b"\x30\x03\x02\x01\x00" + b"x" * 200)
    out = tmp_path / "p.dcm"
    res = run_cli("unprotect", txt, "-o", out, *R2048)
    assert_one_line_error(res, 2, "junk.bin", "not a Secure DICOM File")
    assert_nothing_at(out)
    res = run_cli("unprotect", DICOM / "ct1.dcm", "-o", out, *R2048)
    assert_one_line_error(res, 2, "ct1.dcm", "not a Secure DICOM File")


@pytest.mark.parametrize("framing", ["ber", "der"])
@pytest.mark.parametrize("where", [0.02, 0.3, 0.5, 0.97, -1])
def test_unprotect_truncated(tmp_path, framing, where):
    sec = protect_cli(tmp_path, *SIGN, "--framing", framing)
    blob = sec.read_bytes()
    cut = len(blob) - 1 if where == -1 else int(len(blob) * where)
    bad = write(tmp_path, "cut.sec", blob[:cut])
    out = tmp_path / "p.dcm"
    res = run_cli("unprotect", bad, "-o", out, *R2048)
    # damaged input is exit 1; a cut inside the first bytes leaves no recognisable CMS: 2
    assert_one_line_error(res, 1 if cut >= 40 else 2, "cut.sec")
    assert_nothing_at(out)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "digested"])
@pytest.mark.parametrize("where", [0.45, 0.6, 0.8])
def test_unprotect_tampered_ciphertext(tmp_path, signed, where):
    sec = protect_cli(tmp_path, *(SIGN if signed else []))
    blob = bytearray(sec.read_bytes())
    blob[int(len(blob) * where)] ^= 0x01
    bad = write(tmp_path, "tampered.sec", bytes(blob))
    out = tmp_path / "p.dcm"
    res = run_cli("unprotect", bad, "-o", out, *R2048)
    assert_one_line_error(res, 1, "tampered.sec")
    assert_nothing_at(out)


def _reseal(blob: bytes, producer, cek: bytes, iv: bytes, mutate) -> bytes:
    """Decrypt the (DER-framed) ciphertext with the known key, mutate the plaintext, re-encrypt."""
    n = len(producer.outer.prefix)
    dec = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    padded = dec.update(blob[n:]) + dec.finalize()
    unpad = sympad.PKCS7(128).unpadder()
    plain = bytearray(unpad.update(padded) + unpad.finalize())
    mutate(plain)
    pad = sympad.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    return blob[:n] + enc.update(pad.update(bytes(plain)) + pad.finalize()) + enc.finalize()


def _known_key_file():
    """A DER-framed signed file whose content key and IV we chose (injected randomness)."""
    stream = iter([b"K" * 32, b"I" * 16])
    return protect_bytes(SAMPLE, recipients=[ktri()], signers=[signer()], framing="der",
                         rng=lambda n: next(stream))


def _flip_signature(plain: bytearray):
    plain[-1] ^= 0x01  # the last byte of SignedData is the last signature byte


def _change_signing_time(plain: bytearray):
    i = plain.rfind(b"\x17\x0d")  # the UTCTime of signingTime, inside signedAttrs
    assert i > 0
    plain[i + 2 + 11] = ord("0") if plain[i + 2 + 11] != ord("0") else ord("1")  # seconds


@pytest.mark.parametrize("mutate", [_flip_signature, _change_signing_time],
                         ids=["signature", "signed-attribute"])
def test_unprotect_tampered_signature_layer(tmp_path, mutate):
    blob, producer = _known_key_file()
    bad = write(tmp_path, "resealed.sec", _reseal(blob, producer, b"K" * 32, b"I" * 16, mutate))
    out = tmp_path / "p.dcm"
    res = run_cli("unprotect", bad, "-o", out, *R2048)
    assert_one_line_error(res, 1, "resealed.sec", "signature does not verify")
    assert_nothing_at(out)


def test_unprotect_wrong_key_is_no_recipient(tmp_path):
    sec = protect_cli(tmp_path)
    out = tmp_path / "p.dcm"
    for extra in (["--key", PKI / "recipient-3072.key.pem", "--cert", PKI / "recipient-3072.pem"],
                  ["--key", PKI / "recipient-3072.key.pem"]):
        res = run_cli("unprotect", sec, "-o", out, *extra)
        assert_one_line_error(res, 2, "out.sec", "none of the file's recipients matches")
        assert_nothing_at(out)


def test_unprotect_wrong_password(tmp_path):
    out = tmp_path / "pw.sec"
    assert run_cli("protect", DICOM / "ct1.dcm", "-o", out, "--password-env", "MS_PW",
                   "--pbkdf2-iterations", "100000", env=env_password()).code == 0
    res = run_cli("unprotect", out, "-o", tmp_path / "p.dcm", "--password-env", "MS_PW",
                  env={"MS_PW": "not the password"})
    assert_one_line_error(res, 2, "pw.sec", "wrong password")
    assert_nothing_at(tmp_path / "p.dcm")


@pytest.mark.parametrize("name,code", [
    ("signer-untrusted", "does not chain to a trust anchor"),
    ("signer-expired", "expired"),
    ("signer-notyet", "not valid before"),
    ("signer-wrong-ku", "key usage"),
])
def test_unprotect_bad_signer(tmp_path, name, code):
    chain = PKI / ("rogue-ca.pem" if name == "signer-untrusted" else "chain.pem")
    sec = protect_cli(tmp_path, "--sign-key", PKI / f"{name}.key.pem", "--sign-cert",
                      PKI / f"{name}.pem", "--sign-chain", chain)
    out = tmp_path / "p.dcm"
    res = run_cli("unprotect", sec, "-o", out, *R2048, *TRUST)
    assert_one_line_error(res, 1, "out.sec", code)
    assert_nothing_at(out)


def test_no_plaintext_on_disk_when_unprotect_fails_midway(tmp_path):
    """A 6 MiB file damaged near its end: several MiB were decrypted before the failure."""
    big = tmp_path / "big.dcm"
    big.write_bytes(SAMPLE + os.urandom(6 << 20))
    sec = protect_cli(tmp_path, *SIGN, src=big, name="big.sec")
    blob = bytearray(sec.read_bytes())
    blob[-2000] ^= 0xFF
    bad = write(tmp_path, "bad.sec", bytes(blob))
    target = tmp_path / "target"
    tmp = tmp_path / "tmp"
    target.mkdir()
    tmp.mkdir()
    res = run_cli("unprotect", bad, "-o", target / "p.dcm", *R2048,
                  env={"TMPDIR": str(tmp)})
    assert_one_line_error(res, 1, "bad.sec")
    assert list(target.iterdir()) == [] and list(tmp.iterdir()) == []


@pytest.mark.parametrize("case", ["missing-input", "missing-key", "bad-key", "unset-env",
                                  "no-output-dir", "no-tty"])
def test_unprotect_usage_errors(tmp_path, case):
    sec = protect_cli(tmp_path)
    out = tmp_path / "p.dcm"
    args = ["unprotect", sec, "-o", out, *R2048]
    needle = None
    if case == "missing-input":
        args[1] = tmp_path / "nope.sec"
        needle = "nope.sec"
    elif case == "missing-key":
        args[5] = tmp_path / "nokey.pem"
        needle = "nokey.pem"
    elif case == "bad-key":
        args[5] = write(tmp_path, "bad.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
        needle = "bad.pem"
    elif case == "unset-env":
        args = ["unprotect", sec, "-o", out, "--password-env", "MS_UNSET_VAR"]
        needle = "MS_UNSET_VAR"
    elif case == "no-output-dir":
        args[3] = tmp_path / "nodir" / "p.dcm"
        out = args[3]
        needle = "does not exist"
    elif case == "no-tty":
        args = ["unprotect", sec, "-o", out, "--password-prompt"]
        needle = "not a terminal"
    res = run_cli(*args)
    assert_one_line_error(res, 2, needle)
    assert not out.exists()


def test_encrypted_key_needs_passphrase(tmp_path):
    sec = protect_cli(tmp_path)
    out = tmp_path / "p.dcm"
    enc_key = ["--key", PKI / "recipient-2048.enc.key.pem", "--cert", PKI / "recipient-2048.pem"]
    res = run_cli("unprotect", sec, "-o", out, *enc_key)
    assert_one_line_error(res, 2, "recipient-2048.enc.key.pem", "encrypted")
    res = run_cli("unprotect", sec, "-o", out, *enc_key, "--key-password-env", "KP",
                  env={"KP": "fixture-pass"})
    assert res.code == 0, res
    assert out.read_bytes() == SAMPLE
