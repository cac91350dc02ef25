"""Create and verify DICOM Digital Signatures (PS3.15 Annex C, PS3.3 C.12.1.1.3).

``sign_part10`` adds one signature (a (FFFA,FFFA) item and its (4FFE,0001) MAC Parameters
item) at the top level or inside any sequence item; ``check_part10`` verifies every
signature at every level. Both work on the random-access tree of ``sign._raw``: nothing
is re-serialised, the signed bytes are hashed as stored (byte-swapped for big endian) and
the output is the input plus a few splices.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import algos as aalgos
from asn1crypto import cms as acms
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509 import InvalidVersion
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as autils

from mediasec.dicom.tags import SOP_CLASS_UID
from mediasec.errors import InputError, MediasecError, PolicyRefusal, SignatureError, UsageError
from mediasec.pki import certs as pcerts
from mediasec.pki.trust import check_signer_certificate
from mediasec.policy import AlgorithmPolicy, TrustContext
from mediasec.report import Finding, Outcome
from mediasec.sign import mac as macs
from mediasec.sign._raw import (BE, ELE, EXPLICIT_LE, ILE, NATIVE_TS, BytesDropped,
                                BytesSource, Coding,
                                Element, Item, Part10, Splice, SplicedSource, _Parser,
                                encode_item, pack_length)
from mediasec.sign.profiles import (STATUS_TAGS, profiles_satisfied, purposes,
                                    signature_profile, tag_str)

__all__ = ["SignRequest", "SignedSignature", "SignatureResult", "sign_part10",
           "plan_signature", "SignPlan", "new_signature_uid",
           "check_part10", "resolve_level", "level_path", "mac_transfer_syntax",
           "DIGITAL_SIGNATURES", "MAC_PARAMETERS", "Level"]

DIGITAL_SIGNATURES = 0xFFFAFFFA
MAC_PARAMETERS = 0x4FFE0001
MAC_ID = 0x04000005
MAC_TS = 0x04000010
MAC_ALGORITHM = 0x04000015
DATA_ELEMENTS_SIGNED = 0x04000020
SIG_UID = 0x04000100
SIG_DATETIME = 0x04000105
CERT_TYPE = 0x04000110
CERT_OF_SIGNER = 0x04000115
SIGNATURE = 0x04000120
TS_TYPE = 0x04000305
TIMESTAMP = 0x04000310
PURPOSE_SEQ = 0x04000401
VERIFICATION_FLAG = 0x0040A493


# -- small helpers ------------------------------------------------------------------------------

def _text(el: Element | None, src) -> str | None:
    if el is None or el.items is not None or el.frags is not None:
        return None
    return el.read_value(src).decode("latin-1").rstrip("\0 ").strip()


def _us(el: Element | None, src) -> int | None:
    if el is None or el.length != 2:
        return None
    return struct.unpack(el.coding.endian + "H", el.read_value(src))[0]


def _at_list(el: Element, src) -> list[int]:
    raw = el.read_value(src)
    e = el.coding.endian
    return [(g << 16) | n for g, n in struct.iter_unpack(e + "HH", raw[:len(raw) // 4 * 4])]


def _der_trim(data: bytes) -> bytes:
    """An OB value holding DER, cut to its outer TLV (OB values are padded to even length)."""
    if len(data) < 2:
        return data
    n = data[1]
    if n < 0x80:
        return data[:2 + n]
    k = n & 0x7F
    if k == 0 or k > 4 or len(data) < 2 + k:
        return data
    return data[:2 + k + int.from_bytes(data[2:2 + k], "big")]


def mac_transfer_syntax(ts: str) -> str:
    """What we record as MAC Calculation Transfer Syntax for a file in ``ts``."""
    return ELE if ts in NATIVE_TS else ts


def _mac_ts_allowed(ts: str) -> bool:
    return ts not in (ILE, BE) and bool(ts)


def _now_dt(now: _dt.datetime) -> str:
    now = now.astimezone(_dt.timezone.utc)
    return now.strftime("%Y%m%d%H%M%S.%f") + "+0000"


def _parse_dt(text: str | None) -> _dt.datetime | None:
    """DICOM DT to an aware datetime (no offset: UTC)."""
    if not text:
        return None
    m = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?"
                     r"([+-]\d{4})?", text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, off = m.groups()
    tz = _dt.timezone.utc
    if off:
        sign = -1 if off[0] == "-" else 1
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
    try:
        return _dt.datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0),
                            int(s or 0), int((frac or "0").ljust(6, "0")), tzinfo=tz)
    except ValueError:
        return None


# -- levels -------------------------------------------------------------------------------------

@dataclass
class Level:
    item: Item
    path: str                       # "" for the main data set, else "Seq[i].Seq[j]"
    ancestors: list                 # [(Element, Item)] from the top down to this item


@functools.lru_cache(maxsize=4096)
def _keyword(tag: int) -> str | None:
    from pydicom import datadict
    try:
        return datadict.keyword_for_tag(tag) or None
    except Exception:  # noqa: BLE001 - unknown tags have no keyword
        return None


def _tag_for(name: str) -> int:
    name = name.strip()
    m = re.fullmatch(r"\(?([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)?", name)
    if m:
        return (int(m.group(1), 16) << 16) | int(m.group(2), 16)
    from pydicom import datadict
    tag = datadict.tag_for_keyword(name)
    if tag is None:
        raise UsageError(f"unknown attribute {name!r}", code="USAGE")
    return tag


def parse_tag_name(name: str) -> int:
    return _tag_for(name)


def level_path(parent: str, el: Element, index: int) -> str:
    kw = _keyword(el.tag) or f"({tag_str(el.tag)})"
    step = f"{kw}[{index}]"
    return f"{parent}.{step}" if parent else step


def resolve_level(part: Part10, path: str | None) -> Level:
    """``Seq[i].Seq[j]`` (keywords or gggg,eeee) -> the item there (dcmsign +si syntax)."""
    item = part.dataset
    if not path:
        return Level(item, "", [])
    ancestors = []
    done = ""
    for step in path.split("."):
        m = re.fullmatch(r"\s*(.+?)\[(\d+)\]\s*", step)
        if not m:
            raise UsageError(f"bad item location {path!r} (expected Sequence[index].…)",
                             code="USAGE")
        tag = _tag_for(m.group(1))
        idx = int(m.group(2))
        el = item.get(tag)
        if el is None or el.items is None:
            raise UsageError(f"no sequence {m.group(1)} at {done or 'the top level'}",
                             code="USAGE_NO_SUCH_ITEM")
        if idx >= len(el.items):
            raise UsageError(f"{m.group(1)} has no item {idx}", code="USAGE_NO_SUCH_ITEM")
        ancestors.append((el, el.items[idx]))
        done = level_path(done, el, idx)
        item = el.items[idx]
    return Level(item, done, ancestors)


def iter_levels(part: Part10):
    """Every item that can hold signatures: the data set and all items, depth first."""
    stack = [Level(part.dataset, "", [])]
    while stack:
        lv = stack.pop()
        yield lv
        for el in reversed(lv.item.elements):
            if el.items is None or el.tag in (DIGITAL_SIGNATURES, MAC_PARAMETERS):
                continue
            for i in range(len(el.items) - 1, -1, -1):
                stack.append(Level(el.items[i], level_path(lv.path, el, i),
                                   lv.ancestors + [(el, el.items[i])]))


# -- splicing helpers ---------------------------------------------------------------------------

def length_patches(level: Level, delta: int, src) -> list[Splice]:
    """New length fields for every defined-length item and sequence around ``level``."""
    out = []
    if not delta:
        return out
    for el, item in level.ancestors:
        if not el.undefined:
            off = el.length_field()
            out.append(Splice(off, 4, pack_length(el.length + delta, el.coding)))
        if not item.undefined:
            out.append(Splice(item.hdr + 4, 4, pack_length(item.length + delta, item.coding)))
    return out


def group_length_patches(item: Item, group_deltas: dict[int, int], src) -> list[Splice]:
    out = []
    for group, d in group_deltas.items():
        gl = item.get(group << 16)
        if gl is not None and gl.length == 4 and d:
            old = struct.unpack(gl.coding.endian + "I", gl.read_value(src))[0]
            out.append(Splice(gl.val, 4, struct.pack(gl.coding.endian + "I", old + d)))
    return out


def add_to_sequence(item: Item, tag: int, vr_items: list[bytes], coding: Coding,
                    order: int) -> tuple[list[Splice], int]:
    """Append encoded items to sequence ``tag`` of ``item`` (created if absent).

    Returns the splices and the number of bytes added at this level."""
    el = item.get(tag)
    body = b"".join(vr_items)
    if el is None:
        from mediasec.sign._raw import encode_header
        data = encode_header(tag, "SQ", len(body), coding) + body
        return [Splice(item.insert_offset(tag), 0, data, order)], len(data)
    if el.items is None:
        raise InputError(f"({tag_str(tag)}) is not a sequence", code="DICOM_MALFORMED")
    at = el.end - 8 if el.undefined else el.end
    out = [Splice(at, 0, body, order)]
    if not el.undefined:
        out.append(Splice(el.length_field(), 4, pack_length(el.length + len(body), el.coding)))
    return out, len(body)


# -- signing ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignRequest:
    """What to sign: profile, MAC, purpose, where, and (optionally) which elements."""

    profile: str = "base"
    mac: str = "SHA256"
    purpose: str | None = None
    item_path: str | None = None
    tags: tuple[int, ...] | None = None     # None: every signable element at the level
    now: _dt.datetime | None = None         # injected for tests
    uid: str | None = None


@dataclass(frozen=True)
class SignedSignature:
    path: str
    mac_id: int
    uid: str
    datetime: str
    mac: str
    profile: str
    signed_tags: tuple[int, ...]
    purpose: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "mac_id": self.mac_id, "uid": self.uid,
                "datetime": self.datetime, "mac_algorithm": self.mac, "profile": self.profile,
                "purpose": self.purpose, "signed_elements": len(self.signed_tags)}


def check_mac_for_writing(mac: str, policy: AlgorithmPolicy) -> None:
    if mac in macs.NEVER_WRITE:
        raise PolicyRefusal(f"{mac} MACs are never written", code="POLICY_ALGORITHM_REFUSED")
    if mac in macs.LEGACY_MACS:
        if not policy.allow_legacy:
            raise PolicyRefusal(f"{mac} is a legacy MAC; refused without --allow-legacy",
                                code="POLICY_LEGACY_REFUSED")
        return
    if mac not in macs.WRITE_MACS:
        raise PolicyRefusal(f"unknown MAC algorithm {mac!r}", code="POLICY_UNKNOWN_ALGORITHM")


def _sop_class(part: Part10) -> str | None:
    return _text(part.dataset.get(SOP_CLASS_UID), part.source)


def _next_mac_id(item: Item, src) -> int:
    used = set()
    for tag in (MAC_PARAMETERS, DIGITAL_SIGNATURES):
        el = item.get(tag)
        for it in (el.items or ()) if el is not None else ():
            v = _us(it.get(MAC_ID), src)
            if v is not None:
                used.add(v)
    n = 0
    while n in used:
        n += 1
    if n > 0xFFFF:
        raise InputError("no free MAC ID Number at this level", code="DICOM_MALFORMED")
    return n


def _choose_tags(level: Level, profile, req: SignRequest, src) -> list[int]:
    item = level.item
    present = item.index()
    if req.tags is None:
        # every signable element (each judged once)
        is_signable = macs.is_signable
        chosen = {el.tag for el in item.elements if is_signable(el)}
        if not profile.status_tags:
            chosen -= set(STATUS_TAGS)
        if not chosen:
            raise UsageError("nothing to sign at this level", code="USAGE")
        return sorted(chosen)
    else:
        chosen = set(req.tags)
        missing = sorted(t for t in chosen if t not in present)
        if missing:
            raise UsageError(f"asked to sign ({tag_str(missing[0])}), which is not present at "
                             f"{level.path or 'the top level'}", code="USAGE_NOT_PRESENT")
        chosen |= {t for t in profile.write_minimum if t in present}
        chosen |= profile.required_present(present)
        if profile.status_tags:
            chosen |= {t for t in STATUS_TAGS if t in present}
    bad = sorted(t for t in chosen if not macs.is_signable(present[t]))
    if bad:
        raise UsageError(f"({tag_str(bad[0])}) cannot be signed (PS3.15 C.12.1.1.3.1.1: UN, "
                         "group length, or a sequence holding UN)", code="SIG_NOT_SIGNABLE")
    if not chosen:
        raise UsageError("nothing to sign at this level", code="USAGE")
    return sorted(chosen)


def new_signature_uid() -> str:
    """``2.25.`` + a random 128-bit integer with its top bit set: always 44 characters, so
    the output size is known before signing."""
    return f"2.25.{uuid.uuid4().int | (1 << 127)}"


@dataclass
class SignPlan:
    """Everything about a signature except the signature value: checked, sized, ready.

    ``size`` is the exact size of the signed file (``None`` for a deflated input, whose
    output size depends on the compressor); ``execute(signer)`` hashes and signs."""

    part: Part10
    level: Level
    profile: Any
    req: SignRequest
    tags: list
    mac_id: int
    uid: str
    purpose: str | None
    cert_der: bytes
    sig_len: int
    delta: int = 0
    _mac_item: bytes | None = field(default=None, repr=False)

    @property
    def size(self) -> int | None:
        return None if self.part.deflated else self.part.source.size + self.delta

    def _tail(self, when: str) -> list:
        tail = [(MAC_ID, "US", struct.pack("<H", self.mac_id)),
                (SIG_UID, "UI", self.uid.encode()),
                (SIG_DATETIME, "DT", when.encode()),
                (CERT_TYPE, "CS", b"X509_1993_SIG")]
        if self.purpose is not None:
            scheme, meanings = purposes()
            tail.append((PURPOSE_SEQ, "SQ", [[(0x00080100, "SH", self.purpose.encode()),
                                              (0x00080102, "SH", scheme.encode()),
                                              (0x00080104, "LO",
                                               meanings[self.purpose].encode())]]))
        return tail

    def _splices(self, tail: list, signature: bytes) -> tuple[list[Splice], int]:
        item, coding, src = self.level.item, self.level.item.coding, self.part.source
        sig_item = encode_item(tail + [(CERT_OF_SIGNER, "OB", self.cert_der),
                                       (SIGNATURE, "OB", signature)], coding)
        mac_item = self._mac_item
        if mac_item is None:          # the same when sized and when signed: encoded once
            # AT values: (group, element) pairs, little endian (one pack for the whole list)
            at_value = struct.pack(f"<{2 * len(self.tags)}H",
                                   *[h for t in self.tags for h in (t >> 16, t & 0xFFFF)])
            mac_item = self._mac_item = encode_item(
                [(MAC_ID, "US", struct.pack("<H", self.mac_id)),
                 (MAC_TS, "UI", mac_transfer_syntax(self.part.transfer_syntax).encode()),
                 (MAC_ALGORITHM, "CS", self.req.mac.encode()),
                 (DATA_ELEMENTS_SIGNED, "AT", at_value)], coding)
        s1, d1 = add_to_sequence(item, MAC_PARAMETERS, [mac_item], coding, 0)
        s2, d2 = add_to_sequence(item, DIGITAL_SIGNATURES, [sig_item], coding, 1)
        splices = s1 + s2 + length_patches(self.level, d1 + d2, src)
        splices += group_length_patches(item, {0x4FFE: d1, 0xFFFA: d2}, src)
        return splices, d1 + d2

    def execute(self, signer) -> tuple[SplicedSource, SignedSignature]:
        if _der_of(signer.certificate) != self.cert_der:
            raise UsageError("the signer is not the one the signature was planned for",
                             code="USAGE")
        src = self.part.source
        when = _now_dt(self.req.now or _dt.datetime.now(_dt.timezone.utc))
        tail = self._tail(when)
        # the MAC: S from the file, T from the new item's own elements (parsed as a reader
        # would see them)
        h = macs.new_hash(self.req.mac)
        macs.StreamBuilder(src, h.update).elements([self.level.item.get(t) for t in self.tags])
        _feed_tail(_parse_items(tail), h.update)
        signature = signer.sign_digest_info(macs.digest_info_prefix(self.req.mac) + h.digest())
        if len(signature) != self.sig_len:
            raise UsageError("the signer returned a signature of an unexpected length",
                             code="USAGE")
        splices, delta = self._splices(tail, signature)
        if delta != self.delta:
            from mediasec.errors import InternalError
            raise InternalError("signed size differs from the planned size")
        facts = SignedSignature(self.level.path, self.mac_id, self.uid, when, self.req.mac,
                                self.profile.name, tuple(self.tags), self.purpose)
        return SplicedSource(src, splices), facts


def plan_signature(part: Part10, certificate, req: SignRequest = SignRequest(), *,
                   policy: AlgorithmPolicy = AlgorithmPolicy()) -> SignPlan:
    """Check a signature request against ``part`` and size it, without the private key."""
    check_mac_for_writing(req.mac, policy)
    profile = signature_profile(req.profile)
    pub = certificate.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        raise UsageError("DICOM signature profiles are RSA only; the certificate's key is "
                         f"{type(pub).__name__.removeprefix('_')}", code="KEY_NOT_RSA")
    policy.check_rsa_bits(pub.key_size, "the signing key")
    src = part.source
    if profile.top_level_only and req.item_path:
        raise UsageError(f"the {profile.name} profile signs the main data set only",
                         code="USAGE")
    level = resolve_level(part, req.item_path)
    sop_class = _sop_class(part)
    purpose = req.purpose
    _scheme, meanings = purposes()
    if profile.sop_class_prefix and not (sop_class or "").startswith(profile.sop_class_prefix):
        raise UsageError(f"the {profile.name} profile applies to SR documents only",
                         code="USAGE_PROFILE_NOT_APPLICABLE")
    if profile.verified_purpose and purpose is None and \
            _text(part.dataset.get(VERIFICATION_FLAG), src) == "VERIFIED":
        purpose = profile.verified_purpose
    if profile.purpose_required and purpose is None:
        raise UsageError(f"the {profile.name} profile needs a signature purpose (--purpose)",
                         code="USAGE")
    if purpose is not None and purpose not in meanings:
        raise UsageError(f"unknown signature purpose {purpose!r} (1-18)", code="USAGE")
    tags = _choose_tags(level, profile, req, src)
    plan = SignPlan(part, level, profile, req, tags, _next_mac_id(level.item, src),
                    req.uid or new_signature_uid(), purpose, _der_of(certificate),
                    (pub.key_size + 7) // 8)
    # sized with placeholders of the final lengths (DT is fixed-length, UID chosen above)
    _spl, plan.delta = plan._splices(plan._tail(_now_dt(_dt.datetime.now(_dt.timezone.utc))),
                                     bytes(plan.sig_len))
    return plan


def sign_part10(part: Part10, signer, req: SignRequest = SignRequest(), *,
                policy: AlgorithmPolicy = AlgorithmPolicy()
                ) -> tuple[SplicedSource, SignedSignature]:
    """Add one signature to ``part``; return the signed file (a spliced source) and its facts.

    ``signer`` is a ``mediasec.cms.keys.Signer`` (RSA; ``sign_digest_info``)."""
    return plan_signature(part, signer.certificate, req, policy=policy).execute(signer)


def _der_of(cert) -> bytes:
    """The certificate's DER, remembered by identity for the running job (a certificate
    object hashes its whole DER on every lookup; the entry holds the object, so its id is
    not reused while the entry lives)."""
    hit = _DER_BY_ID.lookup(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1]
    der = cert.public_bytes(serialization.Encoding.DER)
    _DER_BY_ID.put(id(cert), (cert, der))
    return der


#: id(certificate) -> (certificate, DER); job-scoped
_DER_BY_ID = pcerts.Memo(16)


def _parse_items(elements) -> Item:
    """The elements, encoded explicit VR LE and parsed back (the reader's view of them)."""
    data = encode_item(elements, EXPLICIT_LE)
    src = BytesSource(data)
    it = Item(0, 8, len(data) - 8, len(data), EXPLICIT_LE)
    _Parser(src).dataset(8, len(data), EXPLICIT_LE, 1, it)
    it._src = src
    return it


def _feed_tail(item: Item, update, src=None) -> None:
    src = src or item._src
    excluded, is_signable = macs.SIGNATURE_TAIL_EXCLUDED, macs.is_signable
    macs.StreamBuilder(src, update).elements(
        [el for el in sorted(item.elements, key=_by_tag)
         if el.tag not in excluded and is_signable(el)])


def _by_tag(el: Element) -> int:
    return el.tag


# -- verification -------------------------------------------------------------------------------

STATUS_CODES = {
    "valid": ("SIG_VALID", Outcome.PASSED),
    "trust_not_checked": ("SIG_TRUST_NOT_CHECKED", Outcome.INDETERMINATE),
    "mac_mismatch": ("SIG_MAC_MISMATCH", Outcome.FAILED),
    "elements_missing": ("SIG_ELEMENTS_MISSING", Outcome.FAILED),
    "bad_signature": ("SIG_BAD_SIGNATURE", Outcome.FAILED),
    "untrusted": ("SIG_UNTRUSTED", Outcome.FAILED),
    "expired": ("SIG_EXPIRED", Outcome.FAILED),
    "expired_at_signing": ("SIG_EXPIRED_AT_SIGNING", Outcome.FAILED),
    "not_yet_valid_at_signing": ("SIG_NOT_YET_VALID_AT_SIGNING", Outcome.FAILED),
    "unsupported_algorithm": ("SIG_UNSUPPORTED_ALGORITHM", Outcome.FAILED),
    "not_signable": ("SIG_NOT_SIGNABLE", Outcome.FAILED),
    "old_format": ("SIG_OLD_FORMAT", Outcome.FAILED),
    "malformed": ("SIG_MALFORMED", Outcome.FAILED),
    "key_usage": ("SIG_KEYUSAGE", Outcome.FAILED),
}


@dataclass
class SignatureResult:
    path: str
    mac_id: int | None = None
    uid: str | None = None
    datetime: str | None = None
    signer: str | None = None
    serial: str | None = None
    key: str | None = None
    mac_algorithm: str | None = None
    mac_transfer_syntax: str | None = None
    signed_tags: list[int] = field(default_factory=list)
    missing_elements: list[str] = field(default_factory=list)
    purpose: dict | None = None
    timestamp: dict | None = None
    profiles: list[str] = field(default_factory=list)
    weak: list[str] = field(default_factory=list)
    dicom_profile_key: bool = True
    status: str = "malformed"
    message: str = ""
    covers_status: bool = False

    @property
    def code(self) -> str:
        return STATUS_CODES[self.status][0]

    @property
    def outcome(self) -> Outcome:
        return STATUS_CODES[self.status][1]

    @property
    def crypto_ok(self) -> bool:
        return self.status in ("valid", "trust_not_checked", "untrusted", "expired",
                               "expired_at_signing", "not_yet_valid_at_signing", "key_usage")

    def findings(self) -> list[Finding]:
        where = self.path or "main data set"
        out = [Finding(self.code, self.outcome, f"signature {self.mac_id} in {where}: "
                       f"{self.message}", {"path": self.path, "uid": self.uid})]
        if self.weak:
            out.append(Finding("SIG_WEAK_ALGORITHM", Outcome.WARNING,
                               f"signature {self.mac_id} in {where} uses "
                               f"{' and '.join(self.weak)}", {"path": self.path}))
        if not self.dicom_profile_key:
            out.append(Finding("SIG_NO_DICOM_PROFILE", Outcome.WARNING,
                               f"signature {self.mac_id} in {where} uses a {self.key} key, "
                               "which no DICOM signature profile defines (RSA only)",
                               {"path": self.path}))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "mac_id": self.mac_id, "uid": self.uid,
                "datetime": self.datetime, "signer": self.signer, "serial": self.serial,
                "key": self.key, "mac_algorithm": self.mac_algorithm,
                "mac_transfer_syntax": self.mac_transfer_syntax,
                "signed_elements": [tag_str(t) for t in self.signed_tags],
                "missing_elements": self.missing_elements, "purpose": self.purpose,
                "timestamp": self.timestamp, "profiles": self.profiles, "weak": self.weak,
                "dicom_profile_key": self.dicom_profile_key, "covers_status": self.covers_status,
                "status": self.status, "code": self.code, "outcome": self.outcome.value,
                "message": self.message}


