"""What a first user trips on (issue 9 item 5): bare `mediasec`, --version, outputs that
exist or have no parent folder, skipped files named, trust never skipped silently, extract
progress/counts/modes, ls leaf UIDs. The CLI runs in-process (click's isolation) except
where the exit code of a real process matters."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import run_cli
from mediasec.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
PKI = ROOT / "fixtures" / "pki"
DCM = ROOT / "fixtures" / "dicom"
KEY = ["--key", str(PKI / "recipient-2048.key.pem"), "--cert", str(PKI / "recipient-2048.pem")]
SIGN = ["--sign-key", str(PKI / "signer.key.pem"), "--sign-cert", str(PKI / "signer.pem"),
        "--sign-chain", str(PKI / "chain.pem")]


class R:
    def __init__(self, code, out, err):
        self.code, self.stdout, self.stderr = code, out, err

    def __repr__(self):
        return f"<R {self.code} out={self.stdout[-300:]!r} err={self.stderr!r}>"


def run(*args) -> R:
    runner = CliRunner()
    with runner.isolation() as streams:
        code = main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return R(code, out, err)


def one_line(r: R, code: int, *needles):
    assert r.code == code, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mediasec: "), r
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bare_mediasec_prints_help_and_exits_0():
    res = run_cli()
    assert res.code == 0, res
    assert "Usage: mediasec" in res.stdout and "protect" in res.stdout
    assert res.stderr == ""


def test_version_from_package_metadata():
    from importlib.metadata import version
    r = run("--version")
    assert r.code == 0, r
    assert r.stdout.strip() == f"mediasec, version {version('mediasec')}"


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    d = tmp_path_factory.mktemp("sec")
    out = d / "ct1.sec"
    r = run("protect", DCM / "ct1.dcm", "-o", out, "--encrypt-to", PKI / "recipient-2048.pem",
            *SIGN)
    assert r.code == 0, r
    return out


def test_protect_refuses_existing_output_unless_force(tmp_path):
    out = tmp_path / "x.sec"
    out.write_bytes(b"keep me")
    args = ["protect", DCM / "ct1.dcm", "-o", out, "--encrypt-to", PKI / "recipient-2048.pem"]
    one_line(run(*args), 2, "output already exists", "--force")
    assert out.read_bytes() == b"keep me"
    r = run(*args, "--force")
    assert r.code == 0, r
    assert out.read_bytes() != b"keep me" and out.stat().st_size > 1000


def test_protect_and_unprotect_never_in_place(tmp_path, secure):
    src = tmp_path / "ct.dcm"
    src.write_bytes((DCM / "ct1.dcm").read_bytes())
    one_line(run("protect", src, "-o", src, "--force", "--encrypt-to",
                 PKI / "recipient-2048.pem"), 2, "output is the input")
    assert src.read_bytes() == (DCM / "ct1.dcm").read_bytes()
    before = secure.read_bytes()
    one_line(run("unprotect", secure, "-o", secure, "--force", *KEY), 2, "output is the input")
    assert secure.read_bytes() == before


def test_unprotect_refuses_existing_output(tmp_path, secure):
    out = tmp_path / "plain.dcm"
    out.write_bytes(b"keep me")
    one_line(run("unprotect", secure, "-o", out, *KEY), 2, "output already exists")
    assert out.read_bytes() == b"keep me"
    r = run("unprotect", secure, "-o", out, *KEY, "--trust", PKI / "trust.pem", "--force")
    assert r.code == 0, r
    assert out.read_bytes() == (DCM / "ct1.dcm").read_bytes()


@pytest.mark.parametrize("verb", ["protect", "unprotect", "build", "extract"])
def test_missing_parent_folder_is_named(tmp_path, secure, verb):
    parent = tmp_path / "nope"
    out = parent / "out"
    args = {"protect": ["protect", DCM / "ct1.dcm", "-o", out, "--encrypt-to",
                        PKI / "recipient-2048.pem"],
            "unprotect": ["unprotect", secure, "-o", out, *KEY],
            "build": ["build", DCM / "ct1.dcm", "-o", out],
            "extract": ["extract", DCM, "-o", out]}[verb]
    one_line(run(*args), 2, f"parent folder {parent} does not exist")
    assert not parent.exists()


def test_unprotect_without_trust_says_so_and_strict_fails(tmp_path, secure):
    out = tmp_path / "plain.dcm"
    r = run("unprotect", secure, "-o", out, *KEY)
    assert r.code == 0, r
    assert "not checked against any trust anchor" in r.stderr
    r = run("unprotect", secure, "-o", tmp_path / "p2.dcm", *KEY, "--strict")
    one_line(r, 1, "--strict", "SIG_TRUST_NOT_CHECKED")
    assert not (tmp_path / "p2.dcm").exists()
    r = run("unprotect", secure, "-o", tmp_path / "p3.dcm", *KEY, "--strict",
            "--trust", PKI / "trust.pem")
    assert r.code == 0, r


def test_untrusted_chain_message_is_ours(tmp_path):
    # a signer checked against an anchor that is not its root: no library-internal text
    sec = tmp_path / "x.sec"
    assert run("protect", DCM / "ct1.dcm", "-o", sec, "--encrypt-to",
               PKI / "recipient-2048.pem", *SIGN).code == 0
    r = run("unprotect", sec, "-o", tmp_path / "p.dcm", *KEY, "--trust",
            PKI / "recipient-2048.pem")
    assert r.code == 1, r
    assert "candidates exhausted" not in r.stderr
    assert "does not chain to a trust anchor: no path from its issuer" in r.stderr, r


@pytest.fixture(scope="module")
def disc(tmp_path_factory):
    d = tmp_path_factory.mktemp("disc")
    pile = d / "pile"
    pile.mkdir()
    for n in ("ct1.dcm", "ct2.dcm", "mr1.dcm"):
        (pile / n).write_bytes((DCM / n).read_bytes())
    for i in range(7):
        (pile / f"notes{i}.txt").write_text("not dicom")
    out = d / "cd"
    r = run("build", pile, "-o", out, "--encrypt-to", PKI / "recipient-2048.pem", *SIGN)
    assert r.code == 0, r
    return out, r


def test_build_names_skipped_files(disc):
    _out, r = disc
    assert "7 skipped" in r.stdout
    named = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("skipped ")]
    assert len(named) == 5 and all("notes" in ln and ".txt: " in ln for ln in named), r.stdout
    assert "... and 2 more" in r.stdout


def test_verify_without_trust_says_so_and_strict_exits_1(disc):
    out, _ = disc
    r = run("verify", out, *KEY, "--workers", "1")
    assert r.code == 0, r
    assert "not checked against any trust anchor" in r.stdout
    assert run("verify", out, *KEY, "--workers", "1", "--strict").code == 1
    r = run("verify", out, *KEY, "--workers", "1", "--strict", "--trust", PKI / "trust.pem")
    assert r.code == 0, r


def test_ls_json_leaves_carry_pacs_match_keys(disc):
    out, _ = disc
    r = run("ls", out, *KEY, "--json")
    assert r.code == 0, r
    doc = json.loads(r.stdout)
    leaves = [lf for p in doc["tree"] for st in p["children"] for se in st["children"]
              for lf in se["children"]]
    assert len(leaves) == 3
    import pydicom
    want = {}
    for n in ("ct1.dcm", "ct2.dcm", "mr1.dcm"):
        ds = pydicom.dcmread(DCM / n, stop_before_pixels=True)
        want[ds.SOPInstanceUID] = ds.SOPClassUID
    for lf in leaves:
        assert want[lf["sop_instance_uid"]] == lf["sop_class_uid"]
        assert lf["transfer_syntax"].startswith("1.2.840.10008.1.2")


@pytest.mark.parametrize("umask,private,dmode,fmode", [
    (0o000, False, 0o755, 0o644), (0o077, False, 0o755, 0o644),
    (0o000, True, 0o700, 0o600), (0o077, True, 0o700, 0o600)])
def test_extract_modes_counts_progress(tmp_path, disc, umask, private, dmode, fmode):
    out, _ = disc
    dest = tmp_path / "x"
    old = os.umask(umask)
    try:
        r = run("extract", out, "-o", dest, *KEY, "--trust", PKI / "trust.pem",
                "--workers", "1", "--progress", "json", "--json", tmp_path / "x.json",
                *(["--private"] if private else []))
    finally:
        os.umask(old)
    assert r.code == 0, r
    doc = json.loads((tmp_path / "x.json").read_text())
    c = doc["counts"]
    assert c["written"] + c["skipped"] + c["failed"] == c["files"] and c["written"] == 3
    events = [json.loads(ln) for ln in r.stderr.splitlines()]
    assert events[-1]["event"] == "result" and events[-1]["counts"] == c
    prog = [e for e in events if e["event"] == "progress"]
    assert prog and prog[-1]["done_bytes"] == prog[-1]["total_bytes"] > 0
    files = [p for p in dest.rglob("*") if p.is_file()]
    dirs = [dest, *(p for p in dest.rglob("*") if p.is_dir())]
    assert len(files) == 3 and len(dirs) > 1
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {fmode}
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs} == {dmode}


def _protect_sign(tmp_path, *extra, key="signer"):
    return run("protect", DCM / "ct1.dcm", "-o", tmp_path / "s.sec", "--encrypt-to",
               PKI / "recipient-2048.pem", "--sign-key", PKI / f"{key}.key.pem",
               "--sign-cert", PKI / f"{key}.pem", *extra)


def test_signing_without_chain_warns_what_was_checked(tmp_path):
    r = _protect_sign(tmp_path)
    assert r.code == 0, r
    assert "warning: signer chain:" in r.stderr
    assert "no --sign-chain was given" in r.stderr and "Intermediate CA" in r.stderr


def test_signing_with_chain_reaching_anchor_is_quiet(tmp_path):
    r = _protect_sign(tmp_path, "--sign-chain", PKI / "chain.pem", "--trust", PKI / "trust.pem")
    assert r.code == 0, r
    assert r.stderr == ""


def test_signing_untrusted_signer_warns_at_build_time(tmp_path):
    pile = tmp_path / "pile"
    pile.mkdir()
    (pile / "a.dcm").write_bytes((DCM / "ct1.dcm").read_bytes())
    r = run("build", pile, "-o", tmp_path / "cd", "--encrypt-to", PKI / "recipient-2048.pem",
            "--sign-key", PKI / "signer-untrusted.key.pem", "--sign-cert",
            PKI / "signer-untrusted.pem", "--trust", PKI / "trust.pem", "--workers", "1")
    assert r.code == 0, r
    assert "does not chain to a trust anchor: no path from its issuer (CN=mediasec Rogue" \
        in r.stderr, r
    assert "candidates exhausted" not in r.stderr


def test_extract_strict_without_trust_exits_1(tmp_path, disc):
    out, _ = disc
    r = run("extract", out, "-o", tmp_path / "a", *KEY, "--workers", "1")
    assert r.code == 0, r
    r = run("extract", out, "-o", tmp_path / "b", *KEY, "--workers", "1", "--strict")
    assert r.code == 1, r
    r = run("extract", out, "-o", tmp_path / "c", *KEY, "--workers", "1", "--strict",
            "--trust", PKI / "trust.pem")
    assert r.code == 0, r


@pytest.mark.parametrize("verb,operand", [("ls", DCM), ("inspect", DCM / "ct1.dcm")])
def test_json_takes_file_or_stdout(tmp_path, verb, operand):
    schema = f"mediasec.{verb}/1"
    for args in (["--json", operand], [operand, "--json"], [operand, "--json", "-"]):
        r = run(verb, *args)
        assert r.code == 0, (args, r)
        assert json.loads(r.stdout)["schema"] == schema
    target = tmp_path / "out.json"
    r = run(verb, "--json", target, operand)
    assert r.code == 0, r
    assert json.loads(target.read_text())["schema"] == schema
    assert not r.stdout.lstrip().startswith("{")  # the text summary, not the JSON
    one_line(run(verb), 2, "Missing argument")
