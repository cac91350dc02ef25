"""Patient reconciliation before import: a new Patient ID (and Issuer), the old values kept
in the Original Attributes Sequence (0400,0561) as PS3.3 C.12.1 expects.

Pure: takes a pydicom ``Dataset`` and the time and system name from the caller.

* ``parse_patient_map(text)`` - CSV ``old_patient_id,new_patient_id[,issuer]`` (a header row
  whose first cell is not a value of the data is recognised by the names below and skipped);
  a duplicate old ID with a different mapping is refused.
* ``reconcile_patient(ds, new_id, issuer, when, system)`` - changes Patient ID (and Issuer
  of Patient ID when given), appends one item to (0400,0561) holding: Modified Attributes
  Sequence (0400,0550) with the *previous* values (an absent attribute recorded empty),
  Attribute Modification DateTime (0400,0562), Modifying System (0400,0563), Source of
  Previous Values (0400,0564, empty: Type 2) and Reason for the Attribute Modification
  (0400,0565) ``COERCE`` (values replaced to match the receiving system's records).
  Nothing else in the dataset changes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mediasec.errors import InputError

__all__ = ["PatientMapping", "parse_patient_map", "reconcile_patient"]

_HEADER = {"old_patient_id", "old", "patientid", "patient_id", "from", "source"}


@dataclass(frozen=True)
class PatientMapping:
    new_id: str
    issuer: str | None = None


def parse_patient_map(text: str, *, path: str | None = None) -> dict[str, PatientMapping]:
    out: dict[str, PatientMapping] = {}
    rows = list(csv.reader(io.StringIO(text)))
    for n, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells):
            continue
        if n == 1 and cells[0].lower() in _HEADER:
            continue
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            raise InputError(f"line {n}: expected old_patient_id,new_patient_id[,issuer]",
                             path=path, code="MAP_MALFORMED")
        if len(cells[1]) > 64 or "\\" in cells[1]:
            raise InputError(f"line {n}: a Patient ID is at most 64 characters, without "
                             "backslashes", path=path, code="MAP_MALFORMED")
        m = PatientMapping(cells[1], cells[2] if len(cells) == 3 and cells[2] else None)
        if cells[0] in out and out[cells[0]] != m:
            raise InputError(f"line {n}: the same old patient ID is mapped twice, "
                             "differently", path=path, code="MAP_CONFLICT")
        out[cells[0]] = m
    if not out:
        raise InputError("the patient ID map is empty", path=path, code="MAP_MALFORMED")
    return out


def reconcile_patient(ds: Dataset, mapping: PatientMapping, *, when: datetime,
                      system: str) -> list[str]:
    """Apply ``mapping``; returns the keywords changed (empty: nothing to do, no item)."""
    changes: dict[str, str | None] = {}
    old_id = ds.get("PatientID")
    if old_id != mapping.new_id:
        changes["PatientID"] = mapping.new_id
    if mapping.issuer is not None and ds.get("IssuerOfPatientID") != mapping.issuer:
        changes["IssuerOfPatientID"] = mapping.issuer
    if not changes:
        return []
    previous = Dataset()
    for kw in changes:
        previous_value = ds.get(kw)
        setattr(previous, kw, previous_value if previous_value is not None else "")
    item = Dataset()
    item.ModifiedAttributesSequence = Sequence([previous])
    item.AttributeModificationDateTime = when.strftime("%Y%m%d%H%M%S.%f%z")
    item.ModifyingSystem = system[:64]
    item.SourceOfPreviousValues = ""
    item.ReasonForTheAttributeModification = "COERCE"
    for kw, value in changes.items():
        setattr(ds, kw, value)
    if "OriginalAttributesSequence" in ds:
        ds.OriginalAttributesSequence.append(item)
    else:
        ds.OriginalAttributesSequence = Sequence([item])
    return list(changes)
