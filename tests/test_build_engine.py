"""The write engine (``mediasec.io.engine``): worker processes make every file straight into
its place (an image's extent, a folder's file); this process writes only the metadata.

* The engine's image equals, byte for byte, what the serial writer
  (``IsoImage.write``, which pulls every byte through this process) makes of the same
  layout and producers: seeded content keys and IVs, a deterministic key transport.
* Files on both sides of every size threshold (the sector, the engine's gather buffer,
  the read and CMS piece size, the batch size) come out right: xorriso
  extracts them, openssl cms opens the secure ones to the exact source bytes, the plain
  ones are the source bytes, and ``sha256sum -c MANIFEST.SHA`` passes.
* A failure in a worker (a source that changed) leaves nothing; results come back in
  completion order.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import time

import pydicom
import pytest

import _dicomgen as g
from _cms import wrap_content_info
from conftest import PKI, run_peer

MiB = 1 << 20
#: plaintext sizes (even: DICOM values are) on both sides of each threshold
SIZES = [2046, 2048, 2050,                        # the sector
         (64 << 10) - 2, 64 << 10, (64 << 10) + 2,  # engine.GATHER
         MiB - 2, MiB, MiB + 2,                    # the read chunk and the CMS piece
         4 * MiB - 2, 4 * MiB + 2]                 # engine.BATCH_BYTES


def _dicom_of_size(path, size: int, number: int) -> None:
    g.write_instance(path, "ct", number=number, series=f"SE{number % 3}")
    ds = pydicom.dcmread(path)
    head = path.stat().st_size - len(ds.PixelData)
    ds.PixelData = random.Random(number).randbytes(size - head)
    ds.save_as(path, enforce_file_format=True)
    assert path.stat().st_size == size


@pytest.fixture(scope="module")
def pile(tmp_path_factory):
    from mediasec.io import engine
    assert (engine.GATHER, engine.BATCH_BYTES) == (64 << 10, 4 * MiB), \
        "SIZES straddle these thresholds: update both"
    root = tmp_path_factory.mktemp("engine") / "pile"
    root.mkdir()
    for i, n in enumerate(SIZES):
        _dicom_of_size(root / f"f{i:02d}.dcm", n, i + 1)
    return root


def _keys():
    from mediasec.cms.keys import KeyTransportRecipient, RSASigner
    from mediasec.pki.certs import load_certificates, load_private_key
    rcert = load_certificates((PKI / "recipient-2048.pem").read_bytes())[0]
    skey = load_private_key((PKI / "signer.key.pem").read_bytes())[0]
    scert = load_certificates((PKI / "signer.pem").read_bytes())[0]
    chain = load_certificates((PKI / "chain.pem").read_bytes())
    return [KeyTransportRecipient(rcert)], [RSASigner(skey, scert, chain)]


def _deterministic_encrypt(self, cek: bytes) -> bytes:
    """RSAES-PKCS1-v1_5 with padding derived from the key (valid, but fixed): the key
    transport of a file is then the same whichever process makes it, and when."""
    pub = self.certificate.public_key().public_numbers()
    k = (pub.n.bit_length() + 7) // 8
    pad = bytes(b | 1 for b in hashlib.shake_256(cek).digest(k - 3 - len(cek)))
    em = b"\x00\x02" + pad + b"\x00" + cek
    return pow(int.from_bytes(em, "big"), pub.e, pub.n).to_bytes(k, "big")


def _seeded(seed: int):
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def test_engine_image_equals_the_serial_writers(tmp_path, pile, monkeypatch):
    """Same job, same layout: the engine's image (workers pwrite every file, this process
    the metadata) and the serial ``IsoImage.write`` of that layout, byte for byte."""
    import mediasec
    from mediasec.cms.keys import KeyTransportRecipient
    from mediasec.io.discs import FileSystemPorts, IsoDiscWriter
    from mediasec.io.fs import AtomicOutput
    from mediasec.media.jobs import run_build

    monkeypatch.setattr(KeyTransportRecipient, "_encrypt", _deterministic_encrypt)
    twin = tmp_path / "serial.iso"

    class Twin:
        """The engine's writer, then the serial writer of the same layout into ``twin``."""

        def __init__(self, inner: IsoDiscWriter):
            self.inner = inner
            self.size = inner.size

        @property
        def digests(self):
            return self.inner.digests

        def write(self, manifest):
            n = self.inner.write(manifest)
            image, files = self.inner.image, self.inner.files
            out = AtomicOutput(twin, anonymous=True)   # O_RDWR: read back below

            def serial_manifest():   # from the serial image's own bytes
                sums = []
                for f in files:
                    if f.role == "manifest":
                        sums.append(None)
                        continue
                    off, length = image.extent(f.components)
                    sums.append(hashlib.sha256(os.pread(out.fileno, length, off)).hexdigest()
                                if length else hashlib.sha256(b"").hexdigest())
                return manifest(sums)
            image.write(out, patch={f.components: serial_manifest for f in files
                                    if f.role == "manifest"})
            out.commit()
            return n

        def source(self):   # the read-back of the job reads the engine's image
            return self.inner.source()

        def commit(self):
            self.inner.commit()

        def abort(self):
            self.inner.abort()

    class Ports(FileSystemPorts):
        def open_disc(self, path, files, layout, on_bytes, workers=None):
            return Twin(super().open_disc(path, files, layout, on_bytes, workers))

    recipients, signers = _keys()
    engine_iso = tmp_path / "engine.iso"
    req = mediasec.BuildRequest([str(pile)], str(engine_iso), recipients=recipients,
                                signers=signers, profile="STD-GEN-SEC-DVD-JPEG", pdi=True,
                                fileset_uid="2.25.15", workers=2, rng=_seeded(15))
    result = run_build(req, Ports())
    a, b = engine_iso.read_bytes(), twin.read_bytes()
    assert len(a) == len(b) == result.document["images"][0]["size"]
    if a != b:
        diff = next(i for i in range(len(a)) if a[i] != b[i])
        pytest.fail(f"the images differ first at byte {diff} (sector {diff // 2048})")
    # and the job's digests are those of the bytes in the image
    manifest = result.document["images"][0]["files"]
    assert len(manifest) == len(SIZES) + 1 + 3   # instances, DICOMDIR, PDI pages