def check_part10(part: Part10, *, trust: TrustContext | None = None,
                 now: _dt.datetime | None = None, digests=None) -> list[SignatureResult]:
    """Verify every signature at every level of ``part``.

    ``digests(level, mac, tags)`` (optional) may return a hash object already fed with the
    S part of the MAC stream of the ``tags`` listed at ``level`` (computed as the file
    streamed past), or None to have it computed here from ``part.source``."""
    results = []
    sop_class = _sop_class(part)
    verified = _text(part.dataset.get(VERIFICATION_FLAG), part.source) == "VERIFIED"
    for level in iter_levels(part):
        sigs = level.item.get(DIGITAL_SIGNATURES)
        if sigs is None or not sigs.items:
            continue
        for sig_item in sigs.items:
            r = SignatureResult(level.path)
            try:
                _check_one(part, level, sig_item, r, trust, now, sop_class, verified,
                           digests)
            except MediasecError as exc:   # a damaged part of one signature: that signature
                r.status, r.message = "malformed", exc.message
            except (ValueError, TypeError, UnsupportedAlgorithm, InvalidVersion) as exc:
                # the crypto libraries' parsers on damaged certificate/signature data: that
                # signature fails, the others are still judged
                r.status = "malformed"
                r.message = (f"damaged certificate or signature data "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})")
            results.append(r)
    return results


