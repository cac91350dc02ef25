"""A File-set of received instances: File IDs fixed on arrival, a DICOMDIR made at the end.

A receiver (``mediasec receive --fileset``) cannot plan File IDs the way ``build`` does: the
instances arrive one by one, over hours, and each is stored (and acknowledged) at once.
So each instance gets a File ID of its own from its UIDs, the same on every run:

    <study>/<series>/<instance>

each component the first 8 characters of the base-32 SHA-256 of the UID (A-Z, 2-7: a
conformant File ID component, PS3.10 8.2; no patient data in any name; 40 bits per level,
so two UIDs meeting in one folder is a one-in-10^12 event, and even then
``file_id_candidates`` gives a second name). When the receiver stops, ``directory_for``
indexes the headers of every instance under the root (``media.fileset``, the same model
``build`` uses; a missing Type 1 key is filled and reported) and encodes the DICOMDIR
with the File IDs as they are.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Callable, Iterable, Iterator

from mediasec.dicom.dicomdir import DirRecord, encode_dicomdir
from mediasec.dicom.fileid import validate_file_id
from mediasec.dicom.scan import ScannedFile
from mediasec.media.fileset import FileSetModel, Instance, index_fileset

__all__ = ["file_id_for", "file_id_candidates", "directory_for"]


def _token(*parts: str) -> str:
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:8]


def file_id_for(study_uid: str | None, series_uid: str | None, instance_uid: str
                ) -> tuple[str, str, str]:
    """The File ID of an instance (an instance without study or series UIDs files under
    the token of the empty string)."""
    return (_token("study", study_uid or ""), _token("series", series_uid or ""),
            _token("instance", instance_uid))


def file_id_candidates(study_uid: str | None, series_uid: str | None, instance_uid: str,
                       content_sha256: str) -> Iterator[tuple[str, str, str]]:
    """The File ID, then others for a different instance (or other bytes under the same
    UID) that met it: derived from the content, then numbered."""
    base = file_id_for(study_uid, series_uid, instance_uid)
    yield base
    for n in range(64):
        yield base[:2] + (_token("instance", instance_uid, content_sha256, str(n)),)


def _leaf(inst: Instance) -> DirRecord:
    s = inst.scanned
    return DirRecord(inst.record_type, inst.keys, (), validate_file_id(s.source.split("/")),
                     s.sop_class_uid, s.sop_instance_uid, s.transfer_syntax)


def directory_for(scans: Iterable[ScannedFile], *, profile, fileset_uid: str,
                  same_content: Callable[[ScannedFile, ScannedFile], bool]
                  ) -> tuple[bytes, FileSetModel, list[str]]:
    """The DICOMDIR (bytes) of ``scans``, whose ``source`` is each file's File ID
    (``A/B/C``), the model it was made from (duplicates, made-up values, skipped) and the
    files left out because another file holds the same SOP Instance UID with other content
    (a corrected re-send: the one under the UID's own File ID is listed)."""
    by_uid: dict[str, list[ScannedFile]] = {}
    for s in scans:
        by_uid.setdefault(s.sop_instance_uid, []).append(s)
    keep, conflicts = [], []
    for uid, group in by_uid.items():
        primary = [s for s in group if s.source.split("/")[-1] == _token("instance", uid)]
        first = primary[0] if primary else group[0]
        keep.append(first)
        for s in group:
            if s is first:
                continue
            if same_content(first, s):
                keep.append(s)            # index_fileset lists it as a duplicate
            else:
                conflicts.append(s.source)
    model = index_fileset(keep, profile=profile, fill_missing=True, same_content=same_content)
    records = []
    for p in model.patients:
        studies = []
        for st in p.children:
            series = tuple(DirRecord("SERIES", se.keys, tuple(_leaf(i) for i in se.children))
                           for se in st.children)
            studies.append(DirRecord("STUDY", st.keys, series))
        records.append(DirRecord("PATIENT", p.keys, tuple(studies)))
    records += [_leaf(i) for i in model.root_objects]
    return encode_dicomdir(records, fileset_uid=fileset_uid), model, conflicts