def _openssl_open(tmp_path, path) -> bytes:
    """openssl cms -decrypt, then -verify against the trust anchors: the plaintext."""
    inner = tmp_path / "inner.der"
    run_peer(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(path),
              "-recip", str(PKI / "recipient-2048.pem"), "-inkey",
              str(PKI / "recipient-2048.key.pem"), "-out", str(inner)])
    ci = tmp_path / "inner.ci"
    ci.write_bytes(wrap_content_info(inner.read_bytes(), "signedData"))
    plain = tmp_path / "plain.bin"
    run_peer(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(ci),
              "-CAfile", str(PKI / "trust.pem"), "-purpose", "any", "-out", str(plain)])
    return plain.read_bytes()


def _extract(iso, dest):
    run_peer(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(dest)])
    check = subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.SHA"], cwd=dest,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.peer("xorriso")
@pytest.mark.peer("openssl")
def test_every_threshold_read_back_by_xorriso_and_openssl(tmp_path, pile):
    import mediasec
    recipients, signers = _keys()
    sources = {p.name: p.read_bytes() for p in pile.iterdir()}

    secure = tmp_path / "secure.iso"
    res = mediasec.build(mediasec.BuildRequest(
        [str(pile)], str(secure), recipients=recipients, signers=signers,
        profile="STD-GEN-SEC-DVD-JPEG", pdi=True, workers=2))
    dest = tmp_path / "secure"
    _extract(secure, dest)
    by_id = {o["file_id"]: o for o in res.document["outputs"]}
    opened = 0
    for f in res.document["images"][0]["files"]:
        stored = (dest / f["path"]).read_bytes()
        assert len(stored) == f["size"]
        assert hashlib.sha256(stored).hexdigest() == f["sha256"]
        if f["role"] == "instance":
            src = os.path.basename(by_id[f["path"]]["source"])
            assert _openssl_open(tmp_path, dest / f["path"]) == sources[src], src
            opened += 1
    assert opened == len(SIZES)

    for out in ("plain.iso", "plain-folder"):
        res = mediasec.build(mediasec.BuildRequest(
            [str(pile)], str(tmp_path / out), profile="STD-GEN-DVD-JPEG" if
            out.endswith(".iso") else None, pdi=True, workers=2))
        if out.endswith(".iso"):
            dest = tmp_path / "plain"
            _extract(tmp_path / out, dest)
        else:
            dest = tmp_path / out
            check = subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.SHA"], cwd=dest,
                                   capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
        for o in res.document["outputs"]:
            if o["role"] == "instance":
                got = (dest / o["file_id"]).read_bytes()
                assert got == sources[os.path.basename(o["source"])], o["file_id"]


@pytest.mark.parametrize("out", ["disc.iso", "OUT"])
def test_a_failing_worker_leaves_nothing(tmp_path, out):
    """A source that changes after the plan: the worker making it fails, the job fails
    with the source's INPUT_CHANGED, and neither the image nor the folder is left."""
    import mediasec
    from mediasec.errors import InputError
    from mediasec.io.discs import FileSystemPorts
    from mediasec.media.jobs import run_build

    src = tmp_path / "in"
    g.ct_series(src, 12, rows=64, cols=64)
    victim = sorted(src.iterdir())[5]

    class Ports(FileSystemPorts):
        def open_disc(self, *args, **kw):
            w = super().open_disc(*args, **kw)
            victim.write_bytes(victim.read_bytes() + b"\0\0")   # planned, not yet read
            return w

    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(InputError) as e:
        run_build(mediasec.BuildRequest([str(src)], str(target / out), workers=2), Ports())
    assert e.value.code == "INPUT_CHANGED" and e.value.path == str(victim)
    assert list(target.iterdir()) == []


def _nap(state, item):
    time.sleep(item)
    return item


