"""Dataset digital signatures (PS3.15 Annex C), without peers: the MAC byte stream, create and
verify at any level and in any transfer syntax, policy, tamper outcomes, SOP Instance Status.
The same behaviours against dcmsign are in test_sign_dcmsign.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import struct

import pydicom
import pytest

from _dicomgen import BE, DEFL, ELE, ILE, JPEG, write_instance
from _sign import LEGACY, element_offset, flip, nested_ct, signer, trust
from mediasec.errors import PolicyRefusal, UsageError
from mediasec.sign import SignRequest, check_file, open_part10, sign_file, sign_part
from mediasec.sign import mac as macs
from mediasec.sign.signature import mac_stream
from mediasec.sign.status import change_status, current_status

NOW = dt.datetime(2026, 11, 25, 5, 48, 0, 155702, tzinfo=dt.timezone.utc)


def signed_bytes(src, req=SignRequest(), *, who="signer", policy=None) -> bytes:
    data = src if isinstance(src, bytes) else src.read_bytes()
    sf = sign_file(data, signer(who, policy or LEGACY), req, policy=policy or LEGACY)
    out = io.BytesIO()
    assert sf.write_to(out.write) == sf.size
    assert len(out.getvalue()) == sf.size
    return out.getvalue()


def statuses(data, **kw):
    return [(s.path, s.status) for s in check_file(data, trust=trust(), **kw).signatures]


# -- the MAC byte stream ------------------------------------------------------------------------

def _el(group, elem, vr, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB") else b" "
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return struct.pack("<HH2s2xI", group, elem, vr.encode(), len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def test_mac_stream_matches_the_rules_byte_for_byte(tmp_path):
    """S: listed elements in explicit VR LE, sequences and items without lengths; T: the
    signature item's own elements except certificate and signature (signatures.md 2)."""
    p = nested_ct(tmp_path / "in.dcm", ts=ILE)   # implicit VR in: the stream is explicit LE
    req = SignRequest(tags=(0x00101002,), now=NOW, uid="1.2.3.4", purpose="14")
    part, facts = sign_part(open_part10(p.read_bytes()), signer(), req)
    ds = pydicom.dcmread(p)
    item = b"\xfe\xff\x00\xe0"
    seq_items = b""
    for it in ds.OtherPatientIDsSequence:
        seq_items += item + _el(0x10, 0x20, "LO", it.PatientID.encode()) + \
            _el(0x10, 0x21, "LO", it.IssuerOfPatientID.encode())
        if "TypeOfPatientID" in it:
            seq_items += _el(0x10, 0x22, "CS", b"TEXT")
        if "IssuerOfPatientIDQualifiersSequence" in it:
            seq_items += (b"\x10\x00\x24\x00SQ\0\0" + item + _el(0x40, 0x32, "UT", b"UEID")
                          + b"\xfe\xff\xdd\xe0")
    expected = (_el(8, 0x16, "UI", ds.SOPClassUID.encode())
                + _el(8, 0x18, "UI", ds.SOPInstanceUID.encode())
                + b"\x10\x00\x02\x10SQ\0\0" + seq_items + b"\xfe\xff\xdd\xe0"
                + _el(0x400, 5, "US", b"\0\0") + _el(0x400, 0x100, "UI", b"1.2.3.4")
                + _el(0x400, 0x105, "DT", b"20261125054800.155702+0000")
                + _el(0x400, 0x110, "CS", b"X509_1993_SIG")
                + b"\x00\x04\x01\x04SQ\0\0" + item + _el(8, 0x100, "SH", b"14")
                + _el(8, 0x102, "SH", b"ASTM-sigpurpose") + _el(8, 0x104, "LO", b"Source Signature")
                + b"\xfe\xff\xdd\xe0")
    assert mac_stream(part) == expected
    assert facts.signed_tags == (0x00080016, 0x00080018, 0x00101002)


