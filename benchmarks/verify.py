#!/usr/bin/env python3
"""Benchmark: ``mediasec verify`` of a secure image against the compute floor and the tool
pipeline, all measured in the same run. Not a test.

    python benchmarks/verify.py --shape mixed-1g          # pile from benchmarks/corpus.py
    python benchmarks/verify.py --pile DIR                # an existing pile of DICOM files
    python benchmarks/verify.py --image disc.iso          # an image built with the fixture keys
    python benchmarks/verify.py --shape mr-8000 --repeat 3 --sample 400 --workdir /var/tmp

Steps (only 3-5 are timed):

1. The pile (untimed): ``make_pile(dest, shape)`` of ``benchmarks/corpus.py`` (shapes
   ``mixed-256m``, ``mixed-1g``, ``ct-4g``, ``mr-8000``), or ``--pile DIR``.
2. The image (untimed): ``mediasec build PILE -o disc.iso --profile STD-GEN-SEC-DVD-JPEG``,
   AES-256-CBC for the RSA-2048 recipient ``fixtures/pki/recipient-2048.pem``, every file
   signed by the RSA-2048 ``fixtures/pki/signer.pem`` (chain carried), MANIFEST.SHA; or
   ``--image PATH`` (which must open with that recipient key and chain to
   ``fixtures/pki/trust.pem``).
3. ``mediasec verify IMAGE --key --cert --trust trust.pem --workers W --json`` (a fresh
   process each time, interpreter start-up included), ``--repeat`` times: best wall time;
   CPU seconds (user + system of the process and its reaped workers, from ``wait4``);
   peak RSS (``ru_maxrss``: the largest of the process and its workers). The run must
   exit 0 with every file passed, else the benchmark fails.
4. The compute floor, by ``openssl speed`` just before and just after step 3 (the mean
   of the two is used; both are printed): AES-256-CBC decryption of every stored byte,
   SHA-256 of the stored (cipher)text for the manifest, SHA-256 of the plaintext for the
   signature (taken as the stored size: the CMS framing is a few KB per file), and per
   Secure DICOM File (the DICOMDIR included) one RSA-2048 private operation (the key
   transport) and one public operation (the signature). Single core: the rates of one
   ``openssl speed``; spread over the cores: the aggregate rates of ``openssl speed -multi
   N`` (N = usable CPUs; on this kind of machine two "cores" may share one SHA unit, and
   the aggregate says so). The ratios: wall / multi-core floor (the target, <= 2.0),
   CPU seconds / single-core floor (the work done, whatever the load).
5. The tool pipeline a receiving desk would run: ``xorriso -osirrox on -extract`` of the
   whole image, ``sha256sum -c MANIFEST.SHA``, then per Secure DICOM File ``openssl cms
   -decrypt`` and ``openssl cms -verify -CAfile trust.pem`` of the decrypted SignedData
   (wrapped in a ContentInfo, as openssl wants), N files at a time (``xargs -P N``). With
   more than ``--sample`` files (default 400; 0 = all), an evenly spaced sample is run
   and the per-file part extrapolated (it says so). ``--no-peer`` skips this step.
6. ``--breakdown`` (untimed, after the rest): where verify's CPU time goes, part by part,
   each in this process on one core: start-up (the imports of ``python -m mediasec
   verify``, best of 3), the image's listing (``open_medium``), the DICOMDIR and manifest
   (``index_medium``), then every file read once (``examine_file``) split into the
   dataset-signature probe (its ``feed``/``findings`` timed), the primitives of the same
   work called from Python (per file one RSA-2048 decryption and one verification,
   AES-256-CBC decryption of the stored bytes, SHA-256 of the stored bytes and of the
   plaintext, in the reader's 256 KiB pieces: what is left when all parsing is gone) and
   the rest (BER/ASN.1 and DICOM parsing, per-file bookkeeping), with the share of each
   in the floor's terms.

The package's modules are compiled (``compileall``) before anything is timed, as an
installed package's are: with ``PYTHONDONTWRITEBYTECODE`` set, every start would otherwise
compile them again.

Units: MB = 10^6 bytes; times in seconds. The workdir is on /dev/shm when it has room for
the pile, the image and the peer's extracted copy (warm page cache, no disk noise), else
in the temp folder (it says which); it is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
PKI = ROOT / "fixtures" / "pki"
MB = 1e6
SHAPE_BYTES = {"mixed-256m": 256 << 20, "mixed-1g": 1 << 30, "ct-4g": 4 << 30,
               "mr-8000": 1 << 30}
TARGET = 2.0
RSS_TARGET = 200.0


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# -- measuring ------------------------------------------------------------------------------

def run_measured(args: list[str], **kw) -> dict:
    """Wall, CPU (user+sys, reaped children included) and peak RSS (MB) of one child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, **kw)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss": ru.ru_maxrss * 1024 / MB,
            "code": os.waitstatus_to_exitcode(status)}


