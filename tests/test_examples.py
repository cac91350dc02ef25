"""The scripts in examples/ run as documented (CI runs them through this test)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

from conftest import DICOM, ROOT, run_cli


def test_build_and_verify_example(tmp_path):
    src = tmp_path / "study"
    src.mkdir()
    for name in ("ct1.dcm", "ct2.dcm", "ct3_ile.dcm", "mr1.dcm", "sr1.dcm"):
        shutil.copy(DICOM / name, src / name)
    (src / "notes.txt").write_text("not DICOM: skipped")
    env = {**os.environ, "MEDIASEC_PASSWORD": "an example passphrase"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "build_and_verify.py"),
                           str(src), str(tmp_path / "disc.iso")], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("wrote ") and lines[0].endswith(" bytes")
    assert lines[1] == f"{tmp_path / 'disc.iso'}: 5 instances, profile STD-GEN-SEC-CD"
    # + DICOMDIR, MANIFEST.SHA and the three PDI files
    assert lines[2] == "verify: passed, 10 of 10 files passed"
    # the command line agrees, and the image is locked without the password
    res = run_cli("verify", tmp_path / "disc.iso", "--password-env", "PW",
                  env={"PW": "an example passphrase"})
    assert res.code == 0, res
    assert run_cli("verify", tmp_path / "disc.iso", "--password-env", "PW",
                   env={"PW": "wrong"}).code == 2
    # no password: a clear refusal, nothing written
    env.pop("MEDIASEC_PASSWORD")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "build_and_verify.py"),
                           str(src), str(tmp_path / "other.iso")], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 2 and not (tmp_path / "other.iso").exists()
    assert pathlib.Path(tmp_path / "disc.iso").stat().st_size % 2048 == 0
