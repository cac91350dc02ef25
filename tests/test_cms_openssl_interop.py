"""Interop with `openssl cms`, both ways: it opens what we write, we open what it writes."""

from __future__ import annotations

import pytest

from mediasec.cms.keys import KeyDecrypter, PasswordDecrypter
from mediasec.policy import AlgorithmPolicy

from _cms import (PASSWORD, PKI, SAMPLE, cert, key, ktri, open_bytes, openssl, protect_bytes,
                  pwri, signer, trust, wrap_content_info, write)

LEGACY = AlgorithmPolicy(allow_legacy=True)
# a payload that spans several BER pieces and is not block aligned
PAYLOAD = SAMPLE + bytes(range(256)) * 301


def _openssl_open(tmp_path, blob, kind, *, recip=None, password=None):
    """Decrypt with openssl, then verify the inner layer; returns the content openssl saw."""
    f = write(tmp_path, "file.p7m", blob)
    inner = tmp_path / "inner.der"
    args = ["cms", "-decrypt", "-binary", "-inform", "DER", "-in", f, "-out", inner]
    if password is not None:
        args += ["-pwri_password", password]
    else:
        args += ["-recip", PKI / f"{recip}.pem", "-inkey", PKI / f"{recip}.key.pem"]
    openssl(*args)
    ci = write(tmp_path, "inner.ci", wrap_content_info(inner.read_bytes(), kind))
    out = tmp_path / "content.out"
    if kind == "signedData":
        openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", ci, "-CAfile",
                PKI / "trust.pem", "-purpose", "any", "-out", out)
    else:
        openssl("cms", "-digest_verify", "-binary", "-inform", "DER", "-in", ci, "-out", out)
    return out.read_bytes()


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("framing", ["ber", "der"])
@pytest.mark.parametrize("cipher", ["aes-128", "aes-192", "aes-256", "3des"])
@pytest.mark.parametrize("kind", ["signedData", "digestedData"])
def test_openssl_opens_every_cipher_and_framing(tmp_path, cipher, framing, kind):
    signers = [signer()] if kind == "signedData" else []
    blob, _ = protect_bytes(PAYLOAD, recipients=[ktri()], signers=signers, cipher=cipher,
                            framing=framing, chunk=4096, policy=LEGACY)
    assert _openssl_open(tmp_path, blob, kind, recip="recipient-2048") == PAYLOAD


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("variant", ["ski", "oaep", "pwri", "several"])
def test_openssl_opens_every_recipient_kind(tmp_path, variant):
    if variant == "ski":
        recips = [ktri(use_ski=True)]
    elif variant == "oaep":
        recips = [ktri(oaep=True)]
    elif variant == "pwri":
        recips = [pwri()]
    else:
        recips = [ktri("recipient-3072"), ktri("recipient-4096"), pwri(), ktri()]
    blob, _ = protect_bytes(PAYLOAD, recipients=recips, signers=[signer()])
    if variant in ("pwri", "several"):
        assert _openssl_open(tmp_path, blob, "signedData", password=PASSWORD.decode()) == PAYLOAD
    if variant != "pwri":
        names = (["recipient-3072", "recipient-4096", "recipient-2048"] if variant == "several"
                 else ["recipient-2048"])
        for name in names:
            assert _openssl_open(tmp_path, blob, "signedData", recip=name) == PAYLOAD


@pytest.mark.peer("openssl")
def test_openssl_inspects_our_structure(tmp_path):
    blob, _ = protect_bytes(SAMPLE, recipients=[ktri(), pwri()], signers=[signer()])
    f = write(tmp_path, "f.p7m", blob)
    printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", f).stdout.decode()
    assert "pkcs7-envelopedData" in printed
    assert "pkcs7-signedData" in printed  # the literal nesting: encrypted content type
    assert "aes-256-cbc" in printed
    assert "id-alg-PWRI-KEK" in printed


