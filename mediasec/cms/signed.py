"""SignedData and DigestedData with encapsulated content (RFC 5652 §5, §7).

Writing: ``InnerLayout`` gives the bytes before the content (``head``), and after it
(``tail(digest)``), whose length is fixed in advance: the signature of an RSA key is
always the modulus length, and signedAttrs have fixed-length values. Content is framed
definite (DER) or as indefinite BER pieces of ``chunk`` bytes.

Reading: ``read_inner`` streams the encapsulated content to a sink while hashing it,
then checks digests and signatures against the *original* bytes (signedAttrs are
verified as received, with the SET tag, never re-encoded).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Callable

from asn1crypto import algos as aalgos
from asn1crypto import cms as acms
from asn1crypto import core as acore
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding

from mediasec.cms import _ber, oids
from mediasec.cms._ber import (ByteStream, EOC, der_len, expect, iter_octets, octets_size,
                               read_element, read_header, skip_eoc, write_octets_header)
from mediasec.cms.envelope import small_parse
from mediasec.cms.keys import HASHES, Signer
from cryptography.exceptions import UnsupportedAlgorithm

from mediasec.errors import (InputError, IntegrityError, InternalError, MalformedError,
                             MediasecError, SignatureError)
from mediasec.pki import certs as pcerts

__all__ = ["InnerLayout", "SignedTemplate", "InnerResult", "SignerResult", "read_inner"]

_OID_DATA = acms.ContentType("data").dump()


def _digest_alg(name: str) -> aalgos.DigestAlgorithm:
    return aalgos.DigestAlgorithm({"algorithm": name})


def _signing_time(t: _dt.datetime) -> acms.Time:
    t = t.astimezone(_dt.timezone.utc).replace(microsecond=0)
    return acms.Time(name="utc_time" if 1950 <= t.year < 2050 else "general_time", value=t)


# -- writing ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class InnerLayout:
    """The integrity layer around ``content_len`` bytes: SignedData or DigestedData."""

    kind: str                         # "signedData" | "digestedData"
    head: bytes
    content_len: int
    chunk: int | None
    digest: str
    tail_len: int
    _make_tail: Callable = field(repr=False)

    @property
    def content_type(self) -> str:
        return oids.SIGNED_DATA if self.kind == "signedData" else oids.DIGESTED_DATA

    def size(self) -> int:
        if self.chunk is None:
            return len(self.head) + self.content_len + self.tail_len
        # head ends with the constructed OCTET STRING header, tail starts with its EOC
        return len(self.head) + octets_size(self.content_len, chunk=self.chunk) - 4 \
            + self.tail_len

    def tail(self, digest_value: bytes) -> bytes:
        t = self._make_tail(digest_value)
        if len(t) != self.tail_len:
            raise InternalError(f"planned {self.tail_len}-byte trailer, made {len(t)}")
        return t

    @classmethod
    def digested(cls, content_len: int, *, digest: str = "sha256",
                 chunk: int | None = None) -> "InnerLayout":
        version = acms.CMSVersion("v0").dump()
        alg = _digest_alg(digest).dump()
        dlen = HASHES[digest].digest_size

        def make_tail(value: bytes) -> bytes:
            return (EOC * 3 if chunk is not None else b"") + acore.OctetString(value).dump() \
                + (EOC if chunk is not None else b"")

        tail_len = len(make_tail(bytes(dlen)))
        head = _encap_head(version + alg, content_len, chunk, tail_len)
        return cls("digestedData", head, content_len, chunk, digest, tail_len, make_tail)

    @classmethod
    def signed(cls, content_len: int, signers: list[Signer], *,
               signing_time: _dt.datetime | None = None, chunk: int | None = None,
               template: "SignedTemplate | None" = None) -> "InnerLayout":
        """With ``template`` (the job's), ``signers`` and ``signing_time`` are its own."""
        if template is None:
            template = SignedTemplate(signers, signing_time=signing_time, chunk=chunk)
        elif template.chunk != chunk:
            raise ValueError("the template was made for another framing")
        head = _encap_head(template.prefix_fields, content_len, chunk, template.tail_len)
        return cls("signedData", head, content_len, chunk, template.digest, template.tail_len,
                   template.tail)


class SignedTemplate:
    """Everything of a SignedData but the content, made once per job.

    The trailer (certificates, SignerInfos) is encoded once with asn1crypto, with random
    fillers where each file's messageDigest and signatures go; per file those holes are
    filled and each signer signs its signedAttrs (as DER, with the SET tag). The trailer
    does not depend on the content length, so one template serves every file.
    """

    def __init__(self, signers: list[Signer], *, signing_time: _dt.datetime | None,
                 chunk: int | None = None):
        if not signers:
            raise ValueError("SignedData needs at least one signer")
        digests = sorted({s.digest for s in signers}, key=list(oids.DIGEST).index)
        if len(digests) != 1:
            raise ValueError("all signers of one file use the same digest")
        self.digest = digest = digests[0]
        self.chunk = chunk
        self.signers = list(signers)
        self.prefix_fields = (acms.CMSVersion("v1").dump()
                              + acms.DigestAlgorithms([_digest_alg(digest)]).dump())
        seen, certs = set(), []
        for s in signers:
            for c in (s.certificate, *s.chain):
                der = c.public_bytes(Encoding.DER)
                if der not in seen:
                    seen.add(der)
                    certs.append(acms.CertificateChoices(name="certificate",
                                                         value=pcerts.to_asn1(c)))
        cert_set = acms.CertificateSet(certs).dump()
        cert_field = b"\xa0" + cert_set[1:]  # SET OF -> [0] IMPLICIT
        dlen = HASHES[digest].digest_size
        infos, self._holes = [], []
        for s in signers:
            md_fill = secrets.token_bytes(dlen)
            sig_fill = secrets.token_bytes(s.signature_size)
            attrs = [acms.CMSAttribute({"type": "content_type", "values": ["data"]})]
            if signing_time is not None:
                attrs.append(acms.CMSAttribute({"type": "signing_time",
                                                "values": [_signing_time(signing_time)]}))
            attrs.append(acms.CMSAttribute({"type": "message_digest", "values": [md_fill]}))
            sig_alg = ({"algorithm": "rsassa_pss", "parameters": aalgos.RSASSAPSSParams({
                "hash_algorithm": {"algorithm": s.digest},
                "mask_gen_algorithm": {"algorithm": "mgf1",
                                       "parameters": {"algorithm": s.digest}},
                "salt_length": HASHES[s.digest].digest_size})}
                if s.pss else {"algorithm": f"{s.digest}_rsa"})
            info = acms.SignerInfo({
                "version": "v1",
                "sid": acms.SignerIdentifier(name="issuer_and_serial_number",
                                             value=pcerts.issuer_and_serial(s.certificate)),
                "digest_algorithm": _digest_alg(s.digest),
                "signed_attrs": acms.CMSAttributes(attrs),
                "signature_algorithm": sig_alg,
                "signature": sig_fill})
            infos.append(info)
            self._holes.append((md_fill, sig_fill, info["signed_attrs"].dump()))
        body = cert_field + acms.SignerInfos(infos).dump()
        self._der = (EOC * 3 + body + EOC) if chunk is not None else body
        self._spots = []
        for md_fill, sig_fill, sa_der in self._holes:
            md_off, sig_off, sa_off = (_unique(self._der, x) for x in (md_fill, sig_fill, sa_der))
            self._spots.append((md_off, sig_off, len(sig_fill), sa_off, len(sa_der)))
        self.tail_len = len(self._der)

    def tail(self, digest_value: bytes) -> bytes:
        out = bytearray(self._der)
        for md_off, _sig_off, _n, _sa_off, _sa_len in self._spots:
            out[md_off:md_off + len(digest_value)] = digest_value
        for s, (_md, sig_off, n, sa_off, sa_len) in zip(self.signers, self._spots):
            signed_attrs = b"\x31" + bytes(out[sa_off + 1:sa_off + sa_len])
            sig = s.sign(signed_attrs)
            if len(sig) != n:
                raise InternalError(f"planned a {n}-byte signature, the key made {len(sig)}")
            out[sig_off:sig_off + n] = sig
        return bytes(out)


def _unique(haystack: bytes, needle: bytes) -> int:
    off = haystack.find(needle)
    if off < 0 or haystack.find(needle, off + 1) >= 0:
        raise InternalError("a SignedData template hole is not unique")
    return off


def _encap_head(prefix_fields: bytes, n: int, chunk: int | None, tail_len: int) -> bytes:
    """SEQUENCE { prefix_fields, EncapsulatedContentInfo { id-data, [0] { OCTETS... """
    if chunk is None:
        octets_hdr = write_octets_header(n, chunk=None)
        explicit = b"\xa0" + der_len(len(octets_hdr) + n)
        encap_len = len(_OID_DATA) + len(explicit) + len(octets_hdr) + n
        encap = b"\x30" + der_len(encap_len) + _OID_DATA + explicit + octets_hdr
        outer_len = len(prefix_fields) + len(encap) + n + tail_len
        return b"\x30" + der_len(outer_len) + prefix_fields + encap
    return b"\x30\x80" + prefix_fields + b"\x30\x80" + _OID_DATA + b"\xa0\x80\x24\x80"


# -- reading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SignerResult:
    subject: str | None
    certificate: object | None        # cryptography certificate when found
    digest: str
    signature_algorithm: str
    signing_time: _dt.datetime | None
    key_bits: int | None
    intact: bool                      # messageDigest matches the content
    valid: bool                       # the signature verifies
    error: SignatureError | IntegrityError | None
    findings: tuple = ()

    def to_dict(self) -> dict:
        return {"subject": self.subject, "digest": self.digest,
                "signature_algorithm": self.signature_algorithm,
                "signing_time": self.signing_time.isoformat() if self.signing_time else None,
                "key_bits": self.key_bits, "intact": self.intact, "valid": self.valid}


@dataclass(frozen=True)
class InnerResult:
    kind: str                         # signedData | digestedData | data
    wrapped: bool                     # OpenSSL-style ContentInfo inside the envelope
    framing: str                      # der | ber
    content_length: int
    digests: dict                     # name -> value computed over the content
    signers: tuple[SignerResult, ...] = ()
    certificates: tuple = ()          # cryptography certificates carried
    digest_ok: bool | None = None     # DigestedData
    head: bytes = b""                 # the first 132 content bytes (preamble + DICM)
    findings: tuple = ()              # (code, message) legacy / form notes


class _Sink:
    """Feeds content views to the digests, the payload sniffer and the caller's sink."""

    def __init__(self, digest_names, sink):
        self.hashes = {n: hashlib.new(n) for n in digest_names}
        self.sink = sink
        self.head = bytearray()
        self.length = 0

    def feed(self, mv) -> None:
        for h in self.hashes.values():
            h.update(mv)
        if len(self.head) < 132:
            self.head += mv[:132 - len(self.head)]
        self.length += len(mv)
        if self.sink is not None:
            self.sink(mv)


def _stream_encap(s: ByteStream, digest_names, sink) -> tuple[str, _Sink, bool]:
    encap = expect(s, 0x30, "EncapsulatedContentInfo")
    etype = small_parse(acms.ContentType, read_element(s, cap=64), "dotted")
    feeder = _Sink(digest_names, sink)
    ber = encap.length is None
    has_content = (encap.length is None and s.peek(2) != EOC) or \
        (encap.length is not None and s.pos < encap.end)
    if not has_content:
        raise MalformedError("the content is detached (no eContent): not a Secure DICOM "
                             "File", code="CMS_DETACHED")
    explicit = expect(s, 0xA0, "[0] EXPLICIT eContent")
    octets = read_header(s)
    if octets.tag & 0xDF != 0x04:
        raise MalformedError(f"eContent is not an OCTET STRING (byte {octets.offset})")
    ber = ber or explicit.length is None or octets.constructed
    for mv in iter_octets(s, octets):
        feeder.feed(mv)
    skip_eoc(s, explicit)
    skip_eoc(s, encap)
    return etype, feeder, ber


#: encoded SignedData.digestAlgorithms -> the digest names (a failure is not remembered)
_DIGEST_SETS = pcerts.Memo(16)


def _digest_names(algs) -> list[str]:
    names = []
    for a in algs:
        oid = a["algorithm"].dotted
        name = oids.DIGEST_NAME.get(oid)
        if name is None:
            raise InputError(f"digest algorithm {oid} is not SHA-1/SHA-2 (PS3.15 D.1)",
                             code="CMS_ALG_UNSUPPORTED")
        if name not in names:
            names.append(name)
    if len(names) > 4:
        raise MalformedError("more than four digest algorithms")
    return names


def read_inner(s: ByteStream, content_type: str, *, sink=None) -> InnerResult:
    """Read the integrity layer from the decrypted stream, streaming its content to ``sink``.

    Returns what was found; digest/signature *verification* is done by ``verify_inner``.
    """
    findings = []
    first = s.peek(12)
    if len(first) < 2:
        raise MalformedError("the decrypted content is empty", code="CMS_INNER_TYPE")
    outer = read_header(s)
    if outer.tag != 0x30:
        if content_type == oids.DATA:
            raise MalformedError("the envelope holds the bare file with no integrity layer "
                                 "(not conformant to PS3.15 D.1)", code="CMS_INNER_TYPE")
        raise MalformedError("the decrypted content does not parse", code="CMS_INNER_TYPE")
    wrapped = False
    nxt = s.peek(1)
    seq = outer
    if nxt == b"\x06":
        # OpenSSL-CLI style: ContentInfo(SignedData) as id-data plaintext
        ctype = small_parse(acms.ContentType, read_element(s, cap=64), "dotted")
        explicit = expect(s, 0xA0, "[0] EXPLICIT content")
        seq = expect(s, 0x30, "SignedData or DigestedData")
        wrapped = True
        findings.append(("CMS_INNER_WRAPPED", "the integrity layer is wrapped in a ContentInfo "
                         "(OpenSSL command-line style), not the literal PS3.15 D.1 nesting"))
        if content_type not in (oids.DATA, ctype):
            raise MalformedError("inner content types disagree", code="CMS_INNER_TYPE")
        content_type = ctype
    elif content_type == oids.DATA:
        raise MalformedError("the envelope holds the bare file with no integrity layer "
                             "(not conformant to PS3.15 D.1)", code="CMS_INNER_TYPE")
    try:
        if content_type == oids.DIGESTED_DATA:
            result = _read_digested(s, seq, sink)
        elif content_type == oids.SIGNED_DATA:
            result = _read_signed(s, seq, sink)
        else:
            result = None
    except MediasecError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError,
            UnsupportedAlgorithm) as exc:
        # asn1crypto parses lazily: a damaged field raises wherever it is first touched
        raise MalformedError(f"the {_INNER_NAME.get(content_type, 'inner content')} does not "
                             f"parse ({type(exc).__name__}: {exc})",
                             code="CMS_INNER_PARSE") from exc
    if result is None:
        raise MalformedError(f"inner content type {content_type} is not SignedData or "
                             "DigestedData", code="CMS_INNER_TYPE")
    if wrapped:
        skip_eoc(s, explicit)
        skip_eoc(s, outer)
    if not s.at_end():
        raise MalformedError(f"trailing bytes after the integrity layer (byte {s.pos})",
                             code="CMS_TRAILING_DATA")
    framing = "ber" if (outer.length is None or result["ber"]) else "der"
    return InnerResult(kind=result["kind"], wrapped=wrapped, framing=framing,
                       content_length=result["feeder"].length,
                       digests={n: h.digest() for n, h in result["feeder"].hashes.items()},
                       signers=result.get("signers", ()),
                       certificates=result.get("certificates", ()),
                       digest_ok=result.get("digest_ok"),
                       head=bytes(result["feeder"].head),
                       findings=tuple(findings) + tuple(result.get("findings", ())))


