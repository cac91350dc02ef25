"""Plain (non-secure) image build: `mediasec build` against `genisoimage` of the same pile,
measured in the same run (issue 15: plain build <= 1.5x plain genisoimage, our DICOMDIR
included).

Generates (untimed) a pile with ``benchmarks/corpus.py`` (``--shape``), reads it once (warm
page cache), then runs, ``--repeat`` times interleaved (best wall time of each kept):

1. ``mediasec build PILE -o ours.iso --profile STD-GEN-DVD-JPEG``: ISO 9660 (level 3) with
   a UDF 1.02 bridge, volume "DICOM", files renamed to File IDs, a DICOMDIR made from a
   header scan of every file, each file's SHA-256 computed as it is written, the default
   read-back (``--verify quick``: the image re-parsed, every file re-read and re-hashed),
   and an ``fsync`` at commit;
2. the same with ``--verify none`` (what the read-back costs);
3. ``genisoimage -quiet -udf -V DICOM -o g.iso PILE``: ISO 9660 (level 1 names) with a UDF
   1.02 bridge, the pile's own names, no DICOMDIR, no hashing, no read-back, no fsync -
   the like-for-like mastering of the same files (UDF because our DVD profile has UDF);
4. floors: ``cp -r PILE`` (read + write every byte, one process), ``python -c pass``
   (interpreter start) and ``python -c 'import mediasec.cli.cmd_build'`` (start + imports).

Then it runs ours once more with ``--phases``-style timers (a wrapper that times the
build's steps in the parent: imports, scan, plan, layout, write, read-back parse and hash)
to show where the time goes.

The mediasec runs write byte-code caches (``PYTHONDONTWRITEBYTECODE`` is removed from their
environment and the tree is byte-compiled first), as an installed package has them.
Outputs go to ``/dev/shm`` when it has room (so the fsync is nearly free and disk noise is
out), else to ``--workdir``; say ``--outdir`` to choose.

    python benchmarks/plain.py                       # mixed-256m
    python benchmarks/plain.py --shape mr-8000 --repeat 3
    python benchmarks/plain.py --shape ct-4g --workdir /var/tmp --outdir /var/tmp
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from corpus import SHAPES, make_pile, warm  # noqa: E402

MiB = 1 << 20

# run in a child: times the build's steps (wrapping the functions the build calls) and
# prints them as JSON on stderr's last line
_PHASES = r"""
import sys, time, json, functools
T0 = time.perf_counter()
import mediasec.cli.main as M
M._register(sys.argv[1:])
rows = [("imports", 0.0, time.perf_counter() - T0)]
def wrap(obj, attr, label):
    f = getattr(obj, attr)
    @functools.wraps(f)
    def g(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            rows.append((label, t - T0, time.perf_counter() - t))
    setattr(obj, attr, g)
import mediasec.media.jobs as J, mediasec.io.iso as I, mediasec.io.discs as D
import mediasec.io.isowrite as IW
wrap(J, "scan_inputs", "scan (header of every file)")
wrap(J, "_plan_discs", "plan (File IDs, DICOMDIR)")
wrap(IW.IsoImage, "__init__", "layout (ISO 9660 + UDF)")
wrap(D, "write_image_files", "write (workers; metadata beside)")
wrap(IW.IsoImage, "write_metadata", "  metadata (in a thread)")
wrap(J, "_read_back", "read-back (parse + re-hash)")
wrap(I.IsoSource, "__init__", "  read-back: image parse")
rc = 0
try:
    rc = M.main(sys.argv[1:])
finally:
    rows.append(("total", 0.0, time.perf_counter() - T0))
    print(json.dumps(rows), file=sys.stderr)
sys.exit(rc)
"""


def timed(cmd, *, env=None, cwd=None) -> dict:
    """Wall seconds, CPU seconds (user + system, children included) and peak RSS (MB)."""
    fd, tf = tempfile.mkstemp()
    os.close(fd)
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", tf, *map(str, cmd)],
                          capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t
    last = (pathlib.Path(tf).read_text().strip().splitlines() or ["0 0 0"])[-1].split()
    os.unlink(tf)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr[-3000:]}")
    return {"wall": wall, "cpu": float(last[0]) + float(last[1]),
            "rss": int(last[2]) * 1024 / 1e6, "stderr": proc.stderr}



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="mixed-256m", choices=sorted(SHAPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=tempfile.gettempdir(), help="where the pile goes")
    ap.add_argument("--outdir", help="where the images go (default /dev/shm if it has room)")
    ap.add_argument("--pile", help="an existing pile made by corpus.py (kept)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N, interleaved")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    for tool in ("genisoimage", "cp", "/usr/bin/time"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    work = pathlib.Path(tempfile.mkdtemp(prefix="mediasec-plain-bench-", dir=args.workdir))
    try:
        if args.pile:
            pile = pathlib.Path(args.pile)
        else:
            pile = work / "pile"
            t = time.perf_counter()
            make_pile(pile, args.shape, seed=args.seed)
            print(f"== pile {args.shape}: made in {time.perf_counter() - t:.1f} s (untimed)")
        sizes = [p.stat().st_size for p in pile.rglob("*") if p.is_file()]
        total = sum(sizes)
        if args.outdir:
            outdir = pathlib.Path(args.outdir)
        else:
            shm = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else 0
            outdir = pathlib.Path("/dev/shm") if shm > 4 * total else work
        out = pathlib.Path(tempfile.mkdtemp(prefix="mediasec-plain-out-", dir=outdir))
        print(f"== machine: nproc {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; pile "
              f"{pile} ({len(sizes)} files, {total / MiB:.0f} MiB); outputs in {out}")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPATH"] = str(ROOT)
        compileall.compile_dir(str(ROOT / "mediasec"), quiet=1)
        warm(pile)
        ours = [sys.executable, "-m", "mediasec", "build", pile, "-o", out / "ours.iso",
                "--profile", "STD-GEN-DVD-JPEG", "--workers", str(args.workers)]
        steps = {
            "ours: mediasec build (quick read-back)": ours + ["--json", out / "ours.json"],
            "ours: mediasec build --verify none": ours + ["--verify", "none"],
            "genisoimage -udf": ["genisoimage", "-quiet", "-udf", "-V", "DICOM", "-o",
                                 out / "g.iso", pile],
            "floor: cp -r of the pile": ["cp", "-r", pile, out / "copy"],
            "floor: python -c pass": [sys.executable, "-c", "pass"],
            "floor: python import of the build": [sys.executable, "-c",
                                                  "import mediasec.cli.main, "
                                                  "mediasec.cli.cmd_build"],
        }
        best: dict[str, dict] = {}
        readback = None
        for _ in range(args.repeat):
            for name, cmd in steps.items():
                for p in ("ours.iso", "g.iso", "ours.json"):
                    (out / p).unlink(missing_ok=True)
                shutil.rmtree(out / "copy", ignore_errors=True)
                r = timed(cmd, env=env)
                if name.endswith("(quick read-back)"):
                    r["readback"] = json.loads((out / "ours.json").read_text())["readback"]
                if name not in best or r["wall"] < best[name]["wall"]:
                    best[name] = r
        readback = best["ours: mediasec build (quick read-back)"]["readback"]
        (out / "ours.iso").unlink(missing_ok=True)
        ph = timed([sys.executable, "-c", _PHASES, *ours[3:]], env=env)
        phases = json.loads(ph["stderr"].strip().splitlines()[-1])
        (out / "ours.iso").unlink(missing_ok=True)
        shutil.rmtree(out / "copy", ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)

        print(f"\n{'step (best of ' + str(args.repeat) + ')':44} {'wall s':>8} {'CPU s':>8} "
              f"{'RSS MB':>8}")
        for name, r in best.items():
            print(f"{name:44} {r['wall']:8.2f} {r['cpu']:8.2f} {r['rss']:8.0f}")
        g = best["genisoimage -udf"]["wall"]
        q = best["ours: mediasec build (quick read-back)"]["wall"]
        n = best["ours: mediasec build --verify none"]["wall"]
        print(f"\nread-back in ours: {readback['seconds']:.2f} s, "
              f"{readback['files_hashed']} files re-hashed")
        print(f"\nwhere ours spends its time (one more run, {ph['wall']:.2f} s wall):")
        for label, start, took in phases:
            print(f"  {label:40} at {start:6.2f} s  took {took:6.2f} s")
        print(f"\nratio ours / genisoimage -udf:               {q / g:6.2f} wall "
              f"(target <= 1.5)  {'PASS' if q / g <= 1.5 else 'FAIL'}")
        print(f"ratio ours --verify none / genisoimage -udf: {n / g:6.2f} wall")
        print(f"ratio genisoimage / cp -r:                   "
              f"{g / best['floor: cp -r of the pile']['wall']:6.2f} wall")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
