"""Secure disc build benchmark: `mediasec build` vs the tool pipeline, plain mastering and
the compute floor, all measured in the same run.

Generates (untimed) a pile with ``benchmarks/corpus.py`` (``--shape``: ``mixed-256m``,
``mixed-300m``, ``mixed-1g``, ``ct-4g``, ``mr-8000``; File-ID names, so dcmmkdir indexes it
in place), then:

1. ours: ``mediasec build PILE -o ours.iso --profile STD-GEN-SEC-DVD-JPEG`` with an AES-256
   envelope for an RSA-2048 recipient, an RSA-2048 signature in every file, MANIFEST.SHA
   and the default read-back (``--verify quick``: every stored file re-hashed, the
   DICOMDIR and a sample decrypted and checked); its cost comes from the JSON result;
2. the tool pipeline it replaces: ``dcmmkdir`` on the plain pile, then for every file
   (the DICOMDIR included) ``openssl cms -sign | openssl cms -encrypt -aes256`` (two
   processes per file, two files at a time with ``xargs -P 2``), then ``genisoimage -udf``
   of the encrypted tree (no manifest, no read-back);
3. ``genisoimage -udf`` mastering the plain pile, no security at all;
4. the compute floor from ``openssl speed`` in this run: AES-256-CBC over every plaintext
   byte + SHA-256 of the plaintext + SHA-256 of the ciphertext + per file one RSA-2048
   signature and one RSA-2048 public operation (the key transport), at the rates of
   ``openssl speed -multi N`` (N = the cores) and, for reference, of one core divided by
   the cores.

Peak RSS and CPU time are read with /usr/bin/time (RSS: the build's main process, workers
are forks of it; CPU: user + system of the process and its waited-for children). On a
shared machine wall times follow the load; the CPU ratios (ours against the pipeline, and
against the floor at one core's ``openssl speed`` rates, which openssl measures in CPU
time) do not. ``openssl speed -multi N`` is wall-clock bound and drops with the load too.

``--scaling`` runs only ours and the compute floor, on ``mixed-256m`` and ``ct-4g`` (or
the shapes given with ``--shapes``), and prints per shape the time per GiB of input and
the ratio to the floor, both without the fixed start-up cost (the interpreter and our
imports: ``python -m mediasec build --help``, timed apart), and the peak RSS; scaling is
linear when those ratios agree (issue 15: within 15 %).

    python benchmarks/build.py                       # mixed-256m
    python benchmarks/build.py --shape mixed-1g
    python benchmarks/build.py --shape ct-4g --workdir /var/tmp
    python benchmarks/build.py --scaling --workdir /var/tmp
"""

from __future__ import annotations

import argparse
import json
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from corpus import SHAPES, make_pile  # noqa: E402


