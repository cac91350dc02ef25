"""verify's reading schedule and decryption pieces (issue 15): the files are read in worker
processes largest batch first, yet reported in listing order; the decrypted stream comes in
one view per ciphertext piece, whatever the piece boundaries and the padding."""

from __future__ import annotations

import os
import random
from concurrent.futures import Future

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mediasec.cms._ber import ByteStream, Header
from mediasec.cms.envelope import EnvelopedHead, decrypt_chunks
from mediasec.errors import DecryptionError, InternalError
from mediasec.io import workers
from mediasec.io.workers import Pool, examine_ahead
from mediasec.media.examine import ExamineTask


# -- examine_ahead: largest first, reported in order ----------------------------------------

def _setup(log_path):
    return {"log": log_path}


def _fake_batch(state, tasks):
    with open(state["log"], "a") as f:
        f.write(",".join(t.path for t in tasks) + "\n")
    if any(t.path == "die" for t in tasks):
        os._exit(3)
    return [t.path for t in tasks]


@pytest.fixture
def fake_examine(monkeypatch):
    # the workers are forked after this, so they see the stand-in too
    monkeypatch.setattr(workers, "worker_examine_batch", _fake_batch)


def _tasks(sizes):
    return [ExamineTask(f"f{i:03d}", n, None) for i, n in enumerate(sizes)]


@pytest.mark.parametrize("n_workers", [1, 2])
def test_results_in_listing_order(tmp_path, fake_examine, n_workers):
    # one 150 MB file late in the listing, many small ones before it
    sizes = [300_000] * 100 + [150_000_000] + [20_000_000, 400_000, 400_000]
    tasks = _tasks(sizes)
    with Pool(n_workers, setup=_setup, args=(str(tmp_path / "log"),), max_inflight=2) as pool:
        got = list(examine_ahead(pool, tasks))
    assert got == [t.path for t in tasks]


class _Executor:
    """Runs nothing until told: records the submission order and how many were running."""

    def __init__(self):
        self.submitted: list = []
        self.futures: list = []

    def submit(self, fn, item):
        fut = Future()
        fut.set_running_or_notify_cancel()
        self.submitted.append(item)
        self.futures.append((fut, fn, item))
        return fut

    def running(self) -> int:
        return sum(not f.done() for f, _, _ in self.futures)

    def finish_oldest(self):
        for fut, fn, item in self.futures:
            if not fut.done():
                fut.set_result(fn(item))
                return


def test_largest_first_within_the_limit_reported_in_order():
    from mediasec.io.workers import _Reordered

    items = [1, 5, 2, 9, 3, 8]
    order = sorted(range(len(items)), key=lambda i: -items[i])
    ex = _Executor()
    it = _Reordered(ex, lambda x: x * 10, items, order, 2)
    assert ex.submitted == [9, 8]           # started at once, the largest two
    import threading
    stop = threading.Event()
    most = []

    def finisher():   # completes one running item at a time while the reader waits
        while not stop.is_set():
            if ex.running():
                most.append(ex.running())
                ex.finish_oldest()
            stop.wait(0.001)

    th = threading.Thread(target=finisher)
    th.start()
    try:
        got = list(it)
    finally:
        stop.set()
        th.join()
    assert got == [x * 10 for x in items]
    assert ex.submitted == sorted(items, reverse=True)
    assert most and max(most) <= 2


def test_close_cancels_what_was_not_read(tmp_path, fake_examine):
    log = tmp_path / "log"
    tasks = _tasks([8_000_000] * 60)
    with Pool(2, setup=_setup, args=(str(log),), max_inflight=2) as pool:
        it = examine_ahead(pool, tasks)
        assert next(it) == "f000"
        it.close()
        with pytest.raises(StopIteration):
            next(it)
    # only what was in flight ran, not the 60 batches
    assert len(log.read_text().splitlines()) <= 4


def test_a_worker_that_dies_is_an_internal_error(tmp_path, fake_examine):
    log = tmp_path / "log"
    tasks = _tasks([1000] * 3) + [ExamineTask("die", 9_000_000, None)]
    with Pool(2, setup=_setup, args=(str(log),)) as pool:
        it = examine_ahead(pool, tasks)
        with pytest.raises(InternalError, match="died"):
            list(it)