def _mac_params(item: Item, mac_id: int, src) -> Item | None:
    el = item.get(MAC_PARAMETERS)
    for it in (el.items or ()) if el is not None else ():
        if _us(it.get(MAC_ID), src) == mac_id:
            return it
    return None


def _timestamp_info(sig_item: Item, src, signature: bytes) -> dict | None:
    el = sig_item.get(TIMESTAMP)
    if el is None:
        return None
    info: dict[str, Any] = {"type": _text(sig_item.get(TS_TYPE), src), "gen_time": None,
                            "covers_signature": None}
    try:
        from asn1crypto import tsp as atsp
        ci = acms.ContentInfo.load(_der_trim(el.read_value(src)))
        sd = ci["content"]
        tst = sd["encap_content_info"]["content"].parsed
        if not isinstance(tst, atsp.TSTInfo):
            tst = atsp.TSTInfo.load(sd["encap_content_info"]["content"].native)
        info["gen_time"] = tst["gen_time"].native.isoformat()
        imprint = tst["message_imprint"]
        alg = imprint["hash_algorithm"]["algorithm"].native
        import hashlib
        info["covers_signature"] = hashlib.new(alg, signature).digest() == \
            imprint["hashed_message"].native
    except Exception as exc:  # noqa: BLE001 - reported, never fatal
        info["error"] = f"unparsable time-stamp token ({type(exc).__name__})"
    return info


