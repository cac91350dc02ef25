"""Read-back inside `build` (`--verify none|quick|full`): a medium that does not read back
as it was written is never committed.

The faults are injected at the edge, the way a bad sink would make them: a byte of the
written image (or of a staged folder file) flipped after it was written, before commit;
or a producer whose ciphertext is damaged before it is hashed (then only decryption finds
it). Each fault is first shown to survive ``--verify none`` (so the test can fail), then
to make ``--verify quick`` exit 1 naming the file, with nothing left at the target.
"""

from __future__ import annotations

import json
import os
import random

import pytest

import _dicomgen as g
from conftest import PKI, assert_one_line_error, run_cli
from mediasec.io import discs
from mediasec.io.medium import FolderSource, IsoSource
from mediasec.media import stages
from mediasec.media.readback import Expected, choose_sample

RECIP = ["--encrypt-to", PKI / "recipient-2048.pem"]
SIGN = ["--sign-key", PKI / "signer.key.pem", "--sign-cert", PKI / "signer.pem",
        "--sign-chain", PKI / "chain.pem"]


@pytest.fixture(scope="module")
def pile(tmp_path_factory):
    root = tmp_path_factory.mktemp("rb")
    pool = g.random_pool(7)
    g.ct_series(root / "pile" / "a", 4)
    # one file of several chunks, the largest: the one the faults hit
    g.write_image(root / "pile" / "big.dcm", "cr", rows=1100, cols=1000, pool=pool, salt=1,
                  patient="P1", study="S1", series="SE9")
    return root / "pile"


def _left_over(folder, name):
    return [p for p in os.listdir(folder) if name in p]