_INNER_NAME = {oids.DIGESTED_DATA: "DigestedData", oids.SIGNED_DATA: "SignedData"}


def _read_digested(s: ByteStream, seq, sink) -> dict:
    acore.Integer.load(read_element(s, cap=16))
    alg = aalgos.DigestAlgorithm.load(read_element(s, cap=256))
    names = _digest_names([alg])
    etype, feeder, ber = _stream_encap(s, names, sink)
    digest = acore.OctetString.load(read_element(s, cap=256)).native
    skip_eoc(s, seq)
    findings = []
    if names[0] == "sha1":
        findings.append(("ALG_LEGACY", "SHA-1 digest"))
    if etype != oids.DATA:
        findings.append(("CMS_ECONTENT_TYPE", f"eContentType is {etype}, not id-data"))
    ok = hmac.compare_digest(digest, feeder.hashes[names[0]].digest())
    return {"kind": "digestedData", "feeder": feeder, "ber": ber or seq.length is None,
            "digest_ok": ok, "findings": findings}


def _read_signed(s: ByteStream, seq, sink) -> dict:
    acore.Integer.load(read_element(s, cap=16))
    raw_algs = read_element(s, cap=4096)
    names = list(_DIGEST_SETS.get(raw_algs, lambda: tuple(_digest_names(
        acms.DigestAlgorithms.load(raw_algs)))))
    etype, feeder, ber = _stream_encap(s, names, sink)
    cert_raw = None
    h = read_header(s)
    if h.tag == 0xA0:
        cert_raw = read_element(s, h)
        h = read_header(s)
    if h.tag == 0xA1:
        read_element(s, h)  # revocation lists: carried by some signers, not used
        h = read_header(s)
    if h.tag != 0x31:
        raise MalformedError(f"expected SignerInfos at byte {h.offset}")
    raw_infos = read_element(s, h)
    holes = _signer_holes(raw_infos)
    masked = _masked(raw_infos, holes) if holes is not None else None
    infos = None
    if masked is None or _VALID_SHAPES.lookup(masked) is None:
        try:
            infos = acms.SignerInfos.load(raw_infos)
            try:
                _parse_fully(infos)
            except (ValueError, TypeError):
                # damaged: the whole-structure parse says how (the message as it always was)
                infos = acms.SignerInfos.load(raw_infos)
                infos.native
        except (ValueError, TypeError) as exc:
            raise MalformedError(f"SignerInfos do not parse: {exc}") from exc
        if masked is not None:
            _VALID_SHAPES.put(masked, True)
    skip_eoc(s, seq)
    certificates = _load_certificates(cert_raw) if cert_raw is not None else ()
    digests = {n: h.digest() for n, h in feeder.hashes.items()}
    key = (masked, etype, tuple(digests), certificates) if masked is not None else None
    plans = _PLANS.lookup(key) if key is not None else None
    values = _hole_values(raw_infos, holes, plans) if plans is not None else None
    if values is None:
        if infos is None:
            infos = acms.SignerInfos.load(raw_infos)
        plans = [_plan_signer(si, etype, digests, certificates) for si in infos]
        values = [_signer_values(si, p) for si, p in zip(infos, plans)]
        # remember the plans only when the byte ranges found hold exactly what asn1crypto
        # read there, so that later files can be read at those ranges
        if key is not None and _hole_values(raw_infos, holes, plans) == values:
            _PLANS.put(key, tuple(plans))
    signers = tuple(_finish_signer(p, digests, *v) for p, v in zip(plans, values))
    if not signers:
        raise MalformedError("SignedData without signers", code="SIG_NO_SIGNER")
    return {"kind": "signedData", "feeder": feeder, "ber": ber or seq.length is None,
            "signers": signers, "certificates": certificates}


