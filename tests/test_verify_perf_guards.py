"""Guards for the per-medium caches of the reading path (verify speed, issue 6).

Every file of a disc carries the same signer chain, SignerInfos that differ only in the
messageDigest and signature, and RecipientInfos that differ only in the encrypted key; the
readers remember what is the same (parses, signer plans, chain validations) and must still
judge what differs on every file - and fall back to the full parse for anything else.
"""

from __future__ import annotations

import datetime as _dt
import hashlib

import pytest
from asn1crypto import cms as acms

from mediasec.cms import keys as ckeys
from mediasec.cms import recipients as crecip
from mediasec.cms import oids
from mediasec.cms import signed as csigned
from mediasec.cms._ber import ByteStream
from mediasec.cms.signed import InnerLayout, read_inner
from mediasec.errors import IntegrityError, MalformedError, SignatureError
from mediasec.pki import trust as ptrust
from mediasec.pki.trust import check_signer_certificate

from _cms import SAMPLE, cert, ktri, open_bytes, protect_bytes, signer, trust

T0 = _dt.datetime(2026, 6, 1, 12, 0, tzinfo=_dt.timezone.utc)


def _clear():
    for memo in (csigned._PLANS, csigned._VALID_SHAPES, csigned._PARSED_OK,
                 csigned._CERT_SETS, crecip._RIS_SHAPES, crecip._KTRI_DESCRIPTIONS):
        memo.clear()
    ptrust._RESULTS.clear()


def _inner(content: bytes, *, signing_time=T0, signers=None) -> bytes:
    lay = InnerLayout.signed(len(content), signers or [signer()], signing_time=signing_time)
    return lay.head + content + lay.tail(hashlib.sha256(content).digest())


def _read(blob: bytes):
    return read_inner(ByteStream([blob]), oids.SIGNED_DATA)


def _summary(res):
    return [(s.subject, s.digest, s.signature_algorithm, s.signing_time, s.key_bits, s.intact,
             s.valid, type(s.error).__name__, getattr(s.error, "code", None),
             getattr(s.error, "message", None), s.findings) for s in res.signers]


def _sig_offset(blob: bytes) -> int:
    """Offset of the (single) signer's signature value in an inner layer."""
    holes = csigned._signer_holes(_signer_infos(blob)[0])
    return _signer_infos(blob)[1] + holes[0][1][0]


def _md_offset(blob: bytes) -> int:
    holes = csigned._signer_holes(_signer_infos(blob)[0])
    return _signer_infos(blob)[1] + holes[0][0][0]


def _signer_infos(blob: bytes) -> tuple[bytes, int]:
    """The encoded SignerInfos (the last element of the DER SignedData) and its offset."""
    # DER SignedData: SEQUENCE { ..., SignerInfos SET } - SignerInfos is the last child
    from mediasec.cms._ber import read_element, read_header
    s = ByteStream([blob])
    read_header(s)
    last = None
    while not s.at_end():
        off = s.pos
        last = (read_element(s), off)
    return last


def test_tampered_signature_fails_after_the_plan_is_cached():
    _clear()
    a, b = _inner(SAMPLE), _inner(SAMPLE[:-1] + b"x")
    assert all(s.valid for s in _read(a).signers)
    assert all(s.valid for s in _read(b).signers)          # same shape: the cached plan
    assert csigned._PLANS._d
    off = _sig_offset(b)
    bad = bytearray(b)
    bad[off + 10] ^= 1
    res = _read(bytes(bad))
    (s,) = res.signers
    assert s.intact and not s.valid and s.error.code == "SIG_INVALID"


def test_tampered_message_digest_fails_after_the_plan_is_cached():
    _clear()
    a = _inner(SAMPLE)
    _read(a)
    bad = bytearray(a)
    bad[_md_offset(a)] ^= 1
    (s,) = _read(bytes(bad)).signers
    assert not s.intact and isinstance(s.error, IntegrityError)
    assert "messageDigest" in s.error.message


@pytest.mark.parametrize("mutate", ["signature", "digest", "none"])
def test_fast_path_results_equal_the_full_parse(mutate):
    blob = bytearray(_inner(SAMPLE))
    if mutate == "signature":
        blob[_sig_offset(bytes(blob)) + 3] ^= 0x40
    elif mutate == "digest":
        blob[_md_offset(bytes(blob)) + 5] ^= 0x40
    blob = bytes(blob)
    _clear()
    cold = _summary(_read(blob))
    warm1 = _summary(_read(_inner(SAMPLE)))    # caches a plan for this shape
    warm = _summary(_read(blob))
    assert warm == cold
    assert warm1[0][5:7] == (True, True)
    assert len(csigned._PLANS._d) == 1        # one shape: the warm reads used the plan


