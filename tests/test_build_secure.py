"""Secure discs and sticks (`mediasec build` with a secure profile), read by independent tools.

isoinfo/xorriso list and extract the image, 7z lists its UDF side, openssl opens every
extracted file (decrypt, then verify the signed layer) to the exact plaintext, dcmdump
reads the opened DICOMDIR, sha256sum checks the manifest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pydicom
import pytest

from _cms import wrap_content_info
from _dicomgen import ct_series
from conftest import DICOM, PKI, assert_one_line_error, run_cli, run_peer

# the fixtures a CD (Explicit VR LE only) takes: implicit VR and deflate are converted
CD_PILE = [DICOM / n for n in ("ct1.dcm", "ct2.dcm", "ct3_ile.dcm", "mr1.dcm",
                               "mr2_deflate.dcm", "sr1.dcm", "pr1.dcm", "pdf1.dcm", "us_mf.dcm")]
DVD_PILE = CD_PILE + [DICOM / "ct_jpeg.dcm"]
RECIP = ["--encrypt-to", PKI / "recipient-2048.pem"]
SIGN = ["--sign-key", PKI / "signer.key.pem", "--sign-cert", PKI / "signer.pem",
        "--sign-chain", PKI / "chain.pem"]


def build(tmp_path, *args, pile=CD_PILE, name="disc.iso", code=0):
    out = tmp_path / name
    res = run_cli("build", *pile, "-o", out, *args, "--json", tmp_path / "result.json")
    assert res.code == code, res
    return out, (json.loads((tmp_path / "result.json").read_text()) if code == 0 else None)


def extract(tmp_path, iso):
    dest = tmp_path / "extracted"
    run_peer(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(dest)])
    return dest


def openssl_open(tmp_path, path, *, signed=True, password=None) -> bytes:
    """openssl cms -decrypt (the fixture recipient's key, or ``password``), then -verify
    (or -digest_verify): the exact plaintext. Its temporary files are removed."""
    tag = str(path).replace("/", "_")
    inner = tmp_path / f"{tag}.inner.der"
    how = (["-pwri_password", password] if password is not None else
           ["-recip", str(PKI / "recipient-2048.pem"), "-inkey",
            str(PKI / "recipient-2048.key.pem")])
    run_peer(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(path),
              *how, "-out", str(inner)])
    ci = tmp_path / f"{tag}.inner.ci"
    ci.write_bytes(wrap_content_info(inner.read_bytes(),
                                     "signedData" if signed else "digestedData"))
    plain = tmp_path / f"{tag}.plain.bin"
    if signed:
        run_peer(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(ci),
                  "-CAfile", str(PKI / "trust.pem"), "-purpose", "any", "-out", str(plain)])
    else:
        run_peer(["openssl", "cms", "-digest_verify", "-binary", "-inform", "DER", "-in",
                  str(ci), "-out", str(plain)])
    data = plain.read_bytes()
    for f in (inner, ci, plain):
        f.unlink()
    return data


@pytest.mark.peer("xorriso")
def test_secure_cd_image_read_by_independent_tools(tmp_path):
    iso, result = build(tmp_path, "--profile", "STD-GEN-SEC-CD", *RECIP, *SIGN,
                        "--fileset-id", "PATIENTCD")
    listing = run_peer(["isoinfo", "-l", "-i", str(iso)]).stdout.decode()
    assert "DICOMDIR.;1" in listing and "MANIFEST.SHA;1" in listing
    names = re.findall(r"\s(IM\d{6}\.;1)", listing)
    assert len(names) == len(CD_PILE)
    info = run_peer(["isoinfo", "-d", "-i", str(iso)]).stdout.decode()
    assert "Volume id: PATIENTCD" in info
    dest = extract(tmp_path, iso)
    image = result["images"][0]
    by_path = {f["path"]: f for f in image["files"]}
    sources = {o["file_id"]: o for o in result["outputs"]}
    for path, entry in by_path.items():
        if entry["role"] != "instance":
            continue
        stored = (dest / path).read_bytes()
        assert stored[:2] == b"\x30\x80"  # every DICOM file is a Secure DICOM File
        plain = openssl_open(tmp_path, dest / path)
        src = sources[path]["source"]
        if sources[path]["producer"] == "secure" and plain == open(src, "rb").read():
            continue
        # converted on the way (implicit VR or deflate -> explicit VR LE): same data set
        a, b = pydicom.dcmread(src), pydicom.dcmread(pydicom.filebase.DicomBytesIO(plain))
        assert b.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert a.SOPInstanceUID == b.SOPInstanceUID
        assert a.PixelData == b.PixelData if "PixelData" in a else True
    # the DICOMDIR itself is secure; opened, dcmdump reads it and it lists every instance
    dicomdir = tmp_path / "DICOMDIR.plain"
    dicomdir.write_bytes(openssl_open(tmp_path, dest / "DICOMDIR"))
    dump = run_peer(["dcmdump", str(dicomdir)]).stdout.decode()
    assert dump.count("ReferencedSOPInstanceUIDInFile") == len(CD_PILE)
    # the manifest checks with sha256sum, and matches the JSON result
    check = subprocess.run(["sha256sum", "-c", "MANIFEST.SHA"], cwd=dest, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for line in (dest / "MANIFEST.SHA").read_text().splitlines():
        digest, path = line.split("  ")
        assert by_path[path]["sha256"] == digest


@pytest.mark.peer("7z")
def test_dvd_image_has_a_udf_side_with_the_same_files(tmp_path):
    iso, _ = build(tmp_path, "--profile", "STD-GEN-SEC-DVD-JPEG", *RECIP, pile=DVD_PILE)
    iso_side = {ln.strip("/").removesuffix(";1").rstrip(".") for ln in
                run_peer(["isoinfo", "-f", "-i", str(iso)]).stdout.decode().split()}
    udf = run_peer(["7z", "l", "-tudf", str(iso)]).stdout.decode()
    udf_files = set(re.findall(r"\s(\S+)\s*$", udf, re.M)) - {"Name", "folders", "------------------------"}
    udf_side = {f for f in udf_files if "/" in f or f.isupper()}
    assert {"DICOMDIR", "MANIFEST.SHA"} <= udf_side
    assert {f for f in iso_side if f.count("/") == 3} <= udf_side


def test_pdi_content_has_no_patient_data_on_secure_media(tmp_path):
    iso, _ = build(tmp_path, "--profile", "STD-GEN-SEC-CD", *RECIP, "--pdi",
                   "--pdi-institution", "Example Hospital")
    dest = extract(tmp_path, iso)
    for name in ("README.TXT", "INDEX.HTM", "IHE_PDI/STUDIES.HTM"):
        text = (dest / name).read_text()
        assert "DOE" not in text and "MSEC0001" not in text and "ROE" not in text, name
    for name in ("INDEX.HTM", "IHE_PDI/STUDIES.HTM"):
        root = ET.fromstring((dest / name).read_bytes())  # well-formed XHTML
        assert not root.findall(".//{http://www.w3.org/1999/xhtml}script")
    assert "Example Hospital" in (dest / "README.TXT").read_text()
    assert not any(p.name.upper().startswith("AUTORUN") for p in dest.rglob("*"))


def test_pdi_on_plain_media_lists_patients(tmp_path):
    out, _ = build(tmp_path, "--profile", "STD-GEN-USB-JPEG", "--pdi", name="stick")
    page = (out / "IHE_PDI" / "STUDIES.HTM").read_text()
    assert "DOE JANE" in page and "MSEC0001" in page


def test_secure_usb_folder_every_dicom_file_is_secure(tmp_path):
    out, result = build(tmp_path, *RECIP, *SIGN, name="stick")
    assert result["profile"] == "STD-GEN-SEC-USB-JPEG" and result["secure"]
    for f in result["images"][0]["files"]:
        data = (out / f["path"]).read_bytes()
        if f["role"] in ("instance", "dicomdir"):
            assert data[:2] == b"\x30\x80", f["path"]
    plain = openssl_open(tmp_path, out / "DICOMDIR")
    assert plain[128:132] == b"DICM"


def test_password_disc_opens_with_openssl_password(tmp_path):
    out = tmp_path / "pw.iso"
    res = run_cli("build", *CD_PILE[:2], "-o", out, "--password-env", "DISC_PW",
                  "--pbkdf2-iterations", "100000", env={"DISC_PW": "s3cret pass"})
    assert res.code == 0, res
    dest = extract(tmp_path, out)
    inner = tmp_path / "dd.inner"
    run_peer(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in",
              str(dest / "DICOMDIR"), "-pwri_password", "s3cret pass", "-out", str(inner)])
    assert b"DICM" in inner.read_bytes()[:400]


def test_label_data(tmp_path):
    _, _ = build(tmp_path, *RECIP, "--label", tmp_path / "label.json")
    label = json.loads((tmp_path / "label.json").read_text())
    assert label["schema"] == "mediasec.label/1"
    disc = label["discs"][0]
    assert (disc["disc"], disc["of"]) == (1, 1)
    assert {p["id"] for p in disc["patients"]} == {"MSEC0001", "MSEC0002"}
    assert oct((tmp_path / "label.json").stat().st_mode & 0o777) == "0o600"


# -- spanning -------------------------------------------------------------------------------

def _pile(tmp_path, studies=3, per=6, rows=256):
    """``studies`` studies of ``per`` CT images (256 x 256 x 16 bits: 128 KiB each)."""
    src = tmp_path / "pile"
    for s in range(studies):
        ct_series(src / f"s{s}", per, patient="P1", study=f"ST{s}", series=f"SE{s}",
                  rows=rows, cols=rows)
    return src


def test_span_splits_at_study_boundaries(tmp_path):
    src = _pile(tmp_path)
    out = tmp_path / "job.iso"
    # ~770 KB per study: a 1.2 MB "medium" holds one study (plus the image's own overhead)
    res = run_cli("build", src, "-o", out, *RECIP, "--span", "--capacity", str(1_200_000),
                  "--json", tmp_path / "r.json")
    assert res.code == 0, res
    doc = json.loads((tmp_path / "r.json").read_text())
    images = doc["images"]
    assert len(images) >= 2
    assert [im["disc"] for im in images] == list(range(1, len(images) + 1))
    seen = set()
    for im in images:
        path = im["path"]
        assert os.path.basename(path) == f"job-{im['disc']}.iso"
        info = run_peer(["isoinfo", "-d", "-i", path]).stdout.decode()
        assert f"Volume set size is: {len(images)}" in info
        assert f"Volume set sequence number is: {im['disc']}" in info
        studies = {r["study_uid"] for p in im["dicomdir"]["records"] for r in p["children"]}
        assert not studies & seen  # a study is never split over two discs
        seen |= studies
    assert len(seen) == 3
    assert not out.exists()
    # every disc of the set verifies clean on its own (its own DICOMDIR, all files opened)
    for im in images:
        res = run_cli("verify", im["path"], "--key", PKI / "recipient-2048.key.pem",
                      "--cert", PKI / "recipient-2048.pem", "--json", "-")
        assert res.code == 0, res
        report = json.loads(res.stdout)
        assert report["outcome"] == "passed"
        assert report["counts"]["failed"] == 0
        assert report["counts"]["files"] == len(im["files"]) + 1  # + MANIFEST.SHA


def test_span_on_dvd_with_udf_overhead(tmp_path):
    """The DVD bridge adds a UDF File Entry per file; the estimate keeps discs in capacity."""
    src = _pile(tmp_path)
    out = tmp_path / "dvd.iso"
    cap = 1_600_000
    res = run_cli("build", src, "-o", out, *RECIP, "--profile", "STD-GEN-SEC-DVD-JPEG",
                  "--span", "--capacity", str(cap), "--json", tmp_path / "r.json")
    assert res.code == 0, res
    images = json.loads((tmp_path / "r.json").read_text())["images"]
    assert len(images) >= 2
    assert all(os.path.getsize(im["path"]) <= cap for im in images)


def test_too_big_without_span_is_refused_before_writing(tmp_path):
    src = _pile(tmp_path)
    out = tmp_path / "job.iso"
    res = run_cli("build", src, "-o", out, *RECIP, "--capacity", str(1_200_000))
    assert_one_line_error(res, 2, "job.iso", "--span")
    assert list(tmp_path.glob("job*")) == []


def test_series_too_big_for_any_disc_is_refused(tmp_path):
    src = _pile(tmp_path, studies=1, per=10)  # one 1.3 MB series
    out = tmp_path / "job.iso"
    res = run_cli("build", src, "-o", out, *RECIP, "--span", "--capacity", str(1_100_000))
    assert_one_line_error(res, 2, "cannot be split")
    assert list(tmp_path.glob("job*")) == []


# -- progress, robustness -------------------------------------------------------------------

def test_progress_json_lines(tmp_path):
    out = tmp_path / "p.iso"
    res = run_cli("build", *CD_PILE, "-o", out, *RECIP, "--progress", "json")
    assert res.code == 0, res
    events = [json.loads(ln) for ln in res.stderr.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and events[-1]["event"] == "result"
    done = [e["done_bytes"] for e in progress]
    assert done == sorted(done) and done[-1] == progress[-1]["total_bytes"]
    assert events[-1]["images"] == [str(out)]


def test_bad_profile_choices(tmp_path):
    res = run_cli("build", *CD_PILE, "-o", tmp_path / "a.iso", "--profile", "STD-GEN-CD",
                  *RECIP)
    assert_one_line_error(res, 2, "not a secure profile")
    res = run_cli("build", *CD_PILE, "-o", tmp_path / "b.iso", "--profile", "STD-GEN-SEC-CD")
    assert_one_line_error(res, 2, "secure profile")
    res = run_cli("build", *CD_PILE, "-o", tmp_path / "c.iso", "--profile", "STD-GEN-USB-JPEG")
    assert_one_line_error(res, 2, "USB profile")
    res = run_cli("build", *DVD_PILE, "-o", tmp_path / "d.iso", *RECIP)
    assert_one_line_error(res, 2, "STD-GEN-SEC-CD does not allow JPEG")
    assert list(tmp_path.iterdir()) == []


def test_kill_9_during_build_leaves_nothing(tmp_path):
    src = _pile(tmp_path, studies=2, per=60, rows=256)  # ~16 MB of pixel data
    target = tmp_path / "target"
    target.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    proc = subprocess.Popen([sys.executable, "-m", "mediasec", "build", str(src), "-o",
                             str(target / "disc.iso"), "--encrypt-to",
                             str(PKI / "recipient-2048.pem"), "--progress", "json"],
                            stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        ev = json.loads(line)
        if ev["event"] == "progress" and 0 < ev["done_bytes"] < ev["total_bytes"] // 2:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build ended before it could be killed"
    assert list(target.iterdir()) == []   # no image, no partial file, nothing named
    assert list(tmp.iterdir()) == []      # no temp files either


def test_full_disk_leaves_nothing(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        src = _pile(tmp_path, studies=1, per=20, rows=128)  # ~700 KB: does not fit
        res = run_cli("build", src, "-o", small / "disc.iso", *RECIP)
        assert_one_line_error(res, 3, "disc.iso")
        assert list(small.iterdir()) == []
        res = run_cli("build", src, "-o", small / "stick", *RECIP)
        assert_one_line_error(res, 3, "stick")
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)
