"""The patient / study / series / instance model of a File-set, built in linear time.

``index_fileset(scans, profile=..., fill_missing=..., same_content=...)`` takes scanned
headers and returns a frozen ``FileSetModel``:

* dicts keyed by Patient ID, Study Instance UID, Series Instance UID and SOP Instance UID
  (one pass; sorting only orders the final tree);
* duplicates: the same SOP Instance UID twice with the same bytes (``same_content``,
  e.g. size then SHA-256) is kept once; with different bytes it is an ``InputError``
  naming both files;
* the leaf record type of each instance from the SOP class table in ``profiles/``; an
  instance of a class without a record type is skipped and reported;
* the Type 1 policy: a Type 1 key missing or empty in the source is refused with the list
  of what is missing where, unless ``fill_missing``; then a value is made up, consistently
  (one per entity, derived from what identifies it), and every made-up value is reported.
  Made-up values exist only in the DICOMDIR; the files are not modified.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

from mediasec._data import (KeySpec, MediaProfile, fill_value, record_type, record_type_for,
                            record_types, sop_class_name)
from mediasec.dicom.scan import ScannedFile
from mediasec.dicom.tags import (INSTANCE_NUMBER, MODALITY, PATIENT_BIRTH_DATE, PATIENT_ID,
                                 PATIENT_NAME, SERIES_INSTANCE_UID, SERIES_NUMBER,
                                 SPECIFIC_CHARACTER_SET, STUDY_DATE, STUDY_ID,
                                 STUDY_INSTANCE_UID, STUDY_TIME)
from mediasec.errors import InputError

__all__ = ["Entity", "Instance", "FileSetModel", "MadeUp", "Skipped", "index_fileset",
           "wanted_tags", "narrow_tags", "record_keys", "PATIENT_ID", "STUDY_UID", "SERIES_UID"]

STUDY_UID = STUDY_INSTANCE_UID
SERIES_UID = SERIES_INSTANCE_UID

_TYPE_RANK = {"1": 0, "2": 1, "1C": 2, "2C": 2, "3": 3}
_ENTITY_LEVEL = {"PATIENT": 0, "STUDY": 1, "SERIES": 2}
_FIXED_FILL = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "IS": "1",
               "DS": "0", "CS": "UNKNOWN", "SH": "UNKNOWN", "LO": "UNKNOWN", "PN": "UNKNOWN",
               "ST": "UNKNOWN", "LT": "UNKNOWN", "UT": "UNKNOWN", "UC": "UNKNOWN"}


@dataclass(frozen=True)
class MadeUp:
    """A value invented under ``--fill-missing`` (it appears in the DICOMDIR only)."""

    record: str
    keyword: str
    value: str
    entity: str          # what it was made up for: a UID or "patient #n"
    files: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"record": self.record, "key": self.keyword, "value": self.value,
                "entity": self.entity, "files": list(self.files)}


@dataclass(frozen=True)
class Skipped:
    source: str
    code: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.source, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class Instance:
    scanned: ScannedFile
    record_type: str
    keys: tuple[tuple[int, str, bytes], ...]

    @property
    def source(self) -> str:
        return self.scanned.source


@dataclass(frozen=True)
class Entity:
    """A PATIENT, STUDY or SERIES record with its keys and children (entities or instances)."""

    record_type: str
    uid: str                      # Patient ID for patients
    keys: tuple[tuple[int, str, bytes], ...]
    children: tuple = ()


@dataclass(frozen=True)
class FileSetModel:
    patients: tuple[Entity, ...]
    root_objects: tuple[Instance, ...]
    duplicates: tuple[tuple[str, str], ...]     # (kept, dropped)
    made_up: tuple[MadeUp, ...]
    skipped: tuple[Skipped, ...]
    warnings: tuple[tuple[str, str], ...] = field(default=())   # (code, message)

    @property
    def instances(self) -> list[Instance]:
        out = [*self.root_objects]
        for p in self.patients:
            for st in p.children:
                for se in st.children:
                    out.extend(se.children)
        return out


@functools.lru_cache(maxsize=256)
def record_keys(rtype: str, profile: MediaProfile) -> tuple[KeySpec, ...]:
    """The keys of ``rtype``: PS3.3 F.5 plus the profile's extra keys, strictest Type wins."""
    merged: dict[int, KeySpec] = {}
    for k in (*record_type(rtype).keys, *profile.keys_for(rtype)):
        old = merged.get(k.tag)
        if old is None or _TYPE_RANK[k.type] < _TYPE_RANK[old.type]:
            merged[k.tag] = k
    return tuple(sorted(merged.values(), key=lambda k: k.tag))


