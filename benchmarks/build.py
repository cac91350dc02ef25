"""Secure disc build benchmark: `mediasec build` vs the tool pipeline it replaces.

Generates (untimed) a pile of N instances totalling SIZE bytes, laid out with File IDs so
that dcmmkdir can index it in place, then, all in the same run:

1. ours: ``mediasec build PILE -o ours.iso --profile STD-GEN-SEC-DVD-JPEG`` with an AES-256
   envelope for an RSA-2048 recipient and an RSA-2048 signature inside every file;
2. the pipeline it replaces: ``dcmmkdir`` on the plain pile, then for every file (the
   DICOMDIR included) ``openssl cms -sign`` + ``openssl cms -encrypt`` (two processes per
   file, run two at a time with ``xargs -P 2``), then ``genisoimage`` of the encrypted tree;
3. ``genisoimage`` mastering the plain pile with no security at all.

Targets (issue 5): ours >= 5x faster than (2), ours <= 2x the time of (3), peak RSS of
ours < 200 MB. Peak RSS is read with /usr/bin/time (the main process; each worker is a
fork of it and is reported too).

    python benchmarks/build.py            # 4 GiB, 8,000 instances
    python benchmarks/build.py --small    # 256 MiB, 500 instances: a quick check
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKI = ROOT / "fixtures" / "pki"
sys.path.insert(0, str(ROOT / "tests"))


def generate_pile(pile: pathlib.Path, n: int, size: int) -> int:
    """N CT instances of about size/N bytes in 16 series (File-ID names, so that dcmmkdir
    indexes the pile in place), from benchmarks/_corpus.py."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _corpus import make_corpus
    return make_corpus(pile, n, rows=max(1, size // n // 1024), cols=512)


def timed(cmd, *, cwd=None, shell=False, env=None) -> tuple[float, int, str]:
    """Wall seconds and peak RSS (KiB) of a command, via /usr/bin/time."""
    rss_file = tempfile.NamedTemporaryFile(delete=False)
    rss_file.close()
    full = (["/usr/bin/time", "-f", "%M", "-o", rss_file.name] +
            (["sh", "-c", cmd] if shell else list(map(str, cmd))))
    t = time.perf_counter()
    proc = subprocess.run(full, cwd=cwd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    rss = int((open(rss_file.name).read().strip().splitlines() or ["0"])[-1] or 0)
    os.unlink(rss_file.name)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr[-3000:]}")
    return dt, rss, proc.stdout + proc.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--instances", type=int)
    ap.add_argument("--size", type=int)
    ap.add_argument("--workdir")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    n = args.instances or (500 if args.small else 8000)
    size = args.size or ((256 << 20) if args.small else (4 << 30))
    need = 4.5 * size
    base = args.workdir
    if base is None:
        shm = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else 0
        base = "/dev/shm" if shm > need else tempfile.gettempdir()
    work = pathlib.Path(tempfile.mkdtemp(prefix="mediasec-build-bench-", dir=base))
    for tool in ("openssl", "dcmmkdir", "genisoimage", "xargs"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    print(f"== machine: nproc {os.cpu_count()}, "
          f"{subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}")
    print(f"== workdir {work} ({'tmpfs' if str(work).startswith('/dev/shm') else 'disk'})")
    try:
        pile = work / "pile"
        t = time.perf_counter()
        total = generate_pile(pile, n, size)
        print(f"== pile: {n} instances, {total / 2**20:.0f} MiB, generated in "
              f"{time.perf_counter() - t:.1f} s (not timed)")
        mediasec = [sys.executable, "-m", "mediasec"]
        sign = ["--sign-key", PKI / "signer.key.pem", "--sign-cert", PKI / "signer.pem",
                "--sign-chain", PKI / "chain.pem"]

        # 1. ours
        ours = work / "ours.iso"
        t_ours, rss_ours, _ = timed([*mediasec, "build", pile, "-o", ours, "--profile",
                                     "STD-GEN-SEC-DVD-JPEG", "--encrypt-to",
                                     PKI / "recipient-2048.pem", *sign, "--workers",
                                     str(args.workers), "--progress", "json"])
        iso_size = ours.stat().st_size
        ours.unlink()

        # 3. genisoimage, no security
        plain_iso = work / "plain.iso"
        t_geniso, rss_geniso, _ = timed(["genisoimage", "-quiet", "-V", "DICOM", "-sysid", "",
                                         "-o", plain_iso, pile])
        plain_iso.unlink()

        # 2. the pipeline: dcmmkdir, then sign + encrypt each file, then genisoimage
        enc = work / "enc"
        t0 = time.perf_counter()
        t_dir, rss_dir, _ = timed(["dcmmkdir", "--recurse", "-Pgp", "+id", ".", "+D",
                                   "DICOMDIR", "+I"], cwd=pile)
        listing = work / "files.txt"
        files = sorted(str(p.relative_to(pile)) for p in pile.rglob("*") if p.is_file())
        listing.write_text("\n".join(files) + "\n")
        for f in files:
            (enc / f).parent.mkdir(parents=True, exist_ok=True)
        script = (f"openssl cms -sign -binary -nodetach -md sha256 -outform DER "
                  f"-signer {PKI}/signer.pem -inkey {PKI}/signer.key.pem "
                  f"-certfile {PKI}/chain.pem -in \"{pile}/$1\" | "
                  f"openssl cms -encrypt -binary -aes256 -inform DER -outform DER "
                  f"-out \"{enc}/$1\" {PKI}/recipient-2048.pem")
        t_ossl, rss_ossl, _ = timed(f"xargs -a {listing} -P 2 -I{{}} sh -c '{script}' _ {{}}",
                                    shell=True)
        enc_iso = work / "pipeline.iso"
        t_giso2, _, _ = timed(["genisoimage", "-quiet", "-V", "DICOM", "-sysid", "", "-o",
                               enc_iso, enc])
        t_pipe = time.perf_counter() - t0
        enc_iso.unlink()
        shutil.rmtree(enc)

        print()
        print(f"{'step':48} {'seconds':>9} {'peak RSS MB':>12}")
        rows = [("ours: mediasec build (secure DVD, AES-256 + RSA-signed)", t_ours, rss_ours),
                ("pipeline: dcmmkdir", t_dir, rss_dir),
                ("pipeline: openssl cms -sign | -encrypt per file (2 at a time)", t_ossl, rss_ossl),
                ("pipeline: genisoimage of the encrypted tree", t_giso2, None),
                ("pipeline: total", t_pipe, None),
                ("genisoimage, plain pile, no security", t_geniso, rss_geniso)]
        for name, t_, rss in rows:
            print(f"{name[:48]:48} {t_:9.2f} {rss / 1024 if rss else float('nan'):12.1f}")
        print()
        speedup = t_pipe / t_ours
        ratio = t_ours / t_geniso
        print(f"image: {iso_size / 2**20:.0f} MiB; ours {total / t_ours / 1e6:.0f} MB/s of input")
        verdicts = [
            (f"(i)  ours vs pipeline: {speedup:.1f}x faster (target >= 5x)", speedup >= 5),
            (f"(ii) ours vs plain genisoimage: {ratio:.2f}x its time (target <= 2x)", ratio <= 2),
            (f"(iii) peak RSS of ours: {rss_ours / 1024:.0f} MB (target < 200 MB)",
             rss_ours / 1024 < 200),
        ]
        for text, ok in verdicts:
            print(f"{'PASS' if ok else 'FAIL'}  {text}")
        return 0 if all(ok for _t, ok in verdicts) else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