def _check_one(part, level: Level, sig_item: Item, r: SignatureResult, trust, now,
               sop_class, verified, digests=None) -> None:
    src = part.source
    r.mac_id = _us(sig_item.get(MAC_ID), src)
    r.uid = _text(sig_item.get(SIG_UID), src)
    r.datetime = _text(sig_item.get(SIG_DATETIME), src)
    pseq = sig_item.get(PURPOSE_SEQ)
    if pseq is not None and pseq.items:
        p = pseq.items[0]
        r.purpose = {"code": _text(p.get(0x00080100), src),
                     "scheme": _text(p.get(0x00080102), src),
                     "meaning": _text(p.get(0x00080104), src)}
    if r.mac_id is None:
        r.message = "no MAC ID Number (0400,0005)"
        return
    params = _mac_params(level.item, r.mac_id, src)
    if params is None:
        r.message = f"no MAC Parameters item for MAC ID {r.mac_id}"
        return
    mac = _text(params.get(MAC_ALGORITHM), src)
    mac_ts = _text(params.get(MAC_TS), src)
    tag_el = params.get(DATA_ELEMENTS_SIGNED)
    r.mac_algorithm, r.mac_transfer_syntax = mac, mac_ts
    if tag_el is None or mac is None or mac_ts is None:
        r.message = "MAC Parameters item lacks a required attribute"
        return
    listed = _tag_list(tag_el, src)
    tags = list(listed.tags)
    r.signed_tags = tags
    r.covers_status = listed.covers_status and not level.path
    cert_el, sig_el = sig_item.get(CERT_OF_SIGNER), sig_item.get(SIGNATURE)
    cert_type = _text(sig_item.get(CERT_TYPE), src)
    if cert_el is None or sig_el is None or r.uid is None or r.datetime is None:
        r.message = "signature item lacks a required attribute"
        return
    if cert_type != "X509_1993_SIG":
        r.message = f"certificate type {cert_type!r} is not X509_1993_SIG"
        return
    cert_raw = cert_el.read_value(src)
    facts = _SIGNERS.lookup(cert_raw)
    if facts is None:
        try:
            cert = pcerts.from_der(_der_trim(cert_raw))   # cached by DER
        except (ValueError, InvalidVersion):
            r.message = "the Certificate of Signer does not parse"
            return
        try:
            r.signer = pcerts.describe(cert)
            r.serial = f"{cert.serial_number:x}"
        except ValueError:
            r.message = "the Certificate of Signer does not parse"
            return
        try:
            pub = cert.public_key()
        except (UnsupportedAlgorithm, ValueError):
            r.status, r.message = ("unsupported_algorithm",
                                   "the signer's key type is not supported")
            return
        facts = _SignerFacts(cert, r.signer, r.serial, pub)
        _SIGNERS.put(cert_raw, facts)
    else:
        cert, pub = facts.cert, facts.pub
        r.signer, r.serial = facts.signer, facts.serial
    signature = sig_el.read_value(src)
    is_rsa = facts.is_rsa
    r.timestamp = _timestamp_info(sig_item, src, _der_trim(signature) if
                                  not is_rsa else signature)
    r.key = facts.key
    if is_rsa:
        if facts.weak_key:
            r.weak.append(facts.weak_key)
    elif facts.is_ec:
        r.dicom_profile_key = False
    else:
        r.status, r.message = "unsupported_algorithm", f"a {r.key} key"
        return
    if mac not in macs.MAC_ALGORITHMS:
        r.status, r.message = "unsupported_algorithm", f"unknown MAC algorithm {mac!r}"
        return
    if mac in macs.WEAK_MACS:
        r.weak.insert(0, f"the {mac} MAC")
    if not _mac_ts_allowed(mac_ts):
        r.status, r.message = ("unsupported_algorithm",
                               f"MAC Calculation Transfer Syntax {mac_ts} is not allowed")
        return
    # S || T
    h = macs.new_hash(mac)
    item = level.item
    index = item.index()
    get, is_signable = index.get, macs.is_signable
    present_els = []
    for t in tags:
        el = get(t)
        if el is None:
            r.missing_elements.append(tag_str(t))
            continue
        if not is_signable(el):
            r.status, r.message = "not_signable", f"listed element ({tag_str(t)}) is not signable"
            return
        present_els.append(el)
    # T (a few small values) and the facts judged once the crypto holds are made before
    # S is hashed: the Python that follows a pass over the pixel data runs on cold caches
    tail: list = []
    _feed_tail(sig_item, tail.append, src)
    profiles = profiles_satisfied(
        rsa=is_rsa, mac_ok=True, ts_ok=True,
        top_level=not level.path, signed=listed.tag_set, present=frozenset(index),
        sop_class=sop_class, purpose=(r.purpose or {}).get("code"), verified=verified)
    when = _parse_dt(r.datetime)
    pre = digests(level, mac, tags) if digests is not None else None
    if pre is not None:
        h = pre
    else:
        macs.StreamBuilder(src, h.update).elements(present_els)
    for piece in tail:
        h.update(piece)
    digest = h.digest()
    if is_rsa:
        try:
            recovered = pub.recover_data_from_signature(signature, _PKCS1, None)
        except (InvalidSignature, ValueError, TypeError):
            recovered = None
        if recovered is not None and recovered == macs.digest_info_prefix(mac) + digest:
            oid, params_ok, got = macs.hash_oid(mac), True, digest     # the usual case
        else:
            parsed = _digest_info(recovered)
            if parsed is None:
                r.status = "bad_signature"
                r.message = "the signature does not verify with the signer's key"
                return
            oid, params_ok, got = parsed
        if not params_ok or oid != macs.hash_oid(mac):
            r.status = "mac_mismatch"
            r.message = (f"the signature is over a {macs.OID_TO_MAC.get(oid, oid)} digest, "
                         f"but the MAC Parameters say {mac}")
            return
        if got != digest:
            _mismatch(r)
            if not r.missing_elements and _old_format_digest_or_none(
                    src, item, tags, sig_item, mac) == got:
                r.status = "old_format"
                r.message = ("signed in DCMTK's pre-3.5.4 format (dcmsign -fo), which hashes "
                             "pixel data fragment lengths; it does not verify under the "
                             "current rules (PS3.15 C.12.1.1.3.1)")
            return
    else:
        name = macs.MAC_ALGORITHMS[mac][0]
        hcls = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
                "sha512": hashes.SHA512, "md5": hashes.MD5}.get(name)
        if hcls is None:
            r.status, r.message = ("unsupported_algorithm",
                                   f"{mac} with an ECDSA key cannot be checked")
            return
        try:
            pub.verify(_der_trim(signature), digest, ec.ECDSA(autils.Prehashed(hcls())))
        except InvalidSignature:
            r.status = "bad_signature"
            r.message = "the ECDSA signature does not verify (data or signature changed)"
            if r.missing_elements:
                r.status = "elements_missing"
                r.message += f"; listed elements now missing: {', '.join(r.missing_elements)}"
            return
    # the crypto holds: the certificate
    r.profiles = profiles
    if when is None:
        r.status, r.message = "malformed", f"Digital Signature DateTime {r.datetime!r} is invalid"
        return
    # dcmsign: notBefore < DateTime < notAfter, whole seconds, offset ignored
    naive = when.replace(tzinfo=_dt.timezone.utc, microsecond=0)
    not_before, not_after = facts.validity()
    if naive <= not_before:
        r.status = "not_yet_valid_at_signing"
        r.message = (f"the signer's certificate was not yet valid when it signed "
                     f"({r.datetime}; valid from {not_before:%Y-%m-%d %H:%M:%S})")
        return
    if naive >= not_after:
        r.status = "expired_at_signing"
        r.message = (f"the signer's certificate had expired when it signed ({r.datetime}; "
                     f"valid until {not_after:%Y-%m-%d %H:%M:%S})")
        return
    current = now or _dt.datetime.now(_dt.timezone.utc)
    if trust is not None and trust.has_anchors:
        try:
            _check_chain(cert, trust, trust.at or when, facts)
        except SignatureError as exc:
            r.status = "key_usage" if exc.code == "SIG_KEYUSAGE" else "untrusted"
            r.message = exc.message
            return
    if current > not_after:
        r.status = "expired"
        r.message = (f"the signer's certificate expired on "
                     f"{not_after:%Y-%m-%d} (valid when it signed)")
        return
    if trust is None or not trust.has_anchors:
        r.status = "trust_not_checked"
        r.message = f"valid signature by {r.signer}; no trust anchor given (--trust)"
        return
    r.status = "valid"
    r.message = f"valid signature by {r.signer}"


