"""The plain image build's speed paths keep its answers right.

The read-back parses the image beside the workers, as soon as its structures are written
(``IsoDiscWriter._metadata``), and uses that parse only if every byte outside the files'
data is unchanged when the files are all in; else it parses again. These tests show the
early parse is the one used on a good build (one parse, not two), that none is made for
``--verify none``, and that structures changed after the early parse make it parse again
(a name in a directory record rewritten in place: the image still parses, differently).
"""

from __future__ import annotations

import contextlib
import os

import pytest

import _dicomgen as g
from conftest import run_cli, run_peer
from mediasec.io import discs


@pytest.fixture(scope="module")
def pile(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain") / "pile"
    g.ct_series(root / "a", 5)
    g.ct_series(root / "b", 3, series="SE2")
    return root


def _count_parses(monkeypatch) -> list:
    made = []
    orig = discs.IsoSource.__init__

    def init(self, path):
        made.append(path)
        orig(self, path)

    monkeypatch.setattr(discs.IsoSource, "__init__", init)
    return made


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_good_image_is_parsed_once_beside_the_workers(tmp_path, pile, monkeypatch, workers):
    made = _count_parses(monkeypatch)
    out = tmp_path / "d.iso"
    res = run_cli("build", pile, "-o", out, "--profile", "STD-GEN-DVD-JPEG",
                  "--workers", workers)
    assert res.code == 0, res
    assert len(made) == 1
    assert out.stat().st_size > 0


def test_no_parse_without_a_read_back(tmp_path, pile, monkeypatch):
    made = _count_parses(monkeypatch)
    res = run_cli("build", pile, "-o", tmp_path / "d.iso", "--verify", "none")
    assert res.code == 0, res
    assert made == []


@pytest.mark.peer("isoinfo")
def test_structures_changed_after_the_early_parse_are_parsed_again(tmp_path, pile,
                                                                   monkeypatch):
    """The ISO 9660 name of the DICOMDIR rewritten in place once the files are written:
    the image still parses (isoinfo lists the new name), so only the comparison with the
    bytes the early parse read makes the read-back parse again and see the image as it is."""
    made = _count_parses(monkeypatch)
    orig = discs.IsoDiscWriter.write
    orig_source = discs.IsoDiscWriter.source
    hit, seen = [], []

    def write(self, manifest):
        size = orig(self, manifest)
        fd = self.out.fileno
        for off, n in self._structures():
            data = os.pread(fd, n, off)
            at = data.find(b"DICOMDIR.;1")
            while at >= 0:
                os.pwrite(fd, b"DICOMDIX.;1", off + at)
                hit.append(off + at)
                at = data.find(b"DICOMDIR.;1", at + 1)
        return size

    @contextlib.contextmanager
    def source(self):
        with orig_source(self) as src:
            seen.extend(e.iso9660 for e in src.entries())
            yield src

    monkeypatch.setattr(discs.IsoDiscWriter, "write", write)
    monkeypatch.setattr(discs.IsoDiscWriter, "source", source)
    out = tmp_path / "d.iso"
    res = run_cli("build", pile, "-o", out, "--profile", "STD-GEN-DVD-JPEG")
    assert len(hit) == 1, res
    assert len(made) == 2          # the early parse, then the image as it is now
    assert "/DICOMDIX.;1" in seen and "/DICOMDIR.;1" not in seen, (res, seen)
    # and the read-back refuses it: a reader without UDF would not find the DICOMDIR
    assert res.code == 1 and "ISO 9660 name" in res.stderr, res
    assert not out.exists()
    # the fault is real: the image parses, with the new name
    res = run_cli("build", pile, "-o", tmp_path / "e.iso", "--profile", "STD-GEN-DVD-JPEG",
                  "--verify", "none")
    assert res.code == 0, res
    listing = run_peer(["isoinfo", "-f", "-i", str(tmp_path / "e.iso")]).stdout.decode()
    assert "/DICOMDIX.;1" in listing and "/DICOMDIR.;1" not in listing


def test_early_parse_of_an_unchanged_image_sees_the_names_written(tmp_path, pile, monkeypatch):
    seen = []
    orig_source = discs.IsoDiscWriter.source

    @contextlib.contextmanager
    def source(self):
        with orig_source(self) as src:
            seen.extend(e.iso9660 for e in src.entries())
            yield src

    monkeypatch.setattr(discs.IsoDiscWriter, "source", source)
    res = run_cli("build", pile, "-o", tmp_path / "d.iso", "--profile", "STD-GEN-DVD-JPEG")
    assert res.code == 0, res
    assert "/DICOMDIR.;1" in seen and "/MANIFEST.SHA;1" in seen and len(seen) == 10


def test_is_uid_keeps_the_ps3_5_syntax():
    """The scan's UID check (a regular expression now) against the rule written out."""
    import random

    from mediasec.dicom.scan import is_uid

    def rule(v: str) -> bool:
        if not v or len(v) > 64 or not v.isascii():
            return False
        return all(c.isdigit() and (c == "0" or c[0] != "0") for c in v.split("."))

    rnd = random.Random(15)
    cases = ["", "0", "0.0", "1.02", "01", "1..2", "1.2.", ".1", "1" * 64, "1" * 65,
             "\u0661.2", "1.2 ", "1.2\n", "1.2\0", "2.25." + "9" * 59, "2.25." + "9" * 60]
    cases += ["".join(rnd.choice("0123456789.. x\u0661") for _ in range(rnd.randrange(1, 70)))
              for _ in range(3000)]
    assert sum(map(rule, cases)) > 100
    assert [is_uid(c) for c in cases] == [rule(c) for c in cases]
