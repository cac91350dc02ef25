"""Apply Table E.1-1 to a data set, at any depth, keeping every original that changes.

``deidentify_dataset`` never mutates its input: it builds a new data set and, beside it,
the Modified Attributes item (PS3.15 E.1.1): every top-level attribute that was removed
or replaced, as it was (a change inside a sequence puts the whole top-level sequence
there), SOP Instance UID always.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from mediasec.deid import profile as P
from mediasec.deid.mapping import Mapper, shift_da, shift_dt
from mediasec.dicom import tags
from mediasec.errors import InputError
from mediasec.report import Finding, Outcome

__all__ = ["DeidResult", "deidentify_dataset", "MARK_TAGS"]

TAG_SOP_CLASS = tags.SOP_CLASS_UID
TAG_SOP_INSTANCE = tags.SOP_INSTANCE_UID
TAG_CHARSET = tags.SPECIFIC_CHARACTER_SET
TAG_PATIENT_ID = tags.PATIENT_ID
TAG_ISSUER = 0x00100021
TAG_PRIVATE_CHARS = 0x00080300
TAG_CONTENT_SEQ = 0x0040A730
TAG_ACQ_CONTEXT = 0x00400555
TAG_CONCEPT_NAME = 0x0040A043
TAG_VALUE_TYPE = 0x0040A040
TAG_ENCRYPTED_ATTRS = 0x04000500
TAG_SIGNATURES = 0xFFFAFFFA
TAG_MAC_PARAMS = 0x4FFE0001
#: the marks a de-identifier writes (and a re-identifier removes)
TAG_IDENTITY_REMOVED = 0x00120062
TAG_METHOD = 0x00120063
TAG_METHOD_CODES = 0x00120064
TAG_LONGITUDINAL = 0x00280303
MARK_TAGS = (TAG_IDENTITY_REMOVED, TAG_METHOD, TAG_METHOD_CODES, TAG_LONGITUDINAL)

#: value elements of an SR content item, by Value Type
_SR_VALUE = {"TEXT": 0x0040A160, "PNAME": 0x0040A123, "DATE": 0x0040A121, "TIME": 0x0040A122,
             "DATETIME": 0x0040A120, "UIDREF": 0x0040A124}
#: coding schemes whose codes are public vocabulary (kept under C of a code sequence)
_STD_SCHEMES = frozenset({"DCM", "SCT", "SRT", "LN", "UCUM", "RADLEX", "FMA", "NCIt", "I10",
                          "ICD10", "I9C", "99SDM", "SNM3", "MSH", "UMLS", "NEU", "MDC",
                          "UBERON", "RXNORM"})
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_NUM_ZERO = {"DS": "0", "IS": "0", "FL": 0.0, "FD": 0.0, "SL": 0, "SS": 0, "UL": 0, "US": 0,
             "SV": 0, "UV": 0, "AT": 0}
_DUMMY = {"AE": "DEIDENTIFIED", "AS": "000Y", "CS": "DEIDENTIFIED", "DA": "19000101",
          "DT": "19000101000000", "TM": "000000", "PN": "ANONYMOUS", "LO": "DEIDENTIFIED",
          "SH": "DEIDENTIFIED", "ST": "DEIDENTIFIED", "LT": "DEIDENTIFIED",
          "UT": "DEIDENTIFIED", "UC": "DEIDENTIFIED", "UR": "urn:oid:2.25.0"}
_NUMBER = re.compile(r"^\d{1,3}([.,]\d{1,2})?(MM|CM|M|S|MS|MIN|SEC|D|KV|MAS|MA|ML|MG|G|%)?$")
_HONORIFICS = frozenset({"MR", "MS", "DR"})
_TOKEN = re.compile(r"[A-Za-z0-9%]+|[^A-Za-z0-9%]+")


@dataclass
class DeidResult:
    dataset: Dataset
    originals: Dataset                   # the Modified Attributes item
    findings: list = field(default_factory=list)
    removed: int = 0
    replaced: int = 0
    date_offset_days: int | None = None


class _Walker:
    def __init__(self, profile: P.Profile, mapper: Mapper, sop_class: str,
                 offset: int | None, result: DeidResult, issuer: str = ""):
        self._issuer = issuer
        self.p = profile
        self.m = mapper
        self.sop_class = sop_class
        self.offset = offset
        self.r = result
        self.words = P.clean_words()
        self._reported: set = set()

    def report(self, code: str, outcome: Outcome, message: str, **detail):
        key = (code, message)
        if key not in self._reported:
            self._reported.add(key)
            self.r.findings.append(Finding(code, outcome, message, detail))

    # -- values ------------------------------------------------------------------------------
    def _values(self, elem):
        v = elem.value
        if v is None or v == "":
            return []
        if isinstance(v, (list, MultiValue)):
            return list(v)
        return [v]

    def _with_values(self, elem, values) -> DataElement:
        if not values:
            value = None if elem.VR != "SQ" else Sequence()
        elif len(values) == 1:
            value = values[0]
        else:
            value = values
        return DataElement(elem.tag, elem.VR, value)

    def dummy(self, elem) -> DataElement:
        vr = elem.VR
        if vr == "UI":
            return self._with_values(elem, [self.m.uid(str(v)) for v in self._values(elem)]
                                     or [self.m.uid("dummy")])
        if vr in ("DA", "DT") and self.offset is not None:
            return self.clean(elem)
        if elem.tag == TAG_PATIENT_ID:
            return DataElement(elem.tag, vr, self.m.patient_id(self._issuer, str(elem.value)))
        if vr in _DUMMY:
            return DataElement(elem.tag, vr, _DUMMY[vr])
        if vr in _NUM_ZERO:
            return DataElement(elem.tag, vr, _NUM_ZERO[vr])
        # OB/OW/OF/OD/OL/OV/UN: a non-empty dummy of two zero bytes
        return DataElement(elem.tag, vr, b"\x00\x00")

    def empty(self, elem) -> DataElement:
        if elem.tag == TAG_PATIENT_ID and elem.value:
            # Z allows a dummy: keep patients apart, consistently across the job
            return DataElement(elem.tag, elem.VR, self.m.patient_id(self._issuer,
                                                                    str(elem.value)))
        return DataElement(elem.tag, elem.VR, Sequence() if elem.VR == "SQ" else None)

    def clean_text(self, text: str) -> str:
        out = []
        for tok in _TOKEN.findall(str(text)):
            if tok[0].isalnum() or tok[0] == "%":
                up = tok.upper()
                if up in _HONORIFICS and not tok.isupper():
                    out.append(" ")       # "Mr", "Dr": a name follows, not a modality
                elif up in self.words or _NUMBER.match(up):
                    out.append(tok)
                else:
                    out.append(" ")
            else:
                out.append(tok if tok.strip() == "" or set(tok) <= set(" .,:;/()-+_&")
                           else " ")
        return " ".join("".join(out).split()).strip(" .,:;/-+_&")

    def clean(self, elem, depth: int = 0) -> DataElement | None:
        vr = elem.VR
        vals = self._values(elem)
        if vr == "DA":
            if self.offset is None:
                return self._with_values(elem, vals if self.p.has("retain-long-full-dates")
                                         else [])
            return self._with_values(elem, [v for v in (shift_da(str(x), self.offset)
                                                         for x in vals) if v])
        if vr == "DT":
            if self.offset is None:
                return self._with_values(elem, vals if self.p.has("retain-long-full-dates")
                                         else [])
            return self._with_values(elem, [v for v in (shift_dt(str(x), self.offset)
                                                         for x in vals) if v])
        if vr in ("TM", "CS") or vr in _NUM_ZERO:
            return elem
        if vr == "AE":
            return self._with_values(elem, [self.m.pseudonym("AE", str(v)) for v in vals])
        if vr == "PN":
            return self._with_values(elem, ["ANONYMOUS" for _ in vals])
        if vr == "UI":
            return self._with_values(elem, [self.m.uid(str(v)) for v in vals])
        if vr in _TEXT_VRS:
            return self._with_values(elem, [c for c in (self.clean_text(v) for v in vals)])
        if vr == "SQ":
            return self.sequence(elem, depth, clean=True)
        # binary (overlay and curve data, OB/OW/UN): cannot be cleaned: removed
        self.report("DEID_CLEAN_REMOVED", Outcome.WARNING,
                    f"{self._name(elem.tag)} cannot be cleaned ({vr} data): removed")
        return None

    # -- walking -----------------------------------------------------------------------------
    @staticmethod
    def _name(tag: int) -> str:
        return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"

    def dataset(self, ds: Dataset, depth: int) -> tuple[Dataset, bool, list]:
        """(new data set, changed?, [(original top-level element, changed?)])"""
        out = Dataset()
        changed = False
        keep_private = self._private_plan(ds)
        touched = []
        for elem in ds:
            tag = int(elem.tag)
            if tag >> 16 & 1:
                new = self.private(elem, keep_private, depth)
            else:
                new = self.element(elem, depth)
            diff = new is not elem
            if new is not None:
                out.add(new)
            changed |= diff
            touched.append((elem, diff))
        return out, changed, touched

    def sequence(self, elem, depth: int, *, clean: bool = False, content: bool = False,
                 dummy: bool = False) -> DataElement:
        items = []
        changed = False
        for item in elem.value or ():
            local = 0x00080100 in item and str(
                item[0x00080102].value if 0x00080102 in item else "").strip() not in _STD_SCHEMES
            if clean and local:
                changed = True   # a private or local code: dropped
                continue
            if dummy and local:
                # a local code in a sequence to be replaced by a dummy: it may name anyone
                new_item, _, _ = self.dataset(item, depth + 1)
                for tag, vr, value in ((0x00080100, "SH", "DEID"),
                                       (0x00080102, "SH", "99MSDEID"),
                                       (0x00080104, "LO", "DEIDENTIFIED")):
                    new_item[tag] = DataElement(tag, vr, value)   # never mutate shared elements
                items.append(new_item)
                changed = True
                continue
            if content:
                new = self.content_item(item, depth + 1, clean)
                if new is None:
                    changed = True
                    continue
                new_item, ch = new
            else:
                new_item, ch, _ = self.dataset(item, depth + 1)
            items.append(new_item)
            changed |= ch
        if not changed:
            return elem
        return DataElement(elem.tag, "SQ", Sequence(items))

    def element(self, elem, depth: int):
        tag = int(elem.tag)
        group = tag >> 16
        if tag & 0xFFFF == 0 or group in (0x0000, 0x0002, 0x0004):
            return None           # group lengths; File Meta and DICOMDIR groups
        act, row = self.p.action(tag, self.sop_class)
        vr = elem.VR
        if tag == TAG_MAC_PARAMS:
            act = "X"     # useless without the signatures it goes with (spec section 2)
        elif row is None:
            act = self._unlisted(elem, tag, vr)
        if tag in (TAG_SIGNATURES, TAG_MAC_PARAMS):
            self.report("DEID_SIGNATURE_REMOVED", Outcome.WARNING,
                        "dataset digital signatures no longer match the changed data set: "
                        "removed")
        return self.apply(elem, act, depth)

    def _unlisted(self, elem, tag: int, vr: str) -> str:
        try:
            dictionary_VR(tag)
        except KeyError:
            self.report("DEID_UNKNOWN_REMOVED", Outcome.WARNING,
                        f"attribute {self._name(tag)} is in no row of Table E.1-1 and unknown "
                        "to the data dictionary: removed", tag=self._name(tag))
            return "X"
        # sweeps by VR for attributes the table does not list (spec section 3.5)
        if vr == "PN":
            return "Z"
        if vr in ("DA", "DT"):
            if self.p.has("retain-long-full-dates"):
                return "K"
            return "C" if self.offset is not None else "Z"
        if vr == "TM":
            return "K" if self.p.temporal != "REMOVED" else "Z"
        return "K"

    def apply(self, elem, act: str, depth: int):
        vr = elem.VR
        if act == "X":
            return None
        if act == "K" or act == "":
            if vr == "SQ":
                return self.sequence(elem, depth)
            return elem
        if act == "Z":
            if not self._values(elem) and elem.tag != TAG_PATIENT_ID:
                return elem
            return self.empty(elem)
        if act in ("U", "U*"):
            if vr == "SQ":
                return self.sequence(elem, depth)
            if vr != "UI":
                return self.dummy(elem)
            vals = self._values(elem)
            new = [self.m.uid(str(v)) for v in vals]
            return elem if new == [str(v) for v in vals] else self._with_values(elem, new)
        is_content = int(elem.tag) in (TAG_CONTENT_SEQ, TAG_ACQ_CONTEXT)
        if act == "D":
            if vr == "SQ":
                return self.sequence(elem, depth, content=is_content, dummy=True)
            return self.dummy(elem)
        if act == "C":
            if vr == "SQ":
                return self.sequence(elem, depth, clean=True, content=is_content)
            new = self.clean(elem, depth)
            if new is not None and new.value == elem.value:
                return elem
            return new
        raise ValueError(f"unhandled action {act!r}")

    # -- SR content items (Table E.3.4-1) ----------------------------------------------------
    def content_item(self, item: Dataset, depth: int, clean: bool):
        """None (item removed) or (new item, changed)."""
        vtype = str(item.get(TAG_VALUE_TYPE).value).strip() if TAG_VALUE_TYPE in item else ""
        code = None
        if TAG_CONCEPT_NAME in item and item[TAG_CONCEPT_NAME].value:
            c = item[TAG_CONCEPT_NAME].value[0]
            code = (str(c.get((0x0008, 0x0102)).value if (0x0008, 0x0102) in c else "").strip(),
                    str(c.get((0x0008, 0x0100)).value if (0x0008, 0x0100) in c else "").strip())
        row = P.structured_content_codes().get(code) if code else None
        act = None
        if row is not None:
            act = row.get("basicProfile")
            chosen = [row[c] for c in (P.OPTIONS[o][0] for o in self.p.options) if row.get(c)]
            if chosen:
                act = "C" if "C" in chosen else chosen[0]
            if act in P.COMPOUND:
                act = act.split("/")[-1].rstrip("*")
        value_tag = _SR_VALUE.get(vtype)
        if act == "X":
            return None
        new_item, changed, _ = self.dataset(
            Dataset({e.tag: e for e in item if int(e.tag) != value_tag}) if value_tag
            else item, depth)
        if value_tag is not None and value_tag in item:
            velem = item[value_tag]
            if act is None:
                # no row for the concept: by value type
                if vtype == "TEXT":
                    act = "C" if clean else "D"
                elif vtype == "PNAME":
                    act = "D"
                elif vtype == "UIDREF":
                    act = "U"
                else:   # DATE / TIME / DATETIME: as the table's rows for them
                    act = self.p.action(value_tag, self.sop_class)[0]
            new_v = self.apply(velem, act, depth)
            if new_v is not None:
                new_item.add(new_v)
            changed |= new_v is not velem
        return new_item, changed

    # -- private attributes --------------------------------------------------------------------
    def _private_plan(self, ds: Dataset) -> dict:
        """{(group, block): creator} of the private blocks of ``ds`` (creator stripped)."""
        plan = {}
        for elem in ds:
            tag = int(elem.tag)
            g, e = tag >> 16, tag & 0xFFFF
            if g & 1 and 0x10 <= e <= 0xFF:
                plan[(g, e)] = str(elem.value or "").strip()
        return plan

    def private(self, elem, creators: dict, depth: int):
        if not self.p.has("retain-safe-private"):
            return None
        tag = int(elem.tag)
        g, e = tag >> 16, tag & 0xFFFF
        if e < 0x10 or g < 0x0009 or g == 0xFFFF:
            return None          # group length, illegal or reserved groups
        if e <= 0xFF:
            creator = creators[(g, e)]
            if any((g, creator, low) in P.safe_private() for low in range(256)):
                return elem      # kept for its safe elements; dropped by ``finish`` if unused
            self.report("DEID_PRIVATE_REMOVED", Outcome.INFO,
                        f"private block {g:04X} of creator {creator!r} is not known to be "
                        "safe: removed", group=f"{g:04X}", creator=creator)
            return None
        creator = creators.get((g, e >> 8))
        if creator is None:
            self.report("DEID_PRIVATE_REMOVED", Outcome.INFO,
                        f"private element {self._name(tag)} has no creator: removed")
            return None
        if (g, creator, e & 0xFF) not in P.safe_private():
            return None
        if elem.VR == "SQ":
            return self.sequence(elem, depth)
        return elem


def _drop_unused_creators(ds: Dataset) -> None:
    used = {(int(t) >> 16, (int(t) & 0xFFFF) >> 8) for t in ds.keys()
            if int(t) >> 16 & 1 and int(t) & 0xFFFF > 0xFF}
    for t in list(ds.keys()):
        g, e = int(t) >> 16, int(t) & 0xFFFF
        if g & 1 and 0x10 <= e <= 0xFF and (g, e) not in used:
            del ds[t]


def deidentify_dataset(ds: Dataset, profile: P.Profile, mapper: Mapper) -> DeidResult:
    """De-identify one data set (no File Meta). ``ds`` is left as it was."""
    if TAG_ENCRYPTED_ATTRS in ds or str(ds.get(TAG_IDENTITY_REMOVED).value
                                          if TAG_IDENTITY_REMOVED in ds else "").upper() == "YES":
        raise InputError("already de-identified (Patient Identity Removed is YES or it "
                         "carries Encrypted Attributes); re-identify it first",
                         code="DEID_ALREADY_DEIDENTIFIED")
    sop_class = str(ds.get(TAG_SOP_CLASS).value) if TAG_SOP_CLASS in ds else ""
    issuer = str(ds[TAG_ISSUER].value or "") if TAG_ISSUER in ds else ""
    pid = str(ds[TAG_PATIENT_ID].value or "") if TAG_PATIENT_ID in ds else ""
    offset = mapper.date_offset(issuer, pid) if profile.has("retain-long-modified-dates") \
        else None
    result = DeidResult(Dataset(), Dataset(), date_offset_days=offset)
    w = _Walker(profile, mapper, sop_class, offset, result, issuer)
    out, _, touched = w.dataset(ds, 0)
    if not profile.has("retain-safe-private") and TAG_PRIVATE_CHARS in out:
        del out[TAG_PRIVATE_CHARS]
        touched = [(e, True if int(e.tag) == TAG_PRIVATE_CHARS else d) for e, d in touched]
    _drop_unused_creators(out)
    originals = Dataset()
    creators_needed = set()
    for elem, diff in touched:
        tag = int(elem.tag)
        if tag >> 16 in (0x0002,) or tag & 0xFFFF == 0:
            continue
        still = out.get(tag)
        if diff or still is None:
            originals.add(elem)
            if tag >> 16 & 1 and (tag & 0xFFFF) > 0xFF:
                creators_needed.add((tag >> 16, (tag & 0xFFFF) >> 8))
            if still is None:
                result.removed += 1
            else:
                result.replaced += 1
    for g, block in creators_needed:
        ct = (g << 16) | block
        if ct in ds and ct not in originals:
            originals.add(ds[ct])
    if TAG_SOP_INSTANCE in ds and TAG_SOP_INSTANCE not in originals:
        originals.add(ds[TAG_SOP_INSTANCE])
    if TAG_CHARSET in ds and len(originals):
        originals.add(ds[TAG_CHARSET])
    for tag in MARK_TAGS:   # marks of an earlier pass are originals too
        if tag in ds and tag not in originals:
            originals.add(ds[tag])
    # the marks (PS3.15 E.1.1, PS3.3 C.7.1.1, C.12.1)
    out.add_new(TAG_IDENTITY_REMOVED, "CS", "YES")
    codes = profile.codes
    out.add_new(TAG_METHOD, "LO", [m[:64] for _, m in codes])
    items = []
    for value, meaning in codes:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, "DCM", meaning
        items.append(c)
    out.add_new(TAG_METHOD_CODES, "SQ", Sequence(items))
    out.add_new(TAG_LONGITUDINAL, "CS", profile.temporal)
    result.dataset = out
    result.originals = originals
    return result