#: (asn1crypto class, DER) of parts known to parse completely (``.native`` succeeded).
#: The parse of a value depends only on its spec and its bytes, and most parts of the
#: SignerInfos (sid, algorithms, the contentType and signingTime attributes) are the same
#: on every file of a medium: each distinct part is fully parsed once; the parts that
#: differ per file (messageDigest, signature) are still parsed every time.
_PARSED_OK = pcerts.Memo(512)
#: the raw ``certificates [0]`` field -> the cryptography certificates it carries (every
#: file of a medium carries the same bytes); only successful parses are remembered
_CERT_SETS = pcerts.Memo(32)


def _parse_part(v) -> None:
    """``v.native`` (which parses ``v`` completely, raising ValueError/TypeError on damage),
    once per distinct (spec, tagging, encoding)."""
    key = (type(v), v.explicit, v.implicit, v.tag, v.dump())
    _PARSED_OK.get(key, lambda: v.native or True)


def _parse_fully(infos: acms.SignerInfos) -> None:
    """What ``infos.native`` checks (every child of every SignerInfo parsed completely,
    extra trailing children included), each field - and each attribute of the attribute
    sets - on its own, so that the parts common to all files are parsed once."""
    for si in infos:
        for i in range(len(si)):
            v = si[i]
            if isinstance(v, acms.CMSAttributes):
                for attr in v:
                    _parse_part(attr)
            else:
                _parse_part(v)


