#!/usr/bin/env python3
"""Benchmark: ``mediasec verify`` of a secure DVD image, beside the openssl per-file pipeline
and the ``openssl speed`` limit, in the same run. Not a test.

    python benchmarks/verify.py            # 4 GiB, 8,000 instances (STD-GEN-SEC-DVD-JPEG)
    python benchmarks/verify.py --small    # 256 MiB, 500 instances
    python benchmarks/verify.py --workdir /var/tmp --sample 200

Steps (only 2-4 are timed):

1. Generate (untimed): ``--instances`` CT instances of equal size (512x512x16-bit, ~512 KiB,
   cloned from one pydicom-written template with patched UIDs) in a workdir on /dev/shm when
   it has room for corpus + image + samples, else on disk (it says which); then
   ``mediasec build --profile STD-GEN-SEC-DVD-JPEG`` (AES-256-CBC, RSA-2048 key transport,
   RSA-3072 SignedData with chain, MANIFEST.SHA) writes the image.
2. ``mediasec verify IMAGE --key --cert --trust --workers 2`` (decrypt, digests, signatures,
   chains, record cross-checks, manifest hashes): wall time; peak RSS = ``ru_maxrss`` from
   ``wait4`` (Linux reports the largest of the process and its reaped workers).
3. The openssl pipeline, file by file: ``openssl cms -decrypt -binary`` then (the inner
   SignedData wrapped in a ContentInfo, as ``-verify`` needs) ``openssl cms -verify
   -binary -CAfile``. The ciphertext files are copied out of the image once, untimed. With
   ``--sample N`` (default 400; 0 = all) N evenly spaced files are run and the time is
   extrapolated to all files (it says so).
4. ``openssl speed -multi 2 -bytes 16384 -evp sha256`` and ``-decrypt -evp aes-256-cbc``:
   the limit for the image's bytes on two cores is ``bytes/aes + bytes/sha256`` (aggregate
   rates of both processes).

Targets: verify >= 3x faster than the openssl pipeline; verify <= 2x the speed limit; peak
RSS < 200 MB (10^6 bytes).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
PKI = ROOT / "fixtures" / "pki"

MB = 1e6


def make_corpus(root: pathlib.Path, n: int, rows: int, series: int = 16) -> int:
    """``n`` instances of ``rows`` x 512 pixels in 2 studies (benchmarks/_corpus.py)."""
    sys.path.insert(0, str(HERE))
    from _corpus import make_corpus as make
    return make(root, n, rows=rows, cols=512, studies=2, series=series)


def run_measured(args: list[str], **kw) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of a child process and its reaped workers."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, **kw)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss * 1024 / MB, proc.returncode


def openssl_speed(args: list[str]) -> float:
    out = subprocess.run(["openssl", "speed", "-multi", "2", "-seconds", "3", "-bytes",
                          "16384", *args], capture_output=True, text=True, check=True).stdout
    line = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith(("+", "version",
                                                                            "built", "options",
                                                                            "compiler", "CPU",
                                                                            "The", "type"))][-1]
    m = re.search(r"([\d.]+)k\s*$", line)
    return float(m.group(1)) * 1000.0  # bytes/s, aggregate over both processes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", action="store_true", help="256 MiB, 500 instances")
    ap.add_argument("--instances", type=int, default=None)
    ap.add_argument("--sample", type=int, default=400,
                    help="openssl pipeline on N files, extrapolated (0 = all)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    n = a.instances or (500 if a.small else 8000)
    rows = 512  # 512x512x16-bit = 512 KiB of pixels per instance
    approx = n * (rows * 512 * 2 + 2000)
    need = approx * 2.3
    base = a.workdir
    where = ""
    if base is None:
        free = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else 0
        if free > need:
            base, where = "/dev/shm", "/dev/shm (RAM)"
        else:
            base, where = tempfile.gettempdir(), f"{tempfile.gettempdir()} (disk: /dev/shm " \
                                                 f"has {free / 1e9:.1f} GB, needs {need / 1e9:.1f})"
    else:
        where = base
    work = pathlib.Path(tempfile.mkdtemp(prefix="mediasec-verify-bench-", dir=base))
    print(f"workdir: {work} on {where}")
    try:
        return run(work, n, rows, a.sample)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(work: pathlib.Path, n: int, rows: int, sample: int) -> int:
    py = sys.executable
    t = time.perf_counter()
    plain_bytes = make_corpus(work / "corpus", n, rows)
    print(f"corpus: {n} instances, {plain_bytes / MB:.0f} MB plain "
          f"({time.perf_counter() - t:.1f} s, untimed)")
    iso = work / "disc.iso"
    t = time.perf_counter()
    subprocess.run([py, "-m", "mediasec", "build", str(work / "corpus"), "-o", str(iso),
                    "--profile", "STD-GEN-SEC-DVD-JPEG", "--fileset-id", "BENCH",
                    "--encrypt-to", str(PKI / "recipient-2048.pem"),
                    "--sign-key", str(PKI / "signer-3072.key.pem"),
                    "--sign-cert", str(PKI / "signer-3072.pem"),
                    "--sign-chain", str(PKI / "chain.pem"), "--cipher", "aes-256"],
                   check=True, stdout=subprocess.DEVNULL)
    iso_bytes = iso.stat().st_size
    shutil.rmtree(work / "corpus")
    print(f"image: {iso_bytes / MB:.0f} MB ({iso_bytes / (1 << 30):.2f} GiB), "
          f"STD-GEN-SEC-DVD-JPEG, AES-256-CBC, RSA-2048 recipient, RSA-3072 signer "
          f"({time.perf_counter() - t:.1f} s, untimed)")

    # the ciphertext files, once, for the openssl pipeline (untimed)
    from mediasec.io.medium import IsoSource
    with IsoSource(str(iso)) as src:
        entries = [e for e in src.entries() if e.path.startswith("PT")]
        stored = sum(e.size for e in entries)
        k = len(entries) if sample <= 0 or sample >= len(entries) else sample
        step = len(entries) / k
        picked = [entries[int(i * step)] for i in range(k)]
        cdir = work / "cipher"
        cdir.mkdir()
        for i, e in enumerate(picked):
            with open(cdir / f"f{i:05d}", "wb") as f:
                for chunk in src.open(e.handle):
                    f.write(chunk)

    # 1. mediasec verify, two workers
    wall, rss, code = run_measured(
        [py, "-m", "mediasec", "verify", str(iso), "--key", str(PKI / "recipient-2048.key.pem"),
         "--cert", str(PKI / "recipient-2048.pem"), "--trust", str(PKI / "trust.pem"),
         "--workers", "2", "--json", str(work / "report.json")], stdout=subprocess.DEVNULL)
    import json
    rep = json.loads((work / "report.json").read_text())
    print(f"verify: {wall:.2f} s, {iso_bytes / wall / MB:.0f} MB/s of image, exit {code}, "
          f"outcome {rep['outcome']}, counts {rep['counts']}, peak RSS {rss:.0f} MB")

    # 2. openssl per file: decrypt, then verify the SignedData
    sys.path.insert(0, str(ROOT / "tests"))
    t0 = time.perf_counter()
    for i in range(k):
        c = cdir / f"f{i:05d}"
        inner = cdir / f"f{i:05d}.inner"
        subprocess.run(["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(c),
                        "-recip", str(PKI / "recipient-2048.pem"),
                        "-inkey", str(PKI / "recipient-2048.key.pem"), "-out", str(inner)],
                       check=True)
        data = inner.read_bytes()
        if data[2:13] != bytes.fromhex("06092a864886f70d010702"):
            data = (b"\x30\x80" + bytes.fromhex("06092a864886f70d010702") + b"\xa0\x80" + data
                    + b"\x00" * 4)
            inner.write_bytes(data)
        subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                        str(inner), "-CAfile", str(PKI / "trust.pem"), "-purpose", "any",
                        "-out", str(cdir / "payload")], check=True, stderr=subprocess.DEVNULL)
        inner.unlink()
    ossl = time.perf_counter() - t0
    ossl_all = ossl * len(entries) / k
    note = "" if k == len(entries) else f" (measured on {k} of {len(entries)} files, extrapolated)"
    print(f"openssl cms -decrypt + -verify, file by file: {ossl_all:.1f} s{note}")

    # 3. openssl speed, two cores
    aes = openssl_speed(["-decrypt", "-evp", "aes-256-cbc"])
    sha = openssl_speed(["-evp", "sha256"])
    limit = iso_bytes / aes + iso_bytes / sha
    print(f"openssl speed -multi 2: aes-256-cbc decrypt {aes / MB:.0f} MB/s, sha256 "
          f"{sha / MB:.0f} MB/s -> limit for {iso_bytes / MB:.0f} MB: {limit:.2f} s")

    ok1 = ossl_all >= 3 * wall
    ok2 = wall <= 2 * limit
    ok3 = rss < 200
    print(f"speed-up over openssl pipeline: {ossl_all / wall:.1f}x (target >= 3x) "
          f"{'PASS' if ok1 else 'FAIL'}")
    print(f"verify / speed limit: {wall / limit:.2f}x (target <= 2x) {'PASS' if ok2 else 'FAIL'}")
    print(f"peak RSS: {rss:.0f} MB (target < 200 MB) {'PASS' if ok3 else 'FAIL'}")
    print(f"stored bytes in files: {stored / MB:.0f} MB; verify hashes them twice (SHA-256 of "
          "the ciphertext for MANIFEST.SHA, of the plaintext for the signature) and decrypts "
          "once")
    floor = 2 * stored / sha + stored / aes
    print(f"floor of that work alone on two cores (2 x sha256 + aes, no RSA, no parsing): "
          f"{floor:.2f} s = {floor / limit:.2f}x the limit; per-file remainder of verify: "
          f"{(wall - floor) / max(1, len(entries)) * 2e3:.2f} ms of CPU per file (two cores)")
    return 0 if (ok1 and ok2 and ok3 and code == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
