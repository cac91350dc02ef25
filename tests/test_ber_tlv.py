"""``cms._ber.definite_at``: the one in-memory TLV walker (SignerInfos and RecipientInfos
fast paths locate bytes with it), against asn1crypto's own parse."""

from __future__ import annotations

from asn1crypto import core
from hypothesis import given, settings, strategies as stt

from mediasec.cms._ber import definite_at


@settings(derandomize=True, max_examples=200)
@given(stt.binary(max_size=300), stt.binary(max_size=8))
def test_agrees_with_asn1crypto(content, trailer):
    der = core.OctetString(content).dump()
    buf = der + trailer
    tag, start, end = definite_at(buf, 0, len(buf))
    assert (tag, buf[start:end]) == (0x04, content) and end == len(der)
    # content past the end given: None, never a range outside the buffer
    assert definite_at(buf, 0, len(der) - 1) is None


def test_what_it_refuses():
    assert definite_at(b"\x30\x80\x00\x00", 0, 4) is None          # indefinite length
    assert definite_at(b"\x1f\x81\x01\x00", 0, 4) is None          # high tag number
    assert definite_at(b"\x04\x85\x01\x00\x00\x00\x00", 0, 7) is None   # 5 length octets
    assert definite_at(b"\x04", 0, 1) is None
    seq = core.Sequence.load(bytes.fromhex("3006020101020102")).dump()
    assert definite_at(seq, 2, len(seq)) == (0x02, 4, 5)           # a nested element
