"""Validation step 1: the File-set index. The root ``DICOMDIR`` (decrypted first when it is
a Secure DICOM File) decoded within bounds, every record's Referenced File ID checked and
resolved against the listing, the manifest read.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

from mediasec._data import hierarchy, record_types
from mediasec.dicom.dicomdir import (DecodedDirectory, DecodedRecord, REF_FILE_ID, REF_SOP_CLASS,
                                     REF_SOP_INSTANCE, REF_TS, decode_dicomdir)
from mediasec.dicom.tags import (INSTANCE_NUMBER, MODALITY, PATIENT_ID, PATIENT_NAME,
                                 SERIES_INSTANCE_UID as SERIES_UID, SERIES_NUMBER, STUDY_DATE,
                                 STUDY_DESCRIPTION, STUDY_ID, STUDY_INSTANCE_UID as STUDY_UID)
from mediasec.errors import InputError
from mediasec.media.examine import ExamineTask, FileFacts, examine_file
from mediasec.media.fileids import check_file_id_value
from mediasec.media.manifest import manifest_findings, parse_manifest
from mediasec.media.source import MediumEntry, MediumIndex, MediumSource
from mediasec.policy import TrustContext
from mediasec.report import FileResult, Finding, Outcome

__all__ = ["planned_tasks", "MAX_DICOMDIR_BYTES", "MAX_MANIFEST_BYTES", "RecordRef", "FileSetIndex", "index_medium",
           "MANIFEST_NAME"]

#: a DICOMDIR is decoded in memory; larger ones are refused (``DIR_TOO_LARGE``)
MAX_DICOMDIR_BYTES = 64 << 20

MAX_MANIFEST_BYTES = 16 << 20

MANIFEST_NAME = "MANIFEST.SHA"


# -- the DICOMDIR index ----------------------------------------------------------------------

@dataclass(frozen=True)
class RecordRef:
    """A leaf record that references a file, with the keys of its ancestors."""

    file_id: str                       # the (0004,1500) value, components joined by '/'
    record_type: str
    offset: int
    sop_class_uid: str | None
    sop_instance_uid: str | None
    transfer_syntax: str | None
    patient_id: str | None
    study_uid: str | None
    series_uid: str | None
    how: str | None = None             # None (exact), "case", "extension"


@dataclass
class FileSetIndex:
    """Everything learned before the files are examined."""

    index: MediumIndex
    dicomdir_entry: MediumEntry | None = None
    dicomdir_result: FileResult | None = None
    dicomdir_secure: bool = False
    dicomdir_facts: FileFacts | None = None
    directory: DecodedDirectory | None = None
    refs: dict = field(default_factory=dict)          # entry path -> RecordRef
    missing: dict = field(default_factory=dict)       # display path -> [Finding]
    manifest_entry: MediumEntry | None = None
    manifest: dict | None = None                      # entry path -> SHA-256 hex
    manifest_unresolved: list = field(default_factory=list)
    manifest_sha: str | None = None
    medium_findings: list = field(default_factory=list)
    tree: list = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.directory is not None


def _text(rec: DecodedRecord, tag: int) -> str | None:
    try:
        return rec.text(tag)
    except Exception:  # noqa: BLE001 - an undecodable value is as good as absent here
        return None


def _read_small(source: MediumSource, entry: MediumEntry, cap: int, what: str
                ) -> tuple[bytes | None, str | None, list[Finding]]:
    """The bytes (if within ``cap``) and SHA-256 of a small file, read once."""
    if entry.size > cap:
        return None, None, [Finding("DIR_TOO_LARGE" if what == "DICOMDIR" else
                                    "MANIFEST_MALFORMED", Outcome.FAILED,
                                    f"{what} is larger than {cap >> 20} MiB; not read")]
    buf = bytearray()
    h = hashlib.sha256()
    try:
        for chunk in source.open(entry.handle):
            h.update(chunk)
            buf += chunk
            if len(buf) > cap:
                return None, None, [Finding("FILE_UNREADABLE", Outcome.FAILED,
                                            f"{what} grew beyond its listed size")]
    except OSError as exc:
        return None, None, [Finding("FILE_UNREADABLE", Outcome.FAILED,
                                    f"{what} could not be read: {exc.strerror or exc}")]
    return bytes(buf), h.hexdigest(), []


def _find_root(index: MediumIndex, name: str) -> tuple[MediumEntry | None, str | None]:
    hit = index.by_path.get(name)
    if hit is not None:
        return hit, None
    hit = index.by_norm.get(name)
    return (hit, "case") if hit is not None else (None, None)


def _roots(index: MediumIndex) -> tuple[MediumEntry | None, MediumEntry | None, str | None]:
    """(manifest entry, DICOMDIR entry, how the DICOMDIR was found): the root files the
    index step reads itself, found the one way both ``index_medium`` and
    ``planned_tasks`` use."""
    m_entry, _ = _find_root(index, MANIFEST_NAME)
    d_entry, how = _find_root(index, "DICOMDIR")
    return m_entry, d_entry, how


def planned_tasks(index: MediumIndex) -> list[ExamineTask]:
    """The files the examine step reads, known from the listing alone: the same list as
    ``examine_tasks(index_medium(...))``, so that examining can start before the DICOMDIR
    is opened (``finish_validation`` checks that it got exactly these)."""
    m_entry, d_entry, _ = _roots(index)
    skip = {id(e) for e in (m_entry, d_entry) if e is not None and e.kind == "file"}
    return [ExamineTask(e.path, e.size, e.handle) for e in index.entries
            if e.kind == "file" and id(e) not in skip]


def index_medium(source: MediumSource, *, decrypters=(), trust: TrustContext | None = None,
                 index: MediumIndex | None = None) -> FileSetIndex:
    """Step 1: find, open and decode the DICOMDIR, resolve its references, read the manifest.

    ``index``: the listing already indexed (``MediumIndex(source.entries())``), when the
    caller made it to start examining files meanwhile (``planned_tasks``).

    Raises ``InputError`` only when the caller's keys cannot open a secure DICOMDIR (no
    matching recipient, wrong password): the medium cannot be read as asked (exit 2).
    """
    if index is None:
        index = MediumIndex(source.entries())
    fsi = FileSetIndex(index)
    m_entry, d_entry, how = _roots(index)
    # the manifest (plain text, hashes of the stored files)
    if m_entry is not None and m_entry.kind == "file":
        fsi.manifest_entry = m_entry
        data, sha, problems = _read_small(source, m_entry, MAX_MANIFEST_BYTES, MANIFEST_NAME)
        fsi.manifest_sha = sha
        if data is not None:
            listed, more = parse_manifest(data)
            problems += more
            # resolve each listed path like a File ID (case, ;1, extension tolerated)
            fsi.manifest = {}
            for p, digest in listed.items():
                entry, _how = index.lookup(tuple(p.split("/")))
                if entry is None:
                    fsi.manifest_unresolved.append(p)
                else:
                    fsi.manifest.setdefault(entry.path, digest)
        fsi.missing.setdefault(m_entry.path, []).extend(problems)
    # the DICOMDIR
    if d_entry is None or d_entry.kind != "file":
        fsi.medium_findings.append(Finding("FS_NO_DICOMDIR", Outcome.FAILED,
                                           "no DICOMDIR in the root of the medium; the files "
                                           "were examined without it"))
        return fsi
    fsi.dicomdir_entry = d_entry
    dfind: list[Finding] = []
    if how == "case":
        dfind.append(Finding("FILEID_CASE", Outcome.WARNING,
                             f"the DICOMDIR is stored as {d_entry.path!r}; found only by a "
                             "case-insensitive lookup"))
    plain = None
    if d_entry.size > MAX_DICOMDIR_BYTES:
        dfind.append(Finding("DIR_TOO_LARGE", Outcome.FAILED,
                             f"DICOMDIR is larger than {MAX_DICOMDIR_BYTES >> 20} MiB; "
                             "not decoded"))
        facts = examine_file(source.open(d_entry.handle), path=d_entry.path,
                             size=d_entry.size)
    else:
        buf = bytearray()

        def keep(mv) -> None:
            if len(buf) + len(mv) > MAX_DICOMDIR_BYTES:
                raise InputError("decrypted DICOMDIR too large", code="DIR_TOO_LARGE")
            buf.extend(mv)
        try:
            facts = examine_file(source.open(d_entry.handle), path=d_entry.path,
                                 size=d_entry.size, decrypters=decrypters, trust=trust,
                                 sink=keep)
        except InputError as exc:
            dfind.append(Finding(exc.code, Outcome.FAILED, exc.message))
            facts = None
        if facts is not None and facts.decrypted:
            plain = bytes(buf)
    fsi.dicomdir_facts = facts
    if facts is not None:
        fsi.dicomdir_secure = facts.kind == "secure"
        # the DICOMDIR's own line: its stored bytes, as `sha256sum -c` checks them
        dfind += manifest_findings(fsi.manifest, d_entry.path, facts.sha256)
        for f in facts.findings:
            if f.code in ("CMS_NOT_RECIPIENT", "CMS_WRONG_PASSWORD") and decrypters:
                raise InputError(f"the DICOMDIR cannot be opened with the given key or "
                                 f"password: {f.message}", path=f"{source.label}:DICOMDIR",
                                 code=f.code)
        dfind += [f for f in facts.findings if not f.code.startswith("DICOM_")
                  and f.code != "PAYLOAD_NOT_DICOM"]
        if facts.kind == "other":
            dfind.append(Finding("DIR_META", Outcome.FAILED,
                                 "DICOMDIR is neither a DICOM file nor a Secure DICOM File"))
    if plain is not None:
        try:
            fsi.directory = decode_dicomdir(plain, path=d_entry.path, lenient=True)
        except InputError as exc:
            dfind.append(Finding(exc.code, Outcome.FAILED, exc.message))
    if fsi.directory is not None:
        d = fsi.directory
        sev = {"DIR_ORPHAN": Outcome.WARNING}
        dfind += [Finding(c, sev.get(c, Outcome.FAILED), m) for c, m in d.findings]
        if d.record_count == 0:
            dfind.append(Finding("DIR_EMPTY", Outcome.FAILED, "the DICOMDIR has no records"))
        _walk_records(fsi, dfind)
        # the records now live on as refs and tree: let the decoded elements go
        fsi.directory = dataclasses.replace(d, roots=())
    elif plain is not None or (facts is not None and facts.decrypted):
        fsi.medium_findings.append(Finding("FS_DICOMDIR_UNUSABLE", Outcome.FAILED,
                                           "the DICOMDIR could not be decoded; the files "
                                           "were examined without it"))
    info = {"kind": facts.kind if facts else "unreadable", "size": d_entry.size,
            "role": "dicomdir"}
    if facts is not None and facts.sha256:
        info["sha256"] = facts.sha256
    fsi.dicomdir_result = FileResult(d_entry.path, tuple(dfind), info)
    return fsi


def _walk_records(fsi: FileSetIndex, dfind: list[Finding]) -> None:
    """References, hierarchy, keys and duplicates of the decoded records (linear)."""
    d = fsi.directory
    allowed = hierarchy()
    specs = record_types()
    leaf_types = {n for n, s in specs.items() if s.level == "leaf"}
    seen_keys: dict[tuple[str, str], int] = {}
    dup_reported: set = set()
    referenced_by: dict[str, int] = {}
    counts = {"hierarchy": 0, "keys": 0}

    def note(code: str, msg: str, outcome=Outcome.FAILED, **detail) -> None:
        dfind.append(Finding(code, outcome, msg, detail))

    def visit(rec: DecodedRecord, parent: str, ctx: dict, out: list) -> None:
        rtype = rec.type or "?"
        ok_children = allowed.get(parent)
        if parent in leaf_types:
            ok_children = frozenset({"PRIVATE"})
        if (ok_children is not None and rtype not in ok_children and rtype != "PRIVATE"
                and rtype in specs):
            counts["hierarchy"] += 1
            if counts["hierarchy"] <= 20:
                note("DIR_HIERARCHY", f"{rtype} record at offset {rec.offset} is not allowed "
                     f"under {parent}")
        spec = specs.get(rtype)
        if spec is not None:
            for k in spec.keys:
                if k.type not in ("1", "2"):
                    continue
                hit = rec.elements.get(k.tag)
                empty = hit is None or not hit[1].strip(b"\0 ")
                if hit is None or (k.type == "1" and empty):
                    counts["keys"] += 1
                    if counts["keys"] <= 20:
                        note("DIR_KEY_MISSING", f"{rtype} record at offset {rec.offset}: "
                             f"Type {k.type} key {k.keyword} is "
                             f"{'absent' if hit is None else 'empty'}")
        key_tag = {"PATIENT": PATIENT_ID, "STUDY": STUDY_UID, "SERIES": SERIES_UID}.get(rtype)
        ctx = dict(ctx)
        node: dict = {"type": rtype, "offset": rec.offset}
        if key_tag is not None:
            value = _text(rec, key_tag) or ""
            ctx[rtype] = value
            if value:
                k = (rtype, value)
                seen_keys[k] = seen_keys.get(k, 0) + 1
                if seen_keys[k] == 2 and k not in dup_reported:
                    dup_reported.add(k)
                    what = {"PATIENT": "Patient ID", "STUDY": "Study Instance UID",
                            "SERIES": "Series Instance UID"}[rtype]
                    note("DIR_KEY_DUPLICATE", f"{what} of the {rtype} record at offset "
                         f"{rec.offset} repeats another {rtype} record's")
        if rtype == "PATIENT":
            node["patient_name"] = _text(rec, PATIENT_NAME)
            node["patient_id"] = _text(rec, PATIENT_ID)
        elif rtype == "STUDY":
            node.update(study_uid=_text(rec, STUDY_UID), study_date=_text(rec, STUDY_DATE),
                        study_description=_text(rec, STUDY_DESCRIPTION),
                        study_id=_text(rec, STUDY_ID))
        elif rtype == "SERIES":
            node.update(series_uid=_text(rec, SERIES_UID), modality=_text(rec, MODALITY),
                        series_number=_text(rec, SERIES_NUMBER))
        raw = _text(rec, REF_FILE_ID)
        if raw is not None and raw.strip(" \0"):
            node["instance_number"] = _text(rec, INSTANCE_NUMBER)
            # what a PACS import matches on (Referenced ... in File, from the record)
            node["sop_instance_uid"] = _text(rec, REF_SOP_INSTANCE)
            node["sop_class_uid"] = _text(rec, REF_SOP_CLASS)
            node["transfer_syntax"] = _text(rec, REF_TS)
            comps, ff = check_file_id_value(raw)
            for f in ff:
                dfind.append(Finding(f.code, f.outcome, f"{rtype} record at offset "
                                     f"{rec.offset}: {f.message}", f.detail))
            if comps is not None:
                entry, how = fsi.index.lookup(comps)
                shown = "/".join(comps)
                node["file_id"] = shown
                ref = RecordRef(shown, rtype, rec.offset, _text(rec, REF_SOP_CLASS),
                                _text(rec, REF_SOP_INSTANCE), _text(rec, REF_TS),
                                ctx.get("PATIENT"), ctx.get("STUDY"), ctx.get("SERIES"), how)
                if entry is None:
                    fsi.missing.setdefault(shown, []).append(Finding(
                        "FILE_MISSING", Outcome.FAILED,
                        f"referenced by the {rtype} record at offset {rec.offset}, but not "
                        "on the medium"))
                elif entry is fsi.dicomdir_entry or entry is fsi.manifest_entry:
                    # never a record's file: the DICOMDIR (PS3.10 8.5) or our manifest
                    note("FILEID_RESERVED", f"{rtype} record at offset {rec.offset} "
                         f"references {entry.path}, which is not an instance of the "
                         "File-set")
                elif entry.path in fsi.refs:
                    referenced_by[entry.path] = referenced_by.get(entry.path, 1) + 1
                    fsi.missing.setdefault(entry.path, []).append(Finding(
                        "FILE_DUP_REF", Outcome.FAILED,
                        f"referenced again by the {rtype} record at offset {rec.offset} "
                        f"(first by offset {fsi.refs[entry.path].offset})"))
                else:
                    fsi.refs[entry.path] = ref
                    node["path"] = entry.path
        children: list = []
        for c in rec.children:
            visit(c, rtype if rtype in allowed or rtype in leaf_types else "PRIVATE", ctx,
                  children)
        if children:
            node["children"] = children
        out.append(node)

    for r in d.roots:
        visit(r, "ROOT", {}, fsi.tree)
    if counts["hierarchy"] > 20:
        note("DIR_HIERARCHY", f"{counts['hierarchy']} misplaced records in all")
    if counts["keys"] > 20:
        note("DIR_KEY_MISSING", f"{counts['keys']} missing keys in all")
