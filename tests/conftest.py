"""Shared test helpers: peer tools, fixture paths, running the CLI."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
PKI = FIXTURES / "pki"
DICOM = FIXTURES / "dicom"

REQUIRE_PEERS = os.environ.get("MEDIASEC_REQUIRE_PEERS", "") not in ("", "0")


def peer(name: str) -> str:
    """Path of peer tool ``name``; skip the test if absent, fail if MEDIASEC_REQUIRE_PEERS."""
    path = shutil.which(name)
    if path is None:
        msg = f"peer tool {name!r} is not installed"
        if REQUIRE_PEERS:
            pytest.fail(msg + " and MEDIASEC_REQUIRE_PEERS is set")
        pytest.skip(msg)
    return path


def run_peer(args: list[str], *, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a peer tool (``args[0]`` resolved with ``peer``), capturing output."""
    exe = peer(args[0])
    proc = subprocess.run([exe, *args[1:]], capture_output=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return proc


class CLIResult:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"<CLIResult {self.code} stderr={self.stderr!r}>"


def run_cli_process(*args, env: dict | None = None, input: bytes | None = None,
                    cwd: str | os.PathLike | None = None) -> CLIResult:
    """Run ``mediasec`` as a user would: a fresh process, text on stdout/stderr, an exit
    code. For what only a real process shows (its exit status, signals, stdin, the entry
    point); everything else uses the in-process ``run_cli``."""
    full_env = dict(os.environ)
    full_env.pop("MEDIASEC_TEST_PASSWORD", None)
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, "-m", "mediasec", *map(str, args)],
                          capture_output=True, text=True, env=full_env, input=input, cwd=cwd)
    return CLIResult(proc.returncode, proc.stdout, proc.stderr)


def _runner():
    from click.testing import CliRunner
    try:
        return CliRunner(mix_stderr=False)   # click 8.1
    except TypeError:
        return CliRunner()                   # click >= 8.2: stderr is always apart


def run_cli(*args, env: dict | None = None, input: bytes | None = None,
            cwd: str | os.PathLike | None = None) -> CLIResult:
    """Run ``mediasec`` in this process (click's test isolation: its own stdin, stdout,
    stderr and environment) through the same ``main()`` as the console script: the same
    flag parsing, error mapping and exit codes, without starting a Python per call."""
    from mediasec.cli.main import main
    overrides = {"MEDIASEC_TEST_PASSWORD": None, **(env or {})}
    here = os.getcwd()
    with _runner().isolation(input=input, env=overrides) as streams:
        out, err = streams[0], streams[1]
        try:
            if cwd is not None:
                os.chdir(cwd)
            code = main([str(a) for a in args])
        finally:
            os.chdir(here)
            sys.stdout.flush()
            sys.stderr.flush()
        return CLIResult(code, out.getvalue().decode("utf-8", "replace"),
                         err.getvalue().decode("utf-8", "replace"))


def assert_one_line_error(res: CLIResult, code: int, *needles: str) -> None:
    """A user error: the documented exit code, one line on stderr, no traceback."""
    assert res.code == code, res
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("mediasec: "), res.stderr
    assert "Traceback" not in res.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture
def cli():
    return run_cli
