"""Properties of the CMS engine: exact sizes, any chunking, strict framing, pinned bytes."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from mediasec.cms._ber import ByteStream, iter_octets, octets_size, read_header
from mediasec.errors import MalformedError

from _cms import SAMPLE, ktri, open_bytes, protect_bytes, pwri, signer, trust

SETTINGS = settings(derandomize=True, max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
RECIPIENT = [ktri()]
SIGNER = signer()


@SETTINGS
@given(n=st.integers(0, 70_000), chunk=st.sampled_from([16, 4096, 65536]),
       framing=st.sampled_from(["ber", "der"]), signed=st.booleans(),
       cipher=st.sampled_from(["aes-128", "aes-256"]))
def test_planned_size_is_exact_and_round_trips(n, chunk, framing, signed, cipher):
    data = (SAMPLE * (n // len(SAMPLE) + 1))[:n]
    blob, producer = protect_bytes(data, recipients=RECIPIENT,
                                   signers=[SIGNER] if signed else [], framing=framing,
                                   chunk=chunk, cipher=cipher)
    assert producer.size == len(blob)   # checked inside protect_bytes too
    got, rep = open_bytes(blob)
    assert got == data


@SETTINGS
@given(cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=40))
def test_reader_accepts_any_chunk_boundaries(cuts):
    blob, _ = protect_bytes(SAMPLE, recipients=RECIPIENT, signers=[SIGNER], chunk=512)
    pieces, i, k = [], 0, 0
    while i < len(blob):
        step = cuts[k % len(cuts)]
        pieces.append(blob[i:i + step])
        i += step
        k += 1
    from mediasec.cms.secure import open_secure_file
    from _cms import KeyDecrypter, cert, key
    got = bytearray()
    open_secure_file(iter(pieces), decrypters=[KeyDecrypter(key("recipient-2048"),
                                                            cert("recipient-2048"))],
                     sink=got.extend)
    assert bytes(got) == SAMPLE


def test_reader_byte_by_byte():
    blob, _ = protect_bytes(SAMPLE[:700], recipients=[pwri()], chunk=64)
    got, _ = open_bytes(blob, piece=1)
    assert got == SAMPLE[:700]


@pytest.mark.parametrize("framing", ["ber", "der"])
def test_trailing_garbage_is_refused(framing):
    blob, _ = protect_bytes(SAMPLE, recipients=RECIPIENT, framing=framing)
    with pytest.raises(MalformedError) as e:
        open_bytes(blob + b"\x00\x00junk")
    assert e.value.code == "CMS_TRAILING_DATA"


@SETTINGS
@given(n=st.integers(0, 20_000), chunk=st.sampled_from([1, 7, 100, 4096]))
def test_octets_framing_size_and_parse(n, chunk):
    from mediasec.cms._ber import der_len
    data = bytes(i % 251 for i in range(n))
    enc = b"\x24\x80"
    for i in range(0, n, chunk):
        piece = data[i:i + chunk]
        enc += b"\x04" + der_len(len(piece)) + piece
    enc += b"\x00\x00"
    assert len(enc) == octets_size(n, chunk=chunk)
    s = ByteStream(iter([enc]))
    assert b"".join(bytes(m) for m in iter_octets(s, read_header(s))) == data


def test_signed_layout_is_pinned():
    """With time and randomness pinned, the whole file is byte-for-byte reproducible."""
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)

    def make():
        stream = iter([b"K" * 32, b"I" * 16])
        return protect_bytes(SAMPLE, recipients=RECIPIENT, signers=[SIGNER], framing="der",
                             signing_time=when, rng=lambda n: next(stream))[0]

    a, b = make(), make()
    # RSA PKCS#1 v1.5 encryption of the CEK is randomized; everything after it is not
    ri_end = a.index(bytes.fromhex("06092a864886f70d010702"))
    assert a[ri_end:] == b[ri_end:]
    got, rep = open_bytes(a, trust_ctx=trust())
    assert got == SAMPLE
    assert rep.signers[0]["signing_time"].startswith("2026-01-02T03:04:05")
    from asn1crypto import cms
    ci = cms.ContentInfo.load(a)
    assert ci["content_type"].native == "enveloped_data"
    env = ci["content"]
    assert env["version"].native == "v0"
    eci = env["encrypted_content_info"]
    assert eci["content_type"].native == "signed_data"
    assert eci["content_encryption_algorithm"]["algorithm"].native == "aes256_cbc"
    assert eci["content_encryption_algorithm"]["parameters"].native == b"I" * 16
    ktri_info = env["recipient_infos"][0].chosen
    assert ktri_info["key_encryption_algorithm"]["algorithm"].native == "rsaes_pkcs1v15"
    assert ktri_info["rid"].name == "issuer_and_serial_number"
