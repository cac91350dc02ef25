"""``mediasec verify``: our own media verify clean; each defect, made by damaging a good
medium, gives its reason code; hostile DICOMDIRs are reported and nothing outside the
medium is read; bad inputs are one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import _dicomgen as g
import _media as m
from conftest import PKI, assert_one_line_error, run_cli
from mediasec.cms.keys import KeyDecrypter
from mediasec.io import workers as ioworkers
from mediasec.io.medium import FolderSource, IsoSource, open_medium
from mediasec.media.fileids import check_file_id_value
from mediasec.media.validate import validate_medium
from mediasec.pki.certs import load_certificates, load_private_key
from mediasec.policy import TrustContext

IM0 = "PT000000/ST000000/SE000000/IM000000"
IM1 = "PT000000/ST000000/SE000000/IM000001"


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    return m.good_media(tmp_path_factory.mktemp("media"))


def damaged(media, tmp_path, kind="plain_folder"):
    src = media[kind]
    return m.copy_medium(src, tmp_path / src.name)


# -- our own media -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["plain_folder", "secure_folder", "secure_cd", "secure_dvd",
                                  "plain_cd"])
def test_our_media_verify_clean(media, kind):
    code, doc = m.verify_json(media[kind], *m.KEYS)
    assert code == 0, m.codes(doc)
    assert doc["schema"] == "mediasec.verify/1" and doc["outcome"] == "passed"
    c = doc["counts"]
    assert c == {"files": 9, "passed": 9, "failed": 0, "indeterminate": 0, "with_warnings": 0}
    assert m.codes(doc) == set()
    secure = kind.startswith("secure")
    for f in doc["files"]:
        reasons = {r["code"] for r in f["reasons"]}
        if f["path"] == "MANIFEST.SHA":
            continue
        assert f["kind"] == ("secure" if secure else "plain"), f
        if secure:
            assert "SIG_OK" in reasons, f
        if f["path"] != "DICOMDIR":
            assert "MANIFEST_OK" in reasons and f["record_type"] in ("IMAGE",), f
    med = doc["medium"]
    assert med["fileset_id"] == "TESTSET" and med["fileset_uid"] == "2.25.77"
    assert med["records"] == 2 + 2 + 3 + 7  # patients, studies, series, instances
    if kind.endswith(("cd", "dvd")):
        assert med["volume_id"] == "TESTSET"
    assert "UDF" in med["kind"] if kind == "secure_dvd" else True
    # the tree: patients -> studies -> series with counts, and no patient data in the JSON
    summary = med["summary"]
    assert [len(p["studies"]) for p in summary] == [1, 1]
    assert sorted(se["instances"] for p in summary for st in p["studies"]
                  for se in st["series"]) == [2, 2, 3]
    text = json.dumps(doc)
    assert "DOE^JANE" not in text and '"P2"' not in text


def test_readable_summary_and_two_workers(media):
    res = run_cli("verify", media["secure_cd"], *m.KEYS, "--workers", "2")
    assert res.code == 0, res
    out = res.stdout
    assert "2 patients, 2 studies, 3 series, 7 instances" in out
    assert "Series" in out and "Result: PASSED" in out and "DOE" not in out
    _, one = m.verify_json(media["secure_cd"], *m.KEYS)
    res2 = run_cli("verify", media["secure_cd"], *m.KEYS, "--workers", "2", "--json", "-")
    two = json.loads(res2.stdout)
    assert one["files"] == two["files"] and one["counts"] == two["counts"]


def test_secure_without_key_is_indeterminate_not_failed(media):
    for kind in ("secure_cd", "secure_folder"):
        code, doc = m.verify_json(media[kind])
        assert code == 0 and doc["outcome"] == "indeterminate"
        assert "CMS_ENCRYPTED_NOT_CHECKED" in {f["code"] for f in doc["findings"]}
        d = m.file_entry(doc, "DICOMDIR")
        assert d["kind"] == "secure" and d["status"] == "indeterminate"
        inst = [f for f in doc["files"] if f["path"].startswith("PT")]
        assert len(inst) == 7 and all(f["status"] == "indeterminate" for f in inst)
        # the manifest is still checked: it covers the ciphertext
        assert all("MANIFEST_OK" in {r["code"] for r in f["reasons"]} for f in inst)


def test_signature_without_trust_anchor_is_indeterminate(media):
    code, doc = m.verify_json(media["secure_cd"], "--key", m.KEY, "--cert", m.CERT)
    assert code == 0 and "SIG_TRUST_NOT_CHECKED" in m.codes(doc)


def test_untrusted_anchor_fails(media):
    code, doc = m.verify_json(media["secure_cd"], "--key", m.KEY, "--cert", m.CERT,
                              "--trust", PKI / "rogue-ca.pem")
    assert code == 1 and "SIG_CHAIN_UNTRUSTED" in m.codes(doc, IM0)


# -- defects, one each ---------------------------------------------------------------------------

def test_missing_file(media, tmp_path):
    med = damaged(media, tmp_path)
    (med / IM1).unlink()
    code, doc = m.verify_json(med)
    assert code == 1
    f = m.file_entry(doc, IM1)
    assert f["kind"] == "missing" and {"FILE_MISSING", "MANIFEST_MISSING_FILE"} <= m.codes(doc, IM1)


def test_unreferenced_file_is_a_warning(media, tmp_path):
    med = damaged(media, tmp_path)
    g.write_instance(med / "PT000000" / "EXTRA", "ct", number=99)
    code, doc = m.verify_json(med)
    assert code == 0
    assert m.codes(doc, "PT000000/EXTRA") == {"FILE_UNREFERENCED", "MANIFEST_UNLISTED"}


def test_lower_case_and_dcm_names_resolve_with_warnings(media, tmp_path):
    med = damaged(media, tmp_path)
    (med / IM0).rename(med / "PT000000/ST000000/SE000000/im000000")
    (med / IM1).rename(med / "PT000000/ST000000/SE000000/IM000001.dcm")
    code, doc = m.verify_json(med)
    assert code == 0, m.codes(doc)
    assert m.codes(doc, "PT000000/ST000000/SE000000/im000000") == {"FILEID_CASE"}
    assert m.codes(doc, "PT000000/ST000000/SE000000/IM000001.dcm") == {"FILEID_EXTENSION"}


def test_non_conformant_file_id_in_dicomdir(media, tmp_path):
    med = damaged(media, tmp_path)
    old = m.set_file_id(med / "DICOMDIR", 0, "PT000000\\ST000000\\SE000000\\im000000")
    assert old.endswith("IM000000")
    code, doc = m.verify_json(med)
    assert code == 1
    assert "FILEID_INVALID" in m.codes(doc, "DICOMDIR")
    assert m.file_entry(doc, IM0)["record_type"] == "IMAGE"   # resolved tolerantly


def test_autorun_and_executable(media, tmp_path):
    med = damaged(media, tmp_path)
    (med / "AUTORUN.INF").write_text("[autorun]\nopen=viewer.exe\n")
    (med / "VIEWER").mkdir()
    (med / "VIEWER" / "viewer.exe").write_bytes(b"MZ" + b"\0" * 200)
    (med / "VIEWER" / "run").write_bytes(b"\x7fELF" + b"\0" * 60)
    code, doc = m.verify_json(med)
    assert code == 0
    assert m.codes(doc, "AUTORUN.INF") == {"CONTENT_AUTORUN", "MANIFEST_UNLISTED"}
    assert "CONTENT_EXECUTABLE" in m.codes(doc, "VIEWER/viewer.exe")
    assert "CONTENT_EXECUTABLE" in m.codes(doc, "VIEWER/run")


def test_manifest_mismatch_and_missing_entry(media, tmp_path):
    med = damaged(media, tmp_path)
    lines = (med / "MANIFEST.SHA").read_text().splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.endswith(IM0))
    lines[i] = "0" * 64 + "  " + IM0
    lines.append("f" * 64 + "  PT000009/ST000000/SE000000/IM000000")
    (med / "MANIFEST.SHA").write_text("\n".join(lines) + "\n")
    code, doc = m.verify_json(med)
    assert code == 1
    assert m.codes(doc, IM0) == {"MANIFEST_MISMATCH"}
    assert m.codes(doc, "PT000009/ST000000/SE000000/IM000000") == {"MANIFEST_MISSING_FILE"}


def test_manifest_absent_is_fine(media, tmp_path):
    med = damaged(media, tmp_path)
    (med / "MANIFEST.SHA").unlink()
    code, doc = m.verify_json(med)
    assert code == 0 and doc["medium"]["manifest"] is False


def test_swapped_files_give_ref_mismatch(media, tmp_path):
    med = damaged(media, tmp_path)
    a, b = med / IM0, med / "PT000001/ST000000/SE000000/IM000000"
    tmp = med / "swap"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    (med / "MANIFEST.SHA").unlink()
    code, doc = m.verify_json(med)
    assert code == 1
    assert {"REF_MISMATCH", "KEY_MISMATCH"} <= m.codes(doc, IM0)
    msg = json.dumps([r["message"] for f in doc["files"] for r in f["reasons"]])
    assert "P1" not in msg and "P2" not in msg and "DOE" not in msg


def test_tampered_ciphertext(media, tmp_path):
    med = damaged(media, tmp_path, "secure_folder")
    p = med / IM0
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    code, doc = m.verify_json(med, *m.KEYS)
    assert code == 1
    got = m.codes(doc, IM0)
    assert "MANIFEST_MISMATCH" in got
    assert got & {"INTEGRITY_DIGEST_MISMATCH", "CMS_DECRYPT_FAILED", "CMS_PARSE",
                  "PAYLOAD_NOT_DICOM", "SIG_INVALID"}, got
    assert m.codes(doc, IM1) == set()


def test_tampered_iso_image(media, tmp_path):
    iso = damaged(media, tmp_path, "secure_cd")
    with IsoSource(str(iso)) as src:
        e = next(e for e in src.entries() if e.path == IM1)
    off, length = e.handle[0]
    with open(iso, "r+b") as f:
        f.seek(off + length - 40)
        b = f.read(1)
        f.seek(off + length - 40)
        f.write(bytes([b[0] ^ 0xFF]))
    code, doc = m.verify_json(iso, *m.KEYS)
    assert code == 1 and "MANIFEST_MISMATCH" in m.codes(doc, IM1)
    assert m.codes(doc, IM0) == set()


def test_plain_file_in_secure_set(media, tmp_path):
    med = damaged(media, tmp_path, "secure_folder")
    shutil.copyfile(media["plain_folder"] / IM0, med / IM0)
    code, doc = m.verify_json(med, *m.KEYS)
    assert code == 1
    assert {"FS_MIXED", "FS_DICOMDIR_PLAINTEXT"} <= {f["code"] for f in doc["findings"]}
    assert m.file_entry(doc, IM0)["kind"] == "plain"


def test_plain_dicomdir_in_secure_set(media, tmp_path):
    med = damaged(media, tmp_path, "secure_folder")
    shutil.copyfile(media["plain_folder"] / "DICOMDIR", med / "DICOMDIR")
    code, doc = m.verify_json(med, *m.KEYS)
    assert code == 1 and "FS_DICOMDIR_PLAINTEXT" in {f["code"] for f in doc["findings"]}


def test_profile_transfer_syntax(media, tmp_path):
    code, doc = m.verify_json(media["plain_folder"], "--profile", "STD-GEN-CD")
    assert code == 0
    med = damaged(media, tmp_path)
    g.write_instance(med / "PT000000" / "JPG", "ct", ts=g.JPEG, number=50)
    code, doc = m.verify_json(med, "--profile", "STD-GEN-CD")
    assert code == 1 and "PROFILE_TS" in m.codes(doc, "PT000000/JPG")


def test_no_dicomdir(media, tmp_path):
    med = damaged(media, tmp_path)
    (med / "DICOMDIR").unlink()
    code, doc = m.verify_json(med)
    assert code == 1 and "FS_NO_DICOMDIR" in {f["code"] for f in doc["findings"]}
    # the tree comes from the files
    assert sum(se["instances"] for p in doc["medium"]["summary"] for st in p["studies"]
               for se in st["series"]) == 7


def test_garbage_dicomdir(media, tmp_path):
    med = damaged(media, tmp_path)
    (med / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    code, doc = m.verify_json(med)
    assert code == 1 and m.codes(doc, "DICOMDIR") & {"DIR_META", "DIR_MALFORMED"}


def test_inactive_record(media, tmp_path):
    med = damaged(media, tmp_path)
    data = bytearray((med / "DICOMDIR").read_bytes())
    needle = bytes.fromhex("0400 1014 5553 0200 ffff".replace(" ", ""))
    pos = data.find(needle)
    data[pos + 8:pos + 10] = b"\0\0"
    (med / "DICOMDIR").write_bytes(bytes(data))
    code, doc = m.verify_json(med)
    assert code == 1 and "DIR_FLAGS" in m.codes(doc, "DICOMDIR")


# -- hostile DICOMDIRs -----------------------------------------------------------------------

def test_record_offset_not_on_a_record(media, tmp_path):
    med = damaged(media, tmp_path)
    recs = m.record_offsets(med / "DICOMDIR")
    first_child = recs[0][1].OffsetOfReferencedLowerLevelDirectoryEntity
    m.patch_ul(med / "DICOMDIR", (0x0004, 0x1420), first_child, first_child + 6)
    code, doc = m.verify_json(med)
    assert code == 1 and "DIR_OFFSET" in m.codes(doc, "DICOMDIR")
    assert "DIR_ORPHAN" in m.codes(doc, "DICOMDIR")


def test_huge_offset(media, tmp_path):
    med = damaged(media, tmp_path)
    recs = m.record_offsets(med / "DICOMDIR")
    nxt = recs[0][1].OffsetOfTheNextDirectoryRecord
    m.patch_ul(med / "DICOMDIR", (0x0004, 0x1400), nxt, 0xFFFFFFF0)
    code, doc = m.verify_json(med)
    assert code == 1 and "DIR_OFFSET" in m.codes(doc, "DICOMDIR")


def test_record_cycle(media, tmp_path):
    med = damaged(media, tmp_path)
    recs = m.record_offsets(med / "DICOMDIR")
    leaf_off, leaf = next((o, r) for o, r in recs if r.DirectoryRecordType == "IMAGE"
                          and r.OffsetOfTheNextDirectoryRecord)
    m.patch_ul(med / "DICOMDIR", (0x0004, 0x1400), leaf.OffsetOfTheNextDirectoryRecord,
               leaf_off)
    code, doc = m.verify_json(med)
    assert code == 1 and "DIR_CYCLE" in m.codes(doc, "DICOMDIR")


@pytest.mark.parametrize("value", ["..\\..\\..\\SECRET", "\\ETC\\PASSWD", "C:\\SECRET",
                                   "PT000000\\..\\..\\SECRET", "../../SECRET"])
def test_file_id_escapes_are_never_followed(media, tmp_path, value):
    outside = tmp_path / "SECRET"
    g.write_instance(outside, "ct", number=77)
    med = damaged(media, tmp_path)
    m.set_file_id(med / "DICOMDIR", 2, value)
    opened = []
    real_open = FolderSource.open

    def spy(self, handle):
        opened.append(os.path.realpath(os.path.join(self.root, handle)))
        return real_open(self, handle)
    FolderSource.open = spy
    try:
        rep = validate_medium(open_medium(str(med)))
    finally:
        FolderSource.open = real_open
    root = os.path.realpath(med)
    assert opened and all(p.startswith(root + os.sep) for p in opened)
    doc = rep.to_dict()
    assert "PATH_ESCAPE" in m.codes(doc, "DICOMDIR")
    assert not any("SECRET" in f["path"] for f in doc["files"])


def test_symlink_escape_in_folder(media, tmp_path):
    outside = tmp_path / "outside.dcm"
    g.write_instance(outside, "ct", number=66)
    med = damaged(media, tmp_path)
    victim = med / IM1
    victim.unlink()
    victim.symlink_to(outside)
    (med / "LINKDIR").symlink_to(tmp_path, target_is_directory=True)
    code, doc = m.verify_json(med)
    assert code == 1
    f = m.file_entry(doc, IM1)
    assert f["kind"] == "escape" and "PATH_ESCAPE" in m.codes(doc, IM1)
    assert "sha256" not in f   # never read
    with pytest.raises(OSError):
        next(iter(FolderSource(str(med)).open(IM1)))


def test_check_file_id_value():
    assert check_file_id_value("PT000000\\IM000001")[0] == ("PT000000", "IM000001")
    for bad in ("", "\\A", "A\\\\B", "..", "A\\.", "A/B", "C:", "A\x01"):
        comps, fs = check_file_id_value(bad)
        assert comps is None and [f.code for f in fs] == ["PATH_ESCAPE"], bad
    comps, fs = check_file_id_value("images\\im0001.dcm")
    assert comps == ("images", "im0001.dcm") and [f.code for f in fs] == ["FILEID_INVALID"]


# -- library: workers and the ISO reader -----------------------------------------------------

def _decrypter():
    key = load_private_key((PKI / "recipient-2048.key.pem").read_bytes())[0]
    return KeyDecrypter(key, load_certificates((PKI / "recipient-2048.pem").read_bytes())[0])


def test_library_validate_iso(media):
    trust = TrustContext(anchors=tuple(load_certificates((PKI / "trust.pem").read_bytes())))
    with IsoSource(str(media["secure_dvd"])) as src:
        assert src.namespace == "udf_path" and src.volume_id == "TESTSET"
        assert all(e.iso9660.endswith(".;1") for e in src.entries()
                   if e.path != "MANIFEST.SHA")
        rep = validate_medium(src, decrypters=[_decrypter()], trust=trust)
    assert not rep.failed and rep.counts()["files"] == 9


def test_worker_glue_in_process(media):
    """worker_init/worker_examine (the pool's functions) give what the library gives; the
    state is the caller's object, not a module global."""
    with IsoSource(str(media["secure_cd"])) as src:
        e = next(e for e in src.entries() if e.path == IM0)
        key = load_private_key((PKI / "recipient-2048.key.pem").read_bytes())[0]
        cert = load_certificates((PKI / "recipient-2048.pem").read_bytes())[0]
        anchors = load_certificates((PKI / "trust.pem").read_bytes())
        state = ioworkers.worker_init(src.worker_spec(), [KeyDecrypter(key, cert)],
                                     TrustContext(anchors=tuple(anchors)))
        other = ioworkers.worker_init(src.worker_spec())   # a second job: no keys
        from mediasec.media.examine import ExamineTask
        facts = ioworkers.worker_examine(state, ExamineTask(e.path, e.size, e.handle))
        assert not ioworkers.worker_examine(other, ExamineTask(e.path, e.size, e.handle)
                                           ).decrypted
    assert facts.kind == "secure" and facts.decrypted
    assert "SIG_OK" in {f.code for f in facts.findings}
    assert facts.header.media_sop_instance_uid == facts.header.sop_instance_uid


# -- bad inputs ------------------------------------------------------------------------------

def test_bad_inputs(media, tmp_path):
    assert_one_line_error(run_cli("verify", tmp_path / "nope.iso"), 2, "no such file")
    junk = tmp_path / "junk.iso"
    junk.write_bytes(b"not an image" * 1000)
    assert_one_line_error(run_cli("verify", junk), 2, "not a readable ISO 9660 image")
    assert_one_line_error(run_cli("verify", media["secure_cd"], "--key", tmp_path / "k.pem"),
                          2, "key file not found")
    assert_one_line_error(run_cli("verify", media["secure_cd"], "--cert", m.CERT), 2,
                          "--cert needs --key")
    # a key that is not a recipient cannot open the secure DICOMDIR
    assert_one_line_error(run_cli("verify", media["secure_cd"], "--key",
                                  PKI / "recipient-3072.key.pem", "--cert",
                                  PKI / "recipient-3072.pem"), 2, "DICOMDIR cannot be opened")
    assert_one_line_error(run_cli("verify", media["secure_cd"], "--password-env", "NO_SUCH_VAR"),
                          2, "NO_SUCH_VAR")
    assert_one_line_error(run_cli("verify", media["plain_folder"], "--profile", "NOPE"), 2,
                          "unknown media profile")
    assert_one_line_error(run_cli("verify", media["plain_folder"], "--trust",
                                  tmp_path / "ca.pem"), 2, "not found")


def test_json_to_file_and_progress(media, tmp_path):
    out = tmp_path / "r.json"
    res = run_cli("verify", media["plain_cd"], "--json", out, "--progress", "json",
                  "--workers", "1")
    assert res.code == 0, res
    assert json.loads(out.read_text())["outcome"] == "passed"
    events = [json.loads(ln) for ln in res.stderr.splitlines()]
    assert events[-1]["event"] == "result" and events[0]["event"] == "progress"