def _load_certificates(cert_raw: bytes) -> tuple:
    def make() -> tuple:
        try:
            cs = acms.CertificateSet.load(b"\x31" + cert_raw[1:])
            return tuple(pcerts.from_asn1(choice.chosen) for choice in cs
                         if choice.name == "certificate")
        except (ValueError, TypeError) as exc:
            raise MalformedError(f"the certificates do not parse: {exc}") from exc
    return _CERT_SETS.get(cert_raw, make)


def _find_cert(sid, certificates):
    if sid.name == "issuer_and_serial_number":
        want = sid.chosen
        want_serial = want["serial_number"].native
        want_issuer = want["issuer"]
        want_der = want_issuer.dump()
        for c in certificates:
            issuer_der, serial = pcerts.issuer_serial_parts(c)
            # identical DER first (asn1crypto's Name equality string-preps every value)
            if serial == want_serial and (
                    issuer_der == want_der
                    or pcerts.issuer_and_serial(c)["issuer"] == want_issuer):
                return c
        return None
    ski = sid.chosen.native
    for c in certificates:
        if pcerts.subject_key_id(c) == ski:
            return c
    return None


@dataclass(frozen=True)
class _SignerPlan:
    """What a SignerInfo says apart from its messageDigest value and signature: the same on
    every file of a medium, so it is worked out once per distinct encoding (see
    ``_read_signed``). ``stage`` is where the checks stop: ``no_digest``, ``attrs_count``,
    ``attrs_type`` (final, whatever the content), ``cert_missing``, ``not_rsa``,
    ``bad_padding`` (final but for ``intact``), or ``verify``."""

    stage: str
    subject: str | None
    cert: object | None
    dname: str
    sig_name: str
    signing_time: _dt.datetime | None
    has_attrs: bool                   # signedAttrs present and not empty
    findings0: tuple                  # findings before the key size is known
    bits: int | None = None
    findings1: tuple = ()             # findings with the key size
    pub: object | None = None
    pad: object | None = None
    hash_alg: object | None = None
    error: str | None = None          # the bad_padding message