def test_unordered_results_come_as_they_complete():
    from mediasec.io.workers import Pool
    with Pool(2, max_inflight=4, setup=lambda: None, args=()) as pool:
        got = list(pool.run_unordered(_nap, [0.6, 0.01, 0.02, 0.03]))
    assert sorted(got) == [0.01, 0.02, 0.03, 0.6]
    assert got[-1] == 0.6   # the long first item did not hold the others back


def test_batches_largest_first_small_files_grouped():
    from mediasec.io.engine import BATCH_BYTES, BATCH_FILES, batches
    sizes = [10, BATCH_BYTES * 3, 5, 7, BATCH_BYTES // 2, BATCH_BYTES // 2] + [1] * 200
    out = batches(sizes, range(len(sizes)))
    assert out[0] == [1]                                  # the largest, alone
    assert out[1] == [4, 5]                               # two halves make a batch
    assert sorted(i for b in out for i in b) == list(range(len(sizes)))
    assert all(len(b) <= BATCH_FILES for b in out)


def test_parallel_scan_is_the_serial_scan(tmp_path, monkeypatch):
    """The scan through the workers (inputs mapped in order, results pickled back) gives
    the same ScanResult as the scan here, skipped and damaged files included."""
    from mediasec._data import media_profile
    from mediasec.io import discs
    from mediasec.io.folder import collect_inputs, open_input
    from mediasec.media.build import scan_inputs

    src = tmp_path / "in"
    g.ct_series(src / "a", 20)
    g.ct_series(src / "b", 20, kind="mr", series="SE2")
    (src / "a" / "notes.txt").write_text("not DICOM")
    damaged = src / "b" / "img00003.dcm"
    damaged.write_bytes(damaged.read_bytes()[:200])
    monkeypatch.setattr(discs, "MAP_MIN", 2)
    inputs = collect_inputs([src])
    profile = media_profile("STD-GEN-CD")
    serial = scan_inputs(inputs, profile=profile, opener=open_input,
                         mapper=discs.FileSystemPorts.mapper(1))
    parallel = scan_inputs(inputs, profile=profile, opener=open_input,
                           mapper=discs.FileSystemPorts.mapper(2))
    assert len(serial.scans) == 39 and len(serial.skipped) == 2
    assert parallel == serial


class _Chunks:
    """A producer yielding the given chunks (its planned ``size`` may differ, to test the
    checks)."""

    def __init__(self, chunks, size=None):
        self._chunks = chunks
        self.size = sum(map(len, chunks)) if size is None else size

    def chunks(self):
        yield from self._chunks


@pytest.mark.parametrize("shape", [
    [70000],                         # one chunk past GATHER, padded: one pwritev
    [100, 200, 70000],               # gathered bytes, then a long last chunk with padding
    [2048 * 40],                     # a whole number of sectors: no padding
    [70000, 5],                      # a long chunk, then a short last one (gathered)
    [3000],                          # short: gathered with its padding
    [70000, b""],                    # the last bytes, then an empty chunk
    [],                              # an empty file
])
def test_a_file_and_its_sector_padding_go_out_in_as_few_writes(tmp_path, shape, monkeypatch):
    from mediasec.io import engine
    rnd = random.Random(len(shape))
    chunks = [c if isinstance(c, bytes) else rnd.randbytes(c) for c in shape]
    data = b"".join(chunks)
    calls = []
    real = os.pwritev
    monkeypatch.setattr(engine.os, "pwritev", lambda fd, parts, at: calls.append(at)
                        or real(fd, parts, at))
    path = tmp_path / "img"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"\xee" * (3 * 2048 + len(data) + 4096))   # no zeros already there
        shared = engine._Shared([_Chunks(chunks)], ["f"], fd=fd, offsets=[3 * 2048],
                                pad=True)
        digest, _check = engine._make_one(shared, 0)
    finally:
        os.close(fd)
    img = path.read_bytes()
    padded = data + bytes(-len(data) % 2048)
    assert img[:3 * 2048] == b"\xee" * (3 * 2048)
    assert img[3 * 2048:3 * 2048 + len(padded)] == padded
    assert img[3 * 2048 + len(padded):] == b"\xee" * (len(img) - 3 * 2048 - len(padded))
    assert digest == hashlib.sha256(data).hexdigest()
    if shape in ([70000], [100, 200, 70000], [3000]):
        assert len(calls) == 1


@pytest.mark.parametrize("chunks, size, what", [([b"a" * 70000, b"b" * 2], 70000, "more than"),
                                                ([b"a" * 70000], 70002, "made 70000 bytes")])
def test_a_file_off_its_planned_size_is_an_internal_error(tmp_path, chunks, size, what):
    from mediasec.errors import InternalError
    from mediasec.io import engine
    fd = os.open(tmp_path / "img", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        shared = engine._Shared([_Chunks(chunks, size)], ["f"], fd=fd, offsets=[0], pad=True)
        with pytest.raises(InternalError, match=what):
            engine._make_one(shared, 0)
    finally:
        os.close(fd)
