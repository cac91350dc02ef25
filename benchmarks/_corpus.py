"""The benchmarks' corpus: N CT instances patched from one pydicom-made template.

Files are named like File IDs (``ST000000/SE000000/IM000000``), so dcmmkdir can index a
corpus in place. Deterministic: UIDs derive from the instance, series and study numbers.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

MARK_SOP = "2.25.9" + "1" * 36          # 41 characters, patched per instance
MARK_SERIES = "2.25.8" + "1" * 36
MARK_STUDY = "2.25.7" + "1" * 36


def make_corpus(root: pathlib.Path, n: int, *, rows: int = 64, cols: int = 64,
                studies: int = 2, series: int = 16) -> int:
    """Write ``n`` instances (``rows`` x ``cols`` x 16 bits) in ``series`` series spread over
    ``studies`` studies under ``root`` (replaced if it exists); returns the bytes written."""
    import pydicom
    import _dicomgen as gen

    if root.exists():
        shutil.rmtree(root)
    tmpl = gen.make_dataset("ct", rows=rows, cols=cols, number=1,
                            extra={"SOPInstanceUID": MARK_SOP, "SeriesInstanceUID": MARK_SERIES,
                                   "StudyInstanceUID": MARK_STUDY, "InstanceNumber": "000001",
                                   "SeriesNumber": "0001", "StudyID": "0001"})
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = tmpl.SOPClassUID
    meta.MediaStorageSOPInstanceUID = MARK_SOP
    meta.TransferSyntaxUID = gen.ELE
    tmpl.file_meta = meta
    root.mkdir(parents=True)
    path = root / "template.dcm"
    tmpl.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    path.unlink()
    assert data.count(MARK_SOP.encode()) == 2
    per_series = -(-n // series)
    total = 0
    for i in range(n):
        se = i // per_series
        st = se * studies // series
        # the Instance Number first: once the UIDs are in, "000001" may occur inside one
        b = (data.replace(b"000001", f"{i % per_series + 1:06d}".encode(), 1)
             .replace(MARK_SOP.encode(), f"2.25.9{i:036d}".encode())
             .replace(MARK_SERIES.encode(), f"2.25.8{se:036d}".encode())
             .replace(MARK_STUDY.encode(), f"2.25.7{st:036d}".encode()))
        folder = root / f"ST{st:06d}" / f"SE{se:06d}"
        if i % per_series == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IM{i:06d}").write_bytes(b)
        total += len(b)
    return total