_PKCS1 = padding.PKCS1v15()


def _old_format_digest_or_none(src, item: Item, tags, sig_item: Item, mac: str):
    """The pre-3.5.4 digest, or None when the source did not keep the bytes it needs (a
    streaming reader: the mismatch stands, only its explanation is missing)."""
    try:
        return _old_format_digest(src, item, tags, sig_item, mac)
    except BytesDropped:
        return None


def _old_format_digest(src, item: Item, tags, sig_item: Item, mac: str) -> bytes | None:
    present = [item.get(t) for t in tags if item.get(t) is not None]
    probe = macs.StreamBuilder(src, lambda b: None)
    if not any(probe.has_fragments(el) for el in present):
        return None
    h = macs.new_hash(mac)
    sb = macs.StreamBuilder(src, h.update, old_format=True)
    for el in present:
        sb.element(el)
    _feed_tail(sig_item, h.update, src)
    return h.digest()


#: (leaf, anchors, intermediates) -> (from, until): the window in which every certificate of
#: the validated path is valid; a signature time inside it needs no new path validation
#: (the files of a study carry the same signer, each with its own DateTime). Job-scoped
#: (``pcerts.Memo``), like every cache of ours: no state shared between jobs or threads.
_CHAIN_OK = pcerts.Memo(64)