def _flip_after_write(monkeypatch):
    """A faulty sink: after the image or folder is written, flip one byte in the middle of
    its largest stored file."""
    hit = []

    def pick(source):
        entries = [e for e in source.entries() if e.kind == "file"]
        return max(entries, key=lambda e: e.size)

    orig_iso = discs.IsoDiscWriter.write

    def iso_write(self, manifest):
        size = orig_iso(self, manifest)
        with IsoSource(f"/proc/self/fd/{self.out.fileno}") as src:
            e = pick(src)
        off = e.handle[0][0] + e.size // 2
        fd = self.out.fileno
        b = os.pread(fd, 1, off)
        os.pwrite(fd, bytes([b[0] ^ 0x01]), off)
        hit.append(e.path)
        return size

    orig_folder = discs.FolderDiscWriter.write

    def folder_write(self, manifest):
        size = orig_folder(self, manifest)
        src = FolderSource(self.sink.root)
        e = pick(src)
        path = os.path.join(self.sink.root, *e.path.split("/"))
        with open(path, "r+b") as f:
            f.seek(e.size // 2)
            b = f.read(1)
            f.seek(e.size // 2)
            f.write(bytes([b[0] ^ 0x01]))
        hit.append(e.path)
        return size

    monkeypatch.setattr(discs.IsoDiscWriter, "write", iso_write)
    monkeypatch.setattr(discs.FolderDiscWriter, "write", folder_write)
    return hit


@pytest.mark.parametrize("name,args", [
    ("disc.iso", ["--profile", "STD-GEN-SEC-DVD-JPEG", *RECIP, *SIGN]),
    ("cd.iso", ["--profile", "STD-GEN-CD"]),
    ("stick", ["--profile", "STD-GEN-SEC-USB-JPEG", *RECIP]),
    ("plainstick", []),
])
def test_a_byte_flipped_after_writing_fails_the_build_and_leaves_nothing(
        tmp_path, pile, monkeypatch, name, args):
    hit = _flip_after_write(monkeypatch)
    out = tmp_path / name
    # without read-back the damaged medium is committed: the fault is real
    res = run_cli("build", pile, "-o", tmp_path / ("unchecked-" + name), *args,
                  "--verify", "none")
    assert res.code == 0, res
    assert (tmp_path / ("unchecked-" + name)).exists()
    res = run_cli("build", pile, "-o", out, *args, "--verify", "quick", "--workers", "2")
    assert_one_line_error(res, 1, hit[-1], "read-back", "nothing was written")
    assert not out.exists()
    assert _left_over(tmp_path, name) == ["unchecked-" + name], os.listdir(tmp_path)


def _damage_ciphertext_before_hashing(monkeypatch) -> None:
    """One bit of the first large ciphertext chunk of a file over 1 MiB is flipped as the
    protect step makes it, before the writer hashes it: the stored bytes match their hash."""
    orig = stages._Protect.run

    def run(self, upstream):
        done = False
        for c in orig(self, upstream):
            if self.size > 1 << 20 and len(c) >= 1 << 19 and not done:   # ciphertext
                c = bytearray(c)
                c[len(c) // 2] ^= 0x40
                done = True
            yield c

    monkeypatch.setattr(stages._Protect, "run", run)


def test_ciphertext_damaged_before_hashing_is_found_by_decryption(tmp_path, pile,
                                                                 monkeypatch):
    """The stored bytes match their hash (the damage happened before it): only opening the
    Secure DICOM File finds it. The damaged file is the largest, always in the sample."""
    _damage_ciphertext_before_hashing(monkeypatch)
    args = ["--profile", "STD-GEN-SEC-DVD-JPEG", *RECIP]
    res = run_cli("build", pile, "-o", tmp_path / "none.iso", *args, "--verify", "none")
    assert res.code == 0, res
    res = run_cli("build", pile, "-o", tmp_path / "quick.iso", *args, *SIGN, "--verify",
                  "quick")
    assert_one_line_error(res, 1, "read-back", "nothing was written", "messageDigest")
    assert not (tmp_path / "quick.iso").exists()
    res = run_cli("build", pile, "-o", tmp_path / "digested.iso", *args, "--verify", "quick")
    assert_one_line_error(res, 1, "read-back", "INTEGRITY_DIGEST_MISMATCH")
    assert not (tmp_path / "digested.iso").exists()
    assert _left_over(tmp_path, "quick.iso") == _left_over(tmp_path, "digested.iso") == []


@pytest.mark.parametrize("mode", ["none", "quick", "full"])
def test_readback_cost_is_reported(tmp_path, pile, mode):
    res = run_cli("build", pile, "-o", tmp_path / "d.iso", "--profile",
                  "STD-GEN-SEC-DVD-JPEG", *RECIP, "--verify", mode, "--json", "-")
    assert res.code == 0, res
    doc = json.loads(res.stdout)
    rb, img = doc["readback"], doc["images"][0]
    assert img["readback"] == rb
    assert rb["mode"] == mode and rb["seconds"] >= 0
    stored = sum(f["size"] for f in img["files"])   # every file but the manifest
    instances = doc["counts"]["instances"]
    if mode == "none":
        assert (rb["bytes_read"], rb["files_hashed"], rb["files_decrypted"]) == (0, 0, 0)
        return
    assert rb["files_hashed"] == len(img["files"]) + 1               # + MANIFEST.SHA
    assert stored < rb["bytes_read"] < stored + 100 * len(img["files"]) + 1000
    if mode == "full":
        assert rb["files_decrypted"] == instances + 1                # + the DICOMDIR
    else:
        assert rb["files_decrypted"] == min(instances, 6) + 1


def test_verify_flag_refuses_other_values(tmp_path, pile):
    res = run_cli("build", pile, "-o", tmp_path / "x.iso", "--verify", "some")
    assert res.code == 2 and "--verify" in res.stderr
    assert not (tmp_path / "x.iso").exists()


def test_api_refuses_an_unknown_mode(tmp_path, pile):
    import mediasec
    from mediasec.errors import UsageError
    with pytest.raises(UsageError, match="read-back mode"):
        mediasec.build(mediasec.BuildRequest([str(pile)], str(tmp_path / "x.iso"),
                                             verify="always"))
    assert not (tmp_path / "x.iso").exists()


def test_quick_sample_first_last_largest_dicomdir_and_random():
    key = b"k" * 32
    files = [Expected("DICOMDIR", "dicomdir", 10, "0", key)]
    files += [Expected(f"IM{i}", "instance", 100 + (500 if i == 5 else i), "0", key)
              for i in range(20)]
    files += [Expected("MANIFEST.SHA", "manifest", 5, "0")]
    s = choose_sample(files, "quick", random.Random(1))
    assert {"DICOMDIR", "IM0", "IM19", "IM5"} <= s and len(s) == 7
    assert "MANIFEST.SHA" not in s
    others = {frozenset(choose_sample(files, "quick", random.Random(k))) for k in range(20)}
    assert len(others) > 1                     # the random part varies between builds
    assert choose_sample(files, "full", random.Random(1)) == {f.name for f in files[:-1]}
    assert choose_sample(files, "none", random.Random(1)) == set()


def test_an_image_whose_directory_is_damaged_after_writing_fails(tmp_path, pile,
                                                                monkeypatch):
    """The primary volume descriptor overwritten after writing: the image no longer parses;
    the read-back says so (exit 1) and nothing is left."""
    orig = discs.IsoDiscWriter.write

    def write(self, manifest):
        size = orig(self, manifest)
        os.pwrite(self.out.fileno, b"\0" * 2048, 16 * 2048)
        return size

    monkeypatch.setattr(discs.IsoDiscWriter, "write", write)
    out = tmp_path / "d.iso"
    res = run_cli("build", pile, "-o", out)
    assert_one_line_error(res, 1, "read-back", "cannot be read", "nothing was written")
    assert os.listdir(tmp_path) == []


# -- the read-back spread over worker processes (``discs._ReadBack.map_files``) ------------

@pytest.fixture
def spread(monkeypatch):
    """Every read-back runs in two worker processes, however small the medium; the workers
    report which files they checked (so a test can see they did)."""
    monkeypatch.setattr(discs, "READBACK_SPREAD_MIN", 0)
    seen = []
    orig_map = discs._ReadBack.map_files

    def map_files(self, check, items, sizes, workers=None):
        def where(i):   # runs in the worker (inherited at fork, like ``check``)
            return (*check(i), os.getpid())
        for *r, pid in orig_map(self, where, items, sizes, workers):
            seen.append(pid)
            yield tuple(r)

    monkeypatch.setattr(discs._ReadBack, "map_files", map_files)
    return seen


@pytest.mark.parametrize("name,args", [
    ("disc.iso", ["--profile", "STD-GEN-SEC-DVD-JPEG", *RECIP, *SIGN]),
    ("stick", ["--profile", "STD-GEN-SEC-USB-JPEG", *RECIP]),
])
def test_read_back_in_worker_processes_checks_every_file_and_finds_a_flip(
        tmp_path, pile, monkeypatch, spread, name, args):
    res = run_cli("build", pile, "-o", tmp_path / ("ok-" + name), *args, "--verify", "full",
                  "--workers", "2", "--json", "-")
    assert res.code == 0, res
    doc = json.loads(res.stdout)
    rb, img = doc["readback"], doc["images"][0]
    assert rb["files_hashed"] == len(img["files"]) + 1 == len(spread)
    assert rb["files_decrypted"] == doc["counts"]["instances"] + 1
    assert os.getpid() not in spread   # in the workers, not here
    hit = _flip_after_write(monkeypatch)
    res = run_cli("build", pile, "-o", tmp_path / name, *args, "--verify", "quick",
                  "--workers", "2")
    assert_one_line_error(res, 1, hit[-1], "read-back", "nothing was written")
    assert not (tmp_path / name).exists()


def test_read_back_in_worker_processes_decrypts_and_finds_a_bad_signature(
        tmp_path, pile, monkeypatch, spread):
    _damage_ciphertext_before_hashing(monkeypatch)
    res = run_cli("build", pile, "-o", tmp_path / "quick.iso", "--profile",
                  "STD-GEN-SEC-DVD-JPEG", *RECIP, *SIGN, "--verify", "quick", "--workers", "2")
    assert_one_line_error(res, 1, "read-back", "nothing was written", "messageDigest")
    assert not (tmp_path / "quick.iso").exists()


class _Mem:
    """A medium in memory: name -> bytes."""

    def __init__(self, files):
        self.files = files

    def entries(self):
        from mediasec.media.source import MediumEntry
        return [MediumEntry(n, len(d), n, "file") for n, d in self.files.items()]

    def open(self, handle):
        data = self.files[handle]
        for i in range(0, len(data), 7):
            yield memoryview(data)[i:i + 7]


def test_read_back_compares_the_writers_checksum_else_sha256():
    import hashlib

    from mediasec.errors import IntegrityError
    from mediasec.media.readback import new_check, read_back

    data = b"stored bytes of one file" * 3
    sha = hashlib.sha256(data).hexdigest()
    chk = new_check()
    chk.update(data)
    check = chk.hexdigest()
    manifest = f"{sha}  A\n".encode()
    medium = _Mem({"A": data, "MANIFEST.SHA": manifest})

    def exp(**kw):
        a = dict(name="A", role="content", size=len(data), sha256=sha)
        a.update(kw)
        return [Expected(**a), Expected("MANIFEST.SHA", "manifest", len(manifest),
                                        hashlib.sha256(manifest).hexdigest())]

    for kw in ({}, {"check": check}):   # SHA-256 re-read, or the writer's XXH3-128
        cost = read_back(medium, exp(**kw), mode="quick", label="m", manifest=manifest)
        assert cost.files_hashed == 2 and cost.bytes_read == len(data) + len(manifest)
    with pytest.raises(IntegrityError, match="SHA-256"):
        read_back(medium, exp(sha256="0" * 64), mode="quick", label="m", manifest=manifest)
    with pytest.raises(IntegrityError, match="XXH3-128"):
        read_back(medium, exp(check="0" * 32), mode="quick", label="m", manifest=manifest)
    # the bytes are those written (XXH3) but the writer's SHA-256 is not the manifest's line
    with pytest.raises(IntegrityError, match="MANIFEST.SHA line"):
        read_back(medium, exp(check=check, sha256="1" * 64), mode="quick", label="m",
                  manifest=manifest)


def test_read_back_names_a_missing_and_an_unplanned_file():
    """The listing must hold exactly the planned files: one missing, or one more than
    planned, is a read-back mismatch naming that file."""
    import hashlib

    from mediasec.errors import IntegrityError
    from mediasec.media.readback import read_back

    data = b"x" * 40
    exp = [Expected("A", "content", len(data), hashlib.sha256(data).hexdigest())]
    with pytest.raises(IntegrityError, match="missing") as err:
        read_back(_Mem({}), exp, mode="quick", label="m")
    assert err.value.path == "A"
    with pytest.raises(IntegrityError, match="never planned") as err:
        read_back(_Mem({"A": data, "B/ZZ": b"y", "B/Z0": b"y"}), exp, mode="quick",
                  label="m")
    assert err.value.path == "B/Z0"