def wanted_tags(profile: MediaProfile) -> frozenset[int]:
    """Every top-level tag a scan must extract to plan a File-set under ``profile``."""
    tags = {PATIENT_ID, PATIENT_NAME, PATIENT_BIRTH_DATE, STUDY_UID, SERIES_UID,
            SPECIFIC_CHARACTER_SET}
    for name in record_types():
        tags.update(k.tag for k in record_keys(name, profile))
    return frozenset(tags)


def narrow_tags(profile: MediaProfile):
    """``sop_class_uid -> tags`` needed for that class's record types (for ``scan_file``)."""
    entity = {PATIENT_ID, PATIENT_NAME, PATIENT_BIRTH_DATE, STUDY_UID, SERIES_UID,
              SPECIFIC_CHARACTER_SET}
    for name in ("PATIENT", "STUDY", "SERIES"):
        entity.update(k.tag for k in record_keys(name, profile))
    cache: dict[str, frozenset] = {}
    full = wanted_tags(profile)

    def narrow(sop_class_uid: str) -> frozenset:
        hit = cache.get(sop_class_uid)
        if hit is None:
            rtype = record_type_for(sop_class_uid)
            hit = (frozenset(entity | {k.tag for k in record_keys(rtype, profile)})
                   if rtype is not None else full)
            cache[sop_class_uid] = hit
        return hit
    return narrow


def _text_bytes(vr: str, value: str) -> bytes:
    b = value.encode("ascii")
    if len(b) % 2:
        b += b"\0" if vr == "UI" else b" "
    return b