def _check_chain(cert, trust: TrustContext, at: _dt.datetime,
                 facts: "_SignerFacts | None" = None) -> None:
    if facts is not None:
        # the job's trust sets are the same objects file after file: found by identity
        # (the entry holds them, so their ids cannot be reused while it lives), without
        # hashing three certificates per file
        hit = facts.windows.get((id(trust.anchors), id(trust.intermediates)))
        if (hit is not None and hit[0] is trust.anchors and hit[1] is trust.intermediates
                and hit[2] < at < hit[3]):
            return
    key = (cert, trust.anchors, trust.intermediates)
    window = _CHAIN_OK.lookup(key)
    if window is None or not window[0] < at < window[1]:
        chain = check_signer_certificate(cert, trust=TrustContext(
            anchors=trust.anchors, intermediates=trust.intermediates, at=at),
            signing_time=at)
        window = (max(c.not_valid_before_utc for c in chain),
                  min(c.not_valid_after_utc for c in chain))
        _CHAIN_OK.put(key, window)
    if facts is not None:
        facts.windows[(id(trust.anchors), id(trust.intermediates))] = (
            trust.anchors, trust.intermediates, window[0], window[1])


class _SignerFacts:
    """What the check needs of one Certificate of Signer value, derived once per job (the
    files of a study carry the same signer): kept only once the certificate parsed and
    gave its description and key, so a damaged one takes the full steps every time."""

    __slots__ = ("cert", "signer", "serial", "pub", "is_rsa", "is_ec", "key", "weak_key",
                 "_validity", "windows")

    def __init__(self, cert, signer: str, serial: str, pub):
        self.cert, self.signer, self.serial, self.pub = cert, signer, serial, pub
        self.is_rsa = isinstance(pub, rsa.RSAPublicKey)
        self.is_ec = not self.is_rsa and isinstance(pub, ec.EllipticCurvePublicKey)
        self.weak_key = None
        if self.is_rsa:
            self.key = f"RSA-{pub.key_size}"
            if pub.key_size < 2048:
                self.weak_key = f"an RSA-{pub.key_size} key"
        elif self.is_ec:
            self.key = f"ECDSA-{pub.curve.name}"
        else:
            self.key = type(pub).__name__.removeprefix("_")
        self._validity = None
        #: (id(anchors), id(intermediates)) -> (anchors, intermediates, from, until)
        self.windows: dict = {}

    def validity(self) -> tuple[_dt.datetime, _dt.datetime]:
        """(notBefore, notAfter), read on first use (where the check first needs them)."""
        if self._validity is None:
            self._validity = (self.cert.not_valid_before_utc, self.cert.not_valid_after_utc)
        return self._validity


