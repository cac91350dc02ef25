"""The Secure DICOM File (PS3.10 §7.4, PS3.15 D.1): protect, open and inspect.

Nesting written: ``ContentInfo(envelopedData)`` whose encrypted content is the *bare*
SignedData (or, with no signer, DigestedData) encapsulating the whole Part 10 file,
preamble included. Read: that, and OpenSSL's ``ContentInfo`` inside the envelope.

``SecureFileProducer`` knows its exact encoded ``size`` before writing and streams the
file once: read -> hash -> (frame) -> AES-CBC -> frame -> out, in ``chunk`` pieces
through two reused buffers, so memory does not grow with the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

from mediasec.cms import oids
from mediasec.cms._ber import ByteStream, der_len
from mediasec.cms.envelope import (EnvelopeLayout, EnvelopedHead, Encryptor, decrypt_chunks,
                                   read_enveloped_head)
from mediasec.cms.keys import (Decrypter, Signer, Unwrapped, block_size, describe_recipients)
from mediasec.cms.signed import InnerLayout, InnerResult, SignedTemplate, read_inner
from mediasec.errors import (InputError, IntegrityError, InternalError, NoRecipientError,
                             SignatureError, VerificationError, WrongPasswordError)
from mediasec.pki import certs as pcerts
from mediasec.pki.trust import check_signer_certificate
from mediasec.policy import AlgorithmPolicy, CIPHERS, TrustContext
from mediasec.report import Finding, Outcome, worst

__all__ = ["ProtectOptions", "SecureFileProducer", "SecureFileReport", "open_secure_file", "unwrap_key",
           "inspect_secure_file", "CHUNK"]

CHUNK = 1 << 20

#: the two working buffers of ``SecureFileProducer.chunks``, reused by every file made in
#: a thread: allocating fresh ones per file (and faulting in their pages) cost about as
#: much as encrypting a 200 KiB file
_SCRATCH = threading.local()


def _take_buffers(size: int) -> tuple[bytearray, bytearray]:
    """A plaintext buffer of ``size`` bytes and a ciphertext one of ``size + 48``: this
    thread's spare pair when it fits (taken: a producer nested in another, or two producers
    alternating in one thread, get fresh ones), else new ones."""
    pair = getattr(_SCRATCH, "pair", None)
    if pair is not None and len(pair[0]) == size:
        _SCRATCH.pair = None
        return pair
    return bytearray(size), bytearray(size + 48)


def _give_back(pair: tuple[bytearray, bytearray]) -> None:
    """Keep ``pair`` as this thread's spare (no view of it may be in use any more)."""
    _SCRATCH.pair = pair


@dataclass(frozen=True)
class ProtectOptions:
    cipher: str = "aes-256"
    #: "ber": indefinite lengths with ``chunk``-byte OCTET STRING pieces; "der": definite
    framing: str = "ber"
    chunk: int = CHUNK
    #: DigestedData digest when there is no signer (signers carry their own)
    digest: str = "sha256"
    #: signingTime attribute; ``None`` = now; ``False`` = omit the attribute
    signing_time: _dt.datetime | None | bool = None