# -- decrypt_chunks: one view per piece -------------------------------------------------------

def _head(iv: bytes) -> EnvelopedHead:
    indefinite = Header(0x30, None, b"\x30\x80", 0)
    return EnvelopedHead(0, None, "1.2.840.113549.1.7.1", "aes-256", iv, "ber",
                         Header(0xA0, None, b"\xa0\x80", 0), indefinite, indefinite,
                         indefinite, indefinite, False)


def _octets(ct: bytes, cuts: list[int]) -> bytes:
    """The pieces of [0] constructed, indefinite (after its header), cut at ``cuts``; then
    the end-of-contents octets a BER EnvelopedData ends with (ECI, EnvelopedData, [0],
    ContentInfo)."""
    out = bytearray()
    prev = 0
    for c in [*cuts, len(ct)]:
        piece = ct[prev:c]
        if piece:
            n = len(piece)
            out += b"\x04" + (bytes([n]) if n < 0x80 else
                               bytes([0x84]) + n.to_bytes(4, "big")) + piece
        prev = c
    return bytes(out) + b"\x00\x00" * 5


def _encrypt(plain: bytes, key: bytes, iv: bytes) -> bytes:
    pad = 16 - len(plain) % 16
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(plain + bytes([pad]) * pad) + enc.finalize()


def _decrypt(blob_chunks, key, iv, piece=4096) -> list[bytes]:
    # each view is valid until the next step: copy it at once
    return [bytes(mv) for mv in decrypt_chunks(ByteStream(iter(blob_chunks)), _head(iv), key,
                                               piece=piece)]


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4095, 4096, 300_001])
def test_decrypt_chunks_matches_whatever_the_cuts(size):
    rng = random.Random(size)
    key, iv = rng.randbytes(32), rng.randbytes(16)
    plain = rng.randbytes(size)
    ct = _encrypt(plain, key, iv)
    for trial in range(6):
        k = min(len(ct) - 1, trial * 3)
        blob = _octets(ct, sorted(rng.sample(range(1, len(ct)), k)) if k > 0 else [])
        step = rng.choice([1, 7, 100, 65536, 1 << 20])
        assert b"".join(_decrypt([blob[i:i + step] for i in range(0, len(blob), step)],
                                 key, iv)) == plain


def test_decrypt_chunks_one_view_per_piece():
    rng = random.Random(1)
    key, iv = rng.randbytes(32), rng.randbytes(16)
    plain = rng.randbytes(300_001)
    views = _decrypt([_octets(_encrypt(plain, key, iv), [])], key, iv, piece=4096)
    assert b"".join(views) == plain
    # 74 pieces of at most 4096 bytes: one view each (the held-back block travels with the
    # next piece, not as a 16-byte view of its own), and the last block's remainder
    assert len(views) <= 75
    assert all(len(v) == 4096 for v in views[1:-2])


def test_decrypt_chunks_bad_padding_is_damage():
    key, iv = bytes(32), bytes(16)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ct = enc.update(b"x" * 31 + b"\x05") + enc.finalize()   # ends 05, not five 05s
    with pytest.raises(DecryptionError, match="padding"):
        _decrypt([_octets(ct, [16])], key, iv)


def test_decrypt_chunks_ragged_ciphertext_is_damage():
    key, iv = bytes(32), bytes(16)
    with pytest.raises(DecryptionError, match="whole number"):
        _decrypt([_octets(bytes(40), [16])], key, iv)


# -- start-up: verify does not load the build ----------------------------------------------

def test_verify_starts_without_the_build_modules():
    """Every disc checked pays the start-up: ``verify`` imports neither the build's modules
    (plan, stages, jobs) nor the package metadata (only ``--version`` needs it)."""
    import subprocess
    import sys
    code = ("import sys, mediasec.cli.main, mediasec.cli.cmd_verify; "
            "print(' '.join(sorted(m for m in ('mediasec.media.jobs', 'mediasec.media.plan', "
            "'mediasec.media.stages', 'mediasec.media.build', 'importlib.metadata', "
            "'pydicom') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
    from mediasec.api import BuildRequest   # still there, loaded on first use
    assert BuildRequest.__module__ == "mediasec.media.jobs"
