"""Media made by others verify and extract: dcmmkdir/dcmgpdir, pydicom FileSet, gdcmgendir
File-sets, ISO images of them from genisoimage (plain, Joliet lower-case, Rock Ridge) and
xorriso, and a File-set whose files (and DICOMDIR) were encrypted by ``openssl cms``."""

from __future__ import annotations

import json
import os
import shutil

import pydicom
import pytest
from pydicom.fileset import FileSet

import _dicomgen as g
import _media as m
from _cms import openssl
from conftest import PKI, run_cli, run_peer

pytestmark = pytest.mark.peer


def _instances(folder, names):
    """Instances with conformant names (IMG0001...) in folder/SUBDIR."""
    files = []
    for i, (kind, kw) in enumerate(names):
        files.append(g.write_instance(folder / "IMAGES" / f"IMG{i:04d}", kind, number=i + 1,
                                      **kw))
    return files


KINDS = [("ct", {}), ("ct", {}), ("mr", {"series": "SE2"}),
         ("ct", {"patient": "P2", "study": "S5", "series": "Z"})]


def dcmtk_fileset(root, tool="dcmmkdir", *extra):
    root.mkdir()
    _instances(root, KINDS)
    run_peer([tool, "+r", "+id", str(root), "+D", str(root / "DICOMDIR"), "+F", "PEERSET",
              *extra, "IMAGES"], cwd=root)
    return root


def assert_clean(doc, n=4, allowed=frozenset()):
    assert doc["outcome"] in ("passed", "warning"), m.codes(doc)
    assert m.codes(doc) <= set(allowed), m.codes(doc)
    inst = [f for f in doc["files"] if f["path"].upper().startswith("IMAGES/")]
    assert len(inst) == n and all(f["record_type"] == "IMAGE" for f in inst)


@pytest.mark.parametrize("tool", ["dcmmkdir", "dcmgpdir"])
def test_dcmtk_filesets(tmp_path, tool):
    fs = dcmtk_fileset(tmp_path / "FS", tool)
    code, doc = m.verify_json(fs)
    assert code == 0
    assert_clean(doc)
    assert doc["medium"]["fileset_id"] == "PEERSET"
    out = tmp_path / "OUT"
    res = run_cli("extract", fs, "-o", out, "--workers", "1")
    assert res.code == 0, res
    got = sorted(p for p in out.rglob("*.dcm"))
    assert len(got) == 4
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in got}
    assert uids == {pydicom.dcmread(p).SOPInstanceUID for p in (fs / "IMAGES").iterdir()}


def test_pydicom_fileset(tmp_path):
    src = tmp_path / "src"
    paths = _instances(src, KINDS)
    fs = FileSet()
    fs.ID = "PYDICOMSET"
    for p in paths:
        fs.add(pydicom.dcmread(p))
    out = tmp_path / "PYFS"
    fs.write(out)
    code, doc = m.verify_json(out)
    assert code == 0, m.codes(doc)
    assert doc["outcome"] in ("passed", "warning")
    assert len([f for f in doc["files"] if f.get("record_type") == "IMAGE"]) == 4
    res = run_cli("ls", out, "--json")
    assert res.code == 0 and json.loads(res.stdout)["source"] == "dicomdir"


def test_gdcmgendir_fileset(tmp_path):
    root = tmp_path / "GD"
    root.mkdir()
    _instances(root, KINDS)
    run_peer(["gdcmgendir", "-r", "-i", ".", "-o", "DICOMDIR"], cwd=root)
    code, doc = m.verify_json(root)
    # gdcmgendir's records may lack keys our table calls Type 1: that is reported, not a crash
    refs = [f for f in doc["files"] if f.get("record_type")]
    assert len(refs) == 4, m.codes(doc)
    assert not ({"FILE_MISSING", "REF_MISMATCH", "PATH_ESCAPE", "DIR_OFFSET", "DIR_CYCLE"}
                & m.codes(doc))
    res = run_cli("extract", root, "-o", tmp_path / "OUT", "--workers", "1")
    assert res.code in (0, 1), res
    assert len(list((tmp_path / "OUT").rglob("*.dcm"))) == 4


@pytest.mark.parametrize("flags,ns", [([], "ISO 9660"), (["-J"], "Joliet"),
                                      (["-r"], "Rock Ridge")])