def _openssl_sign(tmp_path, stream: bool, *, digest_only=False, pss=False, md="sha256"):
    src = write(tmp_path, "in.dcm", PAYLOAD)
    signed = tmp_path / "signed.der"
    form = ["-stream"] if stream else []
    if digest_only:
        openssl("cms", "-digest_create", "-binary", "-md", md, "-outform", "DER", *form,
                "-in", src, "-out", signed)
    else:
        extra = ["-keyopt", "rsa_padding_mode:pss"] if pss else []
        openssl("cms", "-sign", "-binary", "-nodetach", "-md", md, "-outform", "DER", *form,
                "-signer", PKI / "signer.pem", "-inkey", PKI / "signer.key.pem",
                "-certfile", PKI / "chain.pem", *extra, "-in", src, "-out", signed)
    return signed


def _openssl_encrypt(tmp_path, inner, stream: bool, *, cipher="-aes256", password=None,
                     oaep=False):
    out = tmp_path / "enc.der"
    form = ["-stream"] if stream else []
    args = ["cms", "-encrypt", "-binary", cipher, "-inform", "DER", "-outform", "DER", *form,
            "-in", inner, "-out", out]
    if password:
        args += ["-pwri_password", password]
    else:
        args += ["-recip", PKI / "recipient-2048.pem"]
        if oaep:
            args += ["-keyopt", "rsa_padding_mode:oaep"]
    openssl(*args)
    return out.read_bytes()


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("stream", [True, False], ids=["ber-stream", "der"])
def test_we_open_openssl_sign_then_encrypt(tmp_path, stream):
    signed = _openssl_sign(tmp_path, stream)
    blob = _openssl_encrypt(tmp_path, signed, stream)
    if stream:
        assert blob[:2] == b"\x30\x80"
    content, rep = open_bytes(blob, trust_ctx=trust())
    assert content == PAYLOAD
    codes = {f.code: f.outcome.value for f in rep.findings}
    assert codes["CMS_INNER_WRAPPED"] == "warning"
    assert codes["SIG_OK"] == "passed"
    assert rep.inner.kind == "signedData" and rep.inner.wrapped
    assert rep.envelope["framing"] == ("ber" if stream else "der")


@pytest.mark.peer("openssl")
@pytest.mark.parametrize("stream", [True, False], ids=["ber-stream", "der"])
def test_we_open_openssl_digest_then_password(tmp_path, stream):
    digested = _openssl_sign(tmp_path, stream, digest_only=True)
    blob = _openssl_encrypt(tmp_path, digested, stream, password=PASSWORD.decode())
    content, rep = open_bytes(blob, decrypters=[PasswordDecrypter(PASSWORD)])
    assert content == PAYLOAD
    codes = {f.code: f.outcome.value for f in rep.findings}
    assert codes["INTEGRITY_DIGEST_OK"] == "passed"
    # OpenSSL's PWRI uses 2048 PBKDF2-SHA1 iterations: readable, reported as legacy
    assert codes["ALG_LEGACY"] == "warning"


@pytest.mark.peer("openssl")
def test_we_open_openssl_legacy_and_extensions(tmp_path):
    # (openssl 3.0 cannot -stream a PSS signature: "illegal zero content")
    signed = _openssl_sign(tmp_path, False, pss=True, md="sha1")
    blob = _openssl_encrypt(tmp_path, signed, True, cipher="-des3", oaep=True)
    content, rep = open_bytes(blob, trust_ctx=trust())
    assert content == PAYLOAD
    messages = [f.message for f in rep.findings if f.code == "ALG_LEGACY"]
    assert any("3DES" in m for m in messages) and any("SHA-1" in m for m in messages)
    assert "ALG_OAEP_EXTENSION" in {f.code for f in rep.findings}
    assert rep.signers[0]["signature_algorithm"] == "RSASSA-PSS"
    assert rep.signers[0]["valid"] is True


@pytest.mark.peer("openssl")
def test_wrong_key_for_openssl_file_is_no_recipient(tmp_path):
    from mediasec.errors import NoRecipientError
    signed = _openssl_sign(tmp_path, False)
    blob = _openssl_encrypt(tmp_path, signed, False)
    with pytest.raises(NoRecipientError):
        open_bytes(blob, decrypters=[KeyDecrypter(key("recipient-3072"),
                                                  cert("recipient-3072"))])
    with pytest.raises(NoRecipientError):  # no certificate: every ktri tried with the key
        open_bytes(blob, decrypters=[KeyDecrypter(key("recipient-3072"))])
