"""Issue 11, media side: wrong answers a hostile or damaged medium used to get.

* the DICOMDIR's own ``MANIFEST.SHA`` line is checked (``sha256sum -c`` is the peer);
* a record whose Referenced File ID names the DICOMDIR (or the manifest) fails;
* ``extract`` fails (exit 1) on a symbolic link leaving the medium and never follows it.
"""

from __future__ import annotations

import json
import os

import pytest

import _dicomgen as g
import _media as m
from conftest import run_cli, run_peer

IM1 = "PT000000/ST000000/SE000000/IM000001"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("hm")
    g.ct_series(root / "pile", 3)
    out = root / "PLAIN"
    m.build(root / "pile", out)
    return out


def _copy(folder, tmp_path):
    return m.copy_medium(folder, tmp_path / "MED")


@pytest.mark.peer("sha256sum")
def test_dicomdir_manifest_line_is_checked(folder, tmp_path):
    med = _copy(folder, tmp_path)
    assert run_peer(["sha256sum", "-c", "MANIFEST.SHA"], cwd=med).returncode == 0
    code, doc = m.verify_json(med)
    assert code == 0
    ok = {r["code"] for r in m.file_entry(doc, "DICOMDIR")["reasons"]}
    assert "MANIFEST_OK" in ok
    # change the patient's name inside the DICOMDIR: same length, still decodes
    data = (med / "DICOMDIR").read_bytes()
    assert data.count(b"DOE^JANE") == 1
    (med / "DICOMDIR").write_bytes(data.replace(b"DOE^JANE", b"DOE^JANX"))
    peer = run_peer(["sha256sum", "-c", "MANIFEST.SHA"], cwd=med, check=False)
    assert peer.returncode != 0 and b"DICOMDIR: FAILED" in peer.stdout
    code, doc = m.verify_json(med)
    assert code == 1
    assert m.codes(doc, "DICOMDIR") == {"MANIFEST_MISMATCH"}


def test_dicomdir_not_in_manifest_is_a_warning(folder, tmp_path):
    med = _copy(folder, tmp_path)
    lines = (med / "MANIFEST.SHA").read_text().splitlines()
    (med / "MANIFEST.SHA").write_text("".join(ln + "\n" for ln in lines
                                              if not ln.endswith("  DICOMDIR")))
    code, doc = m.verify_json(med)
    assert code == 0 and m.codes(doc, "DICOMDIR") == {"MANIFEST_UNLISTED"}


@pytest.mark.parametrize("target", ["DICOMDIR", "MANIFEST.SHA"])
def test_record_referencing_dicomdir_fails(folder, tmp_path, target):
    med = _copy(folder, tmp_path)
    m.set_file_id(med / "DICOMDIR", 1, target)
    code, doc = m.verify_json(med)
    assert code == 1
    assert "FILEID_RESERVED" in m.codes(doc, "DICOMDIR")
    # the file the record used to reference is now just unreferenced
    assert m.codes(doc, IM1) == {"FILE_UNREFERENCED"}
    # extract: the DICOMDIR is never written out as an instance
    res = run_cli("extract", med, "-o", tmp_path / "X", "--json", "-")
    doc = json.loads(res.stdout)
    assert all(f["path"] not in ("DICOMDIR", "MANIFEST.SHA") for f in doc["files"])


def test_extract_refuses_symlink_escape(folder, tmp_path):
    outside = tmp_path / "outside.dcm"
    g.write_instance(outside, "ct", number=66, patient_name="OUTSIDE^SECRET")
    med = _copy(folder, tmp_path)
    (med / IM1).unlink()
    (med / IM1).symlink_to(outside)
    out = tmp_path / "X"
    res = run_cli("extract", med, "-o", out, "--json", "-")
    assert res.code == 1, res
    doc = json.loads(res.stdout)
    assert doc["outcome"] == "failed"
    assert [f["code"] for f in doc["findings"] if f["outcome"] == "failed"] == ["PATH_ESCAPE"]
    # the other files are extracted; nothing from outside the medium is
    assert doc["counts"]["written"] == 2
    for dirpath, _, names in os.walk(out):
        for n in names:
            assert b"OUTSIDE^SECRET" not in open(os.path.join(dirpath, n), "rb").read()
    # text mode names the problem on stderr, one line
    res = run_cli("extract", med, "-o", tmp_path / "Y")
    assert res.code == 1
    assert [ln for ln in res.stderr.splitlines() if "PATH_ESCAPE" in ln] == [
        f"mediasec: {med}: PATH_ESCAPE: {IM1}: a symbolic link that leads outside the "
        "medium: not followed, not extracted"]