def _plan_signer(si: acms.SignerInfo, etype: str, digest_names, certificates) -> _SignerPlan:
    findings = []
    dname = oids.DIGEST_NAME.get(si["digest_algorithm"]["algorithm"].dotted, "?")
    sig_alg = si["signature_algorithm"]
    sig_name = _sig_alg_name(sig_alg["algorithm"].dotted)
    cert = _find_cert(si["sid"], certificates)
    subject = pcerts.describe(cert) if cert is not None else None
    signing_time = None
    if dname == "sha1":
        findings.append(("ALG_LEGACY", "SHA-1 signature digest"))

    def plan(stage, has_attrs=False, **kw):
        return _SignerPlan(stage, subject, cert, dname, sig_name, signing_time, has_attrs,
                           tuple(findings), **kw)

    if dname not in digest_names:
        return plan("no_digest")
    sa = si["signed_attrs"]
    has_attrs = sa.contents is not None and len(sa) > 0
    if has_attrs:
        values = {}
        for attr in sa:
            values.setdefault(attr["type"].dotted, []).extend(attr["values"])
        md = values.get(oids.ATTR_MESSAGE_DIGEST, [])
        ct = values.get(oids.ATTR_CONTENT_TYPE, [])
        st = values.get(oids.ATTR_SIGNING_TIME, [])
        if st:
            signing_time = st[0].native
        if len(md) != 1 or len(ct) != 1:
            return plan("attrs_count", True)
        if ct[0].dotted != etype:
            return plan("attrs_type", True)
    if cert is None:
        return plan("cert_missing", has_attrs)
    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        return plan("not_rsa", has_attrs)
    bits = pub.key_size
    findings0 = tuple(findings)
    if bits < 2048:
        findings.append(("ALG_LEGACY", f"RSA-{bits} signer key"))
    try:
        pad, hash_alg = _signature_padding(sig_alg, dname)
    except InputError as exc:
        return _SignerPlan("bad_padding", subject, cert, dname, sig_name, signing_time,
                           has_attrs, findings0, bits, tuple(findings), error=exc.message)
    return _SignerPlan("verify", subject, cert, dname, sig_name, signing_time, has_attrs,
                       findings0, bits, tuple(findings), pub, pad, hash_alg)