def _speed(args: list[str], seconds: int) -> list[str]:
    out = subprocess.run(["openssl", "speed", "-mr", "-seconds", str(seconds), *args],
                         capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if ln.startswith("+F")]


def openssl_rates(multi: int, seconds: int = 1) -> dict:
    """bytes/s for AES-256-CBC decryption and SHA-256 (1 MiB buffers, our read size), ops/s
    for RSA-2048 private (sign) and public (verify); aggregated over ``multi`` processes."""
    m = ["-multi", str(multi)] if multi > 1 else []
    aes = _speed([*m, "-bytes", str(1 << 20), "-decrypt", "-evp", "aes-256-cbc"], seconds)
    sha = _speed([*m, "-bytes", str(1 << 20), "-evp", "sha256"], seconds)
    rsa = _speed([*m, "rsa2048"], seconds)
    f = rsa[-1].split(":")   # +F2:<n>:2048:<sign/s>:<verify/s>
    return {"aes": float(aes[-1].split(":")[-1]), "sha": float(sha[-1].split(":")[-1]),
            "priv": float(f[3]), "pub": float(f[4])}


def mean_rates(a: dict, b: dict) -> dict:
    return {k: (a[k] + b[k]) / 2 for k in a}


def floor_seconds(r: dict, stored: int, plain: int, files: int) -> float:
    return (stored / r["aes"] + stored / r["sha"] + plain / r["sha"]
            + files / r["priv"] + files / r["pub"])


def floor_parts(r: dict, stored: int, plain: int, files: int) -> str:
    return (f"AES {stored / r['aes']:.2f} + SHA(stored) {stored / r['sha']:.2f} + "
            f"SHA(plain) {plain / r['sha']:.2f} + RSA priv {files / r['priv']:.2f} + "
            f"RSA pub {files / r['pub']:.2f}")


# -- the pile and the image -------------------------------------------------------------------

def make_pile(dest: pathlib.Path, shape: str) -> dict:
    sys.path.insert(0, str(HERE))
    try:
        from corpus import make_pile as make   # benchmarks/corpus.py
    except ImportError as exc:
        raise SystemExit(f"benchmarks/corpus.py is not available ({exc}); give --pile DIR "
                         "or --image PATH") from exc
    return make(dest, shape, seed=0)


def build_image(pile: pathlib.Path, iso: pathlib.Path) -> None:
    subprocess.run([sys.executable, "-m", "mediasec", "build", str(pile), "-o", str(iso),
                    "--profile", "STD-GEN-SEC-DVD-JPEG", "--fileset-id", "BENCH",
                    "--encrypt-to", str(PKI / "recipient-2048.pem"),
                    "--sign-key", str(PKI / "signer.key.pem"),
                    "--sign-cert", str(PKI / "signer.pem"),
                    "--sign-chain", str(PKI / "chain.pem"), "--cipher", "aes-256"],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)


