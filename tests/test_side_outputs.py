"""Issue 11: ``--json FILE`` and ``--label FILE`` are checked before any work, and a side
output that fails after the job takes the main output away with it (never a plaintext
file, a disc or a folder without the JSON that was asked for)."""

from __future__ import annotations

import errno

import pytest

import _dicomgen as g
from conftest import PKI, assert_one_line_error, run_cli
from mediasec.errors import EnvironmentFailure

TO = ("--encrypt-to", PKI / "recipient-2048.pem")
KEY = ("--key", PKI / "recipient-2048.key.pem", "--cert", PKI / "recipient-2048.pem")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("side")
    pile = root / "pile"
    g.ct_series(pile, 2)
    one = sorted(pile.iterdir())[0]
    sec = root / "one.sec"
    assert run_cli("protect", one, "-o", sec, *TO).code == 0
    med = root / "MED"
    assert run_cli("build", pile, "-o", med).code == 0
    return {"pile": pile, "one": one, "sec": sec, "med": med}


def _cmds(c, out):
    """name -> (argv without --json, main output, side-output flag names)"""
    return {
        "protect": (["protect", c["one"], "-o", out / "o.sec", *TO], out / "o.sec"),
        "unprotect": (["unprotect", c["sec"], "-o", out / "o.dcm", *KEY], out / "o.dcm"),
        "build": (["build", c["pile"], "-o", out / "DISC"], out / "DISC"),
        "build-label": (["build", c["pile"], "-o", out / "DISC", "--json", out / "b.json",
                         "--label"], out / "DISC"),
        "extract": (["extract", c["med"], "-o", out / "X"], out / "X"),
        "verify": (["verify", c["med"]], None),
    }


NAMES = ["protect", "unprotect", "build", "build-label", "extract"]


def _flag(name):
    return "--label" if name == "build-label" else "--json"


BADS = ["folder", "no-parent", "same-as-input", "same-as-output"]


@pytest.mark.parametrize("name,bad", [(n, b) for n in NAMES for b in BADS]
                         + [("verify", b) for b in BADS[:3]])   # verify has no main output
def test_bad_side_output_refused_before_work(corpus, tmp_path, name, bad):
    out = tmp_path / "out"
    out.mkdir()
    argv, main = _cmds(corpus, out)[name]
    if argv[-1] == "--label":
        argv = argv[:-1]
    target = {"folder": out, "no-parent": out / "nope" / "r.json",
              "same-as-input": argv[1], "same-as-output": main}[bad]
    res = run_cli(*argv, _flag(name), target)
    assert_one_line_error(res, 2)
    assert list(out.iterdir()) == []          # nothing was made


def test_label_and_json_same_file(corpus, tmp_path):
    res = run_cli("build", corpus["pile"], "-o", tmp_path / "D", "--json", tmp_path / "a",
                  "--label", tmp_path / "a")
    assert_one_line_error(res, 2, "another output")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", NAMES)
def test_failing_side_output_takes_the_main_output_away(corpus, tmp_path, monkeypatch, name):
    import mediasec.cli.render as render
    real = render.AtomicOutput

    class Full(real):
        def open(self):
            if self.target.endswith(".json"):
                raise EnvironmentFailure("No space left on device", path=self.target,
                                         code="ENV_DISK_FULL")
            return super().open()
    monkeypatch.setattr(render, "AtomicOutput", Full)
    out = tmp_path / "out"
    out.mkdir()
    argv, main = _cmds(corpus, out)[name]
    if argv[-1] == "--label":
        argv = [*argv, out / "label.json"]
    else:
        argv = [*argv, "--json", out / "r.json"]
    res = run_cli(*argv)
    assert_one_line_error(res, 3, ".json", "No space left on device")
    assert not main.exists()
    assert list(out.iterdir()) == []


def test_side_output_of_a_forced_output_keeps_the_output(corpus, tmp_path, monkeypatch):
    """--force replaced the output already: it stays (the old one is gone either way)."""
    import mediasec.cli.render as render
    out = tmp_path / "o.sec"
    out.write_bytes(b"old")
    real = render.AtomicOutput

    class Full(real):
        def open(self):
            if self.target.endswith(".json"):
                raise EnvironmentFailure(errno.errorcode[errno.ENOSPC], path=self.target,
                                         code="ENV_DISK_FULL")
            return super().open()
    monkeypatch.setattr(render, "AtomicOutput", Full)
    res = run_cli("protect", corpus["one"], "-o", out, *TO, "--force", "--json",
                  tmp_path / "r.json")
    assert res.code == 3 and out.read_bytes() != b"old"


def test_outputs_have_no_name_until_commit_and_many_stay_fast(tmp_path):
    """Every output (not only secrets) is an anonymous inode until commit: a kill leaves
    nothing, and no per-output scan of the folder for a killed run's leftovers (which made
    writing the 1,000th file into a folder slower than the first)."""
    from mediasec.io import fs
    probe = fs.AtomicOutput(tmp_path / "probe", anonymous=True)
    try:
        probe.open()
    except EnvironmentFailure:
        pytest.skip("no O_TMPFILE here")
    if not probe.anonymous:
        probe.abort()
        pytest.skip("this file system has no O_TMPFILE")
    probe.abort()
    scans = []
    real = fs.clean_stale
    fs.clean_stale = lambda target: scans.append(target) or real(target)
    try:
        for i in range(50):
            out = fs.AtomicOutput(tmp_path / f"f{i}.dcm")
            f = out.open()
            f.write(b"x" * i)
            assert sorted(tmp_path.iterdir()) == sorted(tmp_path / f"f{j}.dcm" for j in range(i))
            out.commit()
    finally:
        fs.clean_stale = real
    assert scans == []
    assert [(tmp_path / f"f{i}.dcm").read_bytes() for i in range(50)] == \
        [b"x" * i for i in range(50)]


def test_many_outputs_checked_against_the_inputs_once(tmp_path, monkeypatch):
    """`sign FILES -o DIR` checks each output against every input without comparing each
    pair (that was O(n^2) stat calls: 5 s of 5.2 for 300 files); an output that *is* an
    input (a hard link to it) is still refused before anything is written."""
    import os
    from mediasec.io import fs
    files = [tmp_path / f"in{i}" for i in range(200)]
    for f in files:
        f.write_bytes(b"x")
    ids = fs.file_ids(files)
    out = tmp_path / "out"
    out.mkdir()
    calls = []
    real = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: calls.append(a) or real(*a, **k))
    for i in range(200):
        fs.check_new_output(out / f"o{i}", input_ids=ids)
    assert len(calls) <= 400
    monkeypatch.setattr(os, "stat", real)
    os.link(files[7], out / "same")
    with pytest.raises(fs.UsageError, match="output is the input"):
        fs.check_new_output(out / "same", force=True, input_ids=ids)
    with pytest.raises(fs.UsageError, match="output is the input"):
        fs.check_new_output(out / "same", force=True, inputs=tuple(map(str, files)))
