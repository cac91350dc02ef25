"""Issue 11, process hygiene: Ctrl-C, SIGTERM and kill -9 during ``build`` and ``extract``.

A real process (signals, exit statuses and worker processes are what is tested), stopped
once its progress shows it is mid-way. Ctrl-C is SIGINT to the whole process group, as a
terminal sends it; SIGTERM goes to the main process only, as ``kill`` or a service
manager sends it. Each run must:

* exit 130 (SIGINT) or 143 (SIGTERM) with one line ``mediasec: interrupted`` /
  ``mediasec: terminated (SIGTERM)`` and no traceback (workers print nothing);
* leave no worker process behind, even after kill -9 of the main process;
* leave nothing at the target's folder and nothing in TMPDIR (kill -9 aside: a killed
  run cannot clean up; the next run does, see ``test_stale_staging_*``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import _dicomgen as g
from conftest import PKI, run_cli

TO = ("--encrypt-to", str(PKI / "recipient-2048.pem"))
KEY = ("--key", str(PKI / "recipient-2048.key.pem"), "--cert", str(PKI / "recipient-2048.pem"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("signals")
    pile = root / "pile"
    g.ct_series(pile, 48, rows=256, cols=256)       # ~6 MB, a few seconds of work
    sec = root / "SEC"
    res = run_cli("build", pile, "-o", sec, "--profile", "STD-GEN-SEC-USB-JPEG", *TO)
    assert res.code == 0, res
    return {"pile": pile, "sec": sec}


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d))
    return out


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _start(argv, tmp):
    env = dict(os.environ, TMPDIR=str(tmp))
    return subprocess.Popen([sys.executable, "-m", "mediasec", *map(str, argv),
                             "--progress", "json"], stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)


def _midway(proc) -> list[int]:
    """Wait for a progress event before half-way; the worker processes at that moment."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        ev = json.loads(line)
        if ev["event"] == "progress" and 0 < ev["done_bytes"] < ev["total_bytes"] // 2:
            return _children(proc.pid)
    raise AssertionError("the job ended before it could be stopped")


def _commands(c, target):
    return {"build": ["build", c["pile"], "-o", target / "OUT", "--profile",
                      "STD-GEN-SEC-USB-JPEG", *TO],
            "build-iso": ["build", c["pile"], "-o", target / "out.iso", *TO],
            "extract": ["extract", c["sec"], "-o", target / "OUT", *KEY]}


def _assert_no_orphans(kids):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.05)
    assert not [k for k in kids if _alive(k)], "worker processes outlived the job"


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("job", ["build", "build-iso", "extract"])
def test_interrupt(corpus, tmp_path, job, how):
    target, tmp = tmp_path / "target", tmp_path / "tmp"
    target.mkdir()
    tmp.mkdir()
    proc = _start(_commands(corpus, target)[job], tmp)
    kids = _midway(proc)
    if how == "SIGINT":     # Ctrl-C: the terminal signals the whole foreground group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    _assert_no_orphans(kids)    # first: an orphan would hold the stderr pipe open
    rest = proc.stderr.read()
    lines = [ln for ln in rest.splitlines() if ln.strip() and not ln.startswith("{")]
    if how == "SIGINT":
        assert proc.returncode == 130, rest
        assert lines == ["mediasec: interrupted"], rest
    else:
        assert proc.returncode == 143, rest
        assert lines == ["mediasec: terminated (SIGTERM)"], rest
    assert list(target.iterdir()) == []
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("job", ["build", "extract"])
def test_kill_9_leaves_no_worker(corpus, tmp_path, job):
    target, tmp = tmp_path / "target", tmp_path / "tmp"
    target.mkdir()
    tmp.mkdir()
    proc = _start(_commands(corpus, target)[job], tmp)
    kids = _midway(proc)
    assert kids, "the job runs no worker process here"
    proc.kill()
    proc.wait(timeout=60)
    _assert_no_orphans(kids)


def _partials(folder) -> list:
    return sorted(p for p in folder.iterdir() if ".partial-" in p.name)


@pytest.mark.parametrize("job", ["build", "extract"])
def test_stale_staging_of_a_killed_run_is_cleaned(corpus, tmp_path, job):
    """kill -9 of the job *and* of its staging reaper (see the test below for the job
    alone): the staging folder left (0700: its owner alone can look in) is removed by the
    next run for the same target."""
    target, tmp = tmp_path / "target", tmp_path / "tmp"
    target.mkdir()
    tmp.mkdir()
    argv = _commands(corpus, target)[job]
    proc = _start(argv, tmp)
    kids = _midway(proc)
    reapers = [k for k in kids if b"rmtree" in _cmdline(k)]
    assert len(reapers) == 1
    os.kill(reapers[0], signal.SIGKILL)
    proc.kill()
    proc.wait(timeout=60)
    _assert_no_orphans(kids)
    left = _partials(target)
    assert len(left) == 1 and left[0].is_dir()
    assert left[0].stat().st_mode & 0o077 == 0
    res = run_cli(*argv)
    assert res.code == 0, res
    assert _partials(target) == [] and (target / "OUT").is_dir()
    assert (target / "OUT").stat().st_mode & 0o777 == 0o755


def test_live_or_foreign_staging_is_left_alone(corpus, tmp_path):
    import fcntl
    target = tmp_path / "target"
    target.mkdir()
    live = target / ".OUT.partial-0123abcd"      # a run in progress holds its lock
    live.mkdir()
    other = target / ".OTHER.partial-0123abcd"   # another target's
    other.mkdir()
    odd = target / ".OUT.partial-backup"         # not a name we make
    odd.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = run_cli(*_commands(corpus, target)["extract"])
        assert res.code == 0, res
        assert live.is_dir() and other.is_dir() and odd.is_dir()
    finally:
        os.close(fd)


@pytest.mark.parametrize("job", ["build", "extract"])
def test_kill_9_leaves_no_staging_behind(corpus, tmp_path, job):
    """kill -9 of the job (and of its whole process group): its staging folder - decrypted
    files, for extract - is removed at once by the reaper, not left for a next run."""
    target, tmp = tmp_path / "target", tmp_path / "tmp"
    target.mkdir()
    tmp.mkdir()
    proc = _start(_commands(corpus, target)[job], tmp)
    kids = _midway(proc)
    assert len(_partials(target)) == 1          # mid-way: the staging folder is there
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    _assert_no_orphans(kids)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and list(target.iterdir()):
        time.sleep(0.05)
    assert list(target.iterdir()) == []
    assert list(tmp.iterdir()) == []
