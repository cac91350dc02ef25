"""The hostile-input matrix: every command against every kind of bad input it can meet.

Each row is (case id, command, argv builder, expected exit). The builder gets the
session corpus (``Corpus``) and a fresh folder and returns the argv after ``mediasec``.
Every case asserts: the documented exit code, exactly one line on stderr starting with
``mediasec: ``, no traceback, nothing at the output path, no hidden partial files, and
no plaintext marker bytes anywhere under the work folder. Commands added later (sign,
deidentify, send, receive) join by appending rows to ``CASES``.

The CLI runs in-process (``mediasec.cli.main.main``): a subprocess per case adds
nothing here but seconds. FIFOs never block (inputs are opened non-blocking and
refused when not regular), so they run in-process too.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import shutil
import struct

import pytest

import _dicomgen as g
from conftest import PKI
from mediasec.cli.main import main

PASSWORD = "correct horse battery staple"
#: a string only the plaintext of the protected sample holds (its patient name)
MARKER = b"MATRIX^MARKER"
KEYS = ["--key", str(PKI / "recipient-2048.key.pem"), "--cert", str(PKI / "recipient-2048.pem")]
OTHER_KEY = ["--key", str(PKI / "recipient-3072.key.pem"), "--cert",
             str(PKI / "recipient-3072.pem")] if (PKI / "recipient-3072.pem").exists() else None
TO = ["--encrypt-to", str(PKI / "recipient-2048.pem")]
SIGN = ["--sign-key", str(PKI / "signer.key.pem"), "--sign-cert", str(PKI / "signer.pem"),
        "--sign-chain", str(PKI / "chain.pem")]


def run(argv, env=None):
    out, err = io.StringIO(), io.StringIO()
    old = dict(os.environ)
    os.environ.pop("MS_PW", None)
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        os.environ.clear()
        os.environ.update(old)
    return code, out.getvalue(), err.getvalue()


class Corpus:
    def __init__(self, root: pathlib.Path):
        self.root = root
        self.dcm = root / "plain.dcm"
        g.write_instance(self.dcm, "ct", patient=MARKER.decode())
        self.data = self.dcm.read_bytes()
        assert MARKER in self.data
        self.sec = root / "file.sec"
        self.sec_pw = root / "file-pw.sec"
        code, _, err = run(["protect", self.dcm, "-o", self.sec, *TO, *SIGN])
        assert code == 0, err
        code, _, err = run(["protect", self.dcm, "-o", self.sec_pw, "--password-env", "MS_PW"],
                           env={"MS_PW": PASSWORD})
        assert code == 0, err
        self.sec_bytes = self.sec.read_bytes()
        self.pw_bytes = self.sec_pw.read_bytes()
        self.pile = root / "pile"
        g.ct_series(self.pile, 2, patient=MARKER.decode())
        self.iso = root / "plain.iso"
        code, _, err = run(["build", self.pile, "-o", self.iso, "--profile", "STD-GEN-CD",
                            "--fileset-uid", "2.25.99"])
        assert code == 0, err
        self.iso_bytes = self.iso.read_bytes()
        self.folder = root / "PLAIN"
        code, _, err = run(["build", self.pile, "-o", self.folder, "--fileset-uid", "2.25.98"])
        assert code == 0, err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("corpus"))


# -- input makers: each returns a path inside ``d`` ----------------------------------------

def f_bytes(data):
    def make(c, d):
        p = d / "in.bin"
        p.write_bytes(data(c) if callable(data) else data)
        return p
    return make


def f_patch(attr, off, new):
    """Copy of corpus bytes ``attr`` with ``new`` at ``off`` (negative: from the end)."""
    def make(c, d):
        b = bytearray(getattr(c, attr))
        o = off(b) if callable(off) else off
        b[o:o + len(new)] = new
        p = d / "in.bin"
        p.write_bytes(bytes(b))
        return p
    return make


def f_fifo(c, d):
    p = d / "fifo"
    os.mkfifo(p)
    return p


def f_loop(c, d):
    p = d / "loop"
    os.symlink(p, p)
    return p


def f_missing(c, d):
    return d / "missing"


def f_dir(c, d):
    p = d / "adir"
    p.mkdir()
    return p


def f_dev(c, d):
    return pathlib.Path("/dev/zero")  # read only: a device never written by any case


def o_fifo(c, d):
    """An existing non-regular output (a FIFO; never a real device such as /dev/null)."""
    p = d / "out-fifo"
    os.mkfifo(p)
    return p


def _sop_uid(data: bytes) -> bytes:
    i = data.find(b"\x08\x00\x18\x00UI")
    n = struct.unpack_from("<H", data, i + 6)[0]
    return data[i + 8:i + 8 + n].rstrip(b"\0")


def _meta_mismatch(data: bytes) -> bytes:
    u = _sop_uid(data)
    i = data.rfind(u)  # the data set's copy (the meta one comes first)
    last = u[-1:]
    return data[:i] + u[:-1] + (b"7" if last != b"7" else b"8") + data[i + len(u):]


def _non_ascii_uid(data: bytes) -> bytes:
    u = _sop_uid(data)
    return data.replace(u, u[:-1] + b"\xe9")


def _find(attr, needle, delta=0):
    def off(b):
        i = bytes(b).find(needle)
        assert i >= 0, needle
        return i + delta
    return off


def dicom_with(**kw):
    def make(c, d):
        p = d / "in.dcm"
        g.write_instance(p, "ct", **kw)
        return p
    return make


def dicom_bytes_edit(fn):
    def make(c, d):
        p = d / "in.dcm"
        p.write_bytes(fn(c.data))
        return p
    return make


def _deflate_bomb():
    import zlib
    meta_ds = g.make_dataset("ct")
    p = io.BytesIO()
    # a Deflated LE file whose inflated data set is 64 MiB of one element
    raw = b"\x08\x00\x16\x00UI\x1a\x00" + b"1.2.840.10008.5.1.4.1.1.2\0" + \
        b"\xe1\x7f\x10\x00OB\x00\x00" + struct.pack("<I", 64 << 20) + b"\0" * (64 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = comp.compress(raw) + comp.flush()
    from mediasec.dicom.part10 import encode_file_meta
    meta = encode_file_meta("1.2.840.10008.5.1.4.1.1.2", "2.25.5",
                            transfer_syntax="1.2.840.10008.1.2.1.99")
    return meta + body


def iso_patch(offset, new):
    return f_patch("iso_bytes", offset, new)


PVD_ROOT = 16 * 2048 + 156


# -- per-command argv builders ---------------------------------------------------------------

def protect(make, *extra):
    def argv(c, d):
        return ["protect", make(c, d), "-o", d / "out.sec", *TO, *extra], d / "out.sec"
    return argv


def unprotect(make, *keys, env=None):
    def argv(c, d):
        k = list(keys) if keys else KEYS
        return ["unprotect", make(c, d), "-o", d / "out.dcm", *k], d / "out.dcm"
    argv.env = env
    return argv


def inspect(make, *extra):
    def argv(c, d):
        return ["inspect", make(c, d), *extra], None
    return argv


def build(make, *extra, iso=False):
    def argv(c, d):
        src = make(c, d)
        out = d / ("out.iso" if iso else "OUT")
        return ["build", src, "-o", out, *extra], out
    return argv


def medium(cmd, make, *extra):
    def argv(c, d):
        src = make(c, d)
        if cmd == "extract":
            return ["extract", src, "-o", d / "X", *extra], d / "X"
        return [cmd, src, *extra], None
    return argv


def in_folder(make):
    """A pile folder holding only the hostile input."""
    def m(c, d):
        pile = d / "pile"
        pile.mkdir()
        p = make(c, d)
        target = pile / p.name
        if p.is_symlink() or not p.exists() or not p.is_file():
            if p.is_symlink():
                os.symlink(os.readlink(p), target)
            elif str(p).startswith("/dev/"):
                os.symlink(p, target)
            else:
                os.rename(p, target) if os.path.lexists(p) else None
        else:
            os.rename(p, target)
        return pile
    return m


PW_ENV = {"MS_PW": PASSWORD}
GARBAGE = bytes(range(256)) * 8
EMPTY = b""

CASES = [
    # -- protect ------------------------------------------------------------------------------
    ("protect-zero-length", protect(f_bytes(EMPTY)), 2),
    ("protect-non-dicom", protect(f_bytes(GARBAGE)), 2),
    ("protect-dicm-then-garbage", protect(f_bytes(b"\0" * 128 + b"DICM" + GARBAGE)), 2),
    ("protect-truncated-meta", protect(f_bytes(lambda c: c.data[:140])), 2),
    ("protect-element-length-past-end", protect(f_patch("data", _find("data", b"\x08\x00\x18\x00UI", 6), b"\xff\xff")), 2),
    ("protect-already-secure", protect(f_bytes(lambda c: c.sec_bytes)), 2),
    ("protect-missing", protect(f_missing), 2),
    ("protect-directory", protect(f_dir), 2),
    ("protect-fifo", protect(f_fifo), 2),
    ("protect-device", protect(f_dev), 2),
    ("protect-symlink-loop", protect(f_loop), 2),
    ("protect-legacy-3des", protect(lambda c, d: c.dcm, "--cipher", "3des"), 2),
    ("protect-output-is-fifo", lambda c, d: (["protect", c.dcm, "-o", o_fifo(c, d), *TO],
                                              None), 2),
    ("protect-output-dir-missing", lambda c, d: (["protect", c.dcm, "-o", d / "no" / "x.sec",
                                                  *TO], d / "no" / "x.sec"), 2),
    # -- unprotect ----------------------------------------------------------------------------
    ("unprotect-zero-length", unprotect(f_bytes(EMPTY)), 2),
    ("unprotect-non-cms", unprotect(f_bytes(GARBAGE)), 2),
    ("unprotect-plain-dicom", unprotect(lambda c, d: c.dcm), 2),
    ("unprotect-truncated-head", unprotect(f_bytes(lambda c: c.sec_bytes[:40])), 1),
    ("unprotect-truncated-half", unprotect(f_bytes(lambda c: c.sec_bytes[:len(c.sec_bytes) // 2])), 1),
    ("unprotect-truncated-last-byte", unprotect(f_bytes(lambda c: c.sec_bytes[:-1])), 1),
    ("unprotect-trailing-garbage", unprotect(f_bytes(lambda c: c.sec_bytes + b"junk")), 1),
    ("unprotect-flip-last-block", unprotect(f_patch("sec_bytes", -40, b"\x55")), 1),
    ("unprotect-flip-middle", unprotect(f_patch("sec_bytes", lambda b: len(b) // 2, b"\x00\x01")), 1),
    ("unprotect-outer-header-garbled", unprotect(f_patch("sec_bytes", 1, b"\x84\x7f\xff\xff\xff")), 2),
    ("unprotect-huge-piece-length", unprotect(f_patch("sec_bytes", _find("sec_bytes", b"\xa0\x80\x04\x82", 3), b"\x84\x7f\xff\xff\xff")), 1),
    ("unprotect-version-99", unprotect(f_patch("sec_bytes", _find("sec_bytes", b"\xa0\x80\x30\x80\x02\x01", 6), b"\x63")), 1),
    ("unprotect-unknown-cipher", unprotect(f_patch("sec_bytes", _find("sec_bytes", bytes.fromhex("06096086480165030401"), 10), b"\x7f")), 2),
    ("unprotect-wrong-key", unprotect(lambda c, d: c.sec, "--key", PKI / "signer.key.pem", "--cert", PKI / "signer.pem"), 2),
    ("unprotect-no-key", unprotect(lambda c, d: c.sec, "--password-env", "MS_PW", env=PW_ENV), 2),
    ("unprotect-wrong-password", unprotect(lambda c, d: c.sec_pw, "--password-env", "MS_PW", env={"MS_PW": "not it at all"}), 2),
    ("unprotect-pbkdf2-zero", unprotect(f_patch("pw_bytes", _find("pw_bytes", b"\x02\x03\x09\x27\xc0", 2), b"\x00\x00\x00"), "--password-env", "MS_PW", env=PW_ENV), 1),
    ("unprotect-pbkdf2-negative", unprotect(f_patch("pw_bytes", _find("pw_bytes", b"\x02\x03\x09\x27\xc0", 2), b"\xff\xff\xff"), "--password-env", "MS_PW", env=PW_ENV), 1),
    ("unprotect-untrusted-signer", unprotect(lambda c, d: c.sec, *KEYS, "--trust", PKI / "recipient-2048.pem"), 1),
    ("unprotect-fifo", unprotect(f_fifo), 2),
    ("unprotect-device", unprotect(f_dev), 2),
    ("unprotect-symlink-loop", unprotect(f_loop), 2),
    ("unprotect-missing", unprotect(f_missing), 2),
    ("unprotect-output-is-fifo", lambda c, d: (["unprotect", c.sec, "-o", o_fifo(c, d), *KEYS], None), 2),
    # -- inspect ------------------------------------------------------------------------------
    ("inspect-zero-length", inspect(f_bytes(EMPTY)), 2),
    ("inspect-non-dicom", inspect(f_bytes(GARBAGE)), 2),
    ("inspect-dicm-then-garbage", inspect(f_bytes(b"\0" * 128 + b"DICM" + GARBAGE)), 2),
    ("inspect-truncated-cms", inspect(f_bytes(lambda c: c.sec_bytes[:30])), 1),
    ("inspect-der-not-enveloped", inspect(f_bytes(bytes.fromhex("3082000506032a0304"))), 2),
    ("inspect-fifo", inspect(f_fifo), 2),
    ("inspect-device", inspect(f_dev), 2),
    ("inspect-symlink-loop", inspect(f_loop), 2),
    ("inspect-missing", inspect(f_missing), 2),
    ("inspect-wrong-key", inspect(lambda c, d: c.sec, "--key", PKI / "signer.key.pem", "--cert", PKI / "signer.pem"), 2),
    # -- build --------------------------------------------------------------------------------
    ("build-fileset-uid-word", build(lambda c, d: c.pile, "--fileset-uid", "hello"), 2),
    ("build-fileset-uid-non-ascii", build(lambda c, d: c.pile, "--fileset-uid", "1.2.\u00e9"), 2),
    ("build-fileset-uid-leading-zero", build(lambda c, d: c.pile, "--fileset-uid", "1.02.3"), 2),
    ("build-fileset-id-bad", build(lambda c, d: c.pile, "--fileset-id", "a/b"), 2),
    ("build-missing-source", build(f_missing), 2),
    ("build-only-garbage", build(in_folder(f_bytes(GARBAGE)), "--fileset-uid", "2.25.1"), 2),
    ("build-non-ascii-uid", build(in_folder(dicom_bytes_edit(_non_ascii_uid)), "--fileset-uid", "2.25.1"), 2),
    ("build-meta-uid-mismatch", build(in_folder(dicom_bytes_edit(_meta_mismatch)), "--fileset-uid", "2.25.1"), 2),
    ("build-undefined-length-trap", build(in_folder(f_patch("data", _find("data", b"\x08\x00\x18\x00UI", 6), b"\xff\xff")), "--fileset-uid", "2.25.1"), 2),
    ("build-fifo-in-pile", build(in_folder(f_fifo), "--fileset-uid", "2.25.1"), 2),
    ("build-symlink-loop-in-pile", build(in_folder(f_loop), "--fileset-uid", "2.25.1"), 2),
    ("build-output-exists", lambda c, d: (["build", c.pile, "-o", c.folder], None), 2),
    ("build-secure-no-recipient", build(lambda c, d: c.pile, "--profile", "STD-GEN-SEC-USB-JPEG"), 2),
    ("build-legacy-3des", build(lambda c, d: c.pile, "--profile", "STD-GEN-SEC-USB-JPEG", *TO, "--cipher", "3des"), 2),
    ("build-deflate-bomb", build(in_folder(f_bytes(lambda c: _deflate_bomb())), "--fileset-uid", "2.25.1"), 2),
]

for cmd in ("verify", "ls", "extract"):
    CASES += [
        (f"{cmd}-zero-length", medium(cmd, f_bytes(EMPTY)), 2),
        (f"{cmd}-garbage", medium(cmd, f_bytes(GARBAGE * 20)), 2),
        (f"{cmd}-missing", medium(cmd, f_missing), 2),
        (f"{cmd}-iso-truncated-pvd", medium(cmd, f_bytes(lambda c: c.iso_bytes[:16 * 2048 + 100])), 2),
        (f"{cmd}-iso-root-past-end", medium(cmd, iso_patch(PVD_ROOT + 2, struct.pack("<I", 10 ** 6) + struct.pack(">I", 10 ** 6))), 2),
        (f"{cmd}-iso-zero-length-record", medium(cmd, iso_patch(23 * 2048 + 68, b"\x00")), 2),
        (f"{cmd}-iso-root-size-huge", medium(cmd, iso_patch(PVD_ROOT + 10, struct.pack("<I", 1 << 31) + struct.pack(">I", 1 << 31))), 2),
        (f"{cmd}-symlink-loop", medium(cmd, f_loop), 2),
        (f"{cmd}-fifo", medium(cmd, f_fifo), 2),
    ]


def _scan_plaintext(root: pathlib.Path) -> list[str]:
    hits = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = pathlib.Path(dirpath, name)
            if p.is_symlink() or not p.is_file():
                continue
            if MARKER in p.read_bytes():
                hits.append(str(p))
    return hits


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(case, corpus, tmp_path):
    name, builder, expected = case
    work = tmp_path / "w"
    work.mkdir()
    argv, output = builder(corpus, work)
    code, _out, err = run(argv, env=getattr(builder, "env", None))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert code == expected, (code, err)
    if expected != 0:
        assert len(lines) == 1, err
        assert lines[0].startswith("mediasec: "), err
        if output is not None:
            assert not os.path.lexists(output), output
        hidden = [p.name for p in work.iterdir() if p.name.startswith(".")]
        assert hidden == [], hidden
    # the inputs we wrote may hold the marker (plain DICOM); any *new* file must not
    before = {str(p) for p in work.rglob("*")} if False else None
    leaked = [h for h in _scan_plaintext(work)
              if not (h.endswith(("in.dcm", "good.dcm", "in.bin")) or "/pile/" in h)]
    assert leaked == [], leaked