class SecureFileProducer:
    """One Secure DICOM File of ``content_len`` plaintext bytes, with an exact size.

    ``rng`` is injected for deterministic tests; it yields the CEK and IVs. ``template``
    (``SignedTemplate``, made once per job with ``make_template``) saves re-encoding the
    SignerInfos and certificates for every file.
    """

    def __init__(self, content_len: int, *, recipients: Iterable, signers: Iterable[Signer] = (),
                 options: ProtectOptions = ProtectOptions(),
                 policy: AlgorithmPolicy = AlgorithmPolicy(),
                 rng: Callable[[int], bytes] = secrets.token_bytes,
                 template: SignedTemplate | None = None):
        recipients = list(recipients)
        signers = list(signers)
        if not recipients:
            raise InputError("no recipient: give --encrypt-to CERT or --password-env VAR",
                             code="USAGE_NO_RECIPIENT")
        policy.check_cipher(options.cipher)
        if options.framing not in ("ber", "der"):
            raise ValueError("framing is 'ber' or 'der'")
        bs = block_size(options.cipher)
        if options.chunk <= 0 or options.chunk % 16:
            raise ValueError("chunk must be a positive multiple of 16")
        self.options = options
        self.content_len = content_len
        self._chunk = None if options.framing == "der" else options.chunk
        if signers:
            self.inner = InnerLayout.signed(
                content_len, signers, chunk=self._chunk,
                template=template or self.make_template(signers, options))
        else:
            policy.check_digest(options.digest)
            self.inner = InnerLayout.digested(content_len, digest=options.digest,
                                              chunk=self._chunk)
        self._cek = rng(CIPHERS[options.cipher])
        self._iv = rng(bs)
        self._recipients = recipients
        # the key is transported (one RSA operation per recipient) when the file is made,
        # in whichever process makes it: the plan needs only the exact sizes, which the
        # recipients' templates give; a recipient without ``recipient_info_size`` is done now
        self._outer: EnvelopeLayout | None = None
        if all(hasattr(r, "recipient_info_size") for r in recipients):
            # stand-ins of the exact lengths: the envelope's size does not depend on the
            # bytes of its RecipientInfos (nor on their DER order, nor on the version)
            infos = [b"\x30" * r.recipient_info_size(len(self._cek), options.cipher)
                     for r in recipients]
            self.size = EnvelopeLayout.build(
                recipient_infos=infos, inner_type=self.inner.content_type,
                cipher=options.cipher, iv=self._iv, plain_len=self.inner.size(),
                chunk=self._chunk).size()
        else:
            self.size = self.outer.size()

    @property
    def outer(self) -> EnvelopeLayout:
        """The envelope around the ciphertext (the recipients' key transport done once)."""
        if self._outer is None:
            infos = [r.recipient_info_der(self._cek, self.options.cipher)
                     for r in self._recipients]
            outer = EnvelopeLayout.build(recipient_infos=infos,
                                         inner_type=self.inner.content_type,
                                         cipher=self.options.cipher, iv=self._iv,
                                         plain_len=self.inner.size(), chunk=self._chunk)
            planned = getattr(self, "size", None)   # None: being planned now
            if planned is not None and outer.size() != planned:
                raise InternalError(f"a recipient's key transport made {outer.size()} bytes, "
                                    f"planned {planned}")
            self._outer = outer
        return self._outer

    @property
    def content_key(self) -> bytes:
        """The content-encryption key drawn for this file (in memory only: the builder's
        read-back decrypts what it wrote with it)."""
        return self._cek

    @staticmethod
    def make_template(signers, options: ProtectOptions = ProtectOptions()):
        """The per-job SignedData template (None without signers); fixes the signingTime."""
        if not signers:
            return None
        st = options.signing_time
        if st is None:
            st = _dt.datetime.now(_dt.timezone.utc)
        return SignedTemplate(list(signers), signing_time=st if st is not False else None,
                              chunk=None if options.framing == "der" else options.chunk)

    # -- streaming -----------------------------------------------------------------------------
    def chunks(self, src: BinaryIO) -> Iterator[memoryview]:
        """Yield the encoded file; each view is valid until the next step."""
        C = self.options.chunk
        pair = _take_buffers(C)
        try:
            yield from self._chunks(src, *pair)
        finally:
            # the consumer asked for the next chunk, or closed us: no view is in use
            _give_back(pair)

    def _chunks(self, src: BinaryIO, pbuf: bytearray, cbuf: bytearray) -> Iterator[memoryview]:
        C = self.options.chunk
        ber = self._chunk is not None
        pv = memoryview(pbuf)
        cv = memoryview(cbuf)
        enc = Encryptor(self.options.cipher, self._cek, self._iv)
        full_piece_header = b"\x04" + der_len(C)
        fill = 0
        emitted = 0

        def flush() -> Iterator:
            nonlocal fill, emitted
            n = enc.update_into(pv[:fill], cv)
            if n != fill:
                raise InternalError("the cipher returned a partial block")
            fill = 0
            if ber:
                emitted += len(full_piece_header)
                yield full_piece_header
            emitted += n
            yield cv[:n]

        def small(data: bytes) -> Iterator:
            nonlocal fill
            off = 0
            while off < len(data):
                k = min(C - fill, len(data) - off)
                pbuf[fill:fill + k] = data[off:off + k]
                fill += k
                off += k
                if fill == C:
                    yield from flush()

        yield memoryview(self.outer.prefix)
        emitted += len(self.outer.prefix)
        h = hashlib.new(self.inner.digest)
        yield from small(self.inner.head)
        remaining = self.content_len
        piece_left = 0
        while remaining:
            if ber and piece_left == 0:
                piece_left = min(C, remaining)
                yield from small(b"\x04" + der_len(piece_left))
            want = min(C - fill, piece_left if ber else remaining)
            n = src.readinto(pv[fill:fill + want])
            if not n:
                raise InputError("the file shrank while it was being read",
                                 code="INPUT_CHANGED")
            h.update(pv[fill:fill + n])
            fill += n
            remaining -= n
            piece_left -= n
            if fill == C:
                yield from flush()
        if src.read(1):
            raise InputError("the file grew while it was being read", code="INPUT_CHANGED")
        yield from small(self.inner.tail(h.digest()))
        n = enc.final_into(pv[:fill], cv)
        if ber:
            hdr = b"\x04" + der_len(n)
            emitted += len(hdr)
            yield memoryview(hdr)
        emitted += n + len(self.outer.suffix)
        yield cv[:n]
        if self.outer.suffix:
            yield memoryview(self.outer.suffix)
        if emitted != self.size:
            raise InternalError(f"planned {self.size} bytes, wrote {emitted}")

    def write_to(self, src: BinaryIO, out: BinaryIO) -> int:
        for mv in self.chunks(src):
            while mv:
                n = out.write(mv)
                mv = mv[n:]
        return self.size


