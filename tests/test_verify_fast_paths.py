"""Guards for the verify speed work (issue 15): what is remembered per medium (unwrap plans,
recipient descriptions, the content cipher apart from its IV, small parses) must still
judge each file's own bytes, and the early, batched examination must examine exactly the
planned files, in order.
"""

from __future__ import annotations

import pytest

from mediasec._job import Job
from mediasec.cms import envelope as cenv
from mediasec.cms import keytransport as ckt
from mediasec.cms import recipients as crecip
from mediasec.cms._ber import ByteStream
from mediasec.cms.envelope import read_enveloped_head
from mediasec.cms.keys import KeyDecrypter
from mediasec.errors import DecryptionError, InternalError, NoRecipientError
from mediasec.io.workers import Pool, batches
from mediasec.media.dirindex import index_medium, planned_tasks
from mediasec.media.source import MediumIndex
from mediasec.media.validate import examine_tasks, finish_validation, local_examiner

import _media as m
from _cms import SAMPLE, cert, key, ktri, open_bytes, protect_bytes, signer, trust
from conftest import run_cli_process


@pytest.fixture(scope="module")
def secure_dvd(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    out = root / "dvd.iso"
    m.build(m.make_pile(root), out, "--profile", "STD-GEN-SEC-DVD-JPEG", *m.PROTECT)
    return out


def _ours() -> KeyDecrypter:
    return KeyDecrypter(key("recipient-2048"), cert("recipient-2048"))


def _key_range(blob: bytes, which: int = -1) -> tuple[int, int]:
    """Absolute range of a ktri's encrypted key in a Secure DICOM File."""
    s = ByteStream([blob])
    head = read_enveloped_head(s)
    raw = head.recipient_infos.dump()
    start = blob.find(raw)
    a, b = crecip._ktri_key_holes(raw)[which]
    return start + a, start + b


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return (type(exc).__name__, getattr(exc, "code", None), str(exc))


def test_planned_unwrap_opens_every_file_with_its_own_key_and_iv():
    with Job("t").active():
        dec = _ours()
        blobs = [protect_bytes(SAMPLE + bytes([i]), recipients=[ktri("recipient-3072"), ktri()],
                               signers=[signer()])[0] for i in range(3)]
        for i, blob in enumerate(blobs):
            plain, rep = open_bytes(blob, decrypters=[dec], trust_ctx=trust())
            assert plain == SAMPLE + bytes([i])
            assert "SIG_OK" in {f.code for f in rep.findings}
            assert rep.envelope["matched_recipient"]["serial"] == \
                format(cert("recipient-2048").serial_number, "x")
            assert {r["serial"] for r in rep.envelope["recipients"]} == {
                format(cert(n).serial_number, "x") for n in ("recipient-3072", "recipient-2048")}
        assert len(ckt._UNWRAP_PLANS._d) == 1        # one shape, one plan
        # the plan gives what the full path gives
        for blob in blobs:
            ris = read_enveloped_head(ByteStream([blob])).recipient_infos
            fast, full = dec.unwrap(ris, 32), dec._unwrap(ris, 32)
            assert (fast.cek, fast.recipient, fast.findings) == \
                (full.cek, full.recipient, full.findings)


def test_damaged_key_after_the_plan_is_damage_not_a_wrong_key():
    with Job("t").active():
        dec = _ours()
        good, _ = protect_bytes(SAMPLE, recipients=[ktri()], signers=[signer()])
        assert open_bytes(good, decrypters=[dec])[0] == SAMPLE   # the plan is cached
        bad = bytearray(protect_bytes(SAMPLE, recipients=[ktri()], signers=[signer()])[0])
        a, b = _key_range(bytes(bad))
        bad[a + 100] ^= 0x40
        warm = _outcome(lambda: open_bytes(bytes(bad), decrypters=[dec]))
        ckt._UNWRAP_PLANS.clear()
        cold = _outcome(lambda: open_bytes(bytes(bad), decrypters=[_ours()]))
    assert warm == cold and warm[0] == DecryptionError.__name__


def test_not_a_recipient_with_a_warm_plan_says_so():
    with Job("t").active():
        dec = _ours()
        assert open_bytes(protect_bytes(SAMPLE, recipients=[ktri()])[0],
                          decrypters=[dec])[0] == SAMPLE
        other = protect_bytes(SAMPLE, recipients=[ktri("recipient-3072")])[0]
        warm = _outcome(lambda: open_bytes(other, decrypters=[dec]))
        warm2 = _outcome(lambda: open_bytes(other, decrypters=[dec]))   # its own plan now
        ckt._UNWRAP_PLANS.clear()
        cold = _outcome(lambda: ckt.KeyDecrypter._unwrap(
            dec, read_enveloped_head(ByteStream([other])).recipient_infos, 32))
    assert warm == warm2 and warm[0] == NoRecipientError.__name__
    assert warm[2] == cold[2]


def test_content_cipher_iv_is_each_files_own():
    import os

    from asn1crypto import algos as aalgos

    with Job("t").active():
        def alg(iv, name="aes256_cbc"):
            return aalgos.EncryptionAlgorithm({"algorithm": name, "parameters": iv}).dump()

        ivs = [os.urandom(16) for _ in range(3)]
        for iv in ivs:
            assert cenv._content_cipher(alg(iv)) == ("aes-256", iv)
        assert len(cenv._CIPHER_ALGS._d) == 1
        assert cenv._content_cipher(alg(ivs[0], "aes128_cbc")) == ("aes-128", ivs[0])
        # not the plain layout (a trailing element): the full parse decides, every time
        odd = bytearray(alg(ivs[1]))
        odd += b"\x05\x00"
        odd[1] += 2
        assert cenv._content_cipher(bytes(odd)) == cenv._parse_content_cipher(bytes(odd))


def test_batches_group_small_items_and_keep_big_ones_alone():
    sizes = [1, 1, 1, 10, 1, 1]
    got = list(batches(sizes, lambda n: n, max_items=2, max_size=4))
    assert got == [(1, 1), (1,), (10,), (1, 1)]
    assert [x for g in got for x in g] == sizes
    assert list(batches([], lambda n: n)) == []


def _square(state, items):
    return [state + x * x for x in items]


def _setup():
    return 1


@pytest.mark.parametrize("workers", [1, 2])
def test_run_ahead_yields_in_order_and_can_be_closed(workers):
    with Pool(workers, setup=_setup, max_inflight=3) as pool:
        it = pool.run_ahead(_square, batches(range(100), lambda n: 1, max_items=7))
        assert [y for g in it for y in g] == [1 + x * x for x in range(100)]
        it = pool.run_ahead(_square, batches(range(100), lambda n: 1, max_items=7))
        assert next(iter(it)) == [1 + x * x for x in range(7)]
        it.close()


def test_planned_tasks_are_what_the_examine_step_reads(secure_dvd):
    from mediasec.io.medium import IsoSource

    with IsoSource(str(secure_dvd)) as src:
        index = MediumIndex(src.entries())
        fsi = index_medium(src, decrypters=[_ours()], index=index)
        assert planned_tasks(index) == examine_tasks(fsi)
        assert {t.path for t in planned_tasks(index)}.isdisjoint({"DICOMDIR", "MANIFEST.SHA"})
        # an examiner that skips or reorders files is a bug, never a report
        whole = local_examiner(src, decrypters=[_ours()])

        def skipping(tasks):
            return whole(tasks[1:])

        def short(tasks):
            return whole(tasks[:-1])
        for bad in (skipping, short):
            with pytest.raises(InternalError):
                finish_validation(src, index_medium(src, decrypters=[_ours()]),
                                  decrypters=[_ours()], examiner=bad)


def test_reading_verbs_run_in_their_own_process(secure_dvd, tmp_path):
    """verify/ls/extract import only their verb module: the entry point still works, and
    verify's early, batched examination passes a good disc and fails a damaged one."""
    ls = run_cli_process("ls", secure_dvd, "--key", m.KEY, "--cert", m.CERT, "--json")
    assert ls.code == 0, ls
    assert "Usage:" in run_cli_process("verify", "--help").stdout
    assert run_cli_process("verify", secure_dvd, *m.KEYS).code == 0
    data = bytearray(secure_dvd.read_bytes())
    data[-6000] ^= 0x01
    bad = tmp_path / "bad.iso"
    bad.write_bytes(bytes(data))
    res = run_cli_process("verify", bad, *m.KEYS, "--workers", "2")
    assert res.code == 1 and "Result: FAILED" in res.stdout, res