#: Certificate of Signer value (as stored) -> _SignerFacts; job-scoped
_SIGNERS = pcerts.Memo(64)


@dataclass(frozen=True)
class _TagList:
    tags: tuple          # ascending, each once
    tag_set: frozenset
    covers_status: bool  # lists a SOP Instance Status tag


#: (Data Elements Signed value, byte order) -> _TagList; job-scoped
_TAG_LISTS = pcerts.Memo(256)


def _tag_list(el: Element, src) -> _TagList:
    raw = el.read_value(src)
    key = (raw, el.coding.endian)
    hit = _TAG_LISTS.lookup(key)
    if hit is None:
        tags = tuple(sorted(set(_at_list(el, src))))
        hit = _TagList(tags, frozenset(tags), bool(set(tags) & set(STATUS_TAGS)))
        _TAG_LISTS.put(key, hit)
    return hit


def _digest_info(recovered: bytes | None):
    """(OID, parameters NULL or absent, digest) of a recovered DigestInfo, else None."""
    if recovered is None:
        return None
    try:
        di = aalgos.DigestInfo.load(recovered, strict=True)
        return (di["digest_algorithm"]["algorithm"].dotted,
                di["digest_algorithm"]["parameters"].native is None, di["digest"].native)
    except (ValueError, TypeError):
        return None


def _mismatch(r: SignatureResult) -> None:
    if r.missing_elements:
        r.status = "elements_missing"
        r.message = ("the MAC does not match: listed elements now missing: "
                     f"{', '.join(r.missing_elements)}")
    else:
        r.status = "mac_mismatch"
        r.message = "the MAC does not match: the signed data changed since signing"


def mac_stream(part: Part10, path: str = "", mac_id: int = 0) -> bytes:
    """The exact bytes hashed for signature ``mac_id`` at ``path`` (what ``dcmsign +d`` dumps)."""
    src = part.source
    level = resolve_level(part, path)
    params = _mac_params(level.item, mac_id, src)
    sigs = level.item.get(DIGITAL_SIGNATURES)
    sig_item = next(it for it in sigs.items if _us(it.get(MAC_ID), src) == mac_id)
    out: list[bytes] = []
    sb = macs.StreamBuilder(src, out.append)
    for t in sorted(set(_at_list(params.get(DATA_ELEMENTS_SIGNED), src))):
        el = level.item.get(t)
        if el is not None and macs.is_signable(el):
            sb.element(el)
    _feed_tail(sig_item, out.append, src)
    return b"".join(out)