def test_genisoimage_images(tmp_path, flags, ns):
    fs = dcmtk_fileset(tmp_path / "FS")
    iso = tmp_path / "x.iso"
    run_peer(["genisoimage", "-quiet", "-V", "PEERSET", "-sysid", "", *flags, "-o", str(iso),
              str(fs)])
    code, doc = m.verify_json(iso)
    assert code == 0, m.codes(doc)
    assert ns in doc["medium"]["kind"]
    assert_clean(doc)
    out = tmp_path / "OUT"
    assert run_cli("extract", iso, "-o", out, "--workers", "1").code == 0
    assert len(list(out.rglob("*.dcm"))) == 4


def test_lower_case_joliet_names(tmp_path):
    """A File-set with lower-case names on disk (dcmmkdir +m maps them) on a Joliet image:
    every File ID resolves case-insensitively, with FILEID_CASE warnings."""
    root = tmp_path / "LC"
    root.mkdir()
    for i, (kind, kw) in enumerate(KINDS):
        g.write_instance(root / "images" / f"img{i:04d}", kind, number=i + 1, **kw)
    run_peer(["dcmmkdir", "+r", "+m", "+id", str(root), "+D", str(root / "DICOMDIR"),
              "+F", "LOWER", "images"], cwd=root)
    iso = tmp_path / "lc.iso"
    run_peer(["genisoimage", "-quiet", "-V", "LOWER", "-sysid", "", "-J", "-o", str(iso),
              str(root)])
    code, doc = m.verify_json(iso)
    assert code == 0, m.codes(doc)
    assert "Joliet" in doc["medium"]["kind"]
    inst = [f for f in doc["files"] if f["path"].startswith("images/")]
    assert len(inst) == 4
    assert all(m.codes(doc, f["path"]) == {"FILEID_CASE"} for f in inst)
    out = tmp_path / "OUT"
    assert run_cli("extract", iso, "-o", out, "--workers", "1").code == 0
    assert len(list(out.rglob("*.dcm"))) == 4


def test_xorriso_image(tmp_path):
    fs = dcmtk_fileset(tmp_path / "FS")
    iso = tmp_path / "xo.iso"
    run_peer(["xorriso", "-as", "mkisofs", "-V", "PEERSET", "-o", str(iso), str(fs)],
             stdin=open(os.devnull, "rb"))
    code, doc = m.verify_json(iso)
    assert code == 0, m.codes(doc)
    assert_clean(doc, allowed={"ISO_NAME"})


def _openssl_secure(src, dst):
    """openssl cms -sign then -encrypt (the CLI's nesting: ContentInfo inside, id-data)."""
    signed = dst.with_suffix(".signed")
    openssl("cms", "-sign", "-binary", "-nodetach", "-outform", "DER", "-in", src,
            "-signer", PKI / "signer.pem", "-inkey", PKI / "signer.key.pem",
            "-certfile", PKI / "chain.pem", "-out", signed)
    openssl("cms", "-encrypt", "-binary", "-inform", "DER", "-outform", "DER", "-aes256",
            "-in", signed, "-out", dst, "-recip", PKI / "recipient-2048.pem")
    signed.unlink()


def test_openssl_encrypted_fileset(tmp_path):
    fs = dcmtk_fileset(tmp_path / "FS")
    for p in [*sorted((fs / "IMAGES").iterdir()), fs / "DICOMDIR"]:
        tmp = p.with_name(p.name + ".tmp")
        _openssl_secure(p, tmp)
        tmp.replace(p)
    code, doc = m.verify_json(fs, *m.KEYS)
    assert code == 0, m.codes(doc)
    inst = [f for f in doc["files"] if f["path"].startswith("IMAGES/")]
    assert len(inst) == 4
    for f in inst + [m.file_entry(doc, "DICOMDIR")]:
        reasons = {r["code"]: r["outcome"] for r in f["reasons"]}
        assert f["kind"] == "secure" and reasons.get("SIG_OK") == "passed", f
        assert reasons.get("CMS_INNER_WRAPPED") == "warning"
    out = tmp_path / "OUT"
    res = run_cli("extract", fs, "-o", out, *m.KEYS, "--workers", "1")
    assert res.code == 0, res
    got = sorted(out.rglob("*.dcm"))
    assert len(got) == 4 and all(pydicom.dcmread(p).SOPInstanceUID for p in got)
    # without a key: what can be known, not a failure
    code, doc = m.verify_json(fs)
    assert code == 0 and doc["outcome"] == "indeterminate"
    shutil.rmtree(out)