def test_digest_info_prefixes_are_the_standard_ones():
    table = {"RIPEMD160": "3021300906052b2403020105000414",
             "SHA1": "3021300906052b0e03021a05000414",
             "MD5": "3020300c06082a864886f70d020505000410",
             "SHA256": "3031300d060960864801650304020105000420",
             "SHA384": "3041300d060960864801650304020205000430",
             "SHA512": "3051300d060960864801650304020305000440"}
    for mac, prefix in table.items():
        assert macs.digest_info_prefix(mac).hex() == prefix


def test_ripemd160_fallback_equals_the_reference_vectors():
    # the RIPEMD-160 authors' test vectors; the pycryptodome fallback must give them too
    vectors = {b"": "9c1185a5c5e9fc54612808977ee8f548b2258d31",
               b"abc": "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc",
               b"a" * 1000: None}
    for data, want in vectors.items():
        fb = macs.new_hash("RIPEMD160", force_fallback=True)
        fb.update(data)
        if want is None:
            try:
                want = hashlib.new("ripemd160", data).hexdigest()
            except ValueError:
                continue
        assert fb.digest().hex() == want


# -- create and verify --------------------------------------------------------------------------

@pytest.mark.parametrize("ts", [ELE, ILE, BE, JPEG, DEFL])
def test_sign_and_verify_every_transfer_syntax(tmp_path, ts):
    p = nested_ct(tmp_path / "in.dcm", ts=ts)
    once = signed_bytes(p)
    assert statuses(once) == [("", "valid")]
    assert pydicom.dcmread(io.BytesIO(once)).file_meta.TransferSyntaxUID == ts
    nested = signed_bytes(once, SignRequest(item_path="OtherPatientIDsSequence[0]",
                                            mac="SHA512"))
    twice = signed_bytes(nested, SignRequest(profile="creator", mac="SHA384"))
    assert statuses(twice) == [("", "valid"), ("", "valid"),
                               ("OtherPatientIDsSequence[0]", "valid")]
    rep = check_file(twice, trust=trust())
    assert [s.mac_id for s in rep.signatures if not s.path] == [0, 1]
    assert "creator" in rep.signatures[1].profiles


def test_deep_item_and_undefined_lengths(tmp_path):
    p = nested_ct(tmp_path / "in.dcm")
    ds = pydicom.dcmread(p)
    for el in (ds["OtherPatientIDsSequence"], ds["AnatomicRegionSequence"]):
        el.is_undefined_length = True
        for it in el.value:
            it.is_undefined_length_sequence_item = True
    ds.save_as(tmp_path / "undef.dcm")
    data = (tmp_path / "undef.dcm").read_bytes()
    path = "OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence[0]"
    s = signed_bytes(data, SignRequest(item_path=path))
    s = signed_bytes(s)
    assert statuses(s) == [("", "valid"), (path, "valid")]
    # pydicom reads the result, with the nested signature where we put it
    back = pydicom.dcmread(io.BytesIO(s))
    q = back.OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence[0]
    assert len(q[0xFFFAFFFA].value) == 1


def test_output_size_is_exact_and_input_bytes_are_kept(tmp_path):
    p = nested_ct(tmp_path / "in.dcm")
    data = p.read_bytes()
    sf = sign_file(data, signer(), SignRequest())
    out = io.BytesIO()
    sf.write_to(out.write)
    assert sf.size == len(out.getvalue())
    # the output less the two new sequences is the input, bit for bit
    got = out.getvalue()
    part = open_part10(got)
    cut = b""
    pos = 0
    for tag in (0x4FFE0001, 0xFFFAFFFA):
        el = part.dataset.get(tag)
        cut += got[pos:el.hdr]
        pos = el.end
    assert cut + got[pos:] == data


