"""verify's streaming dataset-signature probe (``mediasec.media.dsig_check``): it keeps the
element headers and the small values only, hashes the large ones as they pass, and falls
back (a second read, or "not checked" with the reason) when that single pass cannot
answer - never a wrong "valid"."""

from __future__ import annotations

import pytest

from _dicomgen import BE, ELE, ILE, JPEG, write_instance
from _sign import element_offset, flip, nested_ct, trust
from mediasec.media.dsig_check import DatasetSignatureProbe, signature_findings
from mediasec.sign import SignRequest
from test_sign import signed_bytes


def _run(data: bytes, *, limit=None, piece=65_536, reread=True, buffer=0):
    calls = []

    def again():
        calls.append(1)
        return data

    kw = {"reread": again} if reread else {}
    kw["buffer"] = buffer
    p = DatasetSignatureProbe(**kw) if limit is None else DatasetSignatureProbe(limit, **kw)
    mv = memoryview(data)
    for i in range(0, len(data), piece):
        p.feed(mv[i:i + piece])
    return p, [(f.code, f.outcome.value) for f in p.findings(trust())], len(calls)


def _pixel_byte(data: bytes) -> int:
    """The offset of a byte in the middle of the pixel data (of its last fragment)."""
    from mediasec.sign import open_part10
    el = open_part10(data).dataset.get(0x7FE00010)
    off, n = el.frags[-1] if el.frags else (el.val, el.length)
    return off + n // 2


def _codes(data: bytes):
    return [(f.code, f.outcome.value) for f in signature_findings(data, trust())]


