"""Test media for verify/ls/extract: our own (through ``mediasec build``) and damaged copies.

``good_media(root)`` builds, once per session, a small job (2 patients, 3 series, 7
instances) as: a plain folder, a secure folder (STD-GEN-SEC-USB-JPEG), a secure CD image
and a secure DVD image (UDF bridge) - each with MANIFEST.SHA, RSA recipient
``recipient-2048`` and signer ``signer``. Damage helpers patch copies.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import struct

import pydicom

import _dicomgen as g
from conftest import PKI, run_cli

KEY = PKI / "recipient-2048.key.pem"
CERT = PKI / "recipient-2048.pem"
TRUST = PKI / "trust.pem"
KEYS = ("--key", KEY, "--cert", CERT, "--trust", TRUST)
PROTECT = ("--encrypt-to", CERT, "--sign-key", PKI / "signer.key.pem",
           "--sign-cert", PKI / "signer.pem", "--sign-chain", PKI / "chain.pem")


def make_pile(root: pathlib.Path) -> pathlib.Path:
    src = root / "pile"
    g.ct_series(src / "a", 3)
    g.ct_series(src / "b", 2, series="SE2", kind="mr")
    g.ct_series(src / "c", 2, patient="P2", study="S7", series="X1")
    return src


def build(src, out, *args) -> dict:
    res = run_cli("build", src, "-o", out, "--fileset-id", "TESTSET", "--fileset-uid",
                  "2.25.77", "--json", "-", *args)
    assert res.code == 0, res
    return json.loads(res.stdout)


def good_media(root: pathlib.Path) -> dict:
    src = make_pile(root)
    media = {"src": src}
    media["plain_folder"] = root / "PLAIN"
    build(src, media["plain_folder"])
    media["secure_folder"] = root / "SECURE"
    build(src, media["secure_folder"], "--profile", "STD-GEN-SEC-USB-JPEG", *PROTECT)
    media["secure_cd"] = root / "cd.iso"
    build(src, media["secure_cd"], "--profile", "STD-GEN-SEC-CD", *PROTECT)
    media["secure_dvd"] = root / "dvd.iso"
    build(src, media["secure_dvd"], "--profile", "STD-GEN-SEC-DVD-JPEG", *PROTECT)
    media["plain_cd"] = root / "plain.iso"
    build(src, media["plain_cd"], "--profile", "STD-GEN-CD")
    return media


def copy_medium(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copyfile(src, dst)
    return dst


def instances(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.rglob("IM*") if p.is_file())


def verify_json(medium, *args) -> tuple[int, dict]:
    res = run_cli("verify", medium, "--json", "-", "--workers", "1", *args)
    assert res.code in (0, 1), res
    return res.code, json.loads(res.stdout)


def codes(doc: dict, path: str | None = None) -> set[str]:
    """Reason codes (not passed) of one file, or of every file and the medium."""
    out = set()
    if path is None:
        out |= {f["code"] for f in doc["findings"] if f["outcome"] != "passed"}
    for f in doc["files"]:
        if path is None or f["path"] == path:
            out |= {r["code"] for r in f["reasons"] if r["outcome"] != "passed"}
    return out


def file_entry(doc: dict, path: str) -> dict:
    return next(f for f in doc["files"] if f["path"] == path)


# -- DICOMDIR surgery on plain File-sets -----------------------------------------------------

def record_offsets(dicomdir: pathlib.Path) -> list[tuple[int, pydicom.Dataset]]:
    ds = pydicom.dcmread(dicomdir)
    return [(r.seq_item_tell, r) for r in ds.DirectoryRecordSequence]


def patch_ul(dicomdir: pathlib.Path, tag: tuple[int, int], old: int, new: int,
             occurrence: int = 0) -> None:
    """Rewrite one explicit VR LE UL element ``tag`` holding ``old`` to ``new`` in place."""
    data = bytearray(dicomdir.read_bytes())
    needle = struct.pack("<HH2sHI", tag[0], tag[1], b"UL", 4, old)
    pos = -1
    for _ in range(occurrence + 1):
        pos = data.find(needle, pos + 1)
        assert pos >= 0, f"element {tag} = {old} not found"
    data[pos + 8:pos + 12] = struct.pack("<I", new)
    dicomdir.write_bytes(bytes(data))


def set_file_id(dicomdir: pathlib.Path, index: int, value: str) -> str:
    """Give the ``index``-th referencing record the Referenced File ID ``value`` (raw bytes,
    space-padded to the old length so no offset moves); returns the old value."""
    ds = pydicom.dcmread(dicomdir)
    recs = [r for r in ds.DirectoryRecordSequence if "ReferencedFileID" in r]
    old = recs[index]["ReferencedFileID"].value
    old_raw = "\\".join(old) if not isinstance(old, str) else old
    data = bytearray(dicomdir.read_bytes())
    old_b = old_raw.encode()
    pos = data.find(old_b)
    assert pos >= 0
    length = struct.unpack("<H", data[pos - 2:pos])[0]
    new_b = value.encode("latin-1")
    assert len(new_b) <= length, (value, length)
    data[pos:pos + length] = new_b.ljust(length, b" ")
    dicomdir.write_bytes(bytes(data))
    return old_raw
