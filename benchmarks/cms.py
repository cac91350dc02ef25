#!/usr/bin/env python3
"""Throughput and peak-memory benchmark of mediasec's CMS layer, beside OpenSSL.

Not a test. Run it as::

    python benchmarks/cms.py [--size 1G] [--also-4g] [--workdir DIR] [--profile-failures]

In one run it measures, on a generated DICOM Part 10 file of ``--size`` bytes:

(a) a bare EnvelopedData (AES-256-CBC, id-data content, RSA key transport) written with
    ``EnvelopeLayout``/``Encryptor`` and read with ``read_enveloped_head``/``decrypt_chunks``,
    each against ``openssl speed -evp aes-256-cbc`` (target >= 80 %);
(b) a whole Secure DICOM File (DigestedData SHA-256 or RSA SignedData inside an AES-256
    envelope): ``SecureFileProducer.write_to`` (protect) and ``open_secure_file`` (unprotect),
    against the combined SHA-256 + AES-256-CBC limit 1/(1/aes + 1/sha) (target >= 75 %);
(c) peak RSS of every step (target < 100 MB), and with ``--also-4g`` again at 4 GiB;

all beside ``openssl cms -encrypt -stream`` and ``openssl cms -decrypt`` on the same file.

Every measured step is its own child process pinned to one core (``taskset -c N``); its
peak RSS is ``ru_maxrss`` from ``os.wait4`` on that child. "s" is the step's own time,
measured inside the child from opening the files to closing the output (key loading and
recipient/signature work included, interpreter start-up and imports excluded); "proc s" is
the whole child process, start-up included. Throughput is in MB/s (10^6 bytes/s, the
unit of ``openssl speed``); RSS is in MB (10^6 bytes) too, so "< 100 MB" is the stricter
reading. Outputs are written without fsync, like the openssl commands.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PKI = os.path.join(ROOT, "fixtures", "pki")
CT1 = os.path.join(ROOT, "fixtures", "dicom", "ct1.dcm")
RECIP_CERT = os.path.join(PKI, "recipient-2048.pem")
RECIP_KEY = os.path.join(PKI, "recipient-2048.key.pem")
SIGNER_CERT = os.path.join(PKI, "signer.pem")
SIGNER_KEY = os.path.join(PKI, "signer.key.pem")
CHAIN = os.path.join(PKI, "chain.pem")
TRUST = os.path.join(PKI, "trust.pem")

GiB = 1 << 30
MiB = 1 << 20
RSS_TARGET_MB = 100.0
ENV_TARGET = 0.80      # (a) share of openssl speed -evp aes-256-cbc
SDF_TARGET = 0.75      # (b) share of 1/(1/aes + 1/sha256)


# ============================================================================================
# measured steps (run in a child process: ``--_step NAME``)
# ============================================================================================

def _write_all(out, mv) -> None:
    while mv:
        n = out.write(mv)
        mv = mv[n:]


def _readinto_full(f, mv) -> int:
    got = 0
    while got < len(mv):
        n = f.readinto(mv[got:])
        if not n:
            break
        got += n
    return got


def step_env_encrypt(src: str, dst: str, chunk: int = MiB) -> int:
    """Bare EnvelopedData of the raw file (id-data), BER framing with ``chunk`` pieces,
    streamed exactly the way ``SecureFileProducer.chunks`` does but without the inner layer."""
    from mediasec.cms import oids
    from mediasec.cms._ber import der_len
    from mediasec.cms.envelope import Encryptor, EnvelopeLayout
    from mediasec.cms.keys import KeyTransportRecipient
    from mediasec.io.keys import read_certificates

    recipient = KeyTransportRecipient(read_certificates(RECIP_CERT)[0])
    cek, iv = os.urandom(32), os.urandom(16)
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as out:
        size = os.fstat(f.fileno()).st_size
        layout = EnvelopeLayout.build(
            recipient_infos=[recipient.recipient_info_der(cek, "aes-256")], inner_type=oids.DATA,
            cipher="aes-256", iv=iv, plain_len=size, chunk=chunk)
        enc = Encryptor("aes-256", cek, iv)
        pbuf = bytearray(chunk)
        pv = memoryview(pbuf)
        cv = memoryview(bytearray(chunk + 48))
        piece_header = b"\x04" + der_len(chunk)
        written = 0
        _write_all(out, memoryview(layout.prefix))
        written += len(layout.prefix)
        remaining = size
        while remaining >= chunk:
            if _readinto_full(f, pv) != chunk:
                raise RuntimeError("the input shrank")
            n = enc.update_into(pv, cv)
            out.write(piece_header)
            _write_all(out, cv[:n])
            written += len(piece_header) + n
            remaining -= chunk
        rest = _readinto_full(f, pv[:remaining])
        if rest != remaining or f.read(1):
            raise RuntimeError("the input changed size")
        n = enc.final_into(pv[:rest], cv)
        tail = b"\x04" + der_len(n) + bytes(cv[:n]) + layout.suffix
        _write_all(out, memoryview(tail))
        written += len(tail)
    if written != layout.size():
        raise RuntimeError(f"planned {layout.size()} bytes, wrote {written}")
    return size


def _key_decrypter():
    from mediasec.cms.keys import KeyDecrypter
    from mediasec.io.keys import read_certificates, read_private_key
    key, _ = read_private_key(RECIP_KEY)
    return KeyDecrypter(key, read_certificates(RECIP_CERT)[0])


def step_env_decrypt(src: str, dst: str) -> int:
    """Bare EnvelopedData (any inner type) -> the plaintext, streamed to ``dst``."""
    from mediasec.cms._ber import ByteStream
    from mediasec.cms.envelope import decrypt_chunks, read_enveloped_head
    from mediasec.policy import CIPHERS
    from mediasec.io.keys import file_chunks

    decrypter = _key_decrypter()
    total = 0
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as out:
        s = ByteStream(file_chunks(f), what="the file")
        head = read_enveloped_head(s)
        cek = decrypter.unwrap(head.recipient_infos, CIPHERS[head.cipher]).cek
        for mv in decrypt_chunks(s, head, cek):
            _write_all(out, mv)
            total += len(mv)
    return total


def step_protect(src: str, dst: str, signed: bool = False) -> int:
    """``mediasec protect`` through the library: SecureFileProducer(...).write_to."""
    from mediasec.cms.keys import KeyTransportRecipient, RSASigner
    from mediasec.cms.secure import ProtectOptions, SecureFileProducer
    from mediasec.io.keys import read_certificates, read_private_key

    recipients = [KeyTransportRecipient(c) for c in read_certificates(RECIP_CERT)]
    signers = []
    if signed:
        key, _ = read_private_key(SIGNER_KEY)
        signers.append(RSASigner(key, read_certificates(SIGNER_CERT)[0],
                                 read_certificates(CHAIN), digest="sha256"))
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as out:
        size = os.fstat(f.fileno()).st_size
        producer = SecureFileProducer(size, recipients=recipients, signers=signers,
                                      options=ProtectOptions(cipher="aes-256", digest="sha256"))
        producer.write_to(f, out)
    return size


def step_unprotect(src: str, dst: str, signed: bool = False) -> int:
    """``mediasec unprotect`` through the library: open_secure_file with a file sink."""
    from mediasec.cms.secure import open_secure_file, raise_for_failures
    from mediasec.io.keys import file_chunks, read_certificates
    from mediasec.policy import TrustContext

    decrypter = _key_decrypter()
    trust = TrustContext(anchors=tuple(read_certificates(TRUST))) if signed else None
    total = 0
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as out:
        def sink(mv):
            nonlocal total
            _write_all(out, mv)
            total += len(mv)
        report = open_secure_file(file_chunks(f), decrypters=[decrypter], sink=sink,
                                  trust=trust)
    raise_for_failures(report)
    expected = "SIG_OK" if signed else "INTEGRITY_DIGEST_OK"
    if expected not in {x.code for x in report.findings}:
        raise RuntimeError(f"no {expected} in {[x.code for x in report.findings]}")
    return total


def step_io_copy(src: str, dst: str, chunk: int = MiB) -> int:
    """No crypto: the same reads and writes as a step, to show what file I/O alone costs."""
    buf = memoryview(bytearray(chunk))
    total = 0
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as out:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            _write_all(out, buf[:n])
            total += n
    return total


STEPS = {
    "io-copy": lambda a: step_io_copy(a.src, a.dst),
    "env-encrypt": lambda a: step_env_encrypt(a.src, a.dst),
    "env-decrypt": lambda a: step_env_decrypt(a.src, a.dst),
    "protect-digest": lambda a: step_protect(a.src, a.dst, signed=False),
    "unprotect-digest": lambda a: step_unprotect(a.src, a.dst, signed=False),
    "protect-signed": lambda a: step_protect(a.src, a.dst, signed=True),
    "unprotect-signed": lambda a: step_unprotect(a.src, a.dst, signed=True),
}


def run_step_in_child(args) -> None:
    # imports first: start-up is not part of the step's time
    import mediasec.cms.secure  # noqa: F401
    import mediasec.io.keys  # noqa: F401
    fn = STEPS[args._step]
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        n = fn(args)
        prof.disable()
        dt = time.perf_counter() - t0
        st = pstats.Stats(prof, stream=sys.stderr)
        st.sort_stats("tottime").print_stats(10)
    else:
        t0 = time.perf_counter()
        n = fn(args)
        dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "bytes": n}))


# ============================================================================================
# orchestration (the parent)
# ============================================================================================

def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 512M, 1G, 4G)")
    mult = {"": 1, "k": 1 << 10, "m": MiB, "g": GiB, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def human(n: int) -> str:
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Pinner:
    def __init__(self, core: int | None = None):
        allowed = sorted(os.sched_getaffinity(0))
        self.core = allowed[0] if core is None else core
        self.taskset = shutil.which("taskset")

    def wrap(self, cmd: list[str]) -> list[str]:
        if self.taskset:
            return [self.taskset, "-c", str(self.core), *cmd]
        return cmd

    def preexec(self):
        if not self.taskset:
            core = self.core
            return lambda: os.sched_setaffinity(0, {core})
        return None

    def describe(self) -> str:
        how = f"taskset -c {self.core}" if self.taskset else f"sched_setaffinity({{{self.core}}})"
        return f"every measured process pinned to CPU {self.core} ({how})"


_RSS_WRAPPER = """\
import os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(str(ru.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def rss_wrapper(report: str) -> list[str]:
    """A small reaper that forks the measured command and writes its ru_maxrss (KiB).

    The measured process must not be forked from this (big) Python process: Linux keeps
    the pre-exec image's high-water mark in ru_maxrss, which would add our own RSS.
    GNU time (about 1 MB) when installed, else a bare ``python -I -S`` (about 9 MB floor).
    """
    gtime = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    if gtime:
        return [gtime, "-f", "%M", "-o", report]
    return [sys.executable, "-I", "-S", "-c", _RSS_WRAPPER, report]


def measure(pin: Pinner, cmd: list[str], *, mem_cap: int | None = None) -> dict:
    """Run one pinned child; return its wall time, peak RSS (MB) and output."""
    def preexec():
        f = pin.preexec()
        if f:
            f()
        if mem_cap:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (mem_cap, mem_cap))
    fd, report = tempfile.mkstemp(prefix="mediasec-bench-rss-")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        p = subprocess.run(rss_wrapper(report) + pin.wrap(cmd), capture_output=True,
                           preexec_fn=preexec)
        wall = time.perf_counter() - t0
        with open(report) as f:
            text = f.read().strip()
    finally:
        os.unlink(report)
    # GNU time prefixes "Command exited with non-zero status N" on failure
    kib = int(text.splitlines()[-1]) if text else 0
    return {"wall": wall, "rss_mb": kib * 1024 / 1e6, "rc": p.returncode,
            "stdout": p.stdout.decode(errors="replace"),
            "stderr": p.stderr.decode(errors="replace")}


def openssl_speed(pin: Pinner, args: list[str], seconds: int) -> tuple[float, str]:
    """MB/s (10^6 B/s) of the 16384-byte column of ``openssl speed``."""
    cmd = ["openssl", "speed", *args, "-bytes", "16384", "-seconds", str(seconds)]
    r = subprocess.run(pin.wrap(cmd), capture_output=True, text=True, check=True,
                       preexec_fn=pin.preexec())
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    last = lines[-1]
    m = re.search(r"([\d.]+)k\s*$", last)
    if not m:
        raise RuntimeError(f"cannot parse openssl speed output: {r.stdout!r}")
    return float(m.group(1)) * 1000 / 1e6, " ".join(cmd)


# -- input -----------------------------------------------------------------------------------

PRIVATE_GROUP = 0x7FE1


def _elem(group: int, elem: int, vr: bytes, value_len: int) -> bytes:
    """Explicit VR little endian element header."""
    if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, value_len)
    return struct.pack("<HH2sH", group, elem, vr, value_len)