def test_each_signing_time_is_reported_and_validated_at_its_own_time():
    _clear()
    t1, t2 = T0, T0 + _dt.timedelta(days=1)
    r1, r2 = _read(_inner(SAMPLE, signing_time=t1)), _read(_inner(SAMPLE, signing_time=t2))
    assert r1.signers[0].signing_time == t1 and r2.signers[0].signing_time == t2
    assert r1.signers[0].valid and r2.signers[0].valid


def test_damaged_signer_infos_after_a_cached_shape_are_malformed():
    _clear()
    good = _inner(SAMPLE)
    _read(good)
    raw, off = _signer_infos(good)
    # the SignerInfo's version INTEGER becomes an OCTET STRING: not a SignerInfo any more
    si = csigned._tlv(raw, 0, len(raw))
    first = csigned._tlv(raw, si[1], si[2])      # the SignerInfo SEQUENCE
    version_at = off + first[1]
    bad = bytearray(good)
    assert bad[version_at] == 0x02
    bad[version_at] = 0x04
    with pytest.raises(MalformedError):
        _read(bytes(bad))


def test_chain_results_are_keyed_on_the_exact_time():
    _clear()
    c = cert("signer")
    from mediasec.pki.certs import load_certificates
    from conftest import PKI
    chain = tuple(load_certificates((PKI / "chain.pem").read_bytes()))
    tc = trust()
    ok = check_signer_certificate(c, carried=chain, trust=tc, signing_time=T0)
    late = c.not_valid_after_utc + _dt.timedelta(days=1)
    early = c.not_valid_before_utc - _dt.timedelta(days=1)
    with pytest.raises(SignatureError) as e1:
        check_signer_certificate(c, carried=chain, trust=tc, signing_time=late)
    assert e1.value.code == "SIG_CERT_EXPIRED"
    with pytest.raises(SignatureError) as e2:
        check_signer_certificate(c, carried=chain, trust=tc, signing_time=early)
    assert e2.value.code == "SIG_CERT_NOT_YET_VALID"
    again = check_signer_certificate(c, carried=chain, trust=tc, signing_time=T0)
    assert again == ok and again is not ok
    # a cached failure is raised afresh, with the same code and message
    with pytest.raises(SignatureError) as e3:
        check_signer_certificate(c, carried=chain, trust=tc, signing_time=late)
    assert (e3.value.code, e3.value.message) == (e1.value.code, e1.value.message)
    # another trust context (no matching anchor) is not served from the cache
    from mediasec.policy import TrustContext
    rogue = TrustContext(anchors=tuple(load_certificates((PKI / "rogue-ca.pem").read_bytes())))
    with pytest.raises(SignatureError) as e4:
        check_signer_certificate(c, carried=chain, trust=rogue, signing_time=T0)
    assert e4.value.code == "SIG_CHAIN_UNTRUSTED"


def test_recipient_infos_check_is_remembered_only_for_the_same_shape():
    _clear()
    blob1, _ = protect_bytes(SAMPLE, recipients=[ktri()], signers=[signer()])
    blob2, _ = protect_bytes(SAMPLE, recipients=[ktri()], signers=[signer()])
    from mediasec.cms.envelope import read_enveloped_head
    raws = [read_enveloped_head(ByteStream([b])).recipient_infos.dump() for b in (blob1, blob2)]
    assert raws[0] != raws[1]
    for raw in raws:
        ris = ckeys.load_recipient_infos(raw)
        assert ris.native == acms.RecipientInfos.load(raw).native
    assert len(crecip._RIS_SHAPES._d) == 1
    # damage outside the encrypted key is still found
    bad = bytearray(raws[0])
    holes = crecip._ktri_key_holes(raws[0])
    assert holes and len(holes) == 1
    # the rid's serial INTEGER (inside issuerAndSerialNumber) becomes a BOOLEAN
    i = bytes(bad).find(b"\x02\x01\x00") + 3      # after the version
    assert bad[i] == 0x30                           # issuerAndSerialNumber SEQUENCE
    bad[i] = 0x01
    with pytest.raises((ValueError, TypeError)):
        ckeys.load_recipient_infos(bytes(bad))


def test_whole_files_still_open_identically_with_warm_caches():
    _clear()
    blob, _ = protect_bytes(SAMPLE, recipients=[ktri()], signers=[signer()])
    first = open_bytes(blob, trust_ctx=trust())
    second = open_bytes(blob, trust_ctx=trust())
    assert first[0] == second[0] == SAMPLE
    assert first[1].to_dict() == second[1].to_dict()
    assert [f.code for f in second[1].findings] == [f.code for f in first[1].findings]
    assert "SIG_OK" in [f.code for f in second[1].findings]
