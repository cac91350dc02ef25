"""Modification strips stale signatures.

Any operation of ours that changes a signed object (the implicit VR / deflate transcoding of
a build, de-identification next) must not hand on a signature that no longer verifies as if it
were valid. ``strip_stale(before, after)`` compares the two: every signature whose MAC and
signature held in ``before`` but fail in ``after`` is removed from ``after`` (its (FFFA,FFFA)
item, and its (4FFE,0001) item when no other signature uses that MAC ID; the sequence itself
when it empties) and reported. Signatures that were already broken in the input are passed on
untouched (they are the sender's, reported by any verifier), and so are those still valid:
bit-preserving changes (length style, VR encoding, byte order) keep them valid by design.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mediasec.sign._raw import Part10, Splice, SplicedSource, parse_part10_inflated
from mediasec.sign.signature import (DIGITAL_SIGNATURES, MAC_ID, MAC_PARAMETERS,
                                     SignatureResult, _us, check_part10, iter_levels)

__all__ = ["StrippedSignature", "strip_stale", "remove_signatures"]


@dataclass(frozen=True)
class StrippedSignature:
    path: str
    mac_id: int | None
    uid: str | None
    reason: str          # the code it would have been reported with

    def to_dict(self) -> dict:
        return {"path": self.path, "mac_id": self.mac_id, "uid": self.uid,
                "reason": self.reason}


def _crypto_ok(r: SignatureResult) -> bool:
    return r.crypto_ok


def strip_stale(before: Part10, after: Part10) -> tuple[Part10, list[StrippedSignature]]:
    """``after`` without the signatures that verified in ``before`` and no longer do."""
    was_ok = {(r.path, r.uid) for r in check_part10(before) if _crypto_ok(r)}
    if not was_ok:
        return after, []
    broken = [r for r in check_part10(after)
              if (r.path, r.uid) in was_ok and not _crypto_ok(r)]
    if not broken:
        return after, []
    targets = {(r.path, r.uid) for r in broken}
    return remove_signatures(after, targets), [
        StrippedSignature(r.path, r.mac_id, r.uid, r.code) for r in broken]


def remove_signatures(part: Part10, targets: set[tuple[str, str | None]]) -> Part10:
    """``part`` without the signatures named by (level path, Digital Signature UID)."""
    from mediasec.sign.signature import SIG_UID, _text
    src = part.source
    splices: list[Splice] = []
    # length field offset -> [coding, old length, delta], summed over every removal below it
    lengths: dict[int, list] = {}

    def grow(off: int, coding, old: int, delta: int) -> None:
        entry = lengths.setdefault(off, [coding, old, 0])
        entry[2] += delta

    for level in iter_levels(part):
        sigs = level.item.get(DIGITAL_SIGNATURES)
        if sigs is None or not sigs.items:
            continue
        gone = [it for it in sigs.items
                if (level.path, _text(it.get(SIG_UID), src)) in targets]
        if not gone:
            continue
        keep_ids = {_us(it.get(MAC_ID), src) for it in sigs.items if it not in gone}
        drop_ids = {_us(it.get(MAC_ID), src) for it in gone} - keep_ids
        params = level.item.get(MAC_PARAMETERS)
        delta = 0
        for el, items in ((sigs, gone),
                          (params, [it for it in (params.items if params is not None else ())
                                    if _us(it.get(MAC_ID), src) in drop_ids])):
            if el is None or not items:
                continue
            if len(items) == len(el.items):
                splices.append(Splice(el.hdr, el.end - el.hdr, b""))
                delta -= el.end - el.hdr
                continue
            removed = sum(it.end - it.hdr for it in items)
            splices += [Splice(it.hdr, it.end - it.hdr, b"") for it in items]
            if not el.undefined:
                grow(el.length_field(), el.coding, el.length, -removed)
            delta -= removed
        for el, item in level.ancestors:
            if not el.undefined:
                grow(el.length_field(), el.coding, el.length, delta)
            if not item.undefined:
                grow(item.hdr + 4, item.coding, item.length, delta)
    for off, (coding, old, delta) in lengths.items():
        splices.append(Splice(off, 4, struct.pack(coding.endian + "I", old + delta)))
    return parse_part10_inflated(SplicedSource(src, splices), part)
