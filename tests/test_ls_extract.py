"""``mediasec ls`` and ``mediasec extract``: the tree (from the DICOMDIR or the files), and
valid decrypted files in a tidy layout, atomically, with no plaintext elsewhere."""

from __future__ import annotations

import json
import os
import re
import stat

import pydicom
import pytest

import _media as m
from conftest import assert_one_line_error, run_cli
from mediasec.io.workers import Pool, ordered_map

IM0 = "PT000000/ST000000/SE000000/IM000000"


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    return m.good_media(tmp_path_factory.mktemp("lsmedia"))


def _source_uids(media):
    return {pydicom.dcmread(p).SOPInstanceUID: p for p in media["src"].rglob("*.dcm")}


# -- ls --------------------------------------------------------------------------------------

def test_ls_secure_with_key_shows_the_tree(media):
    res = run_cli("ls", media["secure_cd"], "--key", m.KEY, "--cert", m.CERT)
    assert res.code == 0, res
    out = res.stdout
    assert out.count("Patient DOE^JANE") == 2 and "[P2]" in out
    assert out.count("  Study ") == 2 and out.count("    Series ") == 3
    assert out.count("IMAGE #") == 7 and IM0 in out
    doc = json.loads(run_cli("ls", media["secure_cd"], "--key", m.KEY, "--json").stdout)
    assert doc["schema"] == "mediasec.ls/1" and doc["source"] == "dicomdir"
    assert len(doc["files"]) == 9
    series = [se for p in doc["tree"] for st in p["children"] for se in st["children"]]
    assert sorted(len(se["children"]) for se in series) == [2, 2, 3]


def test_ls_secure_without_key_lists_files(media):
    res = run_cli("ls", media["secure_cd"])
    assert res.code == 0 and IM0 in res.stdout and "DOE" not in res.stdout
    assert "encrypted" in res.stderr


def test_ls_falls_back_to_the_files(media, tmp_path):
    med = m.copy_medium(media["plain_folder"], tmp_path / "F")
    (med / "DICOMDIR").write_bytes(b"garbage")
    doc = json.loads(run_cli("ls", med, "--json").stdout)
    assert doc["source"] == "files"
    series = [se for p in doc["tree"] for st in p["children"] for se in st["children"]]
    assert sorted(len(se["children"]) for se in series) == [2, 2, 3]


def test_ls_bad_medium(tmp_path):
    assert_one_line_error(run_cli("ls", tmp_path / "none"), 2, "no such file")


# -- extract -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["secure_cd", "secure_dvd", "secure_folder", "plain_folder"])
def test_extract_valid_files(media, tmp_path, kind):
    out = tmp_path / "OUT"
    res = run_cli("extract", media[kind], "-o", out, *m.KEYS, "--json", tmp_path / "x.json",
                  "--workers", "2")
    assert res.code == 0, res
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["schema"] == "mediasec.extract/1" and doc["counts"]["written"] == 7
    files = sorted(out.rglob("*.dcm"))
    rel = sorted(p.relative_to(out).as_posix() for p in files)
    assert all(re.fullmatch(r"P000[12]/ST0001/SE000[12]_(CT|MR)/IM0000[1-3]\.dcm", r)
               for r in rel), rel
    src = _source_uids(media)
    for p in files:
        uid = pydicom.dcmread(p).SOPInstanceUID
        assert p.read_bytes() == src[uid].read_bytes()      # the exact plain file
        assert stat.S_IMODE(p.stat().st_mode) == 0o644      # 0600 with --private
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".OUT")]


def test_extract_skips_invalid_unless_asked(media, tmp_path):
    med = m.copy_medium(media["secure_folder"], tmp_path / "S")
    p = med / IM0
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 1
    p.write_bytes(bytes(data))
    out = tmp_path / "OUT"
    res = run_cli("extract", med, "-o", out, *m.KEYS, "--json", "-", "--workers", "1")
    assert res.code == 1, res
    doc = json.loads(res.stdout)
    bad = next(f for f in doc["files"] if f["path"] == IM0)
    assert bad["output"] is None and bad["status"] == "failed"
    assert doc["counts"]["written"] == 6 and len(list(out.rglob("*.dcm"))) == 6
    out2 = tmp_path / "OUT2"
    res = run_cli("extract", med, "-o", out2, *m.KEYS, "--include-invalid", "--json", "-",
                  "--workers", "1")
    doc2 = json.loads(res.stdout)
    bad2 = next(f for f in doc2["files"] if f["path"] == IM0)
    if bad2["output"] is not None:       # fully decrypted, only the digest failed
        assert (out2 / bad2["output"]).exists()
    assert res.code == 1


def test_extract_refuses_and_leaves_nothing(media, tmp_path):
    out = tmp_path / "OUT"
    assert_one_line_error(run_cli("extract", media["secure_cd"], "-o", out), 2, "encrypted")
    assert not out.exists() and not list(tmp_path.iterdir())
    out.mkdir()
    assert_one_line_error(run_cli("extract", media["plain_folder"], "-o", out), 2,
                          "already exists")
    assert_one_line_error(run_cli("extract", media["secure_cd"], "-o", tmp_path / "A",
                                  "--key", m.PKI / "recipient-3072.key.pem"), 2,
                          "cannot be opened")
    assert not (tmp_path / "A").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["OUT"]


def test_extract_without_dicomdir_uses_paths(media, tmp_path):
    med = m.copy_medium(media["plain_folder"], tmp_path / "F")
    (med / "DICOMDIR").unlink()
    out = tmp_path / "OUT"
    res = run_cli("extract", med, "-o", out, "--workers", "1")
    assert res.code == 0, res
    assert (out / "FILES" / (IM0 + ".dcm")).is_file()


# -- the pool --------------------------------------------------------------------------------

_SEEN = {}


def _init(secret: bytes) -> None:
    _SEEN["secret"] = secret


def _square(x: int) -> tuple:
    if x == -1:
        raise ValueError("boom")
    return x * x, _SEEN.get("secret"), os.getpid()


@pytest.mark.parametrize("workers", [1, 2])
def test_ordered_map(workers):
    got = list(ordered_map(_square, range(50), workers=workers, initializer=_init,
                           initargs=(b"k",), max_inflight=3))
    assert [g[0] for g in got] == [i * i for i in range(50)]
    assert all(g[1] == b"k" for g in got)
    assert len({g[2] for g in got}) == (1 if workers == 1 else 2) or workers == 2
    with pytest.raises(ValueError, match="boom"):
        list(ordered_map(_square, [1, -1, 2], workers=workers))


def test_pool_bounded_lookahead():
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i
    with Pool(2, max_inflight=4) as pool:
        it = pool.map(_square, items())
        next(it)
        assert len(pulled) <= 5
        rest = list(it)
    assert len(rest) == 99
