#!/usr/bin/env python3
"""De-identification with escrow: mediasec beside gdcmanon, on the same CT files, in one run.

Not a test. Run it as::

    python benchmarks/deid.py [--n 1000] [--rows 64] [--workdir DIR]

Generates ``--n`` CT instances (``benchmarks/_corpus.py``), then times:

* ``mediasec deidentify CORPUS -o OUT --escrow-to CERT`` (one process, as a user runs it:
  Basic Profile, keyed UIDs, originals in an AES-256 Encrypted Attributes Sequence);
* ``gdcmanon -e -c CERT`` once per file (process per file: how a script drives it), and
  ``gdcmanon -e -c CERT -r -i DIR -o DIR`` (its own directory mode), for reference.

Each step is a child process; "s" is its wall time (start-up included), RSS its peak
(``os.wait4``). Checks: every input gave an output; 5 of ours re-identify with
``gdcmanon -d`` to the original Patient's Name.
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

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
PKI = ROOT / "fixtures" / "pki"
CERT, KEY = PKI / "recipient-2048.pem", PKI / "recipient-2048.key.pem"


def timed(argv, env=None):
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed: {err[-800:]}")
    return dt, ru.ru_maxrss / 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    gdcm = shutil.which("gdcmanon")
    if gdcm is None:
        raise SystemExit("gdcmanon is not installed (apt-get install libgdcm-tools)")
    from _corpus import make_corpus
    work = pathlib.Path(tempfile.mkdtemp(prefix="deid-bench-", dir=args.workdir))
    try:
        corpus = work / "in"
        total = make_corpus(corpus, args.n, rows=args.rows, cols=args.rows)
        files = sorted(p for p in corpus.rglob("IM*"))
        print(f"corpus: {len(files)} CT instances, {total / 1e6:.1f} MB, "
              f"{args.rows}x{args.rows} pixels, in {work}")
        env = dict(os.environ, MAPKEY="benchmark mapping key 0123456789")
        rows = []
        ours = work / "ours"
        s, rss = timed([sys.executable, "-m", "mediasec", "deidentify", str(corpus), "-o",
                        str(ours), "--escrow-to", str(CERT), "--mapping-key-env", "MAPKEY"],
                       env=env)
        n_ours = len(list(ours.iterdir()))
        rows.append(("mediasec deidentify (1 process)", s, rss, n_ours))
        per = work / "gdcm_per_file"
        per.mkdir()
        t = time.perf_counter()
        peak = 0.0
        for i, f in enumerate(files):
            _, r = timed([gdcm, "-e", "-c", str(CERT), "-i", str(f), "-o",
                          str(per / f"{i:06d}.dcm")])
            peak = max(peak, r)
        rows.append(("gdcmanon -e, process per file", time.perf_counter() - t, peak,
                     len(list(per.iterdir()))))
        whole = work / "gdcm_dir"
        s, rss = timed([gdcm, "-e", "-c", str(CERT), "-r", "-i", str(corpus), "-o",
                        str(whole)])
        rows.append(("gdcmanon -e -r, directory mode", s, rss,
                     len([p for p in whole.rglob("*") if p.is_file()])))
        # checks
        for name, _, _, n in rows:
            if n != len(files):
                raise SystemExit(f"{name}: {n} outputs for {len(files)} inputs")
        for p in sorted(ours.iterdir())[:5]:
            back = work / "check.dcm"
            subprocess.run([gdcm, "-d", "-k", str(KEY), "-i", str(p), "-o", str(back)],
                           check=True, capture_output=True)
            if b"DOE^JANE" not in back.read_bytes():
                raise SystemExit("gdcmanon -d did not restore the original name")
        base = rows[0][1]
        print(f"{'step':34} {'s':>8} {'files/s':>8} {'peak RSS MB':>12} {'vs mediasec':>12}")
        for name, s, rss, n in rows:
            print(f"{name:34} {s:8.2f} {n / s:8.1f} {rss:12.1f} {s / base:11.2f}x")
        ratio = rows[1][1] / base
        print(f"mediasec is {ratio:.1f}x faster than gdcmanon process-per-file "
              f"(goal >= 3x: {'met' if ratio >= 3 else 'NOT met'}); gdcmanon's own "
              f"directory mode is {base / rows[2][1]:.1f}x faster than mediasec")
        print("checked: every input has an output; 5 of ours re-identified by gdcmanon -d")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