def make_dicom(path: str, size: int) -> None:
    """A valid Part 10 file of ``size`` bytes: ct1.dcm (preamble, DICM, meta, dataset, its
    small Pixel Data), then a private group (7FE1,0010) LO creator + (7FE1,1000) OB holding
    pseudo-random bytes (a 16 MiB os.urandom block, repeated)."""
    base = open(CT1, "rb").read()
    if base[128:132] != b"DICM":
        raise SystemExit(f"{CT1} is not a Part 10 file")
    creator = b"MEDIASEC BENCH"           # even length
    head = (base + _elem(PRIVATE_GROUP, 0x0010, b"LO", len(creator)) + creator
            + _elem(PRIVATE_GROUP, 0x1000, b"OB", 0))
    value_len = size - len(head)
    if value_len < 0 or value_len % 2 or value_len > 0xFFFFFFFE:
        raise SystemExit(f"cannot make a {size}-byte file (header {len(head)} bytes; the OB "
                         "value must be even and under 4 GiB - 1)")
    head = head[:-4] + struct.pack("<I", value_len)
    block = os.urandom(16 * MiB)
    with open(path, "wb", buffering=0) as f:
        f.write(head)
        left = value_len
        while left:
            n = min(left, len(block))
            _write_all(f, memoryview(block)[:n])
            left -= n
    assert os.path.getsize(path) == size


