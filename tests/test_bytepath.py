"""The byte-path contract, consumer by consumer: a chunk is valid only until the next one is
requested (``mediasec.media.plan.Producer``).

Every consumer of producer chunks (the ISO writer's ``LazyReader``, ``write_producer`` for
folders, ``ChunkReader`` under the CMS producer)
and of reader chunks (``ByteStream``/``open_secure_file``, ``examine_file``, ``extract_file``,
the whole ``validate_medium`` over an image) is fed through ``tests/_poison.py``, which
scribbles over each chunk the moment the next one is asked for, at random chunk boundaries
(Hypothesis, derandomized). Before commit 7c6bfc4 ``LazyReader`` joined views of chunks
after advancing and these tests fail on it.
"""

from __future__ import annotations

import hashlib
import io
import random

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from mediasec.cms.keys import KeyDecrypter, PasswordDecrypter
from mediasec.cms.secure import ProtectOptions, open_secure_file
from mediasec.io.iso import IsoFile, IsoImage
from _pycdlib_image import LazyReader, PycdlibImage
from mediasec.media.extract import ExtractTask, extract_file
from mediasec.media.plan import BytesProducer, write_producer
from mediasec.media.stages import ChunkReader, FileItem, ProtectStage
from mediasec.media.examine import examine_file

from _cms import PASSWORD, SAMPLE, cert, key, ktri, pwri, signer
from _poison import POISON, PoisonProducer, PoisonSource, poisoned