# -- reading -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SecureFileReport:
    """What a Secure DICOM File holds and how each check came out."""

    envelope: dict
    inner: InnerResult | None
    findings: tuple[Finding, ...] = ()
    signers: tuple[dict, ...] = ()

    @property
    def outcome(self) -> Outcome:
        return worst(f.outcome for f in self.findings)

    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.outcome is Outcome.FAILED]

    def to_dict(self) -> dict:
        d = {"envelope": self.envelope, "outcome": self.outcome.value,
             "findings": [f.to_dict() for f in self.findings]}
        if self.inner is not None:
            d["inner"] = {"type": self.inner.kind, "wrapped": self.inner.wrapped,
                          "framing": self.inner.framing,
                          "content_length": self.inner.content_length,
                          "digests": {k: v.hex() for k, v in self.inner.digests.items()},
                          "signers": list(self.signers),
                          "certificates": [pcerts.describe(c)
                                           for c in self.inner.certificates]}
        else:
            d["inner"] = None
        return d


def _describe_recipients(head: EnvelopedHead) -> list[dict]:
    return describe_recipients(head.recipient_infos)


def _envelope_dict(head: EnvelopedHead, descriptions: list[dict] | None = None) -> dict:
    if descriptions is None:
        descriptions = _describe_recipients(head)
    return {"content_type": oids.CONTENT_TYPE_NAMES.get(head.content_type, head.content_type),
            "version": head.version, "cipher": head.cipher, "framing": head.framing,
            "recipients": descriptions}


def _legacy_findings(head: EnvelopedHead, descriptions: list[dict] | None = None
                     ) -> list[Finding]:
    out = []
    if head.cipher == "3des":
        out.append(Finding("ALG_LEGACY", Outcome.WARNING, "3DES content encryption (legacy)"))
    if descriptions is None:
        descriptions = _describe_recipients(head)
    for d in descriptions:
        if d["kind"] not in ("ktri", "pwri"):
            out.append(Finding("CMS_ALG_UNSUPPORTED", Outcome.WARNING,
                               f"recipient kind {d['kind']} is not in PS3.15 D.1"))
    return out


def unwrap_key(head: EnvelopedHead, decrypters: list[Decrypter], *,
               no_key: str = "the file is encrypted; give --key/--cert or --password-env"
               ) -> Unwrapped:
    """The content key from the first decrypter that opens ``head``; the most telling
    error (a wrong password before "not a recipient") when none does."""
    errors = []
    for d in decrypters:
        try:
            return d.unwrap(head.recipient_infos, CIPHERS[head.cipher])
        except (NoRecipientError, WrongPasswordError) as exc:
            errors.append(exc)
    if not errors:
        raise InputError(no_key, code="CMS_NO_KEY")
    for exc in errors:  # the most telling error first
        if isinstance(exc, WrongPasswordError):
            raise exc
    raise errors[0]


