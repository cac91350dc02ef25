"""EnvelopedData (RFC 5652 §6): framing, exact sizes, streaming encryption and decryption.

The outer layer of a Secure DICOM File is ``ContentInfo(envelopedData)``. We write its
small parts with asn1crypto (DER) and frame the ciphertext ourselves, either definite
(``[0] IMPLICIT`` primitive, the whole file then being DER) or indefinite BER with
fixed-size pieces. ``EnvelopeLayout`` knows every byte before and after the ciphertext,
so ``size()`` is exact before any byte is written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator

from asn1crypto import algos as aalgos
from asn1crypto import cms as acms
from asn1crypto import core as acore
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from mediasec.cms import oids
from mediasec.cms._ber import (ByteStream, EOC, Header, der_len, expect, is_eoc_next,
                               iter_octets, octets_size, read_element, read_header, skip_eoc,
                               write_octets_header)
from mediasec.cms.keys import block_cipher, block_size, load_recipient_infos
from mediasec.errors import (DecryptionError, InputError, MalformedError, MediasecError,
                             NotCMSError)
from mediasec.pki import certs as pcerts
from mediasec.policy import CIPHERS

__all__ = ["EnvelopeLayout", "EnvelopedHead", "read_enveloped_head", "decrypt_chunks",
           "ciphertext_size", "looks_enveloped"]

_OID_ENVELOPED = bytes.fromhex("06092a864886f70d010703")


def looks_enveloped(first: bytes) -> bool:
    """PS3.10 §7.4 detection: a SEQUENCE (any length form) then the envelopedData OID."""
    if len(first) < 2 or first[0] != 0x30:
        return False
    n = first[1]
    if n == 0x80:
        skip = 2
    elif 0x81 <= n <= 0x84:
        skip = 2 + (n & 0x7F)
    elif n < 0x80:
        skip = 2
    else:
        return False
    return first[skip:skip + len(_OID_ENVELOPED)] == _OID_ENVELOPED


@functools.lru_cache(maxsize=None)
def _content_type_der(oid: str) -> bytes:
    return acms.ContentType(oid).dump()   # once per type: asn1crypto costs ~0.1 ms a call


def _cipher_alg_der(cipher: str, iv: bytes) -> bytes:
    """AlgorithmIdentifier { cipher OID, OCTET STRING iv } (RFC 3565 / 3370)."""
    body = _CIPHER_OID_DER[cipher] + b"\x04" + der_len(len(iv)) + iv
    return b"\x30" + der_len(len(body)) + body


_CIPHER_OID_DER = {name: acore.ObjectIdentifier(oid).dump() for name, oid in oids.CIPHER.items()}


def ciphertext_size(plain: int, cipher: str) -> int:
    bs = block_size(cipher)
    return (plain // bs + 1) * bs


def _version(infos: list[bytes]) -> bytes:
    """RFC 5652 §6.1 from encoded RecipientInfos: 3 with pwri/ori, 2 with a ktri v2, else 0."""
    if any(ri[0] in (0xA3, 0xA4) for ri in infos):
        return b"\x02\x01\x03"
    for ri in infos:
        hdr = 2 if ri[1] < 0x80 else 2 + (ri[1] & 0x7F)
        if ri[0] == 0x30 and ri[hdr:hdr + 3] != b"\x02\x01\x00":
            return b"\x02\x01\x02"
    return b"\x02\x01\x00"


@dataclass(frozen=True)
class EnvelopeLayout:
    """Everything of the outer layer but the ciphertext itself."""

    prefix: bytes        # up to the first ciphertext byte (definite) / first piece (BER)
    suffix: bytes        # after the ciphertext
    ciphertext_len: int
    chunk: int | None    # BER piece size, None for definite framing

    @classmethod
    def build(cls, *, recipient_infos: list[bytes], inner_type: str,
              cipher: str, iv: bytes, plain_len: int, chunk: int | None) -> "EnvelopeLayout":
        if chunk is not None and chunk % block_size(cipher):
            raise ValueError("the BER piece size must be a multiple of the block size")
        ct_len = ciphertext_size(plain_len, cipher)
        infos = list(recipient_infos)  # encoded RecipientInfos (``recipient_info_der``)
        version = _version(infos)
        body_ris = b"".join(sorted(infos))  # DER SET OF: sorted encodings
        ris = b"\x31" + der_len(len(body_ris)) + body_ris
        ctype = _content_type_der(inner_type)
        alg = _cipher_alg_der(cipher, iv)
        body = octets_size(ct_len, chunk=chunk, tag=0x80)
        if chunk is None:
            eci_len = len(ctype) + len(alg) + body
            eci_head = b"\x30" + der_len(eci_len) + ctype + alg
            env_len = len(version) + len(ris) + len(eci_head) + body
            env_head = b"\x30" + der_len(env_len) + version + ris
            explicit_len = len(env_head) + len(eci_head) + body
            ci_inner = _OID_ENVELOPED + b"\xa0" + der_len(explicit_len)
            prefix = (b"\x30" + der_len(len(ci_inner) + explicit_len) + ci_inner + env_head
                      + eci_head + write_octets_header(ct_len, chunk=None, tag=0x80))
            suffix = b""
        else:
            prefix = (b"\x30\x80" + _OID_ENVELOPED + b"\xa0\x80" + b"\x30\x80" + version + ris
                      + b"\x30\x80" + ctype + alg + b"\xa0\x80")
            # ends of: encryptedContent [0], encryptedContentInfo, EnvelopedData, [0], ContentInfo
            suffix = EOC * 5
        return cls(prefix, suffix, ct_len, chunk)

    def size(self) -> int:
        if self.chunk is None:
            return len(self.prefix) + self.ciphertext_len
        # prefix ends with the constructed [0] header and suffix starts with its EOC, both
        # of which octets_size counts too
        return (len(self.prefix) + octets_size(self.ciphertext_len, chunk=self.chunk) - 4
                + len(self.suffix))


class Encryptor:
    """CBC encryption of a plaintext produced in ``chunk``-sized, block-aligned pieces."""

    def __init__(self, cipher: str, key: bytes, iv: bytes):
        self._enc = Cipher(block_cipher(cipher, key), modes.CBC(iv)).encryptor()
        self.bs = block_size(cipher)

    def update_into(self, data, out) -> int:
        return self._enc.update_into(data, out)

    def final_into(self, tail, out) -> int:
        """Encrypt the last input with PKCS#7 padding (1..bs bytes) into ``out``.

        ``out`` needs ``len(tail) + 2 * bs`` bytes; returns how many were written."""
        bs = self.bs
        whole = len(tail) - len(tail) % bs
        n = self._enc.update_into(tail[:whole], out) if whole else 0
        pad = bs - (len(tail) - whole)
        last = bytes(tail[whole:]) + bytes((pad,)) * pad
        n += self._enc.update_into(last, out[n:])
        self._enc.finalize()
        return n


# -- reading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnvelopedHead:
    version: int
    recipient_infos: acms.RecipientInfos
    content_type: str          # dotted OID of the encrypted content
    cipher: str                # name in policy.CIPHERS
    iv: bytes
    framing: str               # "der" (all definite) or "ber"
    content_header: Header     # the encryptedContent [0] header
    eci_header: Header
    env_header: Header
    explicit_header: Header
    ci_header: Header
    has_originator_info: bool


def read_enveloped_head(s: ByteStream) -> EnvelopedHead:
    """Parse the outer layer up to the first ciphertext byte."""
    first = s.peek(32)  # tag + up to 5 length octets + the 11-byte OID
    if not looks_enveloped(first):
        if len(first) >= 2 and first[0] == 0x30:
            raise NotCMSError("not a Secure DICOM File: a CMS/DER structure, but not "
                              "EnvelopedData", code="CMS_OUTER_TYPE")
        raise NotCMSError("not a Secure DICOM File (no CMS EnvelopedData at the start)")
    ci = read_header(s)
    s.read(len(_OID_ENVELOPED))
    explicit = expect(s, 0xA0, "[0] EXPLICIT content")
    env = expect(s, 0x30, "EnvelopedData")
    try:
        version = small_parse(acore.Integer, read_element(s, cap=16), "native")
    except (ValueError, TypeError) as exc:
        raise MalformedError("the EnvelopedData version does not parse",
                             code="CMS_VERSION") from exc
    if version not in (0, 2, 3, 4):  # RFC 5652 §6.1: CMSVersion 0, 2, 3 or 4
        raise MalformedError(f"EnvelopedData version {version} is not 0, 2, 3 or 4",
                             code="CMS_VERSION")
    originator = False
    h = read_header(s)
    if h.tag == 0xA0:  # originatorInfo: not used by the profile; skip it
        read_element(s, h)
        originator = True
        h = read_header(s)
    if h.tag != 0x31:
        raise MalformedError(f"expected RecipientInfos SET at byte {h.offset}")
    try:
        # a full parse now (once per distinct shape on a medium), so damage is reported
        ris = load_recipient_infos(read_element(s, h, cap=4 << 20))
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"RecipientInfos do not parse: {exc}") from exc
    eci = expect(s, 0x30, "EncryptedContentInfo")
    try:
        ctype = small_parse(acms.ContentType, read_element(s, cap=64), "dotted")
        cipher, iv = _content_cipher(read_element(s, cap=4096))
    except MediasecError:
        raise
    except (ValueError, TypeError) as exc:
        raise MalformedError(f"EncryptedContentInfo does not parse: {exc}") from exc
    if not isinstance(iv, bytes) or len(iv) != block_size(cipher):
        raise MalformedError("the content cipher has no valid IV")
    content = read_header(s)
    if content.tag not in (0x80, 0xA0):
        raise MalformedError("no encryptedContent (detached EnvelopedData is not a Secure "
                             "DICOM File)", code="CMS_DETACHED")
    definite = all(x.length is not None for x in (ci, explicit, env, eci, content))
    return EnvelopedHead(version, ris, ctype, cipher, iv, "der" if definite else "ber",
                         content, eci, env, explicit, ci, originator)


#: (asn1crypto class, attribute, DER) -> the attribute of the parsed value
_SMALL = pcerts.Memo(256)
#: a content-encryption AlgorithmIdentifier with its IV zeroed -> the cipher name
_CIPHER_ALGS = pcerts.Memo(16)


def small_parse(cls, raw: bytes, attr: str):
    """``getattr(cls.load(raw), attr)`` (``native``, ``dotted``), once per distinct encoding
    in a job: a pure function of the bytes, and the same bytes recur on every file of a
    medium (versions, content types). A failure is not remembered (it raises each time)."""
    return _SMALL.get((cls, attr, raw), lambda: getattr(cls.load(raw), attr))


def _content_cipher(raw: bytes) -> tuple[str, object]:
    """(cipher name, IV) of a contentEncryptionAlgorithm. The IV differs per file and the
    rest of the encoding does not: when the encoding is SEQUENCE { OID, OCTET STRING iv }
    (definite, nothing else), the parse is remembered for the encoding with the IV
    zeroed, since a primitive OCTET STRING parses whatever its bytes; else, or the first
    time, asn1crypto parses it."""
    from mediasec.cms._ber import definite_at

    top = definite_at(raw, 0, len(raw))
    hole = None
    if top is not None and top[0] == 0x30 and top[2] == len(raw):
        oid = definite_at(raw, top[1], top[2])
        if oid is not None and oid[0] == 0x06:
            par = definite_at(raw, oid[2], top[2])
            if par is not None and par[0] == 0x04 and par[2] == top[2]:
                hole = (par[1], par[2])
    if hole is None:
        return _parse_content_cipher(raw)
    masked = raw[:hole[0]] + bytes(hole[1] - hole[0]) + raw[hole[1]:]
    cipher = _CIPHER_ALGS.lookup(masked)
    if cipher is not None:
        return cipher, raw[hole[0]:hole[1]]
    cipher, iv = _parse_content_cipher(raw)
    if iv == raw[hole[0]:hole[1]]:
        _CIPHER_ALGS.put(masked, cipher)
    return cipher, iv


def _parse_content_cipher(raw: bytes) -> tuple[str, object]:
    alg = aalgos.EncryptionAlgorithm.load(raw)
    alg_oid = alg["algorithm"].dotted
    cipher = oids.CIPHER_NAME.get(alg_oid)
    if cipher is None:
        raise InputError(f"content cipher {alg_oid} is not AES-CBC or 3DES-CBC "
                         "(PS3.15 D.1)", code="CMS_ALG_UNSUPPORTED")
    return cipher, alg["parameters"].native


def _finish_outer(s: ByteStream, head: EnvelopedHead) -> None:
    skip_eoc(s, head.eci_header)
    if head.env_header.length is None:
        if not is_eoc_next(s):
            h = read_header(s)
            if h.tag != 0xA1:
                raise MalformedError(f"unexpected element {h.tag:#04x} at byte {h.offset}")
            read_element(s, h)   # unprotectedAttrs: allowed, ignored
    elif s.pos < head.env_header.end:
        h = read_header(s)
        if h.tag != 0xA1:
            raise MalformedError(f"unexpected element {h.tag:#04x} at byte {h.offset}")
        read_element(s, h)
    skip_eoc(s, head.env_header)
    skip_eoc(s, head.explicit_header)
    skip_eoc(s, head.ci_header)
    if not s.at_end():
        raise MalformedError(f"trailing bytes after the CMS structure at byte {s.pos}",
                             code="CMS_TRAILING_DATA")


def decrypt_chunks(s: ByteStream, head: EnvelopedHead, cek: bytes, *,
                   piece: int = 256 << 10) -> Iterator[memoryview]:
    """Yield the plaintext (padding removed) and then check the rest of the outer layer.

    Views are valid until the next step. Bad padding or a ragged ciphertext length is a
    ``DecryptionError`` (damaged file), never "wrong key". ``piece``: the largest
    ciphertext piece decrypted at once (the output buffer, made per file, is that size:
    a medium's reader hands out 256 KiB chunks, see ``io.iso.READ_CHUNK``).
    """
    bs = block_size(head.cipher)
    if len(cek) != CIPHERS[head.cipher]:
        raise DecryptionError("content key of the wrong length")
    dec = Cipher(block_cipher(head.cipher, cek), modes.CBC(head.iv)).decryptor()
    # out = [the last block of the previous output, held back: it may end in the padding]
    #       [this step's output]; a step yields the held block and all but the last block of
    #       its output as one view (one view per piece, not two)
    out = bytearray(bs + piece + bs)
    view = memoryview(out)
    into = view[bs:]
    held = False
    total = 0
    for ct in iter_octets(s, head.content_header, piece=piece):
        total += len(ct)
        if len(ct) > piece:  # cannot happen (iter_octets caps pieces), keep buffers safe
            raise MalformedError("ciphertext piece over the buffer size")
        n = dec.update_into(ct, into)
        if n == 0:
            continue
        if held:
            yield view[:n]
        elif n > bs:
            yield view[bs:n]
        out[:bs] = view[n:n + bs]   # the consumer is done with the view: hold the last block
        held = True
    if total == 0 or total % bs:
        raise DecryptionError(f"ciphertext of {total} bytes is not a whole number of "
                              f"{bs}-byte blocks (damaged file)")
    dec.finalize()
    last = bytes(out[:bs])
    pad = last[-1]
    if not 1 <= pad <= bs or last[-pad:] != bytes((pad,)) * pad:
        raise DecryptionError("bad padding after decryption (damaged file)")
    if bs - pad:
        yield memoryview(last)[:bs - pad]
    _finish_outer(s, head)