SETTINGS = settings(derandomize=True, max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SIZES = st.lists(st.integers(1, 70_000), min_size=1, max_size=8)
RNG = random.Random(9)
DATA = RNG.randbytes(300_000)
RECIPIENTS = [ktri(), pwri()]   # made once: one PBKDF2 for the module
DECRYPTERS = [KeyDecrypter(key("recipient-2048"), cert("recipient-2048")),
              PasswordDecrypter(PASSWORD)]


def secure_producer(data: bytes, *, sizes=None, chunk: int = 4096, signed=True):
    """The build's protect stage over a poisoned plaintext producer (small CMS chunks: many
    buffer reuses in a small file): ``size`` and ``chunks()`` as the image writer sees them."""
    inner = PoisonProducer(BytesProducer(data), sizes)
    stage = ProtectStage.for_job(recipients=RECIPIENTS,
                                 signers=[signer()] if signed else [],
                                 options=ProtectOptions(chunk=chunk))
    step = stage.prepare(FileItem(role="instance", size=len(data)), len(data))

    class Protected:
        size = step.size

        def chunks(self):
            return step.run(inner)

    return Protected()


def drain_reader(reader, reads) -> bytes:
    """Read the planned size, as pycdlib does, in ``reads``-sized calls; then one more read
    at the end, which must be empty."""
    out = bytearray()
    i = 0
    while len(out) < reader._producer.size:
        n = reads[i % len(reads)]
        i += 1
        b = reader.read(n)
        assert b, "a LazyReader ended before its planned size"
        out += b
    assert reader.read(1) == b""
    return bytes(out)


# -- the poison itself ---------------------------------------------------------------------------

def test_the_poison_catches_a_consumer_that_keeps_views():
    kept = []
    for c in poisoned([b"abc", b"def"], [2]):
        kept.append(c)          # a view kept across next(): the bug class
    assert b"".join(bytes(k) for k in kept) == bytes((POISON,)) * 6
    assert b"".join(bytes(c) for c in poisoned([b"abc", b"def"], [2])) == b"abcdef"


# -- producer consumers ----------------------------------------------------------------------------

@SETTINGS
@given(sizes=SIZES, reads=st.lists(st.integers(1, 200_000), min_size=1, max_size=6),
       n=st.integers(0, len(DATA)))
def test_lazy_reader_any_chunking_any_reads(sizes, reads, n):
    r = LazyReader(PoisonProducer(BytesProducer(DATA[:n]), sizes), "f")
    assert drain_reader(r, reads) == DATA[:n]


@settings(SETTINGS, max_examples=10)
@given(sizes=st.lists(st.integers(500, 70_000), min_size=1, max_size=6),
       reads=st.lists(st.integers(1000, 1 << 20), min_size=1, max_size=4))
def test_lazy_reader_over_the_cms_producer(sizes, reads):
    # the producer that reuses its buffers, itself fed poisoned plaintext
    p = secure_producer(DATA[:100_000], sizes=sizes)
    blob = drain_reader(LazyReader(PoisonProducer(p, sizes), "f"), reads)
    assert len(blob) == p.size
    got = bytearray()
    rep = open_secure_file(poisoned([blob], sizes), decrypters=DECRYPTERS, sink=got.extend)
    assert [f.code for f in rep.failures()] == ["PAYLOAD_NOT_DICOM"]  # random bytes
    assert "SIG_TRUST_NOT_CHECKED" in [f.code for f in rep.findings]  # signature valid
    assert bytes(got) == DATA[:100_000]


@SETTINGS
@given(sizes=SIZES)
def test_chunk_reader(sizes):
    r = ChunkReader(poisoned([DATA], sizes))
    buf = bytearray(777)
    out = bytearray()
    while n := r.readinto(buf):
        out += buf[:n]
    assert out == DATA
    r = ChunkReader(poisoned([DATA], sizes))
    assert r.read(5) + r.read() == DATA


@SETTINGS
@given(sizes=SIZES)
def test_write_producer(sizes):
    out = io.BytesIO()
    write_producer(PoisonProducer(BytesProducer(DATA), sizes), out)
    assert out.getvalue() == DATA


@pytest.mark.parametrize("writer", [IsoImage, PycdlibImage], ids=["ours", "pycdlib"])
def test_iso_image_from_poisoned_producers(tmp_path, writer):
    """The whole serial writer, CD and DVD (UDF bridge): ours (``io.isowrite``) and the
    reference (pycdlib's reads through LazyReader)."""
    from mediasec.io.fs import AtomicOutput
    from mediasec.io.medium import IsoSource

    contents = {("A", f"F{i}"): RNG.randbytes(n) for i, n in
                enumerate([0, 1, 2047, 2048, 2049, (1 << 20) - 1, (1 << 20) + 1, 3 << 20])}
    for udf in (False, True):
        files = [IsoFile(c, PoisonProducer(BytesProducer(d), [65_537, 100, 1 << 20]))
                 for c, d in contents.items()]
        image = writer(files, volume_id="T", udf=udf)
        target = tmp_path / f"t{int(udf)}.iso"
        out = AtomicOutput(target)
        image.write(out)
        out.commit()
        with IsoSource(str(target)) as src:
            got = {tuple(e.path.split("/")): b"".join(bytes(c) for c in src.open(e.handle))
                   for e in src.entries()}
        assert got == {k: v for k, v in contents.items()}


# -- reader consumers ------------------------------------------------------------------------------

@SETTINGS
@given(sizes=SIZES, signed=st.booleans())
def test_open_secure_file_any_chunking(sizes, signed):
    p = secure_producer(SAMPLE, chunk=512, signed=signed)
    blob = b"".join(bytes(c) for c in p.chunks())
    got = bytearray()
    rep = open_secure_file(poisoned([blob], sizes), decrypters=DECRYPTERS, sink=got.extend)
    assert not rep.failures()
    assert bytes(got) == SAMPLE


@SETTINGS
@given(sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=8))
def test_examine_and_extract_any_chunking(sizes):
    p = secure_producer(SAMPLE, chunk=512)
    blob = b"".join(bytes(c) for c in p.chunks())
    for stored, kind in ((blob, "secure"), (SAMPLE, "plain")):
        got = bytearray()
        facts = examine_file(poisoned([stored], sizes), path="F", size=len(stored),
                             decrypters=DECRYPTERS, sink=got.extend)
        assert facts.kind == kind and facts.decrypted, facts
        assert facts.sha256 == hashlib.sha256(stored).hexdigest()
        assert not [f for f in facts.findings if f.outcome.value == "failed"], facts.findings
        assert bytes(got) == SAMPLE
        assert facts.header is not None

        class Out:
            data = bytearray()
            committed = False

            def write(self, mv):
                self.data += mv

            def commit(self):
                self.committed = True

            def abort(self):
                pass
        out = Out()
        res = extract_file(poisoned([stored], sizes), ExtractTask("F", len(stored), None, "x"),
                           open_output=lambda rel: out, decrypters=DECRYPTERS)
        assert out.committed and bytes(out.data) == SAMPLE, res


def test_validate_medium_through_poisoned_reads(tmp_path):
    """verify's whole path (DICOMDIR, manifest, every file decrypted) over tiny and odd
    chunks; the same image read plainly gives the same report."""
    from mediasec.io.medium import IsoSource
    from mediasec.media.validate import validate_medium
    from _media import KEY, CERT, PROTECT, build, make_pile
    from mediasec.pki.certs import load_certificates, load_private_key

    src = make_pile(tmp_path)
    iso = tmp_path / "d.iso"
    build(src, iso, "--profile", "STD-GEN-SEC-DVD-JPEG", *PROTECT)
    dec = [KeyDecrypter(load_private_key(KEY.read_bytes())[0],
                        load_certificates(CERT.read_bytes())[0])]
    with IsoSource(str(iso)) as s:
        plain = validate_medium(s, decrypters=dec).to_dict()
    for sizes in ([1, 2, 3, 160, 4093], [65_536, 17]):
        with IsoSource(str(iso)) as s:
            rep = validate_medium(PoisonSource(s, sizes), decrypters=dec).to_dict()
        assert rep["outcome"] == plain["outcome"] != "failed", rep  # no trust: indeterminate
        assert rep["counts"] == plain["counts"]