def open_secure_file(chunks: Iterable[bytes], *, decrypters: list[Decrypter],
                     sink: Callable[[memoryview], None] | None = None,
                     trust: TrustContext | None = None) -> SecureFileReport:
    """Decrypt and check one Secure DICOM File, streaming the payload into ``sink``.

    Raises on what stops reading (not CMS, no recipient, wrong password, damage);
    returns a report whose findings say how the digest, signatures and trust came out.
    The caller must not use what ``sink`` received unless ``report.failures()`` is empty.
    """
    s = ByteStream(chunks, what="the file")
    head = read_enveloped_head(s)
    descriptions = _describe_recipients(head)   # once: findings and the report share them
    findings = _legacy_findings(head, descriptions)
    unwrapped = unwrap_key(head, decrypters)
    findings += [Finding(code, Outcome.WARNING, msg) for code, msg in unwrapped.findings]
    plain = ByteStream(decrypt_chunks(s, head, unwrapped.cek), what="the decrypted content")
    inner = read_inner(plain, head.content_type, sink=sink)
    findings += [Finding(code, Outcome.WARNING, msg) for code, msg in inner.findings]
    signers = []
    if inner.kind == "digestedData":
        if inner.digest_ok:
            findings.append(Finding("INTEGRITY_DIGEST_OK", Outcome.PASSED,
                                    "the DigestedData digest matches the content"))
        else:
            findings.append(Finding("INTEGRITY_DIGEST_MISMATCH", Outcome.FAILED,
                                    "the DigestedData digest does not match the content "
                                    "(tampered or damaged)"))
    for sr in inner.signers:
        entry = sr.to_dict()
        findings += [Finding(code, Outcome.WARNING, msg) for code, msg in sr.findings]
        if sr.error is not None:
            findings.append(Finding(sr.error.code, Outcome.FAILED, sr.error.message))
            entry["trusted"] = False
        elif trust is None or not trust.has_anchors:
            entry["trusted"] = None
            findings.append(Finding("SIG_TRUST_NOT_CHECKED", Outcome.INDETERMINATE,
                                    f"signature by {sr.subject} is valid; its certificate was "
                                    "not checked against a trust anchor (give --trust CA.pem)"))
        else:
            try:
                chain = check_signer_certificate(sr.certificate, carried=inner.certificates,
                                                 trust=trust, signing_time=sr.signing_time)
                entry["trusted"] = True
                entry["chain"] = [pcerts.describe(c) for c in chain]
                findings.append(Finding("SIG_OK", Outcome.PASSED,
                                        f"valid signature by {sr.subject}, trusted"))
            except SignatureError as exc:
                entry["trusted"] = False
                findings.append(Finding(exc.code, Outcome.FAILED, exc.message))
        signers.append(entry)
    payload = inner.head
    if len(payload) < 132 or payload[128:132] != b"DICM":
        findings.append(Finding("PAYLOAD_NOT_DICOM", Outcome.FAILED,
                                "the decrypted payload is not a DICOM Part 10 file "
                                "(no DICM at byte 128)"))
    elif payload[:2] == b"MZ" or payload[:4] == b"\x7fELF":
        findings.append(Finding("PAYLOAD_PREAMBLE_EXEC", Outcome.WARNING,
                                "the preamble holds executable magic (PS3.10 §7.5)"))
    env = _envelope_dict(head, descriptions)
    env["matched_recipient"] = unwrapped.recipient
    return SecureFileReport(env, inner, tuple(findings), tuple(signers))


def inspect_secure_file(chunks: Iterable[bytes]) -> SecureFileReport:
    """What can be known without a key: the outer layer, algorithms and recipients."""
    s = ByteStream(chunks, what="the file")
    head = read_enveloped_head(s)
    findings = _legacy_findings(head)
    findings.append(Finding("CMS_ENCRYPTED_NOT_CHECKED", Outcome.INDETERMINATE,
                            "encrypted, not checked (no key given)"))
    return SecureFileReport(_envelope_dict(head), None, tuple(findings))


def raise_for_failures(report: SecureFileReport) -> None:
    """Turn the first failed check into the matching exception (for unprotect)."""
    for f in report.failures():
        if f.code.startswith("INTEGRITY"):
            raise IntegrityError(f.message, code=f.code)
        if f.code.startswith("SIG"):
            raise SignatureError(f.message, code=f.code)
        raise VerificationError(f.message, code=f.code)
