"""The committed fixtures are exactly what fixtures/make_fixtures.py generates."""

import subprocess
import sys

from conftest import FIXTURES


def test_fixtures_regenerate_identically():
    proc = subprocess.run([sys.executable, str(FIXTURES / "make_fixtures.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
