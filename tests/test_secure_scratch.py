"""``SecureFileProducer`` reuses one pair of working buffers per thread, file after file
(``cms.secure._take_buffers``): what one file leaves in them never reaches the next, a file
abandoned half-way gives them back intact, and two files made alternately in one thread do
not share them. Every file is opened by ``openssl cms`` and compared with its plaintext,
at sizes on both sides of the buffer (the BER piece) size."""

from __future__ import annotations

import io
import os

import pytest

from mediasec.cms import secure
from mediasec.cms.secure import ProtectOptions, SecureFileProducer

from _cms import PKI, ktri, openssl, signer, wrap_content_info, write

C = 4096   # the chunk: the buffers' size


def _producer(n: int, **kw) -> SecureFileProducer:
    return SecureFileProducer(n, recipients=[ktri()], signers=[signer()],
                              options=ProtectOptions(chunk=C), **kw)


def _payload(n: int, salt: int) -> bytes:
    return bytes((i * 7 + salt) & 0xFF for i in range(n))


def _made(p: SecureFileProducer, data: bytes) -> bytes:
    blob = b"".join(bytes(c) for c in p.chunks(io.BytesIO(data)))
    assert len(blob) == p.size
    return blob


def _openssl_content(tmp_path, blob: bytes) -> bytes:
    f = write(tmp_path, "file.p7m", blob)
    inner = tmp_path / "inner.der"
    openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", f, "-out", inner,
            "-recip", PKI / "recipient-2048.pem", "-inkey", PKI / "recipient-2048.key.pem")
    ci = write(tmp_path, "inner.ci", wrap_content_info(inner.read_bytes(), "signedData"))
    out = tmp_path / "content.out"
    openssl("cms", "-verify", "-binary", "-inform", "DER", "-in", ci, "-CAfile",
            PKI / "trust.pem", "-purpose", "any", "-out", out)
    return out.read_bytes()


@pytest.mark.peer("openssl")
def test_files_made_one_after_another_reuse_the_buffers_and_open_in_openssl(tmp_path):
    secure._SCRATCH.pair = None
    # largest first, so later (smaller) files run over what a larger one left behind
    sizes = [3 * C + 5, C + 1, C, C - 1, 17, 1, 0]
    blobs = []
    for k, n in enumerate(sizes):
        data = _payload(n, k)
        blobs.append((data, _made(_producer(n), data)))
        assert secure._SCRATCH.pair is not None            # given back for the next file
    for data, blob in blobs:
        assert _openssl_content(tmp_path, blob) == data


@pytest.mark.peer("openssl")
def test_two_files_made_alternately_in_one_thread_and_one_abandoned(tmp_path):
    secure._SCRATCH.pair = None
    a_data, b_data = _payload(5 * C + 3, 1), _payload(4 * C + 9, 2)
    a, b = _producer(len(a_data)), _producer(len(b_data))
    ia, ib = a.chunks(io.BytesIO(a_data)), b.chunks(io.BytesIO(b_data))
    out_a, out_b = [], []
    live = [(ia, out_a), (ib, out_b)]
    while live:   # one chunk of each in turn, each read before the other file advances
        for it, out in list(live):
            c = next(it, None)
            if c is None:
                live.remove((it, out))
            else:
                out.append(bytes(c))
    # a third file abandoned after its first ciphertext chunk: its buffers come back
    c_data = _payload(3 * C, 3)
    ic = _producer(len(c_data)).chunks(io.BytesIO(c_data))
    for c in ic:
        if len(c) >= C:
            break
    ic.close()
    pair = secure._SCRATCH.pair
    assert pair is not None
    d_data = _payload(2 * C + 7, 4)
    d_blob = _made(_producer(len(d_data)), d_data)
    assert secure._SCRATCH.pair is pair                     # the same buffers, reused
    assert _openssl_content(tmp_path, b"".join(out_a)) == a_data
    assert _openssl_content(tmp_path, b"".join(out_b)) == b_data
    assert _openssl_content(tmp_path, d_blob) == d_data


def test_buffers_of_another_chunk_size_are_not_taken():
    secure._SCRATCH.pair = (bytearray(C), bytearray(C + 48))
    data = _payload(3 * C, 5)
    p = SecureFileProducer(len(data), recipients=[ktri()],
                           options=ProtectOptions(chunk=2 * C), rng=os.urandom)
    blob = b"".join(bytes(c) for c in p.chunks(io.BytesIO(data)))
    assert len(blob) == p.size
    assert len(secure._SCRATCH.pair[0]) == 2 * C
