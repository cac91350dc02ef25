"""A few true end-to-end runs of ``python -m mediasec`` in its own process: what the
in-process ``run_cli`` cannot show - the exit status a shell sees, the entry point
itself, stdin that is not a terminal, an internal error's saved trace."""

from __future__ import annotations

import json

from conftest import DICOM, PKI, assert_one_line_error, run_cli_process


def test_exit_statuses_of_a_real_process(tmp_path):
    iso = tmp_path / "disc.iso"
    res = run_cli_process("build", DICOM / "ct1.dcm", DICOM / "ct2.dcm", "-o", iso,
                          "--encrypt-to", PKI / "recipient-2048.pem", "--json", "-")
    assert res.code == 0, res
    assert json.loads(res.stdout)["schema"] == "mediasec.build/1"
    key = ["--key", PKI / "recipient-2048.key.pem", "--cert", PKI / "recipient-2048.pem"]
    assert run_cli_process("verify", iso, *key).code == 0
    # one flipped byte in a file's ciphertext: checked data failed -> 1
    data = bytearray(iso.read_bytes())
    data[-4096] ^= 0x01
    bad = tmp_path / "bad.iso"
    bad.write_bytes(bytes(data))
    res = run_cli_process("verify", bad, *key)
    assert res.code == 1 and "Result: FAILED" in res.stdout, res
    # cannot do what was asked -> 2, one line
    assert_one_line_error(run_cli_process("verify", tmp_path / "nope.iso"), 2, "no such file")


def test_a_prompt_without_a_terminal_stops_at_once(tmp_path):
    res = run_cli_process("build", DICOM / "ct1.dcm", "-o", tmp_path / "d.iso",
                          "--password-prompt", input="secret\n")
    assert_one_line_error(res, 2, "not a terminal")
    assert list(tmp_path.iterdir()) == []


def test_version_from_the_entry_point():
    res = run_cli_process("--version")
    assert res.code == 0 and res.stdout.startswith("mediasec, version ")