def check_dicom(path: str) -> str:
    try:
        import pydicom
    except ImportError:
        return "pydicom not installed; not parsed"
    ds = pydicom.dcmread(path, defer_size=1024)
    el = ds.get_item((PRIVATE_GROUP, 0x1000))   # deferred: the value is not read
    n = os.path.getsize(path) - el.file_tell
    return (f"pydicom reads it: {ds.file_meta.TransferSyntaxUID.name}, "
            f"Modality {ds.get('Modality')}, ({PRIVATE_GROUP:04X},1000) {el.VR} "
            f"[{el.private_creator}] value of {n} bytes up to the end of the file")


# -- workdir ---------------------------------------------------------------------------------

def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def free_space(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def is_tmpfs(path: str) -> bool:
    path = os.path.realpath(path)
    best, fstype = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt, typ = parts[1], parts[2]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, fstype = mnt, typ
    return fstype in ("tmpfs", "ramfs")


def pick_workdir(explicit: str | None, size: int) -> tuple[str, str]:
    """(directory, description). Needs room for input + encrypted + decrypted."""
    need = 3 * size + 256 * MiB
    if explicit:
        os.makedirs(explicit, exist_ok=True)
        d = tempfile.mkdtemp(prefix="mediasec-bench-", dir=explicit)
        kind = "tmpfs" if is_tmpfs(d) else "disk"
        return d, f"{d} ({kind}, given with --workdir)"
    shm = "/dev/shm"
    if (os.path.isdir(shm) and os.access(shm, os.W_OK) and free_space(shm) >= need
            and mem_available() >= need + 2 * GiB):
        d = tempfile.mkdtemp(prefix="mediasec-bench-", dir=shm)
        return d, f"{d} (tmpfs: RAM-backed, so file I/O costs little)"
    base = tempfile.gettempdir()
    if free_space(base) < need:
        raise SystemExit(f"no room for {human(need)} in /dev/shm or {base}")
    d = tempfile.mkdtemp(prefix="mediasec-bench-", dir=base)
    why = (f"/dev/shm lacks room for {need / 1e9:.1f} GB (input + output + decrypted) "
           "within free RAM")
    return d, f"{d} (DISK: {why}; disk I/O is in every time below)"


# -- the run ---------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.pin = Pinner(args.core)
        self.rows: list[dict] = []
        self.failed_steps: list[tuple[str, str, str]] = []

    # ---- machine, limits -------------------------------------------------------------------
    def machine(self) -> None:
        model = "?"
        flags = set()
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
        import cryptography
        from cryptography.hazmat.backends.openssl import backend
        ossl = run(["openssl", "version"]).stdout.strip()
        print("== machine")
        print(f"  nproc {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}), "
              f"CPU {model}")
        print("  CPU flags: " + ", ".join(f for f in ("aes", "vaes", "sha_ni", "avx2",
                                                       "avx512f") if f in flags))
        print(f"  python {platform.python_version()} ({sys.executable})")
        print(f"  openssl CLI: {ossl}")
        print(f"  python cryptography {cryptography.__version__}, linked against "
              f"{backend.openssl_version_text()}")
        print(f"  {self.pin.describe()}")
        print(f"  RAM available {mem_available() / 1e9:.1f} GB")

    def limits(self) -> None:
        secs = self.args.speed_seconds
        print(f"\n== openssl speed (16384-byte blocks, {secs} s each, pinned, 1 kB = 1000 B)")
        self.aes, c1 = openssl_speed(self.pin, ["-evp", "aes-256-cbc"], secs)
        self.sha, c2 = openssl_speed(self.pin, ["-evp", "sha256"], secs)
        self.aes_dec, c3 = openssl_speed(self.pin, ["-decrypt", "-evp", "aes-256-cbc"], secs)
        self.combined = 1 / (1 / self.aes + 1 / self.sha)
        self.combined_dec = 1 / (1 / self.aes_dec + 1 / self.sha)
        print(f"  AES-256-CBC encrypt  {self.aes:8.1f} MB/s   ({c1})")
        print(f"  SHA-256              {self.sha:8.1f} MB/s   ({c2})")
        print(f"  AES-256-CBC decrypt  {self.aes_dec:8.1f} MB/s   ({c3}; reference only)")
        print(f"  combined SHA-256 + AES-256-CBC encrypt 1/(1/aes+1/sha) = "
              f"{self.combined:.1f} MB/s (the (b) limit)")
        print(f"  (for reference: with the decrypt speed, {self.combined_dec:.1f} MB/s)")
        print(f"  targets: (a) >= {ENV_TARGET:.0%} of {self.aes:.1f} = "
              f"{ENV_TARGET * self.aes:.1f} MB/s;  (b) >= {SDF_TARGET:.0%} of "
              f"{self.combined:.1f} = {SDF_TARGET * self.combined:.1f} MB/s;  "
              f"(c) peak RSS < {RSS_TARGET_MB:.0f} MB")

    # ---- format proof (small file, not timed) -----------------------------------------------
    def format_check(self, wd: str) -> None:
        print("\n== format check (3 MiB + 1234 B file, not timed)")
        src = os.path.join(wd, "small.dcm")
        make_dicom(src, 3 * MiB + 1234)
        p = lambda name: os.path.join(wd, name)  # noqa: E731
        checks = []

        def check(label, fn):
            try:
                fn()
                checks.append((label, "ok"))
            except Exception as exc:  # report, keep going
                msg = getattr(exc, "stderr", None) or str(exc)
                checks.append((label, "FAILED: " + str(msg).strip().splitlines()[-1][:160]))

        def ours_then_openssl():
            step_env_encrypt(src, p("s.env"))
            run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", p("s.env"),
                 "-out", p("s.out"), "-recip", RECIP_CERT, "-inkey", RECIP_KEY])
            same(src, p("s.out"))

        def openssl_then_ours():
            run(["openssl", "cms", "-encrypt", "-stream", "-binary", "-aes256", "-outform",
                 "DER", "-in", src, "-out", p("o.env"), RECIP_CERT])
            step_env_decrypt(p("o.env"), p("o.out"))
            same(src, p("o.out"))

        def wrap(path, oid_hex):
            # the Secure DICOM File holds the *bare* SignedData/DigestedData (PS3.10 7.4);
            # openssl's -verify/-digest_verify want a ContentInfo around it
            body = open(path, "rb").read()
            oid = bytes.fromhex(oid_hex)
            with open(path, "wb") as f:
                f.write(b"\x30\x80\x06" + bytes((len(oid),)) + oid + b"\xa0\x80" + body
                        + b"\x00" * 4)

        def protect_digest_openssl():
            step_protect(src, p("d.sdf"))
            run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", p("d.sdf"),
                 "-out", p("d.inner"), "-recip", RECIP_CERT, "-inkey", RECIP_KEY])
            wrap(p("d.inner"), "2a864886f70d010705")
            run(["openssl", "cms", "-digest_verify", "-binary", "-inform", "DER", "-in",
                 p("d.inner"), "-out", p("d.out")])
            same(src, p("d.out"))

        def protect_signed_openssl():
            step_protect(src, p("g.sdf"), signed=True)
            run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", p("g.sdf"),
                 "-out", p("g.inner"), "-recip", RECIP_CERT, "-inkey", RECIP_KEY])
            wrap(p("g.inner"), "2a864886f70d010702")
            run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", p("g.inner"),
                 "-CAfile", TRUST, "-purpose", "any", "-out", p("g.out")])
            same(src, p("g.out"))
            step_unprotect(p("g.sdf"), p("g.out2"), signed=True)
            same(src, p("g.out2"))

        check("ours bare EnvelopedData -> openssl cms -decrypt == input", ours_then_openssl)
        check("openssl cms -encrypt -stream -> ours env-decrypt == input", openssl_then_ours)
        check("ours protect (digest) -> openssl cms -decrypt, wrapped in ContentInfo "
              "-> openssl cms -digest_verify == input",
              protect_digest_openssl)
        check("ours protect (signed) -> openssl cms -decrypt, wrapped -> openssl cms -verify "
              "-CAfile trust.pem == input; ours unprotect == input", protect_signed_openssl)
        for label, res in checks:
            print(f"  {label}: {res}")
        print(f"  generated input: {check_dicom(src)}")
        for name in os.listdir(wd):
            os.unlink(os.path.join(wd, name))

    # ---- one size --------------------------------------------------------------------------
    def run_size(self, size: int, *, steps: list[str], speed_verdicts: bool) -> None:
        # at the extra 4 GiB size only RSS is judged: one run per step is enough
        self.repeat = self.args.repeat if speed_verdicts else 1
        wd, desc = pick_workdir(self.args.workdir, size)
        self.current_wd = wd
        try:
            print(f"\n== {human(size)} ({size} bytes): workdir {desc}")
            src = os.path.join(wd, "input.dcm")
            t0 = time.perf_counter()
            make_dicom(src, size)
            print(f"  generated the input in {time.perf_counter() - t0:.1f} s "
                  f"(not timed); {check_dicom(src)}")
            if size == self.args.size and not self.args.skip_format_check:
                self.format_check_once(wd)
            self._run_steps(wd, src, size, steps, speed_verdicts)
        finally:
            shutil.rmtree(wd, ignore_errors=True)
            self.current_wd = None

    def format_check_once(self, wd: str) -> None:
        if getattr(self, "_formatted", False):
            return
        sub = os.path.join(wd, "fmt")
        os.mkdir(sub)
        self.format_check(sub)
        os.rmdir(sub)
        print()
        self._formatted = True

    def _py(self, name: str, src: str, dst: str, profile: bool = False) -> list[str]:
        cmd = [sys.executable, os.path.abspath(__file__), "--_step", name, "--src", src,
               "--dst", dst]
        return cmd + (["--profile"] if profile else [])

    def _openssl_cmd(self, name: str, src: str, dst: str) -> list[str]:
        if name == "openssl-encrypt":
            return ["openssl", "cms", "-encrypt", "-stream", "-binary", "-aes256", "-outform",
                    "DER", "-in", src, "-out", dst, RECIP_CERT]
        return ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", src,
                "-out", dst, "-recip", RECIP_CERT, "-inkey", RECIP_KEY]

    def _run_steps(self, wd, src, size, steps, speed_verdicts) -> None:
        # (encrypt step, decrypt step) pairs; the decrypted output is compared to the input
        pairs = [("io-copy", None),
                 ("env-encrypt", "env-decrypt"),
                 ("openssl-encrypt", "openssl-decrypt"),
                 ("protect-digest", "unprotect-digest"),
                 ("protect-signed", "unprotect-signed")]
        # memory cap for children: what is left of RAM after the files planned on tmpfs
        room = mem_available() - (2 * size if is_tmpfs(wd) else 0) - 2 * GiB
        cap = min(8 * GiB, max(2 * GiB, room))
        for enc_name, dec_name in pairs:
            if enc_name not in steps and dec_name not in steps:
                continue
            mid = os.path.join(wd, "enc.bin")
            out = os.path.join(wd, "dec.bin")
            ok = self._one(enc_name, src, mid, size, speed_verdicts, cap)
            if enc_name == "io-copy" and ok:
                self.io = self.rows[-1]["mbps"]
            if ok and dec_name and dec_name in steps:
                if self._one(dec_name, mid, out, size, speed_verdicts, cap):
                    same_ok = _same_quiet(src, out)
                    self.rows[-1]["note"] += "" if same_ok else " OUTPUT DIFFERS"
                    if not same_ok:
                        self.rows[-1]["speed_ok"] = False
            for f in (mid, out):
                if os.path.exists(f):
                    os.unlink(f)

    def _one(self, name, src, dst, size, speed_verdicts, cap) -> bool:
        """Run a step ``--repeat`` times: best time (the least disturbed run), worst RSS."""
        is_ossl = name.startswith("openssl")
        cmd = self._openssl_cmd(name, src, dst) if is_ossl else self._py(name, src, dst)
        times, walls, rsss = [], [], []
        for _ in range(self.repeat):
            if os.path.exists(dst):
                os.unlink(dst)   # every run writes a new file (no truncation cost inside)
            # openssl cms -decrypt holds the whole message in memory: the cap keeps a 4 GiB
            # run from taking the machine down (python children get the same cap)
            r = measure(self.pin, cmd, mem_cap=cap)
            rsss.append(r["rss_mb"])
            walls.append(r["wall"])
            if r["rc"] != 0:
                tail = (r["stderr"].strip().splitlines() or ["?"])[-1][:110]
                note = f"exit {r['rc']}: {tail}"
                if cap and is_ossl:
                    note += f" (address-space cap {cap / 1e9:.1f} GB)"
                row = {"size": size, "step": name, "rss": max(rsss), "wall": r["wall"],
                       "note": note, "speed_verdict": speed_verdicts, "seconds": None}
                self.rows.append(row)
                print(f"  {name:<17} FAILED  {note}  (peak RSS {r['rss_mb']:.1f} MB)")
                return False
            if is_ossl:
                times.append(r["wall"])
            else:
                times.append(json.loads(r["stdout"].strip().splitlines()[-1])["seconds"])
            if is_ossl and r["wall"] > 15:   # slow: once is enough
                break
        i = min(range(len(times)), key=times.__getitem__)
        seconds = times[i]
        row = {"size": size, "step": name, "rss": max(rsss), "wall": walls[i], "note": "",
               "speed_verdict": speed_verdicts, "seconds": seconds,
               "mbps": size / seconds / 1e6, "runs": len(times)}
        if name in ("env-encrypt", "env-decrypt"):
            row.update(limit=self.aes, target=ENV_TARGET, basis="aes")
        elif name.startswith(("protect", "unprotect")):
            row.update(limit=self.combined, target=SDF_TARGET, basis="aes+sha")
        elif name == "io-copy":
            row.update(limit=None, target=None, basis="io")
        else:
            row.update(limit=self.aes, target=None, basis="aes")
        if row["limit"] is None:
            row.update(pct=None, speed_ok=None, rss_ok=row["rss"] < RSS_TARGET_MB)
            self.rows.append(row)
            print(f"  {name:<17} {seconds:7.2f} s  {row['mbps']:7.1f} MB/s  "
                  f"peak RSS {row['rss']:7.1f} MB   (runs: "
                  + ", ".join(f"{t:.2f}" for t in times) + " s)")
            return True
        io = getattr(self, "io", None)
        if io:
            # what this core could do at best: the crypto limit plus one read+write of the file
            # (decryption steps are bounded by the faster decrypt speed, not by the limit)
            compute = {"env-decrypt": self.aes_dec, "openssl-decrypt": self.aes_dec,
                       "unprotect-digest": self.combined_dec,
                       "unprotect-signed": self.combined_dec}.get(name, row["limit"])
            row["ceiling"] = 1 / (1 / compute + 1 / io) / row["limit"]
        row["pct"] = row["mbps"] / row["limit"]
        row["speed_ok"] = None if row["target"] is None else row["pct"] >= row["target"]
        row["rss_ok"] = row["rss"] < RSS_TARGET_MB
        self.rows.append(row)
        print(f"  {name:<17} {seconds:7.2f} s  {row['mbps']:7.1f} MB/s  "
              f"peak RSS {row['rss']:7.1f} MB   (runs: "
              + ", ".join(f"{t:.2f}" for t in times) + " s)")
        if not is_ossl and ((row["speed_ok"] is False and speed_verdicts) or not row["rss_ok"]):
            self.failed_steps.append((name, src, dst))
            if self.args.profile_failures:
                self.profile(name, src, dst)
        return True

    def profile(self, name, src, dst) -> None:
        print(f"\n  -- cProfile of {name} (same pinned child, profiler on; times inflate) --")
        if os.path.exists(dst):
            os.unlink(dst)
        r = measure(self.pin, self._py(name, src, dst, profile=True))
        for line in r["stderr"].splitlines():
            if not line.strip() or "Ordered by" in line or "List reduced" in line:
                continue
            print("    " + line)
        print()

    # ---- report ----------------------------------------------------------------------------
    def table(self) -> bool:
        print("\n== results (s = step time in the child; proc s = whole pinned process; "
              "% = MB/s over the openssl speed limit of its kind)")
        hdr = (f"{'size':>7} {'step':<17} {'s':>7} {'proc s':>7} {'MB/s':>7} {'limit':>7} "
               f"{'%':>5} {'target':>7} {'speed':>6} {'RSS MB':>7} {'<100':>5}  note")
        print(hdr)
        print("-" * len(hdr))
        all_ok = True
        for r in self.rows:
            size = human(r["size"]).replace(" ", "")
            if r.get("seconds") is None:
                print(f"{size:>7} {r['step']:<17} {'-':>7} {r['wall']:7.2f} {'-':>7} "
                      f"{'-':>7} {'-':>5} {'-':>7} {'FAIL':>6} {r['rss']:7.1f} "
                      f"{'-':>5}  {r['note']}")
                if not r["step"].startswith("openssl"):
                    all_ok = False
                continue
            if r["limit"] is None:
                print(f"{size:>7} {r['step']:<17} {r['seconds']:7.2f} {r['wall']:7.2f} "
                      f"{r['mbps']:7.1f} {'-':>7} {'-':>5} {'info':>7} {'':>6} "
                      f"{r['rss']:7.1f} {'':>5}  read+write only, no crypto (reference)")
                continue
            if r["target"] is None:
                tgt, sv = "info", ""
            elif not r["speed_verdict"]:
                tgt, sv = f"({r['target']:.0%})", "info"
            else:
                tgt = f">={r['target']:.0%}"
                sv = "PASS" if r["speed_ok"] else "FAIL"
                all_ok &= bool(r["speed_ok"])
            if r["step"].startswith("openssl"):
                rv = "info"
            else:
                rv = "PASS" if r["rss_ok"] else "FAIL"
                all_ok &= r["rss_ok"]
            note = r["note"] or f"of {r['basis']}"
            if r.get("ceiling"):
                note += f"; I/O-bound ceiling {r['ceiling']:.0%}"
            print(f"{size:>7} {r['step']:<17} {r['seconds']:7.2f} {r['wall']:7.2f} "
                  f"{r['mbps']:7.1f} {r['limit']:7.1f} {r['pct']:5.0%} {tgt:>7} {sv:>6} "
                  f"{r['rss']:7.1f} {rv:>5}  {note}")
        # reference ratios against the decrypt-side limits
        refs = []
        for r in self.rows:
            if r.get("seconds") is None:
                continue
            if r["step"] == "env-decrypt":
                refs.append(f"{human(r['size'])} env-decrypt = {r['mbps'] / self.aes_dec:.0%} "
                            f"of openssl speed -decrypt ({self.aes_dec:.0f} MB/s)")
            if r["step"].startswith("unprotect"):
                refs.append(f"{human(r['size'])} {r['step']} = "
                            f"{r['mbps'] / self.combined_dec:.0%} of 1/(1/aes_dec+1/sha) "
                            f"({self.combined_dec:.0f} MB/s)")
        if refs:
            print("reference (not targets): " + "; ".join(refs))
        print(f"\nOVERALL: {'PASS' if all_ok else 'FAIL'} (speed verdicts at "
              f"{human(self.args.size)}; RSS verdicts at every size; openssl rows are "
              "the comparison, not judged)")
        return all_ok