def test_large_signed_object_is_checked_without_a_copy(tmp_path):
    """A signed CT whose pixel data is far above what the probe keeps is verified in one
    pass (no second read), keeping a few KiB; one byte changed in the pixel data, or in a
    header element, is a MAC mismatch through the same single pass."""
    data = signed_bytes(write_instance(tmp_path / "ct.dcm", rows=256, cols=256))
    p, codes, rereads = _run(data, limit=4096)
    assert ("SIG_VALID", "info") in codes and rereads == 0
    assert p._stream._src.dropped >= 256 * 256 * 2 and len(p._stream._src.kept) < 16_384
    off, n = element_offset(data, 0x7FE00010)
    for bad in (flip(data, off + n // 2), flip(data, element_offset(data, 0x00100010)[0])):
        _p, codes, rereads = _run(bad, limit=4096)
        assert ("SIG_MAC_MISMATCH", "failed") in codes and rereads == 0, codes
        assert not any(c == "SIG_VALID" for c, _o in codes)


def test_object_above_the_old_64_mib_limit(tmp_path):
    """The old probe kept a plaintext copy of up to 64 MiB and reported larger signed
    objects as not checked; now a 65 MiB one is verified (and its tampered copy fails)."""
    small = write_instance(tmp_path / "ct.dcm", rows=16, cols=16).read_bytes()
    off, n = element_offset(small, 0x7FE00010)
    big = (65 << 20) + 2                     # pixel data bytes (Rows/Columns do not matter)
    unsigned = small[:off - 4] + big.to_bytes(4, "little") + bytes(big) + small[off + n:]
    data = signed_bytes(unsigned)
    assert len(data) > 64 << 20
    p, codes, rereads = _run(data, piece=1 << 20, reread=False)
    assert ("SIG_VALID", "info") in codes and rereads == 0
    assert len(p._stream._src.kept) < 65_536
    off, n = element_offset(data, 0x7FE00010)
    _p, codes, _r = _run(flip(data, off + n - 3), piece=1 << 20, reread=False)
    assert ("SIG_MAC_MISMATCH", "failed") in codes


@pytest.mark.parametrize("ts", [ELE, ILE, BE, JPEG])
@pytest.mark.parametrize("limit", [16, 64, 4096, None])
def test_probe_judges_as_the_full_check_does(tmp_path, ts, limit):
    """Every transfer syntax, tiny to default limits, odd chunk sizes, top-level and nested
    signatures, a second signature, SHA-512, a partial tag list: the probe's findings are
    the full checker's, whether from the single pass or through the fallback read."""
    p = nested_ct(tmp_path / "in.dcm", ts=ts, rows=32, cols=32)
    top = signed_bytes(p)
    cases = [top,
             signed_bytes(p, SignRequest(item_path="OtherPatientIDsSequence[0]")),
             signed_bytes(top, SignRequest(mac="SHA512")),
             signed_bytes(p, SignRequest(tags=(0x00080018, 0x00100010, 0x7FE00010))),
             flip(top, _pixel_byte(top))]
    damaged = flip(top, element_offset(top, 0x7FE00010)[0] + 7)   # JPEG: the BOT's length
    for data in [*cases, damaged]:
        want = _codes(data)
        for piece in (1_009, 65_536):
            _p, got, rereads = _run(data, limit=limit, piece=piece)
            assert got == want, (piece, got, want)
            if (limit is None or limit >= 64) and data is not damaged:
                assert rereads == 0                # big endian pixel data included


def test_fallbacks_are_honest(tmp_path):
    """What the single pass cannot answer - a signature inside an item over a value it did
    not keep, a non-SHA-256 MAC or a partial list after a large value before the MAC
    Parameters - is read again when the caller can, else reported as not checked with the
    reason; never valid, never a failure that did not happen."""
    p = nested_ct(tmp_path / "in.dcm", rows=32, cols=32)
    nested = signed_bytes(p, SignRequest(item_path="OtherPatientIDsSequence[0]"))
    # limit 4: the item's values are not kept
    _p, codes, rereads = _run(nested, limit=4)
    assert ("SIG_VALID", "info") in codes and rereads == 1
    _p, codes, _r = _run(nested, limit=4, reread=False)
    assert [c for c, _o in codes] == ["SIG_NOT_CHECKED"] and "not keep" in \
        _p.findings(trust())[0].message
    tampered = flip(nested, element_offset(nested, 0x00100020,
                                           "OtherPatientIDsSequence[0]")[0])
    _p, codes, rereads = _run(tampered, limit=4)
    assert ("SIG_MAC_MISMATCH", "failed") in codes and rereads == 1
    # a value longer than the limit (the UIDs) passes before (4FFE,0001): a SHA-256
    # signature over everything takes the speculative stream, the others fall back
    plain = signed_bytes(p)
    _p, codes, rereads = _run(plain, limit=40)
    assert ("SIG_VALID", "info") in codes and rereads == 0
    for other in (signed_bytes(p, SignRequest(mac="SHA384")),
                  signed_bytes(p, SignRequest(tags=(0x00080018, 0x7FE00010)))):
        _p, codes, rereads = _run(other, limit=40)
        assert ("SIG_VALID", "info") in codes and rereads == 1
        _p, codes, _r = _run(other, limit=40, reread=False)
        assert [c for c, _o in codes] == ["SIG_NOT_CHECKED"]


def test_damaged_and_unsigned_objects(tmp_path):
    """An unsigned object gives no finding and hashes nothing; a truncated signed one is not
    checked (with the reason), and without a fallback read it never passes."""
    unsigned = write_instance(tmp_path / "u.dcm", rows=64, cols=64).read_bytes()
    p, codes, _r = _run(unsigned, limit=1024)
    assert codes == [] and not p.seen and not p._stream._lanes
    data = signed_bytes(nested_ct(tmp_path / "in.dcm", rows=32, cols=32))
    p, codes, rereads = _run(data[:-3], limit=1024, reread=False)
    assert p.seen and [c for c, _o in codes] == ["SIG_NOT_CHECKED"]


def test_encapsulated_pixel_data_is_hashed_not_kept(tmp_path):
    """JPEG pixel data fragments (however small) are hashed as they pass, never kept; the
    signature verifies in the single pass, and a changed fragment byte is a mismatch."""
    data = signed_bytes(nested_ct(tmp_path / "j.dcm", ts=JPEG, rows=64, cols=64))
    p, codes, rereads = _run(data, piece=4_099)
    assert ("SIG_VALID", "info") in codes and rereads == 0
    from mediasec.sign import open_part10
    frags = open_part10(data).dataset.get(0x7FE00010).frags
    assert p._stream._src.dropped == sum(n for _off, n in frags)
    off, n = frags[-1]
    _p, codes, rereads = _run(flip(data, off + n // 2), piece=4_099)
    assert ("SIG_MAC_MISMATCH", "failed") in codes and rereads == 0, codes


@pytest.mark.peer("dcmsign")
@pytest.mark.parametrize("ts", [ELE, JPEG])
def test_dcmsign_objects_through_the_single_pass(tmp_path, ts):
    """What dcmsign writes - each MAC it offers, a second signature with a partial tag list,
    a signature inside an item - is judged by the streaming probe (pixel data hashed as it
    passes) exactly as the full checker judges it, tampered pixel data included."""
    from conftest import PKI, run_peer
    keys = [str(PKI / "signer.key.pem"), str(PKI / "signer.pem"), "-pw"]
    src = nested_ct(tmp_path / "in.dcm", ts=ts, rows=48, cols=48)
    made = []
    for i, mac in enumerate(("+m2", "+m3", "+m5", "+ms", "+mr")):
        out = tmp_path / f"s{i}.dcm"
        run_peer(["dcmsign", "+s", *keys, mac, str(src), str(out)])
        made.append(out)
    two = tmp_path / "two.dcm"
    run_peer(["dcmsign", "+s", *keys, "+m2", "-t", "PatientName", "-t", "7fe0,0010",
              str(made[0]), str(two)])
    item = tmp_path / "item.dcm"
    run_peer(["dcmsign", "+si", *keys[:2], "OtherPatientIDsSequence[0]", *keys[2:], str(src),
              str(item)])
    for path in [*made, two, item]:
        data = path.read_bytes()
        for d in (data, flip(data, len(data) // 2)):
            want = _codes(d)
            _p, got, rereads = _run(d, limit=256, piece=3_001)
            assert got == want, (path.name, got, want)
            if path != item:
                assert rereads == 0, path.name


def test_held_objects_are_judged_as_streamed_ones(tmp_path):
    """An object small enough to be held whole (searched once, checked only when it holds a
    signature) gets the same findings as the streaming walk: signed, tampered, unsigned,
    truncated, nested, big endian; a larger one switches to the walk midway, fed what was
    held first, and is judged the same."""
    base = nested_ct(tmp_path / "in.dcm", rows=64, cols=64)
    signed = signed_bytes(base)
    cases = {
        "signed": signed,
        "tampered": flip(signed, _pixel_byte(signed)),
        "unsigned": write_instance(tmp_path / "u.dcm", rows=64, cols=64).read_bytes(),
        "truncated": signed[:-3],
        "sha384": signed_bytes(base, SignRequest(mac="SHA384")),
    }
    for name, data in cases.items():
        _p, streamed, _r = _run(data, buffer=0)
        held_p, held, _r = _run(data, buffer=len(data))
        switched_p, switched, _r = _run(data, buffer=len(data) // 3, piece=4_099)
        assert not held_p.streaming and switched_p.streaming, name
        assert held == streamed == switched, (name, held, streamed, switched)
    assert ("SIG_VALID", "info") in held_p_codes(signed)
    assert any(o == "failed" for _c, o in held_p_codes(cases["tampered"]))
    assert held_p_codes(cases["unsigned"]) == []


def held_p_codes(data):
    return _run(data, buffer=len(data))[1]


def test_held_search_skips_the_pixel_data_value_only_when_its_header_checks_out(tmp_path):
    """Given where the pixel data element starts (the header scan's offset, else the
    probe's own walk of the first 64 KiB), the held object's search skips that value - bytes that look like a signature header inside pixel
    data no longer cost a full check - but a real signature after it is still found, and an
    offset that is not a pixel data header is ignored (the whole object is searched)."""
    from mediasec.sign import open_part10
    data = bytearray(write_instance(tmp_path / "u.dcm", rows=64, cols=64).read_bytes())
    el = open_part10(bytes(data)).dataset.get(0x7FE00010)
    data[el.val + 100:el.val + 108] = b"\xfa\xff\xfa\xffSQ\x00\x00"   # a chance look-alike
    data = bytes(data)
    checked = []

    def run(blob, at):
        p = DatasetSignatureProbe(buffer=len(blob))
        p.feed(blob)
        import mediasec.media.dsig_check as dc
        real = dc.signature_findings
        dc.signature_findings = lambda *a: checked.append(1) or real(*a)
        try:
            return [f.code for f in p.findings(trust(), pixel_header=at)]
        finally:
            dc.signature_findings = real

    assert run(data, el.hdr) == [] and checked == []
    assert run(data, None) == [] and checked == []            # found by the probe's own walk
    assert run(data, el.hdr + 2) == [] and checked == [1]     # not a header: searched whole
    signed = signed_bytes(write_instance(tmp_path / "s.dcm", rows=64, cols=64))
    sel = open_part10(signed).dataset.get(0x7FE00010)
    assert "SIG_VALID" in run(signed, sel.hdr)


def test_signature_header_search_stops_at_the_held_objects_end():
    """The held buffer is reused file after file: bytes past the current object's end are
    a previous file's, and a header there (or one crossing the end) is not this file's."""
    from mediasec.media.dsig_check import has_signature_sequence

    implicit = b"\xfa\xff\xfa\xff" + b"\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0"
    explicit_be = b"\xff\xfa\xff\xfaSQ\x00\x00"
    for header in (implicit, explicit_be):
        buf = bytearray(b"\x00" * 64 + header + b"\x00" * 8)
        assert has_signature_sequence(buf, len(buf))
        assert has_signature_sequence(bytes(buf))
        assert not has_signature_sequence(buf, 64)                 # wholly past the end
        assert not has_signature_sequence(buf, 64 + len(header) - 1)   # crossing it
