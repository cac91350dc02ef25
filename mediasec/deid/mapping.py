"""Keyed, deterministic replacement values: UIDs, patient pseudonyms and date shifts.

One ``Mapper`` serves a whole job, so every reference to a replaced UID lands on the
same new UID (referential integrity across instances and nested sequences). Values are
HMAC-SHA256 of the original under the job's mapping key: the same input and key give the
same output on any station, nothing is kept in a table, and without the key nobody can
test a guessed original. Without a key, a random one per job (consistent in the job only).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets

__all__ = ["Mapper", "is_registry_uid"]

_REGISTRY = "1.2.840.10008."
#: date shifts: whole weeks (weekdays kept), between 1 and 10 years back
_MIN_WEEKS, _MAX_WEEKS = 53, 522


def is_registry_uid(uid: str) -> bool:
    """SOP Classes, Transfer Syntaxes, coding schemes...: never replaced (PS3.15 E.3.9)."""
    return uid.startswith(_REGISTRY)


class Mapper:
    def __init__(self, key: bytes | None = None):
        self.keyed = key is not None
        self._key = key if key is not None else secrets.token_bytes(32)
        self._uids: dict[str, str] = {}

    def _mac(self, label: str, value: str) -> bytes:
        return hmac.new(self._key, label.encode() + b"\x00" + value.encode("utf-8", "replace"),
                        hashlib.sha256).digest()

    def uid(self, old: str) -> str:
        old = old.rstrip("\x00 ")
        if not old or is_registry_uid(old):
            return old
        new = self._uids.get(old)
        if new is None:
            new = "2.25." + str(int.from_bytes(self._mac("uid", old)[:16], "big"))
            self._uids[old] = new
        return new

    def patient_id(self, issuer: str, pid: str) -> str:
        """A pseudonym (LO, 16 hex digits) for Issuer of Patient ID + Patient ID."""
        return "ANON" + self._mac("pid", f"{issuer}|{pid}")[:6].hex().upper()

    def pseudonym(self, kind: str, value: str, length: int = 16) -> str:
        """A stable short pseudonym (for AE titles and device names under "clean")."""
        return (kind + self._mac(kind, value).hex().upper())[:length]

    def date_offset(self, issuer: str, pid: str) -> int:
        """The per-patient shift in days (negative, whole weeks)."""
        n = int.from_bytes(self._mac("date", f"{issuer}|{pid}")[:4], "big")
        return -7 * (_MIN_WEEKS + n % (_MAX_WEEKS - _MIN_WEEKS))


def shift_da(value: str, days: int) -> str:
    """Shift one DA value (YYYYMMDD); a range ``A-B`` shifts both ends; bad values -> ''."""
    if "-" in value:
        return "-".join(shift_da(p, days) if p else "" for p in value.split("-", 1))
    v = value.strip()
    try:
        d = _dt.date(int(v[0:4]), int(v[4:6]), int(v[6:8]))
    except (ValueError, IndexError):
        return ""
    if len(v) != 8:
        return ""
    try:
        return (d + _dt.timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:
        return ""


def shift_dt(value: str, days: int) -> str:
    """Shift the date part of a DT (YYYY[MM[DD[...]]][&ZZXX]); time and offset kept."""
    if "-" in value[1:] and not _has_offset_minus(value):
        a, b = value.split("-", 1)
        return f"{shift_dt(a, days) if a else ''}-{shift_dt(b, days) if b else ''}"
    v = value.strip()
    if len(v) < 8:
        # year or year-month only: shifting by weeks is meaningless; keep the year minus
        # whole years of the shift
        try:
            y = int(v[0:4]) + days // 365
            return f"{y:04d}" + v[4:]
        except ValueError:
            return ""
    d = shift_da(v[:8], days)
    return d + v[8:] if d else ""


def _has_offset_minus(value: str) -> bool:
    # DT "YYYYMMDDHHMMSS-0500": a minus after position 14 is a UTC offset, not a range
    i = value.find("-")
    return i >= 8 and (i == len(value) - 5) and value[i + 1:].isdigit() and value.count("-") == 1 \
        and len(value) > 12
