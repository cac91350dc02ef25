"""File IDs (PS3.10 8.2, PS3.12): syntax, allocation and tolerant matching.

A File ID is 1..8 components of 1..8 characters from ``A-Z 0-9 _``, without extension or
meaning; ``DICOMDIR`` at the root is reserved. We allocate the usual hierarchy::

    PT000000/ST000000/SE000000/IM000000     patient / study / series / instance

with one counter per parent, so IDs are dense, deterministic for a given input order and
never collide. Root-level objects (hanging protocols, palettes, implant templates) go to
``RO000000/OB000000``. ``match_component`` resolves a stored name back to a File ID
component case-insensitively, tolerating a trailing ``.`` or ISO 9660 version ``;1``.
"""

from __future__ import annotations

import re
from typing import Iterable

from mediasec._data import file_id_rules
from mediasec.errors import InputError, UsageError

__all__ = ["FileId", "validate_file_id", "is_valid_file_id", "parse_file_id", "FileIdAllocator",
           "match_component", "normalise_component", "DICOMDIR"]

FileId = tuple[str, ...]
DICOMDIR = "DICOMDIR"
_COMPONENT = re.compile(r"[A-Z0-9_]{1,8}\Z")
_PER_LEVEL = 1_000_000


def is_valid_file_id(components: Iterable[str]) -> bool:
    comps = tuple(components)
    rules = file_id_rules()
    if not 1 <= len(comps) <= rules.max_components:
        return False
    return all(isinstance(c, str) and len(c) <= rules.max_component_length
               and _COMPONENT.match(c) for c in comps)


def validate_file_id(components: Iterable[str], *, path: str | None = None) -> FileId:
    """The File ID as a tuple, or ``InputError`` (code ``FILEID_INVALID``) saying why."""
    comps = tuple(components)
    rules = file_id_rules()
    if not comps:
        raise InputError("empty File ID", path=path, code="FILEID_INVALID")
    if len(comps) > rules.max_components:
        raise InputError(f"File ID has {len(comps)} components (at most "
                         f"{rules.max_components})", path=path, code="FILEID_INVALID")
    for c in comps:
        if c in ("", ".", "..") or not _COMPONENT.match(c):
            raise InputError(f"File ID component {c!r} is not 1-8 characters of A-Z 0-9 _",
                             path=path, code="FILEID_INVALID")
    return comps


def parse_file_id(value: str, *, path: str | None = None) -> FileId:
    """A (0004,1500) value (components separated by backslash) as a validated File ID."""
    return validate_file_id(tuple(value.strip(" \0").split("\\")), path=path)


def normalise_component(name: str) -> str:
    """What a stored name means as a File ID component: upper case, ``;1`` and ``.`` cut."""
    n = name
    if ";" in n:
        n = n.split(";", 1)[0]
    n = n.rstrip(".")
    return n.upper()


def match_component(component: str, names: Iterable[str]) -> tuple[str | None, bool]:
    """Find ``component`` among the stored ``names``: ``(name, exact)``; ``(None, False)``
    if absent. An exact match wins over a tolerant one."""
    tolerant = None
    for n in names:
        if n == component:
            return n, True
        if tolerant is None and normalise_component(n) == component:
            tolerant = n
    return tolerant, False


class FileIdAllocator:
    """Dense, collision-free File IDs in the PT/ST/SE/IM hierarchy."""

    def __init__(self) -> None:
        self._counters: dict[tuple, int] = {}

    def _next(self, parent: tuple, prefix: str) -> str:
        n = self._counters.get(parent, 0)
        if n >= _PER_LEVEL:
            raise UsageError(f"more than {_PER_LEVEL:,} entries under one "
                             f"{'/'.join(parent) or 'root'} folder", code="USAGE_TOO_MANY")
        self._counters[parent] = n + 1
        return f"{prefix}{n:06d}"

    def patient(self) -> FileId:
        return (self._next((), "PT"),)

    def study(self, patient: FileId) -> FileId:
        return patient + (self._next(patient, "ST"),)

    def series(self, study: FileId) -> FileId:
        return study + (self._next(study, "SE"),)

    def instance(self, series: FileId) -> FileId:
        return series + (self._next(series, "IM"),)

    def root_object(self) -> FileId:
        folder = ("RO000000",)
        return folder + (self._next(folder, "OB"),)