def verify_cmd(iso: pathlib.Path, report: pathlib.Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "mediasec", "verify", str(iso),
            "--key", str(PKI / "recipient-2048.key.pem"),
            "--cert", str(PKI / "recipient-2048.pem"), "--trust", str(PKI / "trust.pem"),
            "--workers", str(workers), "--json", str(report)]


# -- the tool pipeline ------------------------------------------------------------------------

# ContentInfo { signedData, [0] EXPLICIT <the decrypted bare SignedData> } (indefinite BER):
# the octal escapes of 30 80 06 09 2a 86 48 86 f7 0d 01 07 02 a0 80, and four zero bytes
_WRAP_HEAD = r"\060\200\006\011\052\206\110\206\367\015\001\007\002\240\200"
_PER_FILE = r"""set -e
f="$1"; t="$SCRATCH/$$"
openssl cms -decrypt -binary -inform DER -in "$f" -recip "$PKI/recipient-2048.pem" \
  -inkey "$PKI/recipient-2048.key.pem" -out "$t.inner"
{ printf '%s'; cat "$t.inner"; printf '\000\000\000\000'; } > "$t.ci"
openssl cms -verify -binary -inform DER -in "$t.ci" -CAfile "$PKI/trust.pem" -purpose any \
  -out /dev/null 2>/dev/null
rm -f "$t.inner" "$t.ci"
""".replace("'%s'", "'" + _WRAP_HEAD + "'")


def peer_pipeline(iso: pathlib.Path, work: pathlib.Path, secure: list[str], sample: int,
                  lanes: int) -> dict:
    out = work / "peer"
    scratch = work / "peer-scratch"
    scratch.mkdir()
    t0 = time.perf_counter()
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", f"stdio:{iso}", "-extract", "/", str(out)],
                   check=True, capture_output=True)
    t_extract = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.SHA"], cwd=out, check=True,
                   stdout=subprocess.DEVNULL)
    t_manifest = time.perf_counter() - t0
    k = len(secure) if sample <= 0 or sample >= len(secure) else sample
    picked = [secure[int(i * len(secure) / k)] for i in range(k)]
    listing = "\0".join(str(out / p) for p in picked) + "\0"
    t0 = time.perf_counter()
    proc = subprocess.run(["xargs", "-0", "-P", str(lanes), "-n", "1", "sh", "-c", _PER_FILE,
                           "per-file"], input=listing.encode(), capture_output=True,
                          env={**os.environ, "SCRATCH": str(scratch), "PKI": str(PKI)})
    t_files = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the openssl pipeline failed: {proc.stderr.decode()[-2000:]}")
    shutil.rmtree(out)
    shutil.rmtree(scratch)
    return {"extract": t_extract, "manifest": t_manifest, "files": t_files * len(secure) / k,
            "measured": k, "of": len(secure)}


# -- where the time goes (step 6) --------------------------------------------------------------

def _cpu() -> float:
    return time.process_time()


def primitives_seconds(source, entries, piece: int = 256 << 10) -> float:
    """CPU seconds of the floor's primitives called from Python on these files, with no
    parsing: per file one RSA-2048 decryption (PKCS#1 v1.5) and one verification, and over
    the stored bytes (read in ``piece`` pieces) AES-256-CBC decryption, SHA-256 of the
    stored bytes and SHA-256 of the decrypted bytes."""
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = serialization.load_pem_private_key(
        (PKI / "recipient-2048.key.pem").read_bytes(), None)
    pub = key.public_key()
    wrapped = pub.encrypt(bytes(32), padding.PKCS1v15())
    sig = key.sign(b"signed attributes", padding.PKCS1v15(), hashes.SHA256())
    out = bytearray(piece + 16)
    t = _cpu()
    for e in entries:
        cek = key.decrypt(wrapped, padding.PKCS1v15())
        pub.verify(sig, b"signed attributes", padding.PKCS1v15(), hashes.SHA256())
        dec = Cipher(algorithms.AES(cek), modes.CBC(bytes(16))).decryptor()
        h_stored, h_plain = hashlib.sha256(), hashlib.sha256()
        held = b""
        for chunk in source.open(e.handle):
            data = held + bytes(chunk) if held else chunk
            cut = len(data) - len(data) % 16
            held = bytes(data[cut:])
            h_stored.update(data[:cut])
            n = dec.update_into(data[:cut], out)
            h_plain.update(memoryview(out)[:n])
    return _cpu() - t


