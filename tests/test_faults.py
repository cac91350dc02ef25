"""Issue 11, faults of the environment: a full disk and a file-size limit during ``build``,
``extract``, ``unprotect`` and ``protect``.

Each run must end with exit 3 and one line naming the file that could not be written (the
output's own name, never a hidden staging name, never the input), and leave nothing at the
target: no output, no hidden partial file or folder, no plaintext.

* A real ``ENOSPC``: a small tmpfs (needs root; CI's first run is root, the unprivileged
  run skips it).
* ``RLIMIT_FSIZE`` (a ``ulimit -f``; the kernel answers ``EFBIG``): runs as any user; set
  around the in-process run, inherited by the forked workers.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import resource
import signal
import subprocess

import pytest

import _dicomgen as g
from conftest import PKI, assert_one_line_error, run_cli

TO = ("--encrypt-to", PKI / "recipient-2048.pem")   # RSA: no PBKDF2 cost per file
KEY = ("--key", PKI / "recipient-2048.key.pem", "--cert", PKI / "recipient-2048.pem")
MARKER = b"FAULT^MK"  # as long as DOE^JANE, which it replaces


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    pile = root / "pile"
    # 4 files of ~131 KB each
    g.ct_series(pile, 4, rows=256, cols=256)
    for p in pile.iterdir():
        p.write_bytes(p.read_bytes().replace(b"DOE^JANE", MARKER))
    sec = root / "SEC"
    res = run_cli("build", pile, "-o", sec, "--profile", "STD-GEN-SEC-USB-JPEG",
                  *TO)
    assert res.code == 0, res
    one = sorted(pile.iterdir())[0]
    one_sec = root / "one.sec"
    res = run_cli("protect", one, "-o", one_sec, *TO)
    assert res.code == 0, res
    return {"pile": pile, "sec": sec, "one": one, "one_sec": one_sec}


def _all_files(folder: pathlib.Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), folder)
                  for d, dirs, files in os.walk(folder) for n in files + dirs)


def _no_plaintext(folder: pathlib.Path) -> None:
    for d, _, files in os.walk(folder):
        for n in files:
            assert MARKER not in pathlib.Path(d, n).read_bytes(), os.path.join(d, n)


def _commands(c, out: pathlib.Path) -> dict:
    """command name -> (argv, the output named in the error)"""
    return {
        "build-folder": (["build", c["pile"], "-o", out / "STICK"], out / "STICK"),
        "build-iso": (["build", c["pile"], "-o", out / "disc.iso"], out / "disc.iso"),
        "build-secure": (["build", c["pile"], "-o", out / "SSTICK", "--profile",
                          "STD-GEN-SEC-USB-JPEG", *TO], out / "SSTICK"),
        "extract": (["extract", c["sec"], "-o", out / "X", *KEY],
                    out / "X"),
        "unprotect": (["unprotect", c["one_sec"], "-o", out / "plain.dcm", *KEY], out / "plain.dcm"),
        "protect": (["protect", c["one"], "-o", out / "one.sec", *TO],
                    out / "one.sec"),
    }


NAMES = ["build-folder", "build-iso", "build-secure", "extract", "unprotect", "protect"]


@pytest.fixture
def small_tmpfs(tmp_path, request):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the RLIMIT_FSIZE tests run as anyone)")
    small = tmp_path / "small"
    small.mkdir()
    # 200 KiB: one or two files of the pile fit; 64 KiB: half of one file
    size = "64k" if request.node.callspec.params["name"] in ("protect", "unprotect") else "200k"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield small
    finally:
        subprocess.run(["umount", str(small)], check=False)


@pytest.mark.parametrize("name", NAMES)
def test_disk_full(corpus, small_tmpfs, name):
    argv, named = _commands(corpus, small_tmpfs)[name]
    res = run_cli(*argv)
    assert_one_line_error(res, 3, "No space left on device")
    line = res.stderr.strip()
    assert line.startswith(f"mediasec: {named}"), line   # the output, not the input
    assert ".partial-" not in line
    _no_plaintext(small_tmpfs)
    assert _all_files(small_tmpfs) == []


@contextlib.contextmanager
def file_size_limit(limit: int):
    """``ulimit -f`` for this process and the workers it forks (the soft limit only, so it
    can be raised back). Python ignores SIGXFSZ: a write past the limit fails with EFBIG."""
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)


@pytest.mark.parametrize("name", NAMES)
def test_file_size_limit(corpus, tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    argv, named = _commands(corpus, out)[name]
    with file_size_limit(100_000):  # every output file is larger
        res = run_cli(*argv)
    assert_one_line_error(res, 3, "File too large")
    line = res.stderr.strip()
    assert line.startswith(f"mediasec: {named}"), line
    assert ".partial-" not in line
    assert _all_files(out) == []
    _no_plaintext(tmp_path)
