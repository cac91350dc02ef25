"""Test objects generated from Table E.1-1 itself: every listed attribute, at the top level,
inside a sequence item and two levels down, plus private blocks (a safe one from Table
E.3.10-1 and an unknown one) and an attribute no table or dictionary knows."""

from __future__ import annotations

import io
import json
import pathlib

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from _dicomgen import make_dataset

ROOT = pathlib.Path(__file__).resolve().parents[1]
TABLE = json.loads((ROOT / "profiles" / "deid_table_e1_1_2026d.json").read_text())
SAFE = json.loads((ROOT / "profiles" / "deid_safe_private.json").read_text())["rows"]

#: an unlisted sequence (no row in E.1-1): kept, walked item by item
NEST = 0x00189117          # MR Diffusion Sequence
UNKNOWN_PUBLIC = 0x00089998  # even group, in no dictionary
SAFE_ROW = next(r for r in SAFE if r["vr"] in ("DS", "LO", "SH", "US", "FD"))
SAFE_GROUP = int(SAFE_ROW["group"], 16)
UNSAFE_GROUP = 0x0029 if SAFE_GROUP != 0x0029 else 0x0031
UNSAFE_CREATOR = "ACME PRIVATE NAMES"


def tag_of(row) -> int | None:
    t = row["tag"]
    if "X" in t or "ODD" in t:
        return None
    return int(t.strip("()").replace(",", ""), 16)


def listed_tags() -> list[int]:
    return [t for t in (tag_of(r) for r in TABLE) if t is not None]


def _vr(tag: int) -> str:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "LO"
    vr = vr.split(" or ")[0]
    return {"xs": "US", "ox": "OB", "US or SS": "US"}.get(vr, vr)


def sample(tag: int, vr: str, n: int = 0):
    """A value that identifies someone, valid for the VR."""
    return {
        "AE": "SCANNER_SMITH", "AS": "045Y", "CS": "SMITH", "DA": "20240131",
        "DT": "20240131101500", "TM": "101500", "DS": "1.5", "IS": "7",
        "LO": "Smith chest", "LT": "John Smith notes", "ST": "John Smith notes",
        "UT": "John Smith notes", "UC": "John Smith", "PN": "SMITH^JOHN", "SH": "SMITHJ",
        "UI": f"1.2.826.0.1.999.{tag & 0xFFFFFFFF}.{n}", "UR": "http://smith.example/x",
        "FL": 1.5, "FD": 1.5, "SL": 7, "SS": 7, "UL": 7, "US": 7, "SV": 7, "UV": 7,
        "AT": 0x00100010, "OB": b"SMITH\x00", "OW": b"SMITH\x00", "UN": b"SMITH\x00",
        "OD": b"\x00" * 8, "OF": b"\x00" * 4, "OL": b"\x00" * 4, "OV": b"\x00" * 8,
    }[vr]


def _code_item(value="X1", scheme="99LOCAL", meaning="Mr Smith") -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _fill(ds: Dataset, depth: int) -> None:
    skip = {0x00080016, 0x00080018, 0x00100020, 0x00100010, 0x0020000D, 0x0020000E,
            0x04000500, 0x00120062, 0x00120063, 0x00120064, 0x00280303}
    for tag in listed_tags():
        if tag in skip or tag >> 16 in (0x0000, 0x0002, 0x0004) or tag in ds:
            continue
        vr = _vr(tag)
        if vr == "SQ":
            item = Dataset()
            item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            item.ReferencedSOPInstanceUID = f"1.2.826.0.1.999.7.{tag}.{depth}"
            item.CodeValue, item.CodingSchemeDesignator = "X1", "99LOCAL"
            item.CodeMeaning = "Mr Smith"
            value = Sequence([item])
        else:
            value = sample(tag, vr, depth)
        ds.add(DataElement(tag, vr, value))


def _private(ds: Dataset) -> None:
    g = SAFE_GROUP
    ds.add(DataElement((g << 16) | 0x0010, "LO", SAFE_ROW["private_creator"]))
    low = int(SAFE_ROW["element_low_byte"], 16)
    vr = {"DS": "DS", "LO": "LO", "SH": "SH", "US": "US", "FD": "FD"}[SAFE_ROW["vr"]]
    ds.add(DataElement((g << 16) | 0x1000 | low, vr, sample(0, vr)))
    # a non-safe element of the same (safe) creator
    other = next(b for b in range(256) if (g, SAFE_ROW["private_creator"], b) not in
                 {(int(r["group"], 16), r["private_creator"], int(r["element_low_byte"], 16))
                  for r in SAFE})
    ds.add(DataElement((g << 16) | 0x1000 | other, "LO", "SMITH^JOHN"))
    u = UNSAFE_GROUP
    ds.add(DataElement((u << 16) | 0x0010, "LO", UNSAFE_CREATOR))
    ds.add(DataElement((u << 16) | 0x1001, "LO", "SMITH^JOHN"))
    inner = Dataset()
    inner.add(DataElement((u << 16) | 0x0010, "LO", UNSAFE_CREATOR))
    inner.add(DataElement((u << 16) | 0x1002, "PN", "SMITH^JOHN"))
    ds.add(DataElement((u << 16) | 0x1003, "SQ", Sequence([inner])))


def everything(kind: str = "ct", **kw) -> Dataset:
    """An instance of ``kind`` carrying every listed attribute at depth 0, 1 and 2."""
    ds = make_dataset(kind, patient_name="SMITH^JOHN", **kw)
    ds.OtherPatientIDs = "SMITH-ALT"
    _fill(ds, 0)
    _private(ds)
    ds.add(DataElement(UNKNOWN_PUBLIC, "LO", "SMITH secret"))
    lvl2 = Dataset()
    _fill(lvl2, 2)
    _private(lvl2)
    lvl1 = Dataset()
    _fill(lvl1, 1)
    _private(lvl1)
    lvl1.add(DataElement(NEST, "SQ", Sequence([lvl2])))
    ds.add(DataElement(NEST, "SQ", Sequence([lvl1])))
    return ds


def part10(ds: Dataset, ts: str = "1.2.840.10008.1.2.1") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = "1.2.3.4.5"
    meta.SourceApplicationEntityTitle = "SMITH_PACS"
    ds.file_meta = meta
    ds.preamble = b"MZ" + b"\x90" * 126
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=ts == "1.2.840.10008.1.2",
               little_endian=True)
    return buf.getvalue()
