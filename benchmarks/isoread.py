"""The image listing (``IsoSource``): the fast reader (``mediasec.io.isoread``) beside the
pycdlib parse it replaces, on our own image and on the peers' (not a timed test).

    python benchmarks/isoread.py                      # 8,000 files, DVD profile (UDF bridge)
    python benchmarks/isoread.py --files 2000 --repeat 5 --workdir /var/tmp

Makes, in a work folder removed at the end, a pile of ``--files`` small files laid out like
a DICOM File-set (``PAT0/ST0/SE00/IM00000``, 40 series) and three images of it: ours
(``IsoImage`` with the UDF bridge, as the DVD profiles write; and without it, as the CD
profiles), ``genisoimage -J -udf`` and ``xorriso`` (Joliet, no Rock Ridge). For each image
it times opening an ``IsoSource`` (the whole listing: volume descriptors, both trees, every
extent) with the fast reader and with pycdlib alone, best of ``--repeat`` (wall and CPU
time: the CPU time is the steadier on a shared machine), checks that both listings are
equal, and prints the CPU ratio.
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
from unittest import mock

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from mediasec.io import iso  # noqa: E402
from mediasec.io.fs import AtomicOutput  # noqa: E402
from mediasec.io.isoread import Decline  # noqa: E402
from mediasec.media.plan import BytesProducer  # noqa: E402


def _components(i: int) -> tuple[str, ...]:
    series = i % 40
    return (f"PAT{series // 10}", f"ST{series // 20}", f"SE{series:02d}", f"IM{i:05d}")


def make_ours(path: pathlib.Path, n: int, udf: bool) -> None:
    files = [iso.IsoFile(_components(i), BytesProducer(b"%08d" % i * (1 + i % 7)))
             for i in range(n)]
    files.insert(0, iso.IsoFile(("DICOMDIR",), BytesProducer(b"D" * 4096)))
    image = iso.IsoImage(files, volume_id="BENCH", udf=udf)
    out = AtomicOutput(str(path))
    image.write(out)
    out.commit()


def make_tree(root: pathlib.Path, n: int) -> None:
    for i in range(n):
        p = root.joinpath(*_components(i))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"%08d" % i * (1 + i % 7))


def listing(path: pathlib.Path, slow: bool) -> tuple[float, list, str]:
    def decline(*_a, **_k):
        raise Decline("benchmark: pycdlib alone")
    ctx = mock.patch.object(iso, "read_listing", decline) if slow else mock.MagicMock()
    with ctx:
        t, c = time.perf_counter(), time.process_time()
        src = iso.IsoSource(str(path))
        dt = (time.perf_counter() - t, time.process_time() - c)
    got = [src.namespace, src.volume_id, src.description,
           [(e.path, e.size, e.handle, e.kind, e.iso9660) for e in src.entries()]]
    reader = src.reader
    src.close()
    return dt, got, reader


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=8000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="isoread-", dir=a.workdir))
    try:
        images = {}
        images["ours DVD (UDF bridge)"] = work / "dvd.iso"
        make_ours(images["ours DVD (UDF bridge)"], a.files, True)
        images["ours CD (ISO 9660)"] = work / "cd.iso"
        make_ours(images["ours CD (ISO 9660)"], a.files, False)
        tree = work / "tree"
        make_tree(tree, a.files)
        if shutil.which("genisoimage"):
            images["genisoimage -J -udf"] = work / "g.iso"
            subprocess.run(["genisoimage", "-quiet", "-J", "-udf", "-o", str(work / "g.iso"),
                            str(tree)], check=True)
        if shutil.which("xorriso"):
            images["xorriso (Joliet, no RR)"] = work / "x.iso"
            subprocess.run(["xorriso", "-report_about", "SORRY", "-outdev", str(work / "x.iso"),
                            "-rockridge", "off", "-joliet", "on", "-map", str(tree), "/"],
                           check=True, capture_output=True)
        print(f"image listing, {a.files} files, best of {a.repeat}")
        ok = True
        for name, path in images.items():
            fast = [listing(path, False)[0] for _ in range(a.repeat)]
            slow = [listing(path, True)[0] for _ in range(a.repeat)]
            (fast_wall, fast_cpu), (slow_wall, slow_cpu) = (
                (min(w for w, _ in t), min(c for _, c in t)) for t in (fast, slow))
            _, got_fast, reader = listing(path, False)
            _, got_slow, _ = listing(path, True)
            same = got_fast == got_slow
            ok &= same and reader == "fast"
            print(f"  {name:24s} fast reader {fast_wall:5.3f} s (CPU {fast_cpu:5.3f})   "
                  f"pycdlib {slow_wall:5.3f} s (CPU {slow_cpu:5.3f})   "
                  f"{slow_cpu / fast_cpu:4.1f}x CPU   reader={reader} "
                  f"listings {'equal' if same else 'DIFFER'}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
