"""``build --deidentify``: the inputs are de-identified in memory (header) and streamed
(pixel data) through the build's stages; nothing but the medium is written.

The medium is read back by independent tools: xorriso extracts the image, ``openssl cms``
decrypts and verifies each file, dcmdump parses the plaintext; the pixel data must be
the source's, byte for byte, and the originals come back with the escrow key.
"""

from __future__ import annotations

import io
import random

import pydicom
import pytest

import _dicomgen as g
from conftest import PKI, run_cli, run_peer
from test_build_secure import SIGN, extract, openssl_open

from mediasec.deid.files import DeidJob
from mediasec.io.discs import _Rewrite, _RewrittenFile

CERT, KEY = PKI / "recipient-2048.pem", PKI / "recipient-2048.key.pem"
ENV = {"MAPKEY": "a mapping key of 32 characters!!"}


def _pile(tmp_path):
    src = tmp_path / "in"
    # pixel data on both sides of the 1 MiB read chunk, one implicit VR (transcoded after
    # de-identification), and a non-DICOM file the scan lists as skipped
    g.write_instance(src / "big.dcm", patient="DOE^JANE", number=1, rows=760, cols=700)
    g.write_instance(src / "edge.dcm", patient="DOE^JANE", number=2, rows=512, cols=1024)
    g.write_instance(src / "small.dcm", patient="DOE^JANE", number=3, rows=8, cols=8,
                     ts=g.ILE)
    (src / "notes.txt").write_text("not DICOM")
    return src


@pytest.mark.peer("xorriso")
@pytest.mark.peer("openssl")
@pytest.mark.peer("dcmdump")
def test_secure_image_of_deidentified_files_read_by_peers(tmp_path):
    src = _pile(tmp_path)
    sources = {p.name: pydicom.dcmread(p) for p in src.glob("*.dcm")}
    before = set(tmp_path.iterdir())
    out = tmp_path / "disc.iso"
    res = run_cli("build", src, "-o", out, "--encrypt-to", CERT, *SIGN, "--workers", "2",
                  "--deidentify", "--escrow-to", CERT, "--mapping-key-env", "MAPKEY",
                  "--json", "-", env=ENV)
    assert res.code == 0, res
    # nothing written beside the image (no de-identified copies, no staging left)
    assert set(tmp_path.iterdir()) - before == {out}
    import json
    doc = json.loads(res.stdout)
    assert doc["deidentify"]["files"] == 3 and doc["counts"]["instances"] == 3
    assert [s["path"].endswith("notes.txt") for s in doc["skipped"]] == [True]

    dest = extract(tmp_path, out)
    by_pixels = {bytes(d.PixelData): d for d in sources.values()}
    seen = 0
    for path in sorted(dest.rglob("IM*")):
        plain = openssl_open(tmp_path, path)
        f = tmp_path / "plain.dcm"
        f.write_bytes(plain)
        run_peer(["dcmdump", "-q", str(f)])
        ds = pydicom.dcmread(io.BytesIO(plain))
        orig = by_pixels[bytes(ds.PixelData)]          # pixel data byte for byte
        assert "DOE" not in str(ds.PatientName)
        assert ds.SOPInstanceUID != orig.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        back = tmp_path / "back.dcm"
        r = run_cli("reidentify", f, "-o", back, "--key", KEY)
        assert r.code == 0, r
        assert str(pydicom.dcmread(back).PatientName) == "DOE^JANE"
        back.unlink()
        seen += 1
    assert seen == 3
    v = run_cli("verify", out, "--key", KEY, "--cert", CERT, "--trust", PKI / "trust.pem")
    assert v.code == 0, v


def test_deidentify_failure_names_the_input_and_leaves_nothing(tmp_path):
    src = tmp_path / "in"
    g.write_instance(src / "burned.dcm", "sc")
    out = tmp_path / "disc.iso"
    res = run_cli("build", src, "-o", out, "--deidentify", "--escrow-to", CERT)
    assert res.code == 2, res
    assert "burned.dcm" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("seed", range(4))
def test_rewritten_file_reads_like_the_rewritten_stream(tmp_path, seed):
    """The build reads a de-identified input through a seekable file over (new header,
    source pixel span, new tail): any read sizes and seeks give the stream's bytes."""
    rnd = random.Random(seed)
    p = g.write_instance(tmp_path / "x.dcm", patient="DOE^JANE", rows=300, cols=400)
    job = DeidJob(escrow=False)
    with open(p, "rb") as f:
        rewritten, _ = job.prepare(f)
        whole = b"".join(bytes(c) for c in rewritten.chunks(piece=rnd.randint(1, 70_000)))
    assert len(whole) == rewritten.size
    rf = _RewrittenFile(_Rewrite(rewritten, str(p)), lambda s: open(s, "rb"))
    with rf:
        got = bytearray()
        while True:
            b = rf.read(rnd.choice([1, 7, 4096, 65_536, 1 << 20]))
            if not b:
                break
            got += b
        assert bytes(got) == whole
        for _ in range(50):
            pos = rnd.randrange(len(whole))
            n = rnd.randrange(1, 200_000)
            rf.seek(pos)
            assert rf.read(n) == whole[pos:pos + n]
            assert rf.tell() == min(len(whole), pos + n)
        rf.seek(-10, 2)
        buf = bytearray(32)
        assert rf.readinto(buf) == 10 and bytes(buf[:10]) == whole[-10:]


def test_inputs_scanned_in_workers_are_the_deidentified_ones(tmp_path, monkeypatch):
    """Piles of MAP_MIN files or more are scanned in worker processes: they must read the
    de-identified view too (no patient name reaches the DICOMDIR or any file)."""
    import mediasec.io.discs as discs
    monkeypatch.setattr(discs, "MAP_MIN", 2)
    src = tmp_path / "in"
    g.ct_series(src, 6, patient="DOE^SECRET")
    out = tmp_path / "OUT"
    res = run_cli("build", src, "-o", out, "--workers", "2", "--deidentify", "--escrow-to",
                  CERT, "--mapping-key-env", "MAPKEY", env=ENV)
    assert res.code == 0, res
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) >= 7
    assert not [p for p in files if b"SECRET" in p.read_bytes()]