def breakdown(iso: pathlib.Path, n_secure: int, stored: int, rates: dict) -> None:
    """Step 6 (see the module docstring)."""
    sys.path.insert(0, str(ROOT))
    import mediasec.media.dsig_check as dsig
    from mediasec._job import Job
    from mediasec.cms.keys import KeyDecrypter
    from mediasec.io.medium import open_medium
    from mediasec.media.dirindex import index_medium
    from mediasec.media.examine import examine_file
    from mediasec.pki.certs import load_certificates, load_private_key
    from mediasec.policy import TrustContext
    from mediasec.media.source import MediumIndex

    starts = [run_measured([sys.executable, "-c", "import mediasec.cli.main, "
                            "mediasec.cli.cmd_verify"])["cpu"] for _ in range(3)]
    dec = [KeyDecrypter(load_private_key((PKI / "recipient-2048.key.pem").read_bytes())[0],
                        load_certificates((PKI / "recipient-2048.pem").read_bytes())[0])]
    trust = TrustContext(anchors=tuple(load_certificates((PKI / "trust.pem").read_bytes())))
    probe = {"s": 0.0}

    def timed(fn):
        def run(*args, **kw):
            t = _cpu()
            try:
                return fn(*args, **kw)
            finally:
                probe["s"] += _cpu() - t
        return run

    cls = dsig.DatasetSignatureProbe
    saved = (cls.feed, cls.findings)
    cls.feed, cls.findings = timed(cls.feed), timed(cls.findings)
    try:
        with Job("benchmark").active():
            t = _cpu()
            source = open_medium(str(iso))
            t_list = _cpu() - t
            try:
                index = MediumIndex(source.entries())
                t = _cpu()
                fsi = index_medium(source, decrypters=dec, trust=trust, index=index)
                t_index = _cpu() - t
                probe_index, probe["s"] = probe["s"], 0.0
                skip = {id(fsi.dicomdir_entry), id(fsi.manifest_entry)}
                files = [e for e in index.entries if e.kind == "file" and id(e) not in skip]
                t = _cpu()
                for e in files:
                    examine_file(source.open(e.handle), path=e.path, size=e.size,
                                 decrypters=dec, trust=trust)
                t_files = _cpu() - t
                t_prim = primitives_seconds(source, files)
            finally:
                source.close()
    finally:
        cls.feed, cls.findings = saved
    floor1 = floor_seconds(rates, stored, stored, n_secure)
    rest = t_files - probe["s"] - t_prim
    n = max(1, len(files))
    print(f"breakdown (CPU seconds, one process, in this run; floor one core {floor1:.2f} s):")
    print(f"  start-up (imports of the verify command, best of 3): {min(starts):.2f} s")
    print(f"  image listing (open_medium): {t_list:.2f} s")
    print(f"  DICOMDIR + manifest (index_medium): {t_index:.2f} s (of which the "
          f"dataset-signature probe {probe_index:.2f} s)")
    print(f"  {len(files)} files read once (examine_file): {t_files:.2f} s =")
    print(f"    primitives called from Python (RSA, AES, SHA-256 x2, reads): {t_prim:.2f} s "
          f"({t_prim / floor1:.2f}x the openssl-speed floor)")
    print(f"    dataset-signature probe (feed + findings): {probe['s']:.2f} s")
    print(f"    the rest (BER/ASN.1, DICOM header, per-file bookkeeping): {rest:.2f} s "
          f"({rest / n * 1000:.2f} ms per file)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--shape", choices=sorted(SHAPE_BYTES))
    src.add_argument("--pile", help="an existing folder of DICOM files")
    src.add_argument("--image", help="an existing secure image (fixture keys)")
    ap.add_argument("--workers", type=int, default=None, help="default: usable CPUs, at most 2")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sample", type=int, default=400)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--breakdown", action="store_true",
                    help="after the timed runs: where verify's CPU time goes (step 6)")
    a = ap.parse_args()
    for tool in ("openssl", "xorriso", "sha256sum", "xargs"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    approx = (SHAPE_BYTES.get(a.shape, 0) if a.shape else
              sum(p.stat().st_size for p in pathlib.Path(a.pile).rglob("*") if p.is_file())
              if a.pile else os.path.getsize(a.image))
    need = approx * (3.2 if not a.image else 1.2)
    base, where = a.workdir, a.workdir
    if base is None:
        free = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else 0
        if free > need:
            base, where = "/dev/shm", "/dev/shm (RAM)"
        else:
            base = tempfile.gettempdir()
            where = f"{base} (disk: /dev/shm has {free / 1e9:.1f} GB, needs {need / 1e9:.1f})"
    work = pathlib.Path(tempfile.mkdtemp(prefix="mediasec-verify-bench-", dir=base))
    print(f"workdir: {work} on {where}")
    try:
        return run(a, work)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(a, work: pathlib.Path) -> int:
    n_cpu = cpus()
    workers = a.workers or min(2, n_cpu)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "mediasec")],
                   check=True, stdout=subprocess.DEVNULL)
    if a.image:
        iso = pathlib.Path(a.image).resolve()
        what = f"image {iso}"
    else:
        t = time.perf_counter()
        if a.shape:
            pile = work / "pile"
            info = make_pile(pile, a.shape)
            what = (f"pile {a.shape}: {info['files']} files, {info['bytes'] / MB:.0f} MB "
                    f"({', '.join(f'{k} {v}' for k, v in sorted(info['kinds'].items()))})")
        else:
            pile = pathlib.Path(a.pile).resolve()
            what = f"pile {pile}"
        t_pile = time.perf_counter() - t
        iso = work / "disc.iso"
        t = time.perf_counter()
        build_image(pile, iso)
        what += (f"; pile {t_pile:.1f} s, build {time.perf_counter() - t:.1f} s (untimed)")
        if a.shape:
            shutil.rmtree(pile)
    print(what)
    iso_bytes = iso.stat().st_size
    print(f"image: {iso_bytes / MB:.0f} MB; STD-GEN-SEC-DVD-JPEG, AES-256-CBC, RSA-2048 "
          f"recipient, RSA-2048 signer, MANIFEST.SHA; {n_cpu} CPUs, verify --workers {workers}")

    # openssl speed before each run and after the last: each run is judged against the mean
    # of the floors measured just before and just after it (the machine is shared)
    def speed_set() -> tuple[dict, dict]:
        one = openssl_rates(1)
        return one, (openssl_rates(n_cpu) if n_cpu > 1 else one)

    sets = [speed_set()]
    runs = []
    report = work / "report.json"
    for _ in range(max(1, a.repeat)):
        if report.exists():
            report.unlink()
        runs.append(run_measured(verify_cmd(iso, report, workers), stdout=subprocess.DEVNULL))
        sets.append(speed_set())

    rep = json.loads(report.read_text())
    secure = [f for f in rep["files"] if f.get("kind") == "secure"]
    stored = sum(f["size"] for f in secure)
    n = len(secure)
    ok = all(r["code"] == 0 for r in runs) and rep["outcome"] == "passed" and n > 0
    for i, r in enumerate(runs):
        r1 = mean_rates(sets[i][0], sets[i + 1][0])
        rM = mean_rates(sets[i][1], sets[i + 1][1])
        r["f1"], r["fM"] = floor_seconds(r1, stored, stored, n), floor_seconds(rM, stored, stored, n)
        r["r1"], r["rM"] = r1, rM
    best = min(runs, key=lambda r: r["wall"] / r["fM"])
    rss = max(r["rss"] for r in runs)
    f1, fM, r1, rM = best["f1"], best["fM"], best["r1"], best["rM"]

    def rates(r: dict) -> str:
        return (f"AES {r['aes'] / MB:.0f} MB/s, SHA-256 {r['sha'] / MB:.0f} MB/s, RSA-2048 "
                f"private {r['priv']:.0f}/s, public {r['pub']:.0f}/s")

    for i, (one, multi) in enumerate(sets):
        print(f"openssl speed #{i}: one process: {rates(one)}" + (
            f"; -multi {n_cpu} aggregate: {rates(multi)}" if n_cpu > 1 else ""))
    print(f"work: {n} Secure DICOM Files, {stored / MB:.0f} MB stored")
    for i, r in enumerate(runs):
        print(f"run {i + 1}: wall {r['wall']:.2f} s, CPU {r['cpu']:.2f} s "
              f"({r['cpu'] / r['wall'] / n_cpu:.0%} of {n_cpu} CPUs), peak RSS {r['rss']:.0f} MB, "
              f"exit {r['code']}; floor (speed #{i} and #{i + 1}) one core {r['f1']:.2f} s, "
              f"{n_cpu} cores {r['fM']:.2f} s; wall / {n_cpu}-core floor {r['wall'] / r['fM']:.2f}x, "
              f"CPU / one-core floor {r['cpu'] / r['f1']:.2f}x")
    print(f"best run (lowest ratio): {runs.index(best) + 1}")
    print(f"floor, one core:   {f1:.2f} s = {floor_parts(r1, stored, stored, n)}")
    print(f"floor, {n_cpu} cores: {fM:.2f} s = {floor_parts(rM, stored, stored, n)}")
    print(f"mediasec verify --workers {workers}: wall {best['wall']:.2f} s, CPU {best['cpu']:.2f} "
          f"s ({best['cpu'] / best['wall'] / n_cpu:.0%} of {n_cpu} CPUs), peak RSS {rss:.0f} MB, "
          f"outcome {rep['outcome']}, {rep['counts']['files']} files")
    ok_floor = best["wall"] <= TARGET * fM
    ok_rss = rss < RSS_TARGET
    print(f"ratio to the floor ({n_cpu} cores, wall): {best['wall'] / fM:.2f}x "
          f"(target <= {TARGET}x) {'PASS' if ok_floor else 'FAIL'}")
    print(f"ratio to the floor (one core, CPU seconds / floor): {best['cpu'] / f1:.2f}x")
    print(f"ratio to the floor (one core, wall): {best['wall'] / f1:.2f}x")
    print(f"peak RSS {rss:.0f} MB (target < {RSS_TARGET:.0f} MB) {'PASS' if ok_rss else 'FAIL'}")
    print(f"throughput: {iso_bytes / best['wall'] / MB:.0f} MB/s of image, "
          f"{n / best['wall']:.0f} files/s")

    if a.breakdown:
        breakdown(iso, n, stored, r1)
    if not a.no_peer:
        paths = [f["path"] for f in secure]
        p = peer_pipeline(iso, work, paths, a.sample, n_cpu)
        total = p["extract"] + p["manifest"] + p["files"]
        note = "" if p["measured"] == p["of"] else \
            f" (measured on {p['measured']} of {p['of']} files, extrapolated)"
        print(f"tool pipeline: xorriso extract {p['extract']:.2f} s + sha256sum -c "
              f"{p['manifest']:.2f} s + openssl cms -decrypt/-verify x{n_cpu} "
              f"{p['files']:.2f} s{note} = {total:.2f} s")
        print(f"ratio to the tool pipeline: verify takes {best['wall'] / total:.2f}x its time "
              f"({total / best['wall']:.1f}x faster)")
    return 0 if (ok and ok_floor and ok_rss) else 1


if __name__ == "__main__":
    sys.exit(main())
