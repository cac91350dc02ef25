#!/usr/bin/env python3
"""The build's write engine against its compute floor and plain genisoimage, same run.

    python benchmarks/build_engine.py                      # 256 MiB and 1 GiB mixed piles
    python benchmarks/build_engine.py --sizes 256M --repeat 3 --workdir /var/tmp

For each pile size (generated once, untimed, in ``--workdir``; read once so the page
cache is warm) it runs, in the same run:

1. the **compute floor**: ``openssl speed -evp aes-256-cbc`` and ``-evp sha256`` (16384-byte
   column, one core) and ``openssl speed rsa2048`` (sign and verify per second); the floor
   is ``(bytes/aes + 2 * bytes/sha256 + files * (1/sign + 1/verify)) / 2`` seconds (AES
   over every byte, SHA-256 of plain and cipher text, one private and one public RSA
   operation per file, spread over the two cores);
2. ``mediasec build PILE -o secure.iso`` (STD-GEN-SEC-DVD-JPEG: AES-256, RSA-2048 key
   transport, RSA-2048 signature, MANIFEST.SHA) - wall, CPU (user+sys of the process and
   its workers), CPU% of the two cores, peak RSS (``/usr/bin/time``);
3. ``mediasec build PILE -o plain.iso`` (STD-GEN-DVD-JPEG, plain, with our DICOMDIR and
   manifest) beside ``genisoimage -o g.iso PILE`` (plain, no DICOMDIR, no fsync).

Every output goes to ``--workdir`` (a disk by default: the fsync at commit is part of the
build). Targets (issue 15): secure <= 2.0x the floor, plain <= 1.5x genisoimage, peak RSS
< 200 MB, and the 256 MiB -> 1 GiB time ratio within 15% of the size ratio.
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

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKI = ROOT / "fixtures" / "pki"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from corpus import warm  # noqa: E402

MiB = 1 << 20


def _template(kind: str, rows: int, cols: int, frames: int = 1) -> tuple[bytes, bytes]:
    """A Part 10 file of ``kind`` with a marker SOP Instance UID (patched per copy)."""
    import pydicom
    import _dicomgen as gen

    mark = "2.25.9" + "1" * 36
    ds = gen.make_dataset(kind, rows=8, cols=8, patient="P1", study=f"S{kind}",
                          series=f"SE{kind}{rows}", extra={"SOPInstanceUID": mark})
    ds.Rows, ds.Columns = rows, cols
    if frames > 1:
        ds.NumberOfFrames = frames
    pixel = (bytes(range(256)) * (-(-rows * cols * 2 * frames // 256)))[:rows * cols * 2 * frames]
    ds.PixelData = pixel
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = mark
    meta.TransferSyntaxUID = gen.ELE
    meta.ImplementationClassUID = "1.2.3.4.5"
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    import io
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), mark.encode()


def make_mixed_pile(root: pathlib.Path, size: int) -> tuple[int, int]:
    """About ``size`` bytes: DX plates (14 MiB, 22%), one multi-frame cine (20%), CT slices
    (512 KiB, 38%) and MR slices (128 KiB, 20%).
    Returns (files, bytes)."""
    scale = size / (1 << 30)
    groups = [("sc", 3072, 2400, 1, max(1, round(16 * scale))),          # DX-like plates
              ("sc", 512, 512, max(1, round(400 * scale)), 1),          # the cine
              ("ct", 512, 512, 1, max(1, round(800 * scale))),
              ("mr", 256, 256, 1, max(1, round(1600 * scale)))]
    root.mkdir(parents=True)
    files = total = 0
    for g, (kind, rows, cols, frames, count) in enumerate(groups):
        data, mark = _template(kind, rows, cols, frames)
        folder = root / f"G{g}"
        folder.mkdir()
        for i in range(count):
            uid = f"2.25.9{g:02d}{i:034d}".encode()
            (folder / f"f{i:05d}.dcm").write_bytes(data.replace(mark, uid))
            files += 1
            total += len(data)
    return files, total


def make_uniform_pile(root: pathlib.Path, kind: str, rows: int, count: int) -> tuple[int, int]:
    """``count`` files of one ``kind`` and size in 16 series folders."""
    root.mkdir(parents=True)
    data, mark = _template(kind, rows, rows)
    for i in range(count):
        folder = root / f"S{i % 16:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:05d}.dcm").write_bytes(data.replace(mark, f"2.25.9{i:036d}".encode()))
    return count, count * len(data)


SHAPES = {"ct-8000": ("ct", 512, 8000), "mr-8000": ("mr", 256, 8000)}


def openssl_speed(args: list[str], seconds: int = 2) -> str:
    return subprocess.run(["openssl", "speed", "-seconds", str(seconds), *args],
                          capture_output=True, text=True, check=True).stdout


def floors(seconds: int) -> dict:
    out = openssl_speed(["-bytes", "16384", "-evp", "aes-256-cbc"], seconds)
    aes = float(re.findall(r"aes-256-cbc\s+([\d.]+)k", out, re.I)[-1]) * 1e3
    out = openssl_speed(["-bytes", "16384", "-evp", "sha256"], seconds)
    sha = float(re.findall(r"sha256\s+([\d.]+)k", out, re.I)[-1]) * 1e3
    out = openssl_speed(["rsa2048"], seconds)
    m = re.search(r"rsa\s+2048 bits\s+[\d.]+s\s+[\d.]+s\s+([\d.]+)\s+([\d.]+)", out)
    return {"aes": aes, "sha": sha, "sign": float(m.group(1)), "verify": float(m.group(2))}


def timed(cmd: list, *, env=None) -> dict:
    """Wall, user+sys CPU and peak RSS (KiB) of ``cmd`` and its reaped children."""
    fd, tf = tempfile.mkstemp()
    os.close(fd)
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", tf, *map(str, cmd)],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    line = pathlib.Path(tf).read_text().strip().splitlines()[-1].split()
    os.unlink(tf)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr[-3000:]}")
    user, sys_, rss = float(line[0]), float(line[1]), int(line[2])
    return {"wall": wall, "cpu": user + sys_, "rss": rss / 1024, "out": proc.stdout}



def parse_size(s: str) -> int:
    m = re.fullmatch(r"(\d+)([MG])", s.upper())
    if not m:
        raise argparse.ArgumentTypeError("like 256M or 1G")
    return int(m.group(1)) << (20 if m.group(2) == "M" else 30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256M,1G", help="mixed piles of these sizes")
    ap.add_argument("--shapes", default="", help="also: ct-8000 (4 GiB of 512 KiB CT), "
                    "mr-8000 (1 GiB of 128 KiB MR)")
    ap.add_argument("--workdir", default="/var/tmp", help="the piles (and outputs)")
    ap.add_argument("--outdir", help="the outputs elsewhere (e.g. /dev/shm: no disk)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per step")
    ap.add_argument("--speed-seconds", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the piles (reused next time)")
    ap.add_argument("--secure-only", action="store_true")
    ap.add_argument("--baseline", help="another mediasec checkout (e.g. main) run beside "
                    "this one in the same run, interleaved (before/after under equal load)")
    args = ap.parse_args()
    sizes: list = [parse_size(s) for s in args.sizes.split(",") if s]
    sizes += [s for s in args.shapes.split(",") if s]
    work = pathlib.Path(args.workdir) / "mediasec-build-engine"
    work.mkdir(parents=True, exist_ok=True)
    out = pathlib.Path(args.outdir) / "mediasec-build-engine-out" if args.outdir else work
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ms = [sys.executable, "-m", "mediasec", "build"]
    protect = ["--encrypt-to", PKI / "recipient-2048.pem", "--sign-key",
               PKI / "signer.key.pem", "--sign-cert", PKI / "signer.pem", "--sign-chain",
               PKI / "chain.pem"]
    f = floors(args.speed_seconds)
    print(f"== openssl speed (1 core): aes-256-cbc {f['aes'] / 1e6:.0f} MB/s, sha256 "
          f"{f['sha'] / 1e6:.0f} MB/s, rsa2048 {f['sign']:.0f} sign/s {f['verify']:.0f} "
          f"verify/s; piles in {work}, outputs in {out}")
    rows, ok = [], True
    try:
        for size in sizes:
            pile = work / (f"pile-{size}" if isinstance(size, str) else f"pile-{size // MiB}M")
            meta = pile.with_suffix(".txt")
            if not meta.exists():
                shutil.rmtree(pile, ignore_errors=True)
                t = time.perf_counter()
                n, total = (make_uniform_pile(pile, *SHAPES[size]) if isinstance(size, str)
                            else make_mixed_pile(pile, size))
                meta.write_text(f"{n} {total}\n")
                print(f"== pile {pile.name}: {n} files, {total / MiB:.0f} MiB, made in "
                      f"{time.perf_counter() - t:.1f} s (untimed)")
            n, total = map(int, meta.read_text().split())
            warm(pile)
            floor = (total / f["aes"] + 2 * total / f["sha"]
                     + n * (1 / f["sign"] + 1 / f["verify"])) / 2
            best: dict = {}
            steps = [("secure", [*ms, pile, "-o", out / "secure.iso", "--profile",
                                 "STD-GEN-SEC-DVD-JPEG", *protect], env),
                     ("plain", [*ms, pile, "-o", out / "plain.iso", "--profile",
                                "STD-GEN-DVD-JPEG"], env),
                     ("genisoimage", ["genisoimage", "-quiet", "-V", "DICOM", "-o",
                                      out / "g.iso", pile], env)]
            if args.baseline:
                benv = dict(env, PYTHONPATH=args.baseline)
                steps[2:2] = [("secure (baseline)", steps[0][1], benv),
                              ("plain (baseline)", steps[1][1], benv)]
            if args.secure_only:
                steps = [st for st in steps if st[0].startswith("secure")]
            for _ in range(args.repeat):
                for step, cmd, e in steps:
                    for name in ("secure.iso", "plain.iso", "g.iso"):
                        (out / name).unlink(missing_ok=True)
                    r = timed(cmd, env=e)
                    if step not in best or r["wall"] < best[step]["wall"]:
                        best[step] = r
            for name in ("secure.iso", "plain.iso", "g.iso"):
                (out / name).unlink(missing_ok=True)
            s = best["secure"]
            print(f"\n-- {total / MiB:.0f} MiB, {n} files; floor {floor:.2f} s")
            print(f"{'step':18} {'wall s':>8} {'cpu s':>8} {'cpu% of 2':>10} {'RSS MB':>8} "
                  f"{'ratio':>18} {'cpu s / floor cpu':>18}")
            for step, r in best.items():
                if step.startswith("secure"):
                    ratio = f"{r['wall'] / floor:.2f}x floor"
                elif step.startswith("plain") and "genisoimage" in best:
                    ratio = f"{r['wall'] / best['genisoimage']['wall']:.2f}x genisoimage"
                else:
                    ratio = ""
                cpu_ratio = (f"{r['cpu'] / (2 * floor):.2f}x" if step.startswith("secure")
                             else "")
                print(f"{step:18} {r['wall']:8.2f} {r['cpu']:8.2f} "
                      f"{100 * r['cpu'] / (2 * r['wall']):9.0f}% {r['rss'] * 1.024:8.0f} "
                      f"{ratio:>18} {cpu_ratio:>18}")
            ours = [r for k, r in best.items() if "baseline" not in k]
            verdicts = [(f"secure {s['wall'] / floor:.2f}x the floor (<= 2.0)",
                         s["wall"] / floor <= 2.0),
                        (f"peak RSS {max(r['rss'] for r in ours) * 1.024:.0f} MB "
                         "(< 200)", max(r["rss"] for r in ours) * 1.024 < 200)]
            if "plain" in best:
                q = best["plain"]["wall"] / best["genisoimage"]["wall"]
                verdicts.append((f"plain {q:.2f}x genisoimage (<= 1.5)", q <= 1.5))
            for text, good in verdicts:
                print(f"{'PASS' if good else 'FAIL'}  {text}")
                ok &= good
            if not isinstance(size, str):
                rows.append((total, s["wall"]))
        if len(rows) > 1:
            (b0, t0), (b1, t1) = rows[0], rows[-1]
            lin = (t1 / t0) / (b1 / b0)
            good = abs(lin - 1) <= 0.15
            ok &= good
            print(f"{'PASS' if good else 'FAIL'}  scaling {b0 / MiB:.0f} -> {b1 / MiB:.0f} MiB: "
                  f"time x{t1 / t0:.2f} for bytes x{b1 / b0:.2f} ({lin:.2f}, within 15%)")
    finally:
        if out != work:
            shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
