"""Issue 11: a seeded mutation fuzzer over every reader of hostile bytes.

Readers: the CMS envelope (``inspect_secure_file``: ContentInfo, EnvelopedData, recipient
infos, algorithms), the integrity layer (``read_inner``: SignedData with its certificates
and signature checks, DigestedData), the DICOMDIR decoder (``decode_dicomdir``, strict and
lenient), the Part 10 header scanner (``scan_file``) and the ISO reader (``IsoSource``:
pycdlib, then the listing and a read of every file).

Each reader gets ``MEDIASEC_FUZZ_N`` inputs (default 10,000; CI runs the default, about
10-40 s in all on a busy 2-core machine) made from a valid seed by 1-4 seeded mutations
(bit flips, interesting bytes and 16/32-bit values, truncation, insertion, duplication,
deletion). The only outcomes allowed are a result or a documented error: a
``MediasecError`` that is not ``InternalError``, whose exit code is 1, 2 or 3 and whose
message is one line. Anything else (a ``ValueError``, ``struct.error``, ``IndexError``...
from a parser: exit 4) fails the test with the seed and the input's number, so it can be
replayed: ``MEDIASEC_FUZZ_SEED=<seed> MEDIASEC_FUZZ_N=<n> pytest tests/test_fuzz.py``.

A longer run, documented in the README: ``MEDIASEC_FUZZ_N=1000000 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import io
import os
import random
import struct
import time

import pytest

import _dicomgen as g
from _cms import ktri, protect_bytes, signer
from conftest import run_cli
from mediasec.cli.exits import exit_code_for
from mediasec.cms._ber import ByteStream
from mediasec.cms.envelope import decrypt_chunks, read_enveloped_head

from mediasec.cms.secure import inspect_secure_file, unwrap_key
from mediasec.cms.signed import read_inner
from mediasec.dicom.dicomdir import decode_dicomdir
from mediasec.dicom.scan import scan_file
from mediasec.errors import InternalError, MediasecError
from mediasec.io.medium import IsoSource

N = int(os.environ.get("MEDIASEC_FUZZ_N", "10000"))
SEED = int(os.environ.get("MEDIASEC_FUZZ_SEED", "1111"))
_INTERESTING8 = (0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0xFF)
_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000,
                0xFFFFFFFF, 0xFFFFFFFE)


def mutate(data: bytes, rng: random.Random, region: tuple[int, int] | None = None, *,
           in_place: bool = False) -> bytes:
    """1-4 mutations, within ``region`` (start, end) when given; ``in_place``: the length
    and every offset stay (overwrites only)."""
    buf = bytearray(data)
    lo, hi = region or (0, len(buf))
    for _ in range(rng.randint(1, 4)):
        hi = min(hi, len(buf))
        if hi <= lo:
            break
        pos = rng.randrange(lo, hi)
        op = rng.randrange(5 if in_place else 9)
        if op == 0:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos] = rng.choice(_INTERESTING8)
        elif op == 2:
            buf[pos] = rng.randrange(256)
        elif op == 3:
            v = rng.choice(_INTERESTING)
            buf[pos:pos + 4] = struct.pack(rng.choice("<>") + "I", v)[:len(buf) - pos]
        elif op == 4:
            buf[pos:pos + 2] = struct.pack(rng.choice("<>") + "H", rng.choice(_INTERESTING)
                                           & 0xFFFF)[:len(buf) - pos]
        elif op == 5 and not region:
            del buf[pos:]                                           # truncate
        elif op == 6:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 7:
            n = rng.randint(1, 64)
            buf[pos:pos] = buf[pos:pos + n]                         # duplicate
        else:
            del buf[pos:pos + rng.randint(1, 16)]
    return bytes(buf)


def fuzz(name: str, seed_data: bytes, reader, *, region=None, in_place=False):
    rng = random.Random(f"{SEED}:{name}")
    started = time.monotonic()
    outcomes = {"ok": 0, "error": 0}
    for i in range(N):
        data = mutate(seed_data, rng, region, in_place=in_place)
        try:
            reader(data)
            outcomes["ok"] += 1
        except MediasecError as exc:
            if isinstance(exc, InternalError) or exit_code_for(exc) not in (1, 2, 3):
                raise AssertionError(f"{name} #{i} (seed {SEED}): {type(exc).__name__}: "
                                     f"{exc}") from exc
            assert "\n" not in exc.message, (name, i, exc.message)
            outcomes["error"] += 1
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            raise AssertionError(f"{name} #{i} (seed {SEED}): undocumented "
                                 f"{type(exc).__name__}: {exc}") from exc
    elapsed = time.monotonic() - started
    print(f"fuzz {name}: {N} inputs in {elapsed:.1f} s: {outcomes}")
    # the mutator reaches past the first check: some inputs parse, most do not
    assert outcomes["error"] > 0
    return outcomes


# -- seeds ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_dicom(tmp_path_factory):
    p = tmp_path_factory.mktemp("fz") / "a.dcm"
    g.write_instance(p, "ct", rows=2, cols=2)
    return p.read_bytes()


@pytest.fixture(scope="module")
def secure(small_dicom):
    blob, _ = protect_bytes(small_dicom, recipients=[ktri()], signers=[signer()],
                            framing="der")
    s = ByteStream(iter([blob]), what="seed")
    head = read_enveloped_head(s)
    cek = unwrap_key(head, [ktri_decrypter()]).cek
    inner = b"".join(bytes(c) for c in decrypt_chunks(s, head, cek))
    return blob, head.content_type, inner


def ktri_decrypter():
    from _cms import cert, key
    from mediasec.cms.keys import KeyDecrypter
    return KeyDecrypter(key("recipient-2048"), cert("recipient-2048"))


# -- the readers ------------------------------------------------------------------------------

def test_fuzz_cms_envelope(secure):
    blob, _, _ = secure

    def read(data):
        inspect_secure_file(iter([data]))
    # the outer layer and recipient infos: the first ~1 KB (the rest is ciphertext)
    fuzz("cms-envelope", blob, read, region=(0, min(len(blob), 1200)))


def test_fuzz_cms_signed_data(secure):
    _, content_type, inner = secure

    def read(data):
        read_inner(ByteStream(iter([data]), what="fuzz"), content_type)
    fuzz("cms-signeddata", inner, read)


def test_fuzz_dicomdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fzd")
    g.ct_series(root / "pile", 2)
    res = run_cli("build", root / "pile", "-o", root / "OUT", "--no-manifest")
    assert res.code == 0, res
    seed = (root / "OUT" / "DICOMDIR").read_bytes()

    def read(data):
        decode_dicomdir(data, path="DICOMDIR", lenient=True)
        try:
            decode_dicomdir(data, path="DICOMDIR")
        except MediasecError:
            pass
    fuzz("dicomdir", seed, read)


def test_fuzz_part10_header(small_dicom):
    def read(data):
        scan_file(io.BytesIO(data), len(data), source="fuzz.dcm")
    fuzz("part10", small_dicom, read)


def test_fuzz_iso(tmp_path_factory):
    root = tmp_path_factory.mktemp("fzi")
    g.ct_series(root / "pile", 1, rows=2, cols=2)
    res = run_cli("build", root / "pile", "-o", root / "a.iso", "--profile", "STD-GEN-CD")
    assert res.code == 0, res
    seed = (root / "a.iso").read_bytes()
    # the metadata: volume descriptors, path tables, directory records (sector 16 up to
    # the first file); damaged in place, as a scratched or doctored disc is
    lo = 16 * 2048
    hi = seed.find(b"DICM") - 128 if b"DICM" in seed else len(seed)
    path = root / "fuzz.iso"
    path.write_bytes(seed)
    fd = os.open(path, os.O_WRONLY)

    def read(data):
        os.pwrite(fd, data[lo:hi], lo)   # only the fuzzed region changes
        src = IsoSource(str(path))
        try:
            for e in src.entries():
                if e.kind == "file" and e.handle is not None:
                    for _ in src.open(e.handle):
                        pass
        finally:
            src.close()
    try:
        fuzz("iso", seed, read, region=(lo, max(lo + 1, hi)), in_place=True)
    finally:
        os.close(fd)