def test_write_policy():
    src = write_instance_bytes()
    for mac in ("SHA1", "RIPEMD160"):
        with pytest.raises(PolicyRefusal, match="allow-legacy"):
            sign_file(src, signer(), SignRequest(mac=mac))
        assert statuses(signed_bytes(src, SignRequest(mac=mac))) == [("", "valid")]
    with pytest.raises(PolicyRefusal, match="never"):
        sign_file(src, signer(), SignRequest(mac="MD5"), policy=LEGACY)
    with pytest.raises(PolicyRefusal):
        signer("signer-rsa1024")
    with pytest.raises(UsageError, match="main data set only"):
        sign_file(src, signer(), SignRequest(profile="creator", item_path="X[0]"))
    with pytest.raises(UsageError, match="SR documents only"):
        sign_file(src, signer(), SignRequest(profile="sr", purpose="1"))


def write_instance_bytes(kind="ct", **kw) -> bytes:
    import tempfile, pathlib  # noqa: E401 - local helper
    with tempfile.TemporaryDirectory() as d:
        return write_instance(pathlib.Path(d) / "x.dcm", kind, **kw).read_bytes()


def test_sr_profile_purpose_rules():
    sr = write_instance_bytes("sr", extra={"VerificationFlag": "VERIFIED",
                                           "VerifyingObserverSequence": [],
                                           "VerificationDateTime": "20240131101600"})
    with pytest.raises(UsageError):
        sign_file(write_instance_bytes("sr"), signer(), SignRequest(profile="sr"))
    s = signed_bytes(sr, SignRequest(profile="sr"))     # VERIFIED: purpose 5 by default
    rep = check_file(s, trust=trust())
    assert rep.signatures[0].purpose["code"] == "5"
    assert "sr" in rep.signatures[0].profiles


# -- tamper and trust outcomes ------------------------------------------------------------------

@pytest.fixture(scope="module")
def signed_ct(tmp_path_factory):
    p = nested_ct(tmp_path_factory.mktemp("sig") / "in.dcm")
    return signed_bytes(p)


def _sig_value(data, tag):
    from mediasec.sign._raw import parse_part10, BytesSource
    part = parse_part10(BytesSource(data))
    sig_item = part.dataset.get(0xFFFAFFFA).items[0]
    el = sig_item.get(tag)
    return el.val, el.length


