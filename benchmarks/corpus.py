"""Realistic piles of DICOM instances for the benchmarks (and the acceptance tests).

    make_pile(dest, shape, seed=0) -> dict

writes a pile of ``shape`` under ``dest`` (created; it must not exist or be empty) and
returns ``{"shape", "seed", "files", "bytes", "kinds": {kind: count}}``. Deterministic for a
given seed (UIDs and pixel bytes). Files are named like File IDs
(``PAT0/ST0/SE00/IM00000``), so ``dcmmkdir`` can index a pile in place.

Shapes (``SHAPES``):

- ``mixed-256m``: 8 CR/DX plates (10-28 MB), one 80 MiB XA cine (8-bit 1024x1024,
  80 frames), 60 CT slices (512x512x16), 150 MR slices (256x256x16): about 256 MiB,
  219 files;
- ``mixed-300m``: 10 plates, the 80 MiB cine, 90 CT, 200 MR slices: about 300 MiB, 301
  files (issue 9's acceptance pile);
- ``mixed-1g``: 44 CR/DX plates, a 150 MiB XA cine (150 frames), 240 CT slices, 400 MR
  slices: about 1 GiB, 685 files;
- ``ct-4g``: 8,000 CT slices of 512x512x16 bits in 16 series of 2 studies: about 4 GiB;
- ``mr-8000``: 8,000 MR slices of 256x256x16 bits in 40 series of 4 studies: about 1 GiB.

Pixel Data is pseudo-random (not compressible, not alike between files or chunks),
streamed from a seeded pool at memcpy speed: a 1 GiB pile takes seconds, not minutes.

    python benchmarks/corpus.py mixed-1g DEST [--seed N]
"""

from __future__ import annotations

import argparse
import pathlib
import random
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

MiB = 1 << 20

# one entry per series: (kind, count, rows, cols, frames, bits)
_PLATE_SIZES = [(2048, 2500), (2336, 2836), (2500, 3000), (2880, 2880), (3000, 3328),
                (2200, 2600), (3328, 4096), (2800, 3500)]   # 16-bit: 10.2 .. 27.3 MB


def _plates(n: int) -> list[tuple]:
    return [("cr" if i % 2 == 0 else "dx", 1, *_PLATE_SIZES[i % len(_PLATE_SIZES)], 1, 16)
            for i in range(n)]


def _series(kind, total, per_series, rows, cols):
    out, left = [], total
    while left > 0:
        out.append((kind, min(per_series, left), rows, cols, 1, 16))
        left -= per_series
    return out


SHAPES: dict[str, dict] = {
    "mixed-256m": {"studies": 4, "series": _plates(8) + [("xa", 1, 1024, 1024, 80, 8)]
                   + _series("ct", 60, 60, 512, 512) + _series("mr", 150, 75, 256, 256)},
    "mixed-300m": {"studies": 4, "series": _plates(10) + [("xa", 1, 1024, 1024, 80, 8)]
                   + _series("ct", 90, 90, 512, 512) + _series("mr", 200, 100, 256, 256)},
    "mixed-1g": {"studies": 6, "series": _plates(44) + [("xa", 1, 1024, 1024, 150, 8)]
                 + _series("ct", 240, 120, 512, 512) + _series("mr", 400, 100, 256, 256)},
    "ct-4g": {"studies": 2, "series": _series("ct", 8000, 500, 512, 512)},
    "mr-8000": {"studies": 4, "series": _series("mr", 8000, 200, 256, 256)},
}


def make_pile(dest, shape: str, seed: int = 0) -> dict:
    """Write the pile ``shape`` (see ``SHAPES``) under ``dest``; returns its summary."""
    import _dicomgen as gen

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")
    dest = pathlib.Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    spec = SHAPES[shape]
    pool = gen.random_pool(seed)
    rnd = random.Random(seed)
    patient = f"PAT{seed}"
    total = files = 0
    kinds: dict[str, int] = {}
    nseries = len(spec["series"])
    for s, (kind, count, rows, cols, frames, bits) in enumerate(spec["series"]):
        st = s * spec["studies"] // nseries
        study, series = f"ST{seed}.{st}", f"SE{seed}.{s}"
        folder = dest / "PAT0" / f"ST{st}" / f"SE{s:02d}"
        for i in range(count):
            total += gen.write_image(
                folder / f"IM{i:05d}", kind, rows=rows, cols=cols, frames=frames, bits=bits,
                pool=pool, salt=rnd.getrandbits(40), patient=patient, study=study,
                series=series, number=i + 1, patient_name=f"PILE^{shape.upper()}")
            files += 1
            kinds[kind] = kinds.get(kind, 0) + 1
    return {"shape": shape, "seed": seed, "files": files, "bytes": total, "kinds": kinds}


def warm(pile: pathlib.Path) -> None:
    """Read every file of ``pile`` once (a warm page cache, as the issue's figures assume)."""
    for p in pile.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 22):
                    pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write a benchmark pile of DICOM instances.")
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("dest")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    info = make_pile(args.dest, args.shape, args.seed)
    print(f"{info['shape']}: {info['files']} files, {info['bytes'] / MiB:.0f} MiB "
          f"({', '.join(f'{k} {v}' for k, v in sorted(info['kinds'].items()))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