def same(a: str, b: str) -> None:
    if not _same_quiet(a, b):
        raise RuntimeError(f"{b} differs from {a}")


def _same_quiet(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


def _same_py(a: str, b: str) -> bool:  # pragma: no cover - used when cmp is missing
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(8 * MiB), fb.read(8 * MiB)
            if x != y:
                return False
            if not x:
                return True


ALL_STEPS = ["io-copy", "env-encrypt", "env-decrypt", "openssl-encrypt", "openssl-decrypt",
             "protect-digest", "unprotect-digest", "protect-signed", "unprotect-signed"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=GiB, help="input size (default 1G)")
    ap.add_argument("--also-4g", action="store_true",
                    help="repeat the steps at 4 GiB (RSS verdicts; speed for information)")
    ap.add_argument("--workdir", help="where to put the files (default: /dev/shm when it "
                    "has room, else the temp dir)")
    ap.add_argument("--steps", default=",".join(ALL_STEPS),
                    help="comma-separated subset of: " + ", ".join(ALL_STEPS))
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per step; the best time and the worst RSS are reported")
    ap.add_argument("--core", type=int, help="CPU to pin to (default: the first allowed)")
    ap.add_argument("--speed-seconds", type=int, default=3, help="openssl speed -seconds")
    ap.add_argument("--profile-failures", action="store_true",
                    help="re-run a step that misses a target under cProfile")
    ap.add_argument("--skip-format-check", action="store_true")
    # internal: one measured step in a child
    ap.add_argument("--_step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--dst", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._step:
        run_step_in_child(args)
        return 0

    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = set(steps) - set(ALL_STEPS)
    if bad:
        ap.error(f"unknown steps: {', '.join(sorted(bad))}")
    for tool in ("openssl",):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found")
    b = Bench(args)
    t0 = time.perf_counter()
    b.machine()
    b.limits()
    b.run_size(args.size, steps=steps, speed_verdicts=True)
    if args.also_4g and args.size != 4 * GiB:
        b.run_size(4 * GiB, steps=steps, speed_verdicts=False)
    ok = b.table()
    print(f"(benchmark wall time {time.perf_counter() - t0:.0f} s; workdirs removed)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