def _signer_values(si: acms.SignerInfo, p: _SignerPlan) -> tuple:
    """(messageDigest value, signature, signedAttrs contents) as asn1crypto reads them
    (None where the plan does not need them)."""
    if p.stage in ("no_digest", "attrs_count", "attrs_type"):
        return None, None, None
    sa = si["signed_attrs"]
    md_value = sa_contents = None
    if p.has_attrs:
        md = [v for attr in sa if attr["type"].dotted == oids.ATTR_MESSAGE_DIGEST
              for v in attr["values"]]
        md_value = md[0].native
        sa_contents = sa.contents
    return md_value, si["signature"].native, sa_contents


def _finish_signer(p: _SignerPlan, digests: dict, md_value, signature, sa_contents
                   ) -> SignerResult:
    """The per-file part of a signer's checks: messageDigest against the content digest,
    then the signature over the signedAttrs as received (or the content digest)."""
    def result(intact, valid, error, bits=None, findings=p.findings0):
        return SignerResult(p.subject, p.cert, p.dname, p.sig_name, p.signing_time, bits,
                            intact, valid, error, findings)

    stage = p.stage
    if stage == "no_digest":
        return result(False, False, IntegrityError(
            "a signer's digest algorithm is not among SignedData.digestAlgorithms"))
    if stage == "attrs_count":
        return result(False, False, SignatureError(
            "signedAttrs lack exactly one contentType and messageDigest", code="SIG_ATTRS"))
    if stage == "attrs_type":
        return result(False, False, SignatureError(
            "the signed contentType does not match the eContentType", code="SIG_ATTRS"))
    computed = digests[p.dname]
    if p.has_attrs:
        intact = hmac.compare_digest(md_value, computed)
        signed_bytes = b"\x31" + der_len(len(sa_contents)) + sa_contents
        prehashed = False
    else:
        intact = True  # checked by the signature itself
        signed_bytes = computed
        prehashed = True
    if stage == "cert_missing":
        err = SignatureError("the signer's certificate is not in the file",
                             code="SIG_CERT_MISSING")
        if not intact:
            err = IntegrityError("the content does not match the signed messageDigest")
        return result(intact, False, err)
    if stage == "not_rsa":
        return result(intact, False, SignatureError("the signer's key is not RSA",
                                                    code="SIG_ALG_UNSUPPORTED"))
    if stage == "bad_padding":
        return result(intact, False, SignatureError(p.error, code="SIG_ALG_UNSUPPORTED"),
                      p.bits, p.findings1)
    try:
        p.pub.verify(signature, signed_bytes, p.pad,
                     Prehashed(p.hash_alg) if prehashed else p.hash_alg)
        valid = True
    except InvalidSignature:
        valid = False
    if not intact:
        return result(False, valid, IntegrityError(
            "the content does not match the signed messageDigest (tampered)"),
            p.bits, p.findings1)
    if not valid:
        return result(True, False, SignatureError("the signature does not verify (tampered "
                                                  "signed attributes or signature)"),
                      p.bits, p.findings1)
    return result(True, True, None, p.bits, p.findings1)


