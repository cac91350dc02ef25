"""What makes a File-set a disc: capacity and spanning, the SHA-256 manifest, IHE PDI
content, label data.

* ``split_for_media``: a job too big for one medium is split at study, else series,
  boundaries into several complete File-sets ("disc n of m"); a series that alone does
  not fit is refused before anything is written.
* ``pdi_files``: README.TXT, INDEX.HTM and IHE_PDI/ (plain XHTML, no script, no autorun,
  ever); on a secure medium they carry no patient data.
* ``label_data``: patient, study dates and "disc n of m" for label printers (PHI: written
  only when asked for).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from typing import Callable

from mediasec import __version__
from mediasec.dicom import tags
from mediasec.errors import InputError
from mediasec.media.fileset import FileSetModel

__all__ = ["SECTOR", "MANIFEST_NAME", "Overhead", "Placeholder",
           "manifest_line_size", "manifest_bytes", "split_for_media", "estimate_disc_bytes",
           "pdi_files", "label_data", "disc_bytes", "study_summaries", "subset_model"]

SECTOR = 2048
MANIFEST_NAME = "MANIFEST.SHA"


@dataclass(frozen=True)
class Overhead:
    """A generous estimate of what an image adds to its files (``io.isowrite``'s layout):
    system area, volume descriptors and path tables (with UDF, its anchor at sector 256
    and descriptor sequences); a sector per directory and, with UDF, a File Entry sector
    per file and a File Entry and a File Identifier sector per directory; per instance its
    DICOMDIR record and manifest line. The exact size is checked after layout, before
    writing (tests/test_isowrite.py checks the estimate against the layout)."""

    udf: bool = False

    @property
    def fixed(self) -> int:
        return (640 << 10) if self.udf else (128 << 10)

    @property
    def per_dir(self) -> int:
        return 3 * SECTOR if self.udf else SECTOR

    @property
    def per_file(self) -> int:
        return SECTOR + 1024 if self.udf else 1024


@dataclass(frozen=True)
class Placeholder:
    """Zeros of a planned size, replaced once the content is known (the manifest)."""

    size: int
    kind: str = "manifest"
    source: str | None = None

    def chunks(self):
        left = self.size
        zeros = bytes(min(left, 1 << 20))
        while left:
            k = min(left, len(zeros))
            yield zeros[:k]
            left -= k


def manifest_line_size(path: str) -> int:
    return 64 + 2 + len(path.encode("ascii")) + 1


def manifest_bytes(entries: list[tuple[str, str]]) -> bytes:
    """``sha256sum`` lines: ``<hex>  <path>``, in the order given."""
    return "".join(f"{digest}  {path}\n" for path, digest in entries).encode("ascii")


def disc_bytes(sizes) -> int:
    """Bytes a set of files occupies on ISO 9660 media (each rounded up to a sector)."""
    return sum(-(-s // SECTOR) * SECTOR for s in sizes)


# -- spanning -----------------------------------------------------------------------------------

def _units(model: FileSetModel, size_of: Callable[[str], int], room: int, ov: Overhead):
    """(sources, bytes) per study, or per series for a study that alone is too big."""
    def cost(srcs) -> int:
        return disc_bytes(size_of(s) for s in srcs) + ov.per_file * len(srcs) + ov.per_dir

    for p in model.patients:
        for st in p.children:
            series = [[inst.scanned.source for inst in se.children] for se in st.children]
            total = sum(cost(srcs) for srcs in series) + 2 * ov.per_dir  # + study, patient
            if total + ov.fixed <= room:
                yield [s for srcs in series for s in srcs], total
                continue
            for srcs in series:
                n = cost(srcs) + 2 * ov.per_dir
                if n + ov.fixed > room:
                    raise InputError(
                        f"one series of {len(srcs)} instances ({n} bytes on disc) does not fit "
                        f"on one medium of {room} usable bytes, even alone; it cannot be split "
                        "(a series stays on one disc)", path=srcs[0],
                        code="PLAN_SPAN_IMPOSSIBLE")
                yield srcs, n
    if model.root_objects:
        srcs = [inst.scanned.source for inst in model.root_objects]
        yield srcs, disc_bytes(size_of(s) for s in srcs) + ov.per_file * len(srcs)


def split_for_media(model: FileSetModel, size_of: Callable[[str], int], capacity: int,
                    *, reserve: int = 0, overhead: Overhead = Overhead()) -> list[list[str]]:
    """Sources per medium, in order, filling each up to ``capacity`` minus ``reserve``."""
    room = capacity - reserve
    discs: list[list[str]] = [[]]
    used = overhead.fixed
    for srcs, n in _units(model, size_of, room, overhead):
        if discs[-1] and used + n > room:
            discs.append([])
            used = overhead.fixed
        discs[-1].extend(srcs)
        used += n
    return discs


def subset_model(model: FileSetModel, keep: set[str]) -> FileSetModel:
    """The part of ``model`` whose instances come from ``keep`` (one medium of a spanned
    job): the same records and keys, no second indexing; only what concerns those files
    (made-up values) is carried over."""
    patients = []
    for p in model.patients:
        studies = []
        for st in p.children:
            series = []
            for se in st.children:
                kids = tuple(i for i in se.children if i.scanned.source in keep)
                if kids:
                    series.append(replace(se, children=kids))
            if series:
                studies.append(replace(st, children=tuple(series)))
        if studies:
            patients.append(replace(p, children=tuple(studies)))
    made_up = []
    for m in model.made_up:
        files = tuple(f for f in m.files if f in keep)
        if files:
            made_up.append(replace(m, files=files))
    return FileSetModel(tuple(patients),
                        tuple(i for i in model.root_objects if i.scanned.source in keep),
                        duplicates=(), made_up=tuple(made_up), skipped=(),
                        warnings=model.warnings)


def estimate_disc_bytes(sizes: list[int], n_dirs: int, overhead: Overhead) -> int:
    """An upper estimate of an image holding files of ``sizes`` in ``n_dirs`` folders."""
    return (disc_bytes(sizes) + overhead.fixed + overhead.per_file * len(sizes)
            + overhead.per_dir * n_dirs)


# -- content for people -------------------------------------------------------------------------

def _text(keys, tag: int) -> str:
    for t, _vr, v in keys:
        if t == tag:
            return v.decode("latin-1", "replace").rstrip("\0 ")
    return ""


def study_summaries(model: FileSetModel) -> list[dict]:
    """Per study: patient name/ID/birth date, date, description, modalities, counts."""
    out = []
    for p in model.patients:
        for st in p.children:
            modalities = sorted({_text(se.keys, tags.MODALITY) for se in st.children} - {""})
            out.append({
                "patient_name": _text(p.keys, tags.PATIENT_NAME).replace("^", " ").strip(),
                "patient_id": _text(p.keys, tags.PATIENT_ID),
                "birth_date": _text(p.keys, tags.PATIENT_BIRTH_DATE),
                "study_date": _text(st.keys, tags.STUDY_DATE),
                "study_description": _text(st.keys, tags.STUDY_DESCRIPTION),
                "modalities": modalities,
                "series": len(st.children),
                "instances": sum(len(se.children) for se in st.children),
            })
    return out


def _xhtml(title: str, body: str) -> bytes:
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" "
            "\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\n"
            "<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n"
            f"<head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />"
            f"<title>{html.escape(title)}</title></head>\n<body>\n{body}</body>\n</html>\n"
            ).encode("utf-8")


def pdi_files(model: FileSetModel, *, secure: bool, profile_id: str, disc: int, of: int,
              institution: str = "", contact: str = "", created: str = "") -> dict:
    """IHE PDI content: {components: bytes}. Secure media get no patient data in it."""
    studies = study_summaries(model)
    lines = [
        "This medium holds DICOM images and documents (a DICOM File-set, PS3.10),",
        "listed in the DICOMDIR file at its root. Open it with a DICOM viewer.",
        "",
        f"Media application profile: {profile_id}",
        f"Disc {disc} of {of}",
        f"Created with: mediasec {__version__} (IHE Portable Data for Imaging)",
    ]
    if created:
        lines.append(f"Created on: {created}")
    if institution:
        lines.append(f"Institution: {institution}")
    if contact:
        lines.append(f"Contact: {contact}")
    if secure:
        lines += ["", "Every DICOM file on this medium, the DICOMDIR included, is a Secure",
                  "DICOM File (DICOM PS3.15 Annex D, Basic DICOM Media Security Profile):",
                  "signed or digested, then encrypted. The key or password to open it is",
                  "given to you separately. This text and the web pages hold no patient data."]
    lines += ["", "This medium starts no program by itself (no autorun)."]
    readme = ("\r\n".join(lines) + "\r\n").encode("ascii", "replace")

    n_inst = sum(s["instances"] for s in studies)
    index_body = (f"<h1>DICOM medium</h1>\n<p>{len(studies)} studies, {n_inst} instances; "
                  f"disc {disc} of {of}; profile {html.escape(profile_id)}.</p>\n"
                  "<p><a href=\"IHE_PDI/STUDIES.HTM\">List of studies</a> &#183; "
                  "<a href=\"README.TXT\">About this medium</a></p>\n")
    rows = []
    for i, s in enumerate(studies, 1):
        cells = [str(i)]
        if not secure:
            cells += [s["patient_name"], s["patient_id"], s["study_date"],
                      s["study_description"]]
        cells += [", ".join(s["modalities"]), str(s["series"]), str(s["instances"])]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = ["#"] + ([] if secure else ["Patient", "Patient ID", "Study date", "Description"]) \
        + ["Modalities", "Series", "Instances"]
    table = ("<table border=\"1\">\n<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>\n"
             + "\n".join(rows) + "\n</table>\n")
    note = ("<p>The images are encrypted; open them with a DICOM viewer and the key or "
            "password given to you separately.</p>\n" if secure else "")
    studies_page = _xhtml("Studies", "<h1>Studies on this medium</h1>\n" + note + table +
                          "<p><a href=\"../INDEX.HTM\">Back</a></p>\n")
    return {("README.TXT",): readme,
            ("INDEX.HTM",): _xhtml("DICOM medium", index_body),
            ("IHE_PDI", "STUDIES.HTM"): studies_page}


def label_data(model: FileSetModel, *, disc: int, of: int, fileset_id: str) -> dict:
    """What a disc label shows. Holds patient data: only written when asked for."""
    studies = study_summaries(model)
    patients = []
    for s in studies:
        key = (s["patient_name"], s["patient_id"], s["birth_date"])
        if key not in [(p["name"], p["id"], p["birth_date"]) for p in patients]:
            patients.append({"name": key[0], "id": key[1], "birth_date": key[2]})
    return {"disc": disc, "of": of, "fileset_id": fileset_id, "patients": patients,
            "studies": [{"date": s["study_date"], "description": s["study_description"],
                         "modalities": s["modalities"]} for s in studies]}
