"""Validation step 3 (pure): a file's facts + the record that references it + its manifest
line -> findings.
"""

from __future__ import annotations

import re
from typing import Iterable

from mediasec._data import MediaProfile
from mediasec.dicom.scan import MEDIA_STORAGE_DIRECTORY
from mediasec.media.dirindex import RecordRef
from mediasec.media.examine import FileFacts
from mediasec.media.manifest import manifest_findings
from mediasec.media.source import MediumEntry
from mediasec.report import Finding, Outcome

__all__ = ["judge_file", "content_ok", "CONTENT_CODES_PREFIXES", "CONTENT_CODES"]

#: finding codes about a file's *content* (what extract refuses on); name, layout and
#: File-set findings (FILEID_*, ISO_*, FILE_UNREFERENCED, CONTENT_*) do not block a file
CONTENT_CODES_PREFIXES = ("CMS_", "INTEGRITY_", "SIG_", "PAYLOAD_", "DICOM_", "MANIFEST_",
                          "FILE_UNREADABLE", "REF_MISMATCH", "PATH_ESCAPE", "ALG_")
CONTENT_CODES = CONTENT_CODES_PREFIXES

_EXEC_EXTENSIONS = frozenset({"EXE", "COM", "BAT", "CMD", "SCR", "MSI", "DLL", "PIF", "VBS",
                              "VBE", "JS", "JSE", "WSF", "WSH", "PS1", "JAR", "SH", "APP",
                              "LNK", "HTA", "CPL"})

_AUTORUN_NAMES = frozenset({"AUTORUN.INF", "AUTORUN.SH", "AUTORUN", ".AUTORUN"})

_ISO_FILE = re.compile(r"[A-Z0-9_]{1,8}\.;1\Z")

_ISO_DIR = re.compile(r"[A-Z0-9_]{1,8}\Z")


# -- judging ---------------------------------------------------------------------------------

def _iso_findings(entry: MediumEntry) -> list[Finding]:
    out = []
    if entry.iso9660 is not None:
        parts = entry.iso9660.strip("/").split("/")
        if not (_ISO_FILE.match(parts[-1]) and all(_ISO_DIR.match(p) for p in parts[:-1])):
            out.append(Finding("ISO_NAME", Outcome.WARNING,
                               f"ISO 9660 name {entry.iso9660!r} is not of the form NAME.;1 "
                               "(PS3.12 F)"))
    if entry.path.count("/") + 1 > 8:
        out.append(Finding("ISO_DEPTH", Outcome.WARNING,
                           "more than 8 directory levels (PS3.12)"))
    return out


def judge_file(facts: FileFacts, *, entry: MediumEntry | None, ref: RecordRef | None,
               manifest: dict | None, dicomdir_usable: bool,
               profile: MediaProfile | None = None, iso: bool = False) -> tuple[Finding, ...]:
    """Pure: facts + the record referencing the file + the manifest -> findings.

    ``manifest`` maps stored paths (resolved) to SHA-256 hex (None: the medium has none);
    ``dicomdir_usable``: a decoded DICOMDIR exists, so an unreferenced DICOM file is news.
    """
    out = list(facts.findings)
    is_dicom = facts.kind in ("secure", "plain")
    h = facts.header
    if ref is not None:
        if ref.how == "case":
            out.append(Finding("FILEID_CASE", Outcome.WARNING,
                               f"stored as {facts.path!r}; the File ID {ref.file_id!r} "
                               "matches only case-insensitively"))
        elif ref.how == "extension":
            out.append(Finding("FILEID_EXTENSION", Outcome.WARNING,
                               f"stored as {facts.path!r}; the File ID {ref.file_id!r} "
                               "matches only without the extension"))
        if facts.kind == "other":
            out.append(Finding("PAYLOAD_NOT_DICOM", Outcome.FAILED,
                               f"referenced by a {ref.record_type} record, but neither a "
                               "DICOM file nor a Secure DICOM File"))
        missing = [n for n, v in (("Referenced SOP Class UID in File", ref.sop_class_uid),
                                  ("Referenced SOP Instance UID in File",
                                   ref.sop_instance_uid),
                                  ("Referenced Transfer Syntax UID in File",
                                   ref.transfer_syntax)) if not v]
        if missing:
            out.append(Finding("DIR_KEY_MISSING", Outcome.FAILED,
                               f"the {ref.record_type} record lacks {', '.join(missing)}"))
        if h is not None:
            diffs = [n for n, a, b in (
                ("SOP Class UID", ref.sop_class_uid, h.media_sop_class_uid),
                ("SOP Instance UID", ref.sop_instance_uid, h.media_sop_instance_uid),
                ("Transfer Syntax UID", ref.transfer_syntax, h.transfer_syntax)) if a and a != b]
            if diffs:
                out.append(Finding("REF_MISMATCH", Outcome.FAILED,
                                   f"the {ref.record_type} record's {', '.join(diffs)} differ "
                                   "from the file's File Meta Information",
                                   {"record": {"sop_class_uid": ref.sop_class_uid,
                                               "sop_instance_uid": ref.sop_instance_uid,
                                               "transfer_syntax": ref.transfer_syntax},
                                    "file": {"sop_class_uid": h.media_sop_class_uid,
                                             "sop_instance_uid": h.media_sop_instance_uid,
                                             "transfer_syntax": h.transfer_syntax}}))
            kd = [n for n, a, b in (("Patient ID", ref.patient_id, h.key("patient_id")),
                                    ("Study Instance UID", ref.study_uid, h.key("study_uid")),
                                    ("Series Instance UID", ref.series_uid,
                                     h.key("series_uid"))) if a is not None and a != b]
            if kd:
                out.append(Finding("KEY_MISMATCH", Outcome.WARNING,
                                   f"{', '.join(kd)} of the parent records differ from the "
                                   "file's data set"))
    elif is_dicom and dicomdir_usable:
        out.append(Finding("FILE_UNREFERENCED", Outcome.WARNING,
                           "a DICOM file on the medium that no DICOMDIR record references"))
    if h is not None and profile is not None and not profile.allows(h.transfer_syntax):
        out.append(Finding("PROFILE_TS", Outcome.FAILED,
                           f"transfer syntax {h.transfer_syntax} is not allowed by "
                           f"{profile.id}"))
    if h is not None and h.sop_class_uid == MEDIA_STORAGE_DIRECTORY and ref is None:
        out.append(Finding("FS_EXTRA_DICOMDIR", Outcome.WARNING,
                           "a second Basic Directory (DICOMDIR) outside the root"))
    if facts.kind == "other":
        name = facts.path.rsplit("/", 1)[-1].upper()
        if "/" not in facts.path and name in _AUTORUN_NAMES:
            out.append(Finding("CONTENT_AUTORUN", Outcome.WARNING,
                               "an autorun file: a computer may start a program when the "
                               "medium is inserted"))
        ext = name.rpartition(".")[2] if "." in name else ""
        if facts.magic is not None or ext in _EXEC_EXTENSIONS:
            what = facts.magic or f".{ext} file"
            out.append(Finding("CONTENT_EXECUTABLE", Outcome.WARNING,
                               f"executable content ({what}); not DICOM, not checked"))
    out += manifest_findings(manifest, facts.path, facts.sha256)
    if iso and entry is not None and (is_dicom or ref is not None):
        out += _iso_findings(entry)
    return tuple(out)


def content_ok(findings: Iterable[Finding]) -> bool:
    """No FAILED finding about the file's content (extract's criterion)."""
    return not any(f.outcome is Outcome.FAILED and f.code.startswith(CONTENT_CODES_PREFIXES)
                   for f in findings)
