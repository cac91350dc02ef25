"""The check's per-job memory (signer facts by certificate bytes, Data Elements Signed lists by
their bytes, the trust window found by identity) never changes an answer: each tampered or
otherwise failing object is judged the same by a fresh job and by a job that has just
judged a valid object with the same signer, list and trust - and, the other way round, a
valid object after each failing one."""

from __future__ import annotations

import datetime as dt
import io

import pydicom
import pytest
from cryptography.hazmat.primitives import serialization

from _sign import LEGACY, element_offset, flip, nested_ct, signer, trust
from mediasec._job import Job
from mediasec.sign import SignRequest, check_file, open_part10, sign_file

NOW = dt.datetime(2026, 11, 25, 5, 48, 0, 155702, tzinfo=dt.timezone.utc)


def _signed(src: bytes, who="signer", req=SignRequest()) -> bytes:
    out = io.BytesIO()
    sign_file(src, signer(who, LEGACY), req, policy=LEGACY).write_to(out.write)
    return out.getvalue()


def _edit(data: bytes, fn) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    fn(ds)
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    src = nested_ct(tmp_path_factory.mktemp("warm") / "in.dcm").read_bytes()
    good = _signed(src)
    part = open_part10(good)
    params = part.dataset.get(0x4FFE0001).items[0]
    sig = part.dataset.get(0xFFFAFFFA).items[0]
    alg, tl = params.get(0x04000015), params.get(0x04000020)
    sv = sig.get(0x04000120)
    name_off, _ = element_offset(good, 0x00100010)
    pix_off, pix_len = element_offset(good, 0x7FE00010)
    other = signer("signer-wrong-ku").certificate.public_bytes(serialization.Encoding.DER)

    def swap_cert(ds):
        ds[0xFFFAFFFA].value[0][0x04000115].value = other

    def drop_name(ds):
        del ds.InstitutionName

    out = {
        "valid": good,
        "signed element": flip(good, name_off),
        "pixel data": flip(good, pix_off + pix_len // 2),
        "MAC algorithm": good[:alg.val] + b"SHA384" + good[alg.val + 6:],
        "MAC tag list": flip(good, tl.val + 4),
        "signature": flip(good, sv.val + 5),
        "element removed": _edit(good, drop_name),
        "certificate swapped": _edit(good, swap_cert),
        "untrusted": _signed(src, "signer-untrusted"),
        "expired at signing": _signed(src, "signer-expired", SignRequest(now=NOW)),
        "not yet valid": _signed(src, "signer-notyet", SignRequest(now=NOW)),
        "expired now": _signed(src, "signer-expired",
                               SignRequest(now=dt.datetime(2015, 6, 1, tzinfo=dt.timezone.utc))),
        "weak key": _signed(src, "signer-rsa1024"),
        "bad key usage": _signed(src, "signer-wrong-ku"),
    }
    return out


def _judge(data: bytes, tr) -> dict:
    return check_file(data, trust=tr).to_dict()


EXPECTED = {
    "valid": ["valid"], "signed element": ["mac_mismatch"], "pixel data": ["mac_mismatch"],
    "MAC algorithm": ["mac_mismatch"], "signature": ["bad_signature"],
    "element removed": ["elements_missing"], "certificate swapped": ["bad_signature"],
    "untrusted": ["untrusted"], "expired at signing": ["expired_at_signing"],
    "not yet valid": ["not_yet_valid_at_signing"], "weak key": ["valid"],
}


@pytest.mark.parametrize("with_trust", [True, False])
def test_warm_job_judges_as_a_fresh_one(cases, with_trust):
    tr = trust() if with_trust else None
    fresh = {}
    for name, data in cases.items():
        with Job("fresh").active():
            fresh[name] = _judge(data, tr)
    if with_trust:
        got = {n: [s["status"] for s in fresh[n]["signatures"]] for n in EXPECTED}
        assert got == EXPECTED
    # one job: each case right after the valid object (warm caches), twice over
    with Job("warm").active():
        for _round in range(2):
            for name, data in cases.items():
                assert _judge(cases["valid"], tr) == fresh["valid"]
                assert _judge(data, tr) == fresh[name], name
    # one job in reverse order: the failing objects first, the valid one after each
    with Job("reverse").active():
        for name, data in reversed(list(cases.items())):
            assert _judge(data, tr) == fresh[name], name
            assert _judge(cases["valid"], tr) == fresh["valid"]


def test_warm_trust_window_follows_the_trust_given(cases):
    """The trust window found by identity belongs to one trust set: another set (no
    intermediates, or another object with equal contents) is judged on its own."""
    full = trust()
    bare = type(full)(anchors=full.anchors, intermediates=())
    with Job("fresh").active():
        want_full = _judge(cases["valid"], full)
    with Job("fresh").active():
        want_bare = _judge(cases["valid"], bare)
    assert want_full["signatures"][0]["status"] == "valid"
    assert want_bare["signatures"][0]["status"] == "untrusted"
    with Job("warm").active():
        for _ in range(2):
            assert _judge(cases["valid"], full) == want_full
            assert _judge(cases["valid"], bare) == want_bare
            assert _judge(cases["valid"], trust()) == want_full
