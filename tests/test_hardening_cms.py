"""Regression tests for the CMS defects of issue 11: each hostile envelope gets a clean,
documented error (a MediasecError of the right class), never a stray ValueError (exit 4)
and never a wrong answer."""

from __future__ import annotations

import random

import pytest

from mediasec.cli.exits import exit_code_for
from mediasec.cms.oids import SIGNED_DATA
from mediasec.errors import InputError, MalformedError, MediasecError, VerificationError

from _cms import SAMPLE, open_bytes, protect_bytes, pwri, signer, ktri

SIGNED_OID = bytes.fromhex("06092a864886f70d010702")
DIGESTED_OID = bytes.fromhex("06092a864886f70d010705")


def _expect(blob, exc_type, code=None):
    with pytest.raises(MediasecError) as ei:
        open_bytes(blob)
    assert isinstance(ei.value, exc_type), (type(ei.value), ei.value)
    if code is not None:
        assert ei.value.code == code, ei.value.code
    return ei.value


def test_declared_digested_but_holding_signed_is_a_clean_failure():
    blob, _ = protect_bytes(SAMPLE, recipients=[ktri()], signers=[signer()])
    pos = blob.find(SIGNED_OID)
    assert pos > 0
    bad = blob[:pos] + DIGESTED_OID + blob[pos + len(DIGESTED_OID):]
    exc = _expect(bad, VerificationError)
    assert exit_code_for(exc) == 1


@pytest.mark.parametrize("iters", [b"\x00\x00\x00", b"\xff\xff\xff", b"\x80\x00\x00"])
def test_password_iteration_count_zero_or_negative_is_refused(iters):
    blob, _ = protect_bytes(SAMPLE, recipients=[pwri()], signers=[signer()])
    needle = b"\x02\x03\x01\x86\xa0"  # INTEGER 100000
    pos = blob.find(needle)
    assert pos > 0
    bad = blob[:pos] + b"\x02\x03" + iters + blob[pos + 5:]
    exc = _expect(bad, MalformedError)
    assert exit_code_for(exc) == 1


def test_enveloped_version_99_is_refused():
    blob, _ = protect_bytes(SAMPLE, recipients=[ktri()], signers=[signer()], framing="der")
    # ContentInfo SEQ, OID, [0], EnvelopedData SEQ, then INTEGER version
    from mediasec.cms._ber import ByteStream, read_header
    from mediasec.cms.envelope import read_enveloped_head
    head = read_enveloped_head(ByteStream(iter([blob]), what="t"))
    ver_pos = head.env_header.offset + len(head.env_header.raw)
    assert blob[ver_pos:ver_pos + 2] == b"\x02\x01"
    bad = blob[:ver_pos + 2] + b"\x63" + blob[ver_pos + 3:]
    _expect(bad, MalformedError, "CMS_VERSION")


def test_unknown_cipher_oid_is_unsupported_exit_2():
    blob, _ = protect_bytes(SAMPLE, recipients=[ktri()], signers=[signer()], cipher="aes-256")
    needle = bytes.fromhex("060960864801650304012a")  # aes256-CBC
    pos = blob.find(needle)
    assert pos > 0
    bad = blob[:pos + 10] + b"\x7f" + blob[pos + 11:]
    exc = _expect(bad, InputError, "CMS_ALG_UNSUPPORTED")
    assert exit_code_for(exc) == 2


def test_der_framed_file_of_16_mib_or_more_is_read():
    data = SAMPLE + b"\x00" * ((16 << 20) + 100 - len(SAMPLE))
    blob, _ = protect_bytes(data, recipients=[ktri()], signers=[signer()], framing="der")
    assert blob[1] == 0x84
    got, rep = open_bytes(blob, piece=1 << 20)
    assert got == data
    assert not rep.failures()


def test_single_byte_corruptions_of_signed_data_are_clean():
    """Flip bytes of the plaintext SignedData (re-encrypted), the whole reader path."""
    from mediasec.cms._ber import ByteStream
    from mediasec.cms.signed import read_inner
    blob, p = protect_bytes(SAMPLE[:2000], recipients=[ktri()], signers=[signer()],
                            framing="der")
    got = bytearray()
    inner_plain = _inner_plaintext(blob)
    rng = random.Random(11)
    bad_types = []
    for _ in range(3000):
        data = bytearray(inner_plain)
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
        try:
            read_inner(ByteStream(iter([bytes(data)]), what="t"), SIGNED_DATA)
        except MediasecError:
            pass
        except Exception as exc:  # noqa: BLE001 - what we are looking for
            bad_types.append((i, repr(exc)))
    assert bad_types == []


def _inner_plaintext(blob):
    from mediasec.cms._ber import ByteStream
    from mediasec.cms.envelope import decrypt_chunks, read_enveloped_head
    from _cms import key, cert
    from mediasec.cms.keys import KeyDecrypter
    s = ByteStream(iter([blob]), what="t")
    head = read_enveloped_head(s)
    cek = KeyDecrypter(key("recipient-2048"), cert("recipient-2048")).unwrap(
        head.recipient_infos, 32 if head.cipher == "aes-256" else 16).cek
    return b"".join(bytes(m) for m in decrypt_chunks(s, head, cek))