def timed(cmd, *, cwd=None, shell=False, env=None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system, the waited-for
    children - forked workers, pipeline processes - included) of a command, via
    /usr/bin/time."""
    rss_file = tempfile.NamedTemporaryFile(delete=False)
    rss_file.close()
    full = (["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file.name] +
            (["sh", "-c", cmd] if shell else list(map(str, cmd))))
    t = time.perf_counter()
    proc = subprocess.run(full, cwd=cwd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    last = (open(rss_file.name).read().strip().splitlines() or ["0 0 0"])[-1].split()
    os.unlink(rss_file.name)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr[-3000:]}")
    return dt, int(last[0]), float(last[1]) + float(last[2])


def speed(args: list[str], multi: int, seconds: int) -> str:
    cmd = ["openssl", "speed", "-seconds", str(seconds), *(["-multi", str(multi)]
                                                          if multi > 1 else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def byte_rate(name: str, multi: int, seconds: int) -> float:
    """Bytes per second of ``openssl speed -evp NAME`` on 16 KiB blocks."""
    out = speed(["-bytes", "16384", "-evp", name], multi, seconds)
    for line in reversed(out.splitlines()):
        m = re.match(rf"\s*(?:evp\s+)?{re.escape(name)}\s+([\d.]+)k\s*$", line, re.I)
        if m:
            return float(m.group(1)) * 1000
    raise SystemExit(f"cannot read openssl speed output for {name}:\n{out}")


def rsa_rates(multi: int, seconds: int) -> tuple[float, float]:
    """(signatures/s, public operations/s) of RSA-2048."""
    out = speed(["rsa2048"], multi, seconds)
    for line in reversed(out.splitlines()):
        m = re.match(r"\s*rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            return float(m.group(1)), float(m.group(2))
    raise SystemExit(f"cannot read openssl speed output for rsa2048:\n{out}")


def floor_seconds(rates: dict, plain: int, cipher: int, files: int) -> float:
    return (plain / rates["aes"] + plain / rates["sha"] + cipher / rates["sha"]
            + files / rates["sign"] + files / rates["verify"])


def measure_floor(cores: int, seconds: int) -> dict:
    rates = {}
    for label, multi in (("1 core", 1), (f"-multi {cores}", cores)):
        sg, vf = rsa_rates(multi, seconds)
        rates[label] = {"aes": byte_rate("aes-256-cbc", multi, seconds),
                        "sha": byte_rate("sha256", multi, seconds), "sign": sg, "verify": vf}
    return rates


def run_ours(pile: pathlib.Path, work: pathlib.Path, workers: int) -> dict:
    """One secure build of ``pile`` (see the module docstring): wall, CPU, RSS, result."""
    ours = work / "ours.iso"
    result = work / "ours.json"
    sign = ["--sign-key", PKI / "signer.key.pem", "--sign-cert", PKI / "signer.pem",
            "--sign-chain", PKI / "chain.pem"]
    t, rss, cpu = timed([sys.executable, "-m", "mediasec", "build", pile, "-o", ours,
                         "--profile", "STD-GEN-SEC-DVD-JPEG", "--encrypt-to",
                         PKI / "recipient-2048.pem", *sign, "--workers", str(workers),
                         "--verify", "quick", "--json", result])
    doc = json.loads(result.read_text())
    size = ours.stat().st_size
    ours.unlink()
    result.unlink()
    return {"wall": t, "rss": rss, "cpu": cpu, "doc": doc, "iso_size": size,
            "cipher_bytes": sum(f["size"] for i in doc["images"] for f in i["files"])}


def startup_seconds(runs: int = 3) -> float:
    """The fixed cost of every run: the interpreter and our imports (the least of a few)."""
    best = float("inf")
    for _ in range(runs):
        t, _rss, _cpu = timed([sys.executable, "-m", "mediasec", "build", "--help"])
        best = min(best, t)
    return best


def scaling(args, base: str | None) -> int:
    cores = os.cpu_count() or 1
    shapes = args.shapes.split(",")
    print(f"== machine: nproc {cores}, load {os.getloadavg()[0]:.1f}, "
          f"{subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}")
    rows = []
    for shape in shapes:
        work = pathlib.Path(tempfile.mkdtemp(prefix="mediasec-build-scaling-",
                                             dir=base or tempfile.gettempdir()))
        try:
            t = time.perf_counter()
            info = make_pile(work / "pile", shape, seed=args.seed)
            gen = time.perf_counter() - t
            start = startup_seconds()
            load = os.getloadavg()[0]
            r = run_ours(work / "pile", work, args.workers)
            rates = measure_floor(cores, args.speed_seconds)
            f_multi = floor_seconds(rates[f"-multi {cores}"], info["bytes"], r["cipher_bytes"],
                                    info["files"])
            f_one = floor_seconds(rates["1 core"], info["bytes"], r["cipher_bytes"],
                                  info["files"]) / cores
            rows.append((shape, info, gen, start, load, r, f_multi, f_one))
            print(f"== {shape}: {info['files']} files, {info['bytes'] / 2**20:.0f} MiB "
                  f"(generated in {gen:.0f} s, not timed); load {load:.1f} before ours")
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'shape':12} {'files':>6} {'GiB':>6} {'wall s':>7} {'start s':>7} {'s/GiB':>6} "
          f"{'floor s':>7} {'ratio':>6} {'ratio-st':>8} {'1c-ratio':>8} {'CPU s':>7} "
          f"{'read-back s':>11} {'RSS MB':>7}")
    per = []
    for shape, info, gen, start, load, r, f_multi, f_one in rows:
        gib = info["bytes"] / 2**30
        net = r["wall"] - start
        per.append((net / gib, net / f_multi))
        print(f"{shape:12} {info['files']:6d} {gib:6.2f} {r['wall']:7.2f} {start:7.2f} "
              f"{net / gib:6.2f} {f_multi:7.2f} {r['wall'] / f_multi:6.2f} "
              f"{net / f_multi:8.2f} {r['wall'] / f_one:8.2f} {r['cpu']:7.2f} "
              f"{r['doc']['readback']['seconds']:11.2f} {r['rss'] / 1024:7.0f}")
    print()
    print("ratio: wall / compute floor (openssl speed -multi); ratio-st: the same without the "
          "fixed start-up; 1c-ratio: wall / (1-core floor / cores)")
    if len(per) > 1:
        a, b = per[0], per[-1]
        print(f"scaling {rows[0][0]} -> {rows[-1][0]}: time per GiB x{b[0] / a[0]:.2f}, "
              f"ratio to the floor x{b[1] / a[1]:.2f} (linear within 15 %: "
              f"{'yes' if abs(b[1] / a[1] - 1) <= 0.15 else 'no'}, by the floor ratio)")
    return 0


def compile_package() -> None:
    """Byte-compile mediasec once, untimed, as an installed package is (pip compiles on
    install). Otherwise, with PYTHONDONTWRITEBYTECODE set (as in some shells and CI), every
    timed run would recompile about 85 modules from source: 0.15-0.3 s of CPU per run that no
    user pays."""
    import compileall
    import mediasec
    compileall.compile_dir(os.path.dirname(mediasec.__file__), quiet=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="mixed-256m", choices=sorted(SHAPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--speed-seconds", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--scaling", action="store_true",
                    help="ours and the floor only, on --shapes; per-GiB and floor ratios")
    ap.add_argument("--shapes", default="mixed-256m,ct-4g")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    for tool in ("openssl", "dcmmkdir", "genisoimage", "xargs", "/usr/bin/time"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    compile_package()
    if args.scaling:
        return scaling(args, args.workdir)
    base = args.workdir
    if base is None:
        shm = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else 0
        need = 4.5 * sum(c * r * co * f * b // 8 for _k, c, r, co, f, b
                         in SHAPES[args.shape]["series"])
        base = "/dev/shm" if shm > need else tempfile.gettempdir()
    work = pathlib.Path(tempfile.mkdtemp(prefix="mediasec-build-bench-", dir=base))
    print(f"== machine: nproc {cores}, load {os.getloadavg()[0]:.1f}, "
          f"{subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}")
    print(f"== workdir {work} ({'tmpfs' if str(work).startswith('/dev/shm') else 'disk'})")
    try:
        pile = work / "pile"
        t = time.perf_counter()
        info = make_pile(pile, args.shape, seed=args.seed)
        files, plain_bytes = info["files"], info["bytes"]
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(info["kinds"].items()))
        print(f"== pile {args.shape}: {files} files ({kinds}), {plain_bytes / 2**20:.0f} MiB, "
              f"largest {max(p.stat().st_size for p in pile.rglob('*') if p.is_file()) / 2**20:.0f} MiB; "
              f"generated in {time.perf_counter() - t:.1f} s (not timed)")
        # 1. ours (and the fixed start-up cost, timed apart)
        start = startup_seconds()
        r = run_ours(pile, work, args.workers)
        t_ours, rss_ours, c_ours, doc = r["wall"], r["rss"], r["cpu"], r["doc"]
        rb = doc["readback"]
        iso_size, cipher_bytes = r["iso_size"], r["cipher_bytes"]

        # 3. genisoimage, no security
        plain_iso = work / "plain.iso"
        t_geniso, rss_geniso, c_geniso = timed(["genisoimage", "-quiet", "-udf", "-V", "DICOM",
                                         "-sysid", "", "-o", plain_iso, pile])
        plain_iso.unlink()

        # 2. the pipeline: dcmmkdir, then sign + encrypt each file, then genisoimage
        enc = work / "enc"
        t0 = time.perf_counter()
        t_dir, rss_dir, c_dir = timed(["dcmmkdir", "--recurse", "-Pgp", "+id", ".", "+D",
                                   "DICOMDIR", "+I"], cwd=pile)
        listing = work / "files.txt"
        names = sorted(str(p.relative_to(pile)) for p in pile.rglob("*") if p.is_file())
        listing.write_text("\n".join(names) + "\n")
        for f in names:
            (enc / f).parent.mkdir(parents=True, exist_ok=True)
        script = (f"openssl cms -sign -binary -nodetach -md sha256 -outform DER "
                  f"-signer {PKI}/signer.pem -inkey {PKI}/signer.key.pem "
                  f"-certfile {PKI}/chain.pem -in \"{pile}/$1\" | "
                  f"openssl cms -encrypt -binary -aes256 -inform DER -outform DER "
                  f"-out \"{enc}/$1\" {PKI}/recipient-2048.pem")
        t_ossl, rss_ossl, c_ossl = timed(f"xargs -a {listing} -P 2 -I{{}} sh -c '{script}' _ {{}}",
                                    shell=True)
        enc_iso = work / "pipeline.iso"
        t_giso2, _, c_giso2 = timed(["genisoimage", "-quiet", "-udf", "-V", "DICOM", "-sysid", "",
                               "-o", enc_iso, enc])
        t_pipe = time.perf_counter() - t0
        c_pipe = c_dir + c_ossl + c_giso2
        enc_iso.unlink()
        shutil.rmtree(enc)

        # 4. the compute floor, measured now
        rates = measure_floor(cores, args.speed_seconds)
        f_multi = floor_seconds(rates[f"-multi {cores}"], plain_bytes, cipher_bytes, files)
        f_one = floor_seconds(rates["1 core"], plain_bytes, cipher_bytes, files) / cores

        print()
        nan = float("nan")
        print(f"{'step':58} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}")
        rows = [("ours: mediasec build (secure DVD, signed, quick read-back)", t_ours, c_ours,
                 rss_ours),
                ("  of which the fixed start-up (interpreter, imports)", start, nan, None),
                (f"  of which read-back ({rb['files_hashed']} files re-read, "
                 f"{rb['files_decrypted']} decrypted)", rb["seconds"], nan, None),
                ("pipeline: dcmmkdir", t_dir, c_dir, rss_dir),
                ("pipeline: openssl cms -sign | -encrypt per file (-P 2)", t_ossl, c_ossl,
                 rss_ossl),
                ("pipeline: genisoimage -udf of the encrypted tree", t_giso2, c_giso2, None),
                ("pipeline: total", t_pipe, c_pipe, None),
                ("genisoimage -udf, plain pile, no security", t_geniso, c_geniso, rss_geniso),
                (f"compute floor, openssl speed -multi {cores}", f_multi, nan, None),
                (f"compute floor, openssl speed 1 core (CPU s; wall = / {cores})", f_one,
                 f_one * cores, None)]
        for name, t_, c_, rss in rows:
            print(f"{name[:58]:58} {t_:8.2f} {c_:8.2f} {rss / 1024 if rss else nan:12.1f}")
        print()
        for label, r in rates.items():
            print(f"openssl speed ({label}): AES-256-CBC {r['aes'] / 1e6:.0f} MB/s, SHA-256 "
                  f"{r['sha'] / 1e6:.0f} MB/s, RSA-2048 {r['sign']:.0f} sign/s, "
                  f"{r['verify']:.0f} public/s")
        print(f"image {iso_size / 2**20:.0f} MiB; ours {plain_bytes / t_ours / 1e6:.0f} MB/s "
              f"of input; read-back {rb['bytes_read'] / 2**20:.0f} MiB re-read in "
              f"{rb['seconds']:.2f} s = {100 * rb['seconds'] / t_ours:.0f} % of our time")
        print()
        print(f"ratio ours / pipeline:             {t_ours / t_pipe:6.2f} wall  "
              f"{c_ours / c_pipe:6.2f} CPU  (ours {t_pipe / t_ours:.1f}x faster)")
        print(f"ratio ours / plain genisoimage:    {t_ours / t_geniso:6.2f} wall  "
              f"{c_ours / c_geniso:6.2f} CPU")
        print(f"ratio ours / compute floor:        {t_ours / f_multi:6.2f} wall (-multi "
              f"{cores}; without the read-back {(t_ours - rb['seconds']) / f_multi:.2f}; "
              f"without the start-up {(t_ours - start) / f_multi:.2f}; 1-core rates "
              f"{t_ours / f_one:.2f})  {c_ours / (f_one * cores):6.2f} CPU (1-core rates)")
        print(f"peak RSS of ours:                  {rss_ours / 1024:6.0f} MB")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
