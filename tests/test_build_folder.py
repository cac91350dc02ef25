"""``mediasec build`` to a folder: independent readers accept the output; bad inputs fail
cleanly (exit code, one line naming the file, nothing left at the output path)."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pydicom
import pytest
from pydicom.fileset import FileSet

import _dicomgen as g
from conftest import DICOM, assert_one_line_error, run_cli, run_peer
from mediasec.dicom.fileid import is_valid_file_id


def pile(root):
    """A PACS-export-like pile: nested folders, odd names, non-DICOM files, mixed syntaxes."""
    g.ct_series(root / "export" / "2024" / "CT", 4, name=lambda i: f"1.3.6.{i}")
    g.ct_series(root / "export" / "ile", 2, series="SE2", ts=g.ILE, name=lambda i: f"x{i}.DCM")
    for k in g.KINDS:
        if k != "ct":
            g.write_instance(root / "export" / "misc" / f"{k}", k, series="SE_" + k)
    g.write_instance(root / "export" / "defl.dcm", "sr_basic", ts=g.DEFL, series="SEd")
    (root / "export" / "README.TXT").write_text("not dicom")
    (root / "export" / "viewer.exe").write_bytes(b"MZ" + b"\0" * 300)
    return root / "export"


def build(tmp_path, *args, src=None):
    out = tmp_path / "OUT"
    res = run_cli("build", *(src or [pile(tmp_path)]), "-o", out, "--json", "-",
                  "--fileset-uid", "2.25.42", *args)
    assert res.code == 0, res
    return out, json.loads(res.stdout)


def test_build_folder_end_to_end(tmp_path):
    out, doc = build(tmp_path, "--fileset-id", "TESTSET")
    assert doc["schema"] == "mediasec.build/1" and doc["profile"] == "STD-GEN-USB-JPEG"
    n = len(g.KINDS) - 1 + 4 + 2 + 1
    assert doc["counts"]["instances"] == n and doc["counts"]["converted"] == 3
    assert {s["path"].rsplit("/", 1)[1] for s in doc["skipped"]} == {"README.TXT", "viewer.exe"}
    assert all(s["code"] == "SKIP_NOT_DICOM" for s in doc["skipped"])
    assert {c["from"] for c in doc["converted"]} == {g.ILE, g.DEFL}
    # every file written, with its planned size, conformant File IDs, 644/755
    for o in doc["outputs"]:
        parts = o["file_id"].split("/")
        assert is_valid_file_id(parts)
        p = out.joinpath(*parts)
        assert p.stat().st_size == o["size"]
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    for d, _, _ in os.walk(out):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o755
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".OUT")]
    # pydicom's FileSet finds every record and every file
    ds = pydicom.dcmread(out / "DICOMDIR")
    assert ds.file_meta.MediaStorageSOPInstanceUID == "2.25.42" and ds.FileSetID == "TESTSET"
    fs = FileSet(ds)
    assert len(fs) == n
    for inst in fs:
        f = inst.load()
        assert f.SOPInstanceUID == inst.ReferencedSOPInstanceUIDInFile
        assert f.file_meta.TransferSyntaxUID == inst.ReferencedTransferSyntaxUIDInFile == g.ELE
    # the right leaf type for every SOP class
    by_uid = {r.ReferencedSOPInstanceUIDInFile: r.DirectoryRecordType
              for r in ds.DirectoryRecordSequence if "ReferencedSOPInstanceUIDInFile" in r}
    for o in doc["outputs"][1:]:
        kind = next(k for k, (uid, _) in g.KINDS.items()
                    if uid == pydicom.dcmread(out.joinpath(*o["file_id"].split("/"))).SOPClassUID)
        assert by_uid[o["sop_instance_uid"]] == g.KINDS[kind][1] == o["record_type"]
    # the JSON tree mirrors the DICOMDIR and holds no patient names or IDs
    tree = doc["dicomdir"]["records"]
    assert tree[0]["type"] == "PATIENT" and "DOE" not in json.dumps(doc["dicomdir"])


def test_dcmdump_and_dciodvfy_accept_our_dicomdir(tmp_path):
    out, _ = build(tmp_path)
    dump = run_peer(["dcmdump", str(out / "DICOMDIR")]).stdout.decode()
    assert "MediaStorageDirectoryStorage" in dump
    proc = run_peer(["dciodvfy", str(out / "DICOMDIR")], check=False)
    errors = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("Error")]
    assert errors == []


def _records(path):
    ds = pydicom.dcmread(path)
    out = set()
    for r in ds.DirectoryRecordSequence:
        key = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
               "SERIES": "SeriesInstanceUID"}.get(r.DirectoryRecordType)
        ref = tuple(r.ReferencedFileID) if "ReferencedFileID" in r else None
        out.add((r.DirectoryRecordType, str(r.get(key, "")) if key else
                 r.ReferencedSOPInstanceUIDInFile, ref))
    return out


@pytest.mark.parametrize("tool", ["dcmmkdir", "dcmgpdir"])
def test_dcmtk_builds_an_equivalent_dicomdir_on_our_folder(tmp_path, tool):
    out, _ = build(tmp_path, "--profile", "STD-GEN-CD")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "DICOMDIR").unlink()
    args = [tool, "--recurse", "+D", str(tmp_path / "peer.DICOMDIR"), "PT000000"]
    if tool == "dcmmkdir":
        args.insert(1, "-Pgp")
    run_peer(args, cwd=copy)
    ours, theirs = _records(out / "DICOMDIR"), _records(tmp_path / "peer.DICOMDIR")
    assert ours == theirs


def test_fixtures_build_with_the_manifest_record_types(tmp_path):
    manifest = DICOM / "MANIFEST.json"
    if not manifest.exists():
        pytest.skip("fixtures/dicom/MANIFEST.json not generated yet")
    files = json.loads(manifest.read_text())["files"]
    usable = [f for f in files if f["transfer_syntax_uid"] != "1.2.840.10008.1.2.5"]
    out = tmp_path / "FIX"
    res = run_cli("build", *[DICOM / f["path"] for f in usable], "-o", out, "--json", "-")
    assert res.code == 0, res
    ds = pydicom.dcmread(out / "DICOMDIR")
    got = {r.ReferencedSOPInstanceUIDInFile: r.DirectoryRecordType
           for r in ds.DirectoryRecordSequence if "ReferencedSOPInstanceUIDInFile" in r}
    assert got == {f["sop_instance_uid"]: f["directory_record_type"] for f in usable}
    # RLE is in no general-purpose profile: refused, and the file is named
    rle = [DICOM / f["path"] for f in files if f not in usable]
    if rle:
        res = run_cli("build", *rle, "-o", tmp_path / "RLE")
        assert_one_line_error(res, 2, rle[0].name, "no general-purpose profile allows them")
        assert not (tmp_path / "RLE").exists()


def test_identical_duplicates_kept_once(tmp_path):
    src = tmp_path / "in"
    a = g.write_instance(src / "a", "ct")
    shutil.copy(a, src / "zz_copy")
    out, doc = build(tmp_path, src=[src])
    assert doc["counts"]["instances"] == 1
    assert doc["duplicates"] == [{"kept": str(a), "dropped": str(src / "zz_copy")}]


def test_input_dicomdir_is_read_as_a_fileset(tmp_path):
    first, _ = build(tmp_path)
    (tmp_path / "second").mkdir()
    res = run_cli("build", first / "DICOMDIR", "-o", tmp_path / "second" / "OUT", "--json", "-",
                  "--profile", "STD-GEN-CD")
    assert res.code == 0, res
    doc = json.loads(res.stdout)
    assert doc["input_filesets"][0]["path"] == str(first / "DICOMDIR")
    assert doc["input_filesets"][0]["missing"] == []
    assert doc["counts"]["instances"] == doc["input_filesets"][0]["referenced"] > 10
    assert any(s["code"] == "SKIP_INPUT_DICOMDIR" for s in doc["skipped"])


def test_fill_missing_lists_every_made_up_value(tmp_path):
    src = tmp_path / "anon"
    for i in range(3):
        g.write_instance(src / f"{i}", "ct", number=i + 1,
                         extra={"PatientID": None, "StudyID": None, "SeriesNumber": None})
    res = run_cli("build", src, "-o", tmp_path / "OUT")
    assert_one_line_error(res, 2, str(src / "0"), "Type 1 keys missing", "PatientID",
                          "--fill-missing")
    assert not (tmp_path / "OUT").exists()
    out, doc = build(tmp_path, "--fill-missing", src=[src])
    made = {(m["record"], m["key"]) for m in doc["made_up"]}
    assert made == {("PATIENT", "PatientID"), ("STUDY", "StudyID"), ("SERIES", "SeriesNumber")}
    ds = pydicom.dcmread(out / "DICOMDIR")
    pid = next(m["value"] for m in doc["made_up"] if m["key"] == "PatientID")
    assert ds.DirectoryRecordSequence[0].PatientID == pid


def test_progress_json_lines(tmp_path):
    src = pile(tmp_path)
    res = run_cli("build", src, "-o", tmp_path / "OUT", "--progress", "json")
    assert res.code == 0, res
    events = [json.loads(ln) for ln in res.stderr.splitlines()]
    assert events[-1]["event"] == "result" and events[-1]["outcome"] == "passed"
    prog = [e for e in events if e["event"] == "progress"]
    assert prog and prog[-1]["done_bytes"] == prog[-1]["total_bytes"]
    assert set(prog[0]) == {"event", "done_bytes", "total_bytes", "file"}


# ---- bad inputs: exit code, one line naming the file, nothing at the output ------------------

def _refused(tmp_path, args, code, *needles):
    out = tmp_path / "OUT"
    res = run_cli("build", *args, "-o", out)
    assert_one_line_error(res, code, *needles)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".OUT")]


def test_no_dicom_at_all(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    _refused(tmp_path, [tmp_path / "in"], 2, str(tmp_path / "in" / "a.txt"), "no DICOM files")


def test_same_instance_different_content(tmp_path):
    a = g.write_instance(tmp_path / "in" / "a", "ct")
    b = g.write_instance(tmp_path / "in" / "b", "ct", extra={"StudyDescription": "other"})
    _refused(tmp_path, [tmp_path / "in"], 2, str(a), str(b), "different content")


def test_forbidden_transfer_syntax_suggests_a_profile(tmp_path):
    j = g.write_instance(tmp_path / "in" / "j", "ct", ts=g.JPEG)
    g.write_instance(tmp_path / "in" / "k", "ct", number=2)
    _refused(tmp_path, [tmp_path / "in", "--profile", "STD-GEN-CD"], 2, str(j),
             "STD-GEN-CD does not allow JPEG Baseline", "STD-GEN-USB-JPEG allows them")


def test_big_endian_is_refused(tmp_path):
    b = g.write_instance(tmp_path / "in" / "be", "ct", ts=g.BE)
    _refused(tmp_path, [tmp_path / "in"], 2, str(b), "Big Endian")


def test_output_exists_and_secure_and_unknown_profile(tmp_path):
    src = g.write_instance(tmp_path / "in" / "a", "ct")
    (tmp_path / "OUT").mkdir()
    res = run_cli("build", src, "-o", tmp_path / "OUT")
    assert_one_line_error(res, 2, "OUT", "already exists")
    assert list((tmp_path / "OUT").iterdir()) == []
    shutil.rmtree(tmp_path / "OUT")
    _refused(tmp_path, [src, "--profile", "STD-GEN-SEC-USB-JPEG"], 2,
             "is a secure profile: give --encrypt-to CERT and/or --password-env VAR")
    _refused(tmp_path, [src, "--profile", "STD-GEN-USB"], 2, "unknown media profile")
    res = run_cli("build", src, "-o", tmp_path / "disc.iso")  # a plain STD-GEN-CD image
    assert res.code == 0, res
    assert (tmp_path / "disc.iso").read_bytes()[0x8001:0x8006] == b"CD001"
    _refused(tmp_path, [tmp_path / "nope"], 2, "nope", "no such file")


@pytest.mark.parametrize("out", ["OUT", "disc.iso"])
def test_failure_while_writing_leaves_nothing(tmp_path, out):
    """A source that changes between scan and write (through the one build path, the API
    the CLI runs): the staging folder or image is removed."""
    import mediasec
    from mediasec.errors import InputError
    src = tmp_path / "in"
    g.ct_series(src, 3)
    victim = sorted(src.iterdir())[-1]
    original = victim.read_bytes()

    def on_progress(event):  # the first bytes are out: the plan is made, the victim not read
        if event["event"] == "progress" and victim.stat().st_size == len(original):
            victim.write_bytes(original + b"\0\0")
    with pytest.raises(InputError) as e:
        mediasec.build(mediasec.BuildRequest([str(src)], str(tmp_path / out),
                                             fileset_uid="2.25.1", workers=1),
                       on_progress=on_progress)
    assert e.value.code == "INPUT_CHANGED" and e.value.path == str(victim)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