def _hash_uid(*parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _hash_id(prefix: str, *parts: str, digits: int = 10) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return prefix + digest[:digits].upper()


def _int_or_none(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


class _Missing:
    """Collects missing Type 1 keys, and the made-up values when filling."""

    def __init__(self, fill: bool):
        self.fill = fill
        self.missing: dict[tuple[str, str], list[str]] = {}
        self.made_up: list[MadeUp] = []
        self.unfillable: dict[tuple[str, str], list[str]] = {}

    def note(self, record: str, keyword: str, files: list[str], value: str | None,
             entity: str) -> str | None:
        if not self.fill or value is None:
            target = self.unfillable if self.fill else self.missing
            target.setdefault((record, keyword), []).extend(files)
            return None
        self.made_up.append(MadeUp(record, keyword, value, entity, tuple(files)))
        return value

    def raise_if_any(self) -> None:
        table = self.unfillable or self.missing
        if not table:
            return
        first = min(f for files in table.values() for f in files)
        parts = [f"{rec} {kw} in {len(set(files))} file{'s' if len(set(files)) > 1 else ''}"
                 for (rec, kw), files in sorted(table.items())]
        if self.unfillable:
            msg = "Type 1 keys missing that cannot be made up: " + "; ".join(parts)
            hint = None
        else:
            msg = "Type 1 keys missing: " + "; ".join(parts)
            hint = "use --fill-missing to make up consistent values (reported in the result)"
        err = InputError(msg, path=first, code="FILESET_TYPE1_MISSING", hint=hint)
        err.missing = {f"{rec}.{kw}": sorted(set(files)) for (rec, kw), files in table.items()}
        raise err


def _uid_or_made(s: ScannedFile, tag: int, kind: str, made: dict,
                 key: Callable[[], tuple]) -> str:
    """The file's UID at ``tag``, or one made up from ``key()`` (the same for the same key;
    asked only when the UID is missing: once per file otherwise, for nothing)."""
    uid = s.text(tag)
    if uid:
        return uid
    key = key()
    hit = made.get(key)
    if hit is None:
        hit = made[key] = (_hash_uid(kind, *key), [])
    uid, files = hit
    files.append(s.source)
    return uid


def _claim(owners: dict, uid: str, parent: str, s: ScannedFile, warnings: list, code: str,
           what: str) -> None:
    """An entity belongs to the first parent it was seen under; a second one is warned of."""
    if owners.setdefault(uid, parent) != parent:
        warnings.append((code, f"{s.source}: {what}; kept with the first"))


def index_fileset(scans: Iterable[ScannedFile], *, profile: MediaProfile,
                  fill_missing: bool = False,
                  same_content: Callable[[ScannedFile, ScannedFile], bool]) -> FileSetModel:
    """Build the File-set model (see the module docstring)."""
    by_uid: dict[str, ScannedFile] = {}
    duplicates: list[tuple[str, str]] = []
    skipped: list[Skipped] = []
    warnings: list[tuple[str, str]] = []
    leaves: list[tuple[ScannedFile, str]] = []
    roots: list[tuple[ScannedFile, str]] = []
    for s in scans:
        rtype = record_type_for(s.sop_class_uid)
        if rtype is None:
            skipped.append(Skipped(s.source, "SKIP_SOP_CLASS_UNKNOWN",
                                   f"SOP class {s.sop_class_uid} has no directory record type "
                                   "in the general-purpose profiles"))
            continue
        prior = by_uid.get(s.sop_instance_uid)
        if prior is not None:
            if same_content(prior, s):
                duplicates.append((prior.source, s.source))
                continue
            raise InputError(f"SOP Instance UID {s.sop_instance_uid} is in two files with "
                             f"different content: {prior.source} and {s.source}",
                             path=s.source, code="FILESET_DUPLICATE_CONFLICT")
        by_uid[s.sop_instance_uid] = s
        (roots if record_type(rtype).level == "root" else leaves).append((s, rtype))

    miss = _Missing(fill_missing)

    # -- patients: by Patient ID; a missing ID is made up per (name, birth date) grouping --
    patients: dict[str, list] = {}
    made_pid: dict[tuple, str] = {}
    pid_files: dict[str, list[str]] = {}
    for s, rtype in leaves:
        pid = s.text(PATIENT_ID)
        if not pid:
            group = (s.text(PATIENT_NAME) or "", s.text(PATIENT_BIRTH_DATE) or "")
            pid = made_pid.get(group)
            if pid is None:
                pid = _hash_id("MS", *group)
                made_pid[group] = pid
            pid_files.setdefault(pid, []).append(s.source)
        patients.setdefault(pid, []).append((s, rtype))
    for n, (group, pid) in enumerate(made_pid.items()):
        miss.note("PATIENT", "PatientID", pid_files[pid], pid, f"patient #{n + 1}")

    # -- studies and series: by UID; made-up UIDs derive from what identifies the entity --
    study_of: dict[str, str] = {}       # study UID -> patient ID
    studies: dict[str, list] = {}
    series_of: dict[str, str] = {}      # series UID -> study UID
    series: dict[str, list] = {}
    made_study: dict[tuple, tuple[str, list]] = {}
    made_series: dict[tuple, tuple[str, list]] = {}
    for pid, members in patients.items():
        for s, rtype in members:
            st_uid = _uid_or_made(s, STUDY_UID, "study", made_study,
                                  lambda: (pid, s.text(STUDY_ID) or "",
                                           s.text(STUDY_DATE) or "", s.text(0x00080050) or ""))
            _claim(study_of, st_uid, pid, s, warnings, "FILESET_STUDY_TWO_PATIENTS",
                   f"study {st_uid} also appears under another patient")
            se_uid = _uid_or_made(s, SERIES_UID, "series", made_series,
                                  lambda: (st_uid, s.text(MODALITY) or "",
                                           s.text(SERIES_NUMBER) or ""))
            _claim(series_of, se_uid, st_uid, s, warnings, "FILESET_SERIES_TWO_STUDIES",
                   f"series {se_uid} also appears in another study")
            if se_uid not in series:
                studies.setdefault(series_of[se_uid], []).append(se_uid)
            series.setdefault(se_uid, []).append((s, rtype))
    for key, (uid, files) in made_study.items():
        miss.note("STUDY", "StudyInstanceUID", files, uid, uid)
    for key, (uid, files) in made_series.items():
        miss.note("SERIES", "SeriesInstanceUID", files, uid, uid)

    # -- records with their keys ---------------------------------------------------------
    def entity_keys(rtype: str, members: list[ScannedFile], ident: dict[int, str],
                    entity: str, fills: dict[int, str]) -> tuple:
        rep = members[0]
        charset = rep.raw(SPECIFIC_CHARACTER_SET)
        out = []
        if charset is not None:
            out.append((SPECIFIC_CHARACTER_SET, charset[0], charset[1]))
        for k in record_keys(rtype, profile):
            if k.tag in ident:
                out.append((k.tag, k.vr, _text_bytes(k.vr, ident[k.tag])))
                continue
            src = next((m for m in members if m.present(k.tag)
                        and m.raw(SPECIFIC_CHARACTER_SET) == charset), None)
            if src is not None:
                vr, value = src.values[k.tag]
                out.append((k.tag, vr, value))
                continue
            if k.type == "1":
                value = fills.get(k.tag) or _fill_for(k)
                value = miss.note(rtype, k.keyword, [m.source for m in members], value, entity)
                if value is not None:
                    out.append((k.tag, k.vr, _text_bytes(k.vr, value)))
            elif k.type == "2":
                has = next((m for m in members if m.has(k.tag)), None)
                out.append((k.tag, k.vr, has.values[k.tag][1] if has is not None
                            and has.raw(SPECIFIC_CHARACTER_SET) == charset else b""))
        return tuple(out)

    leaf_keys: dict[str, tuple[KeySpec, ...]] = {}

    def leaf(s: ScannedFile, rtype: str, fills: dict[int, str]) -> Instance:
        """``entity_keys(rtype, [s], {}, ...)`` for the one member of an instance record,
        without the searches over members (run once per file: most of the planning)."""
        keys = leaf_keys.get(rtype)
        if keys is None:
            keys = leaf_keys[rtype] = record_keys(rtype, profile)
        values = s.values
        charset = values.get(SPECIFIC_CHARACTER_SET)
        out = [] if charset is None else [(SPECIFIC_CHARACTER_SET, charset[0], charset[1])]
        for k in keys:
            tag = k.tag
            hit = values.get(tag)
            if hit is not None and (hit[1].strip(b"\0 ") if hit[0] != "SQ"
                                    else s.present(tag)):   # s.present(tag), inlined
                out.append((tag, hit[0], hit[1]))
            elif k.type == "1":
                value = fills.get(tag) or _fill_for(k)
                value = miss.note(rtype, k.keyword, [s.source], value, s.sop_instance_uid)
                if value is not None:
                    out.append((tag, k.vr, _text_bytes(k.vr, value)))
            elif k.type == "2":
                out.append((tag, k.vr, hit[1] if hit is not None else b""))
        return Instance(s, rtype, tuple(out))

    patient_entities = []
    for pid in sorted(patients):
        members = [s for s, _ in patients[pid]]
        names = {s.text(PATIENT_NAME) or "" for s in members}
        if len(names) > 1:
            warnings.append(("FILESET_PATIENT_NAME_DIFFERS",
                             f"{members[0].source}: {len(names)} different Patient's Names share "
                             "one Patient ID; the first is used"))
        study_entities = []
        st_uids = [u for u, owner in study_of.items() if owner == pid]
        st_list = []
        for st_uid in st_uids:
            st_members = [s for se_uid in studies.get(st_uid, ()) for s, _ in series[se_uid]]
            if not st_members:
                continue
            st_fills = {STUDY_ID: _hash_id("", st_uid, digits=8), STUDY_DATE: "19000101",
                        STUDY_TIME: "000000"}
            st_keys = entity_keys("STUDY", st_members, {STUDY_UID: st_uid}, st_uid, st_fills)
            kd = {t: v for t, _, v in st_keys}
            st_list.append(((kd.get(STUDY_DATE, b""), kd.get(STUDY_TIME, b""), st_uid),
                            st_uid, st_keys))
        for _, st_uid, st_keys in sorted(st_list):
            kd = {t: v for t, _, v in st_keys}
            st_date = kd.get(STUDY_DATE, b"19000101").decode("ascii", "replace").strip()
            st_time = kd.get(STUDY_TIME, b"000000").decode("ascii", "replace").strip()
            se_list = []
            numbers_used = {_int_or_none(series[u][0][0].text(SERIES_NUMBER))
                            for u in studies[st_uid]} - {None}
            next_number = max(numbers_used, default=0) + 1
            for se_uid in sorted(studies[st_uid]):
                members = [s for s, _ in series[se_uid]]
                fills = {MODALITY: fill_value("Modality") or "OT"}
                if not any(m.present(SERIES_NUMBER) for m in members):
                    fills[SERIES_NUMBER] = str(next_number)
                    next_number += 1
                se_keys = entity_keys("SERIES", members, {SERIES_UID: se_uid}, se_uid, fills)
                num = _int_or_none(next((v for t, _, v in se_keys if t == SERIES_NUMBER),
                                        b"").decode("ascii", "replace"))
                inst_fills_base = {0x00080023: st_date, 0x00080033: st_time,
                                   0x0008002A: st_date + st_time}
                used = {_int_or_none(m.text(INSTANCE_NUMBER)) for m in members} - {None}
                nxt = max(used, default=0) + 1
                ordered = sorted(series[se_uid],
                                 key=lambda e: (_int_or_none(e[0].text(INSTANCE_NUMBER))
                                                if e[0].present(INSTANCE_NUMBER) else 1 << 62,
                                                e[0].sop_instance_uid))
                instances = []
                for s, rtype in ordered:
                    fills_i = dict(inst_fills_base)
                    if not s.present(INSTANCE_NUMBER):
                        fills_i[INSTANCE_NUMBER] = str(nxt)
                        nxt += 1
                    instances.append(leaf(s, rtype, fills_i))
                se_list.append(((num if num is not None else 1 << 62, se_uid),
                                Entity("SERIES", se_uid, se_keys, tuple(instances))))
            study_entities.append(Entity("STUDY", st_uid, st_keys,
                                         tuple(e for _, e in sorted(se_list,
                                                                    key=lambda x: x[0]))))
        pat_keys = entity_keys("PATIENT", members_of(patients[pid]), {PATIENT_ID: pid},
                               "patient", {})
        patient_entities.append(Entity("PATIENT", pid, pat_keys, tuple(study_entities)))

    root_instances = tuple(leaf(s, rtype, {}) for s, rtype in
                           sorted(roots, key=lambda e: (e[1], e[0].sop_instance_uid)))
    miss.raise_if_any()
    return FileSetModel(patients=tuple(patient_entities), root_objects=root_instances,
                        duplicates=tuple(duplicates), made_up=tuple(miss.made_up),
                        skipped=tuple(skipped), warnings=tuple(warnings))


def members_of(entries: list) -> list[ScannedFile]:
    return [s for s, _ in entries]


def _fill_for(k: KeySpec) -> str | None:
    """A made-up value for a Type 1 key with no entity-specific rule (None: cannot)."""
    configured = fill_value(k.keyword)
    if configured is not None:
        return configured
    return _FIXED_FILL.get(k.vr)


def describe_sop_class(uid: str) -> str:
    return sop_class_name(uid) or uid