def _check_signer(si: acms.SignerInfo, etype: str, digests: dict, certificates) -> SignerResult:
    p = _plan_signer(si, etype, digests, certificates)
    return _finish_signer(p, digests, *_signer_values(si, p))


# -- the per-medium fast path for SignerInfos ---------------------------------------------------

_MD_OID_DER = bytes.fromhex("06092a864886f70d010904")


_tlv = _ber.definite_at


def _signer_holes(raw: bytes):
    """Where each SignerInfo's per-file values lie in the encoded SignerInfos:
    ``[(messageDigest value range | None, signature range, signedAttrs contents range |
    None)]``, or None when the encoding is not the plain definite-length layout
    (version, sid, digestAlgorithm, [0] signedAttrs?, signatureAlgorithm, OCTET STRING
    signature, [1] unsignedAttrs?). Only used to *locate* bytes; what they mean is always
    established by asn1crypto (and checked against these ranges) first."""
    top = _tlv(raw, 0, len(raw))
    if top is None or top[0] != 0x31 or top[2] != len(raw):
        return None
    out = []
    off, end = top[1], top[2]
    while off < end:
        si = _tlv(raw, off, end)
        if si is None or si[0] != 0x30:
            return None
        kids = []
        p = si[1]
        while p < si[2]:
            k = _tlv(raw, p, si[2])
            if k is None:
                return None
            kids.append(k)
            p = k[2]
        if len(kids) < 5 or kids[0][0] != 0x02 or kids[2][0] != 0x30:
            return None
        i, sa = 3, None
        if kids[3][0] == 0xA0:
            sa, i = kids[3], 4
        if len(kids) < i + 2 or kids[i][0] != 0x30 or kids[i + 1][0] != 0x04:
            return None
        rest = kids[i + 2:]
        if rest and (len(rest) != 1 or rest[0][0] != 0xA1):
            return None
        md, found = None, 0
        if sa is not None:
            p = sa[1]
            while p < sa[2]:
                a = _tlv(raw, p, sa[2])
                if a is None or a[0] != 0x30:
                    return None
                p = a[2]
                if raw[a[1]:a[1] + len(_MD_OID_DER)] == _MD_OID_DER:
                    found += 1
                    vs = _tlv(raw, a[1] + len(_MD_OID_DER), a[2])
                    if vs is not None and vs[0] == 0x31 and vs[2] == a[2]:
                        v = _tlv(raw, vs[1], vs[2])
                        if v is not None and v[0] == 0x04 and v[2] == vs[2]:
                            md = (v[1], v[2])
            if found != 1:
                md = None
        out.append((md, kids[i + 1][1:], sa[1:] if sa is not None else None))
        off = si[2]
    return out


