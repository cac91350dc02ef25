"""SOP Instance Status (0100,0410) and its companions, as PS3.15 A.1 has them.

* ``NS`` not specified, ``OR`` original, ``AO`` authorized original, ``AC`` authorized copy.
* OR (or absent) -> AO sets SOP Authorization DateTime (0100,0420) and, when configured,
  Authorization Equipment Certification Number (0100,0426) and a comment (0100,0424).
* AO/AC -> AC for copies; never AC from OR, NS or nothing.

Changing a status attribute that a signature lists in its Data Elements Signed breaks that
signature (even when the attribute was absent at signing time). So before any change we find
every such signature: by default we refuse; with ``drop_covering=True`` the signature (and its
MAC Parameters item when no other signature uses it) is removed and reported, as A.2 does.
"""

from __future__ import annotations

import datetime as _dt
import struct
from dataclasses import dataclass

from mediasec.errors import UsageError
from mediasec.sign._raw import Part10, Splice, SplicedSource, encode_element, \
    parse_part10_inflated
from mediasec.sign.profiles import STATUS_TAGS, tag_str
from mediasec.sign.signature import (DATA_ELEMENTS_SIGNED, DIGITAL_SIGNATURES, MAC_ID,
                                     MAC_PARAMETERS, SIG_UID, _at_list, _now_dt, _text, _us,
                                     group_length_patches)

__all__ = ["current_status", "covering_signatures", "change_status", "DroppedSignature",
           "STATUS", "AUTH_DATETIME", "AUTH_COMMENT", "AUTH_EQUIPMENT"]

STATUS, AUTH_DATETIME, AUTH_COMMENT, AUTH_EQUIPMENT = STATUS_TAGS


@dataclass(frozen=True)
class DroppedSignature:
    mac_id: int | None
    uid: str | None
    covered: tuple[str, ...]

    def to_dict(self):
        return {"mac_id": self.mac_id, "uid": self.uid, "covered": list(self.covered)}


def current_status(part: Part10) -> str | None:
    return _text(part.dataset.get(STATUS), part.source) or None


def covering_signatures(part: Part10, tags) -> list[tuple]:
    """Top-level signatures listing any of ``tags``: [(sig_item, mac_id, uid, covered)]."""
    src = part.source
    top = part.dataset
    sigs = top.get(DIGITAL_SIGNATURES)
    params = top.get(MAC_PARAMETERS)
    listed = {}
    for it in (params.items or ()) if params is not None else ():
        el = it.get(DATA_ELEMENTS_SIGNED)
        listed[_us(it.get(MAC_ID), src)] = set(_at_list(el, src)) if el is not None else set()
    out = []
    for it in (sigs.items or ()) if sigs is not None else ():
        mid = _us(it.get(MAC_ID), src)
        covered = sorted(listed.get(mid, set()) & set(tags))
        if covered:
            out.append((it, mid, _text(it.get(SIG_UID), src), tuple(map(tag_str, covered))))
    return out


def _drop_splices(part: Part10, drop: list) -> tuple[list[Splice], dict[int, int]]:
    src = part.source
    top = part.dataset
    out, deltas = [], {}
    sigs = top.get(DIGITAL_SIGNATURES)
    params = top.get(MAC_PARAMETERS)
    drop_items = {id(d[0]) for d in drop}
    keep_sigs = [it for it in sigs.items if id(it) not in drop_items]
    still_used = {_us(it.get(MAC_ID), src) for it in keep_sigs}
    dropped_ids = {d[1] for d in drop} - still_used
    for el, gone in ((sigs, [it for it in sigs.items if id(it) in drop_items]),
                     (params, [it for it in (params.items if params is not None else ())
                               if _us(it.get(MAC_ID), src) in dropped_ids])):
        if el is None or not gone:
            continue
        group = el.tag >> 16
        if len(gone) == len(el.items):
            out.append(Splice(el.hdr, el.end - el.hdr, b""))
            deltas[group] = deltas.get(group, 0) - (el.end - el.hdr)
            continue
        removed = 0
        for it in gone:
            out.append(Splice(it.hdr, it.end - it.hdr, b""))
            removed += it.end - it.hdr
        if not el.undefined:
            out.append(Splice(el.length_field(), 4,
                              struct.pack(el.coding.endian + "I", el.length - removed)))
        deltas[group] = deltas.get(group, 0) - removed
    return out, deltas


def change_status(part: Part10, new: str, *, now: _dt.datetime | None = None,
                  comment: str | None = None, equipment_cert: str | None = None,
                  drop_covering: bool = False) -> tuple[Part10, list[DroppedSignature]]:
    """Set SOP Instance Status to ``new`` (``AO`` or ``AC``) by A.1's rules."""
    old = current_status(part)
    if new == "AO":
        if old not in (None, "OR"):
            raise UsageError(f"SOP Instance Status is {old}; only an original (OR) or an "
                             "object without a status can be authorized",
                             code="STATUS_REFUSED")
    elif new == "AC":
        if old not in ("AO", "AC"):
            raise UsageError(f"SOP Instance Status is {old or 'absent'}; only an authorized "
                             "original (AO) or copy (AC) can be marked AC",
                             code="STATUS_REFUSED")
    else:
        raise UsageError(f"unsupported status change to {new!r}", code="USAGE")
    values = {STATUS: new.encode()}
    if new == "AO":
        values[AUTH_DATETIME] = _now_dt(now or _dt.datetime.now(_dt.timezone.utc)).encode()
        if comment is not None:
            values[AUTH_COMMENT] = comment.encode()
        if equipment_cert is not None:
            values[AUTH_EQUIPMENT] = equipment_cert.encode()
    src = part.source
    top = part.dataset
    changing = [t for t, v in values.items()
                if top.get(t) is None or top.get(t).read_value(src).rstrip(b"\0 ") != v]
    covering = covering_signatures(part, changing)
    if covering and not drop_covering:
        mid, uid, covered = covering[0][1:]
        raise UsageError(f"signature {mid} ({uid}) covers {', '.join(covered)}; changing it "
                         "would break that signature (give --drop-covering-signatures to "
                         "remove it)", code="STATUS_SIGNED")
    vrs = {STATUS: "CS", AUTH_DATETIME: "DT", AUTH_COMMENT: "LT", AUTH_EQUIPMENT: "LO"}
    splices, deltas = _drop_splices(part, covering) if covering else ([], {})
    added = 0
    for order, (tag, value) in enumerate(sorted(values.items())):
        data = encode_element(tag, vrs[tag], value, top.coding)
        el = top.get(tag)
        if el is None:
            splices.append(Splice(top.insert_offset(tag), 0, data, order))
            added += len(data)
        else:
            splices.append(Splice(el.hdr, el.end - el.hdr, data, order))
            added += len(data) - (el.end - el.hdr)
    deltas[0x0100] = deltas.get(0x0100, 0) + added
    splices += group_length_patches(top, deltas, src)
    new_part = parse_part10_inflated(SplicedSource(src, splices), part)
    return new_part, [DroppedSignature(m, u, c) for _it, m, u, c in covering]