def test_tampering_outcomes(signed_ct):
    data = signed_ct
    off, n = element_offset(data, 0x00100010)           # PatientName
    assert statuses(flip(data, off)) == [("", "mac_mismatch")]
    off, n = element_offset(data, 0x7FE00010)
    assert statuses(flip(data, off + n // 2)) == [("", "mac_mismatch")]
    off, n = _sig_value(data, 0x04000120)                # the signature
    assert statuses(flip(data, off + 5)) == [("", "bad_signature")]
    # MAC parameters: the algorithm term changed (the DigestInfo OID no longer matches)
    from mediasec.sign._raw import parse_part10, BytesSource
    part = parse_part10(BytesSource(data))
    alg = part.dataset.get(0x4FFE0001).items[0].get(0x04000015)
    swapped = data[:alg.val] + b"SHA384" + data[alg.val + 6:]
    rep = check_file(swapped, trust=trust()).signatures[0]
    assert rep.status == "mac_mismatch" and "SHA256" in rep.message
    # a listed tag changed in (0400,0020)
    at = part.dataset.get(0x4FFE0001).items[0].get(0x04000020)
    assert statuses(flip(data, at.val + 4)) in ([("", "mac_mismatch")],
                                                 [("", "elements_missing")])
    # an unsigned element added or changed: still valid
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.add_new(0x00091010, "LO", "unsigned private")   # private: UN-free but not listed
    ds.add_new(0x00090010, "LO", "ACME")
    buf = io.BytesIO()
    ds.save_as(buf)
    assert statuses(buf.getvalue()) == [("", "valid")]


def test_removed_element_and_swapped_certificate(signed_ct, tmp_path):
    ds = pydicom.dcmread(io.BytesIO(signed_ct))
    del ds.InstitutionName
    buf = io.BytesIO()
    ds.save_as(buf)
    rep = check_file(buf.getvalue(), trust=trust()).signatures[0]
    assert rep.status == "elements_missing" and rep.missing_elements == ["0008,0080"]
    ds = pydicom.dcmread(io.BytesIO(signed_ct))
    other = (signer("signer-wrong-ku").certificate)
    from cryptography.hazmat.primitives import serialization
    ds[0xFFFAFFFA].value[0][0x04000115].value = other.public_bytes(serialization.Encoding.DER)
    buf = io.BytesIO()
    ds.save_as(buf)
    assert statuses(buf.getvalue()) == [("", "bad_signature")]


def test_trust_outcomes(tmp_path):
    src = nested_ct(tmp_path / "in.dcm").read_bytes()
    assert statuses(signed_bytes(src, who="signer-untrusted")) == [("", "untrusted")]
    no_trust = check_file(signed_bytes(src)).signatures[0]
    assert no_trust.status == "trust_not_checked"
    exp = sign_file(src, signer("signer-expired"), SignRequest(now=NOW))
    out = io.BytesIO()
    exp.write_to(out.write)
    assert statuses(out.getvalue()) == [("", "expired_at_signing")]
    old = sign_file(src, signer("signer-expired"),
                    SignRequest(now=dt.datetime(2015, 6, 1, tzinfo=dt.timezone.utc)))
    out = io.BytesIO()
    old.write_to(out.write)
    # valid when it signed, expired now (no trust anchor: our CAs start in 2020)
    assert [s.status for s in check_file(out.getvalue()).signatures] == ["expired"]
    ny = sign_file(src, signer("signer-notyet"), SignRequest(now=NOW))
    out = io.BytesIO()
    ny.write_to(out.write)
    assert statuses(out.getvalue()) == [("", "not_yet_valid_at_signing")]
    weak = check_file(signed_bytes(src, who="signer-rsa1024"), trust=trust())
    assert weak.signatures[0].status == "valid"
    assert "SIG_WEAK_ALGORITHM" in [f.code for f in weak.findings]


def test_malformed_and_unsupported(signed_ct):
    from mediasec.sign._raw import parse_part10, BytesSource
    part = parse_part10(BytesSource(signed_ct))
    alg = part.dataset.get(0x4FFE0001).items[0].get(0x04000015)
    foo = signed_ct[:alg.val] + b"FOO   " + signed_ct[alg.val + 6:]
    assert statuses(foo) == [("", "unsupported_algorithm")]
    mid = part.dataset.get(0x4FFE0001).items[0].get(0x04000005)
    orphan = signed_ct[:mid.val] + b"\x07\x00" + signed_ct[mid.val + 2:]
    assert statuses(orphan) == [("", "malformed")]
    rep = check_file(write_instance_bytes())
    assert [f.code for f in rep.findings] == ["SIG_NONE"]


# -- SOP Instance Status ------------------------------------------------------------------------

def test_authorize_and_copy(tmp_path):
    src = nested_ct(tmp_path / "in.dcm", extra={"SOPInstanceStatus": "OR"}).read_bytes()
    creator = signed_bytes(src, SignRequest(profile="creator"))
    part, dropped = change_status(open_part10(creator), "AO", now=NOW, equipment_cert="EQ-1")
    assert dropped == [] and current_status(part) == "AO"
    part, _ = sign_part(part, signer(), SignRequest(profile="authorization"))
    rep = check_file(part.source.read(0, part.source.size), trust=trust())
    assert [s.status for s in rep.signatures] == ["valid", "valid"]
    assert rep.status_covered() and rep.sop_instance_status == "AO"
    ds = pydicom.dcmread(io.BytesIO(part.source.read(0, part.source.size)))
    assert ds[0x01000420].value == "20261125054800.155702+0000"
    assert ds[0x01000426].value == "EQ-1"
    with pytest.raises(UsageError, match="only an original"):
        change_status(part, "AO")
    with pytest.raises(UsageError, match="covers 0100,0410"):
        change_status(part, "AC")
    copy, dropped = change_status(part, "AC", drop_covering=True)
    assert [d.mac_id for d in dropped] == [1]
    rep = check_file(copy.source.read(0, copy.source.size), trust=trust())
    assert [s.status for s in rep.signatures] == ["valid"]     # the creator one is kept
    assert rep.sop_instance_status == "AC"
    assert "STATUS_UNSUPPORTED" in [f.code for f in rep.findings]
    with pytest.raises(UsageError, match="only an authorized"):
        change_status(open_part10(src), "AC")


# -- exact sizes before signing, and stale signatures ------------------------------------------

@pytest.mark.parametrize("ts", [ELE, ILE, BE, JPEG])
def test_plan_gives_the_exact_size_without_the_key(tmp_path, ts):
    from mediasec.sign.signature import plan_signature
    p = nested_ct(tmp_path / "in.dcm", ts=ts)
    part = open_part10(p.read_bytes())
    for req in (SignRequest(), SignRequest(item_path="OtherPatientIDsSequence[1]",
                                           purpose="5", mac="SHA512")):
        plan = plan_signature(part, signer().certificate, req)     # certificate only
        out, _facts = plan.execute(signer())
        assert plan.size == out.size
        assert len(b"".join(out.chunks(0, out.size))) == plan.size


def _replace_value(data: bytes, tag: int, new: bytes, path: str = "") -> bytes:
    off, n = element_offset(data, tag, path)
    assert len(new) == n
    return data[:off] + new + data[off + n:]


def test_modification_strips_only_the_signatures_it_broke(tmp_path):
    from mediasec.sign.stale import strip_stale
    p = nested_ct(tmp_path / "in.dcm")
    inner = "OtherPatientIDsSequence[1]"
    s = signed_bytes(p.read_bytes(), SignRequest(item_path=inner))
    s = signed_bytes(s)
    before = open_part10(s)
    # an edit at the top level breaks the top-level signature, not the one in the item
    edited = _replace_value(s, 0x00100010, b"ROE^JANE")
    after, stripped = strip_stale(before, open_part10(edited))
    assert [(x.path, x.mac_id, x.reason) for x in stripped] == [("", 0, "SIG_MAC_MISMATCH")]
    out = after.source.read(0, after.source.size)
    assert statuses(out) == [(inner, "valid")]
    assert 0xFFFAFFFA not in pydicom.dcmread(io.BytesIO(out))
    # an edit inside the item breaks both (the top-level one covers the whole sequence)
    off, n = element_offset(s, 0x00100021, inner)
    edited = s[:off] + b"OTHEX " + s[off + 6:]
    after, stripped = strip_stale(before, open_part10(edited))
    assert sorted(x.path for x in stripped) == ["", inner]
    out = after.source.read(0, after.source.size)
    assert check_file(out).signatures == []
    back = pydicom.dcmread(io.BytesIO(out))        # lengths were fixed up: still parses
    assert back.OtherPatientIDsSequence[1].IssuerOfPatientID == "OTHEX"
    # already broken in the input: passed on as is, not ours to hide
    again, stripped = strip_stale(open_part10(edited), open_part10(edited))
    assert stripped == [] and len(check_file(edited).signatures) == 2


def test_our_vr_transcoding_keeps_signatures_valid(tmp_path):
    """The build's implicit VR -> explicit VR LE conversion is bit-preserving for the MAC."""
    from mediasec.dicom.part10 import converted_size, iter_converted
    from mediasec.dicom.scan import scan_file
    from mediasec.sign.stale import strip_stale
    p = nested_ct(tmp_path / "in.dcm", ts=ILE)
    s = signed_bytes(signed_bytes(p.read_bytes(),
                                  SignRequest(item_path="OtherPatientIDsSequence[0]")))
    f = io.BytesIO(s)
    scanned = scan_file(f, len(s), source="in.dcm")
    conv = b"".join(iter_converted(f, scanned))
    assert len(conv) == converted_size(scanned)
    assert pydicom.dcmread(io.BytesIO(conv)).file_meta.TransferSyntaxUID == ELE
    after, stripped = strip_stale(open_part10(s), open_part10(conv))
    assert stripped == []
    assert statuses(conv) == [("", "valid"), ("OtherPatientIDsSequence[0]", "valid")]


@pytest.mark.parametrize("ts", [BE, ILE, JPEG])
def test_large_files_are_read_in_place(tmp_path, monkeypatch, ts):
    """Above the in-memory limit the file is parsed and hashed from the stream (bounded
    memory); the result is the same as in memory."""
    import mediasec.sign as msign
    from mediasec.sign._raw import StreamSource
    monkeypatch.setattr(msign, "IN_MEMORY", 0)
    monkeypatch.setattr(StreamSource, "WINDOW", 64)      # force many window refills
    p = nested_ct(tmp_path / "in.dcm", ts=ts, rows=64, cols=64)
    with open(p, "rb") as f:
        part = open_part10(f)
        assert isinstance(part.source, StreamSource)
        sf = sign_file(part, signer(), SignRequest(item_path="OtherPatientIDsSequence[0]"))
        out = io.BytesIO()
        sf.write_to(out.write)
    assert len(out.getvalue()) == sf.size
    (tmp_path / "s.dcm").write_bytes(out.getvalue())
    with open(tmp_path / "s.dcm", "rb") as f:
        assert [s.status for s in check_file(f, trust=trust()).signatures] == ["valid"]
    assert statuses(out.getvalue()) == [("OtherPatientIDsSequence[0]", "valid")]


def test_sign_dataset_stage_strips_what_a_conversion_broke(tmp_path):
    """The build's safety net for converted instances (our lossless transcoding keeps
    signatures valid; anything that does not is removed and reported, never handed on):
    the ``sign_dataset`` stage without a signer, after a "conversion" step."""
    from dataclasses import dataclass
    from mediasec.media.dsign import SignDatasetStage
    from mediasec.media.stages import FileItem, FileStages, ReadStage
    p = nested_ct(tmp_path / "in.dcm", ts=ILE)
    s = signed_bytes(p.read_bytes())
    src = tmp_path / "s.dcm"
    src.write_bytes(s)

    @dataclass(frozen=True)
    class LossyStep:          # a "conversion" that may change a signed value
        breaks: bool
        size: int = len(s)

        def run(self, upstream):
            data = b"".join(bytes(c) for c in upstream.chunks())
            yield data.replace(b"DOE^JANE", b"ROE^JANE") if self.breaks else data

    @dataclass(frozen=True)
    class Lossy:
        breaks: bool
        name: str = "transcode"

        def prepare(self, item, in_size):
            return LossyStep(self.breaks)

    def opener(path):
        return open(path, "rb")

    for breaks in (False, True):
        stage = SignDatasetStage.for_job(opener, profile=None)
        pipe = FileStages(read=ReadStage(opener), transcode=Lossy(breaks),
                          sign_dataset=stage).pipeline(FileItem("instance", str(src),
                                                                size=len(s)))
        data = b"".join(bytes(c) for c in pipe.chunks())
        assert len(data) == pipe.size
        if not breaks:
            assert [n for n, _ in pipe.steps] == ["read", "transcode"]
            assert stage.findings == [] and statuses(data) == [("", "valid")]
            continue
        assert [n for n, _ in pipe.steps] == ["read", "transcode", "sign_dataset"]
        assert check_file(data).signatures == []
        assert [f["code"] for f in stage.findings] == ["SIG_STRIPPED_STALE"]
        assert stage.findings[0]["source"] == str(src)


def test_damaged_files_never_crash_the_checker(signed_ct):
    """Cut or corrupted anywhere: a one-line input error or a report, never a bug."""
    import random
    from mediasec.errors import MediasecError
    rng = random.Random(12)
    data = signed_ct
    start = open_part10(data).dataset.get(0x4FFE0001).hdr
    cases = [data[:n] for n in range(0, len(data), 97)]
    for _ in range(300):
        b = bytearray(data)
        for _k in range(rng.randint(1, 4)):
            b[rng.randrange(start, len(b))] = rng.randrange(256)
        cases.append(bytes(b))
    outcomes = set()
    for c in cases:
        try:
            rep = check_file(c, trust=trust())
        except MediasecError as exc:
            assert exc.code.startswith(("DICOM_", "INPUT")), exc.code
            outcomes.add("error")
            continue
        outcomes |= {s.status for s in rep.signatures} or {"none"}
    assert {"error", "valid", "bad_signature"} <= outcomes


# -- the readers' probe (verify, extract) -------------------------------------------------------

def _probe(data: bytes, *, limit=None, piece=7_919):
    from mediasec.media.dsig_check import DatasetSignatureProbe
    p = DatasetSignatureProbe() if limit is None else DatasetSignatureProbe(limit)
    for i in range(0, len(data), piece):
        p.feed(memoryview(data)[i:i + piece])
    return p


@pytest.mark.parametrize("ts", [ELE, ILE, BE, JPEG])
@pytest.mark.parametrize("piece", [1, 5, 7_919])
def test_probe_finds_signatures_at_any_level_and_chunking(tmp_path, ts, piece):
    """verify/extract see a Digital Signatures Sequence - top level or nested only -
    whatever the chunk boundaries, and check it."""
    p = nested_ct(tmp_path / "in.dcm", ts=ts)
    top = signed_bytes(p)
    nested = signed_bytes(p, SignRequest(item_path="OtherPatientIDsSequence[0]"))
    for data in (top, nested):
        probe = _probe(data, piece=piece)
        assert probe.seen
        codes = [(f.code, f.outcome.value) for f in probe.findings(trust())]
        assert ("SIG_VALID", "info") in codes, codes
    assert not _probe(p.read_bytes(), piece=piece).seen


def test_probe_is_not_fooled_by_pixel_data(tmp_path):
    """Hundreds of MiB of pixel data hold any short byte pattern by chance: an unsigned
    object whose pixels contain the tag's bytes (even followed by "SQ"-like bytes in the
    wrong place) is not reported as an unchecked signature, however large it is."""
    p = write_instance(tmp_path / "big.dcm", rows=64, cols=64)
    data = bytearray(p.read_bytes())
    noise = (b"\xfa\xff\xfa\xff\x00\x01\x02\x03\x04\x05" + b"\xff\xfa\xff\xfa" + b"\xfa\xff\xfa"
             + b"\xfa\xff\xfa\xffS" + b"\xfa\xff\xfa\xff\xff\xff\xff\xff\xfe\xff\x00")
    at = len(data) - 4096                     # inside the pixel data
    data[at:at + len(noise)] = noise
    probe = _probe(bytes(data), limit=1024)   # as if the object were over the in-memory limit
    assert not probe.seen and probe.findings(trust()) == []


def test_probe_reads_the_transfer_syntax_from_the_file_meta(tmp_path):
    """A data set that merely mentions another transfer syntax (here the Big Endian UID in
    an element of an explicit little endian object) is still searched in its own form."""
    p = nested_ct(tmp_path / "in.dcm", ts=ELE, extra={"StudyDescription": "1.2.840.10008.1.2.2"})
    data = signed_bytes(p)
    assert b"1.2.840.10008.1.2.2" in data[:4096]
    probe = _probe(data)
    assert probe.seen
    assert ("SIG_VALID", "info") in [(f.code, f.outcome.value) for f in probe.findings(trust())]