def _masked(raw: bytes, holes) -> bytes:
    """``raw`` with the messageDigest values and signatures zeroed: files whose SignerInfos
    differ only there have the same masked encoding. Those holes are primitive OCTET
    STRING contents of fixed length, which parse whatever their bytes."""
    buf = bytearray(raw)
    for md, sig, _sa in holes:
        for r in (md, sig):
            if r is not None:
                buf[r[0]:r[1]] = bytes(r[1] - r[0])
    return bytes(buf)


def _hole_values(raw: bytes, holes, plans) -> list:
    out = []
    for (md, sig, sa), p in zip(holes, plans):
        if p.stage in ("no_digest", "attrs_count", "attrs_type"):
            out.append((None, None, None))
            continue
        if p.has_attrs and (md is None or sa is None):
            return None
        out.append((raw[md[0]:md[1]] if p.has_attrs else None, raw[sig[0]:sig[1]],
                    raw[sa[0]:sa[1]] if p.has_attrs else None))
    return out


#: masked SignerInfos encodings known to parse completely
_VALID_SHAPES = pcerts.Memo(64)
#: (masked SignerInfos, eContentType, digest names, certificates) -> signer plans
_PLANS = pcerts.Memo(64)


def _sig_alg_name(oid: str) -> str:
    for name, o in oids.SHA_WITH_RSA.items():
        if o == oid:
            return f"{name}WithRSAEncryption"
    return {oids.RSA_ENCRYPTION: "rsaEncryption", oids.RSASSA_PSS: "RSASSA-PSS"}.get(oid, oid)


def _signature_padding(sig_alg, dname: str):
    oid = sig_alg["algorithm"].dotted
    if oid == oids.RSA_ENCRYPTION or oid in oids.SHA_WITH_RSA.values():
        if oid != oids.RSA_ENCRYPTION and oids.SHA_WITH_RSA.get(dname) != oid:
            raise InputError("the signature algorithm's hash differs from the digest algorithm")
        return padding.PKCS1v15(), HASHES[dname]()
    if oid == oids.RSASSA_PSS:
        params = sig_alg["parameters"]
        h = HASHES[params["hash_algorithm"]["algorithm"].native]()
        mgf_h = HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
        return padding.PSS(mgf=padding.MGF1(mgf_h), salt_length=params["salt_length"].native), h
    raise InputError(f"signature algorithm {oid} is not RSA")
