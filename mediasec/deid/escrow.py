"""The Encrypted Attributes Sequence (0400,0500): seal the originals, open them again.

Written as a strict re-identifier (gdcmanon) expects: one item; Encrypted Content Transfer
Syntax UID (0400,0510) = Explicit VR Little Endian; Encrypted Content (0400,0520) = a DER
``ContentInfo(envelopedData)`` (the CMS engine of ``mediasec.cms``) whose ``id-data``
content is a bare data set holding one element, Modified Attributes Sequence (0400,0550),
with one item. Read: any number of items (the first we hold a key for), Explicit VR LE or
Deflated Explicit VR LE plaintext, DER or BER, one trailing pad byte, every recipient kind
``mediasec.cms.keys`` decrypts (RSA PKCS#1 v1.5 / OAEP, issuer-serial or SKI; PBKDF2 + RFC
3211 key wrap at any iteration count and PRF) and AES-128/192/256 or 3DES content.

EnvelopedData carries no integrity check of its own (PS3.15 allows only CBC here), so
the decrypted data set is checked strictly (structure, lengths, text characters): a
tampered ciphertext is reported as damaged rather than restored as garbage.
"""

from __future__ import annotations

import secrets
import zlib
from io import BytesIO
from typing import Callable

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from mediasec.cms import oids
from mediasec.cms._ber import ByteStream
from mediasec.cms.secure import unwrap_key
from mediasec.cms.envelope import (EnvelopeLayout, Encryptor, decrypt_chunks,
                                   read_enveloped_head)
from mediasec.cms.keys import Decrypter, Unwrapped, block_size
from mediasec.dicom import tags
from mediasec.errors import (DecryptionError, InputError, MalformedError, MediasecError,
                             NoRecipientError, WrongPasswordError)
from mediasec.policy import AlgorithmPolicy, CIPHERS

__all__ = ["ExplicitVRLittleEndian", "seal_originals", "open_escrow", "EscrowOpened"]

ExplicitVRLittleEndian = "1.2.840.10008.1.2.1"
DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99"
TAG_ENCRYPTED_ATTRS = 0x04000500
TAG_ENCRYPTED_TS = 0x04000510
TAG_ENCRYPTED_CONTENT = 0x04000520
TAG_MODIFIED_ATTRS = 0x04000550
_MAX_PLAIN = 64 << 20


def encode_modified(originals: Dataset) -> bytes:
    """The plaintext: (0400,0550) with one item, a bare Explicit VR LE data set."""
    wrapper = Dataset()
    wrapper.add(DataElement(TAG_MODIFIED_ATTRS, "SQ", Sequence([originals])))
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, wrapper)
    return fp.getvalue()


def seal_originals(originals: Dataset, *, recipients: list, cipher: str = "aes-256",
                   policy: AlgorithmPolicy = AlgorithmPolicy(),
                   rng: Callable[[int], bytes] = secrets.token_bytes) -> DataElement:
    """The Encrypted Attributes Sequence element for ``originals`` (one item)."""
    if not recipients:
        raise InputError("no escrow recipient", code="USAGE_NO_RECIPIENT")
    policy.check_cipher(cipher)
    plain = encode_modified(originals)
    cek, iv = rng(CIPHERS[cipher]), rng(block_size(cipher))
    infos = [r.recipient_info_der(cek, cipher) for r in recipients]
    layout = EnvelopeLayout.build(recipient_infos=infos, inner_type=oids.DATA, cipher=cipher,
                                  iv=iv, plain_len=len(plain), chunk=None)
    out = bytearray(len(plain) + 2 * block_size(cipher))
    n = Encryptor(cipher, cek, iv).final_into(plain, memoryview(out))
    der = layout.prefix + bytes(out[:n]) + layout.suffix
    if len(der) != layout.size():
        raise MalformedError("internal size mismatch in the escrow envelope")
    if len(der) % 2:
        der += b"\x00"       # OB values have even length (PS3.5 7.1)
    item = Dataset()
    item.add(DataElement(TAG_ENCRYPTED_TS, "UI", ExplicitVRLittleEndian))
    item.add(DataElement(TAG_ENCRYPTED_CONTENT, "OB", der))
    return DataElement(TAG_ENCRYPTED_ATTRS, "SQ", Sequence([item]))


class EscrowOpened:
    def __init__(self, originals: Dataset, unwrapped: Unwrapped, cipher: str, item: int):
        self.originals = originals
        self.recipient = unwrapped.recipient
        self.legacy = list(unwrapped.findings)
        self.cipher = cipher
        self.item = item
        if cipher == "3des":
            self.legacy.append(("ALG_LEGACY", "3DES content encryption (legacy)"))


def _der_total(data: bytes) -> int | None:
    """Length of the outer DER TLV, or None for indefinite length."""
    if len(data) < 2:
        return None
    n = data[1]
    if n < 0x80:
        return 2 + n
    if n == 0x80:
        return None
    k = n & 0x7F
    return 2 + k + int.from_bytes(data[2:2 + k], "big")


def _decrypt(data: bytes, decrypters: list[Decrypter]):
    total = _der_total(data)
    if total is not None:
        if total > len(data):
            raise MalformedError("the Encrypted Content is cut short", code="CMS_TRUNCATED")
        if total < len(data) and (len(data) - total > 1 or data[-1] != 0):
            raise MalformedError("bytes after the CMS structure in Encrypted Content",
                                 code="CMS_TRAILING_DATA")
        data = data[:total]
    attempts = [data]
    if total is None and data.endswith(b"\x00\x00\x00"):
        attempts.append(data[:-1])   # BER, padded to even length
    last = None
    for candidate in attempts:
        s = ByteStream([candidate], what="the Encrypted Content")
        head = read_enveloped_head(s)
        unwrapped = unwrap_key(head, decrypters, no_key="give --key/--cert or --password-env to re-identify")
        try:
            plain = b"".join(bytes(c) for c in decrypt_chunks(s, head, unwrapped.cek))
        except MalformedError as exc:
            if exc.code == "CMS_TRAILING_DATA" and candidate is not attempts[-1]:
                last = exc
                continue
            raise
        return plain, unwrapped, head
    raise last


def open_escrow(ds: Dataset, decrypters: list[Decrypter]) -> EscrowOpened:
    """Decrypt the first item of (0400,0500) we hold a key for; its Modified Attributes item."""
    if TAG_ENCRYPTED_ATTRS not in ds or not ds[TAG_ENCRYPTED_ATTRS].value:
        raise InputError("no Encrypted Attributes Sequence (0400,0500): nothing to "
                         "re-identify from", code="DEID_NO_ESCROW")
    errors: list[MediasecError] = []
    for i, item in enumerate(ds[TAG_ENCRYPTED_ATTRS].value):
        if TAG_ENCRYPTED_CONTENT not in item or TAG_ENCRYPTED_TS not in item:
            errors.append(MalformedError(f"Encrypted Attributes item {i + 1} lacks "
                                         "(0400,0510) or (0400,0520)", code="DEID_ESCROW_ITEM"))
            continue
        ts = str(item[TAG_ENCRYPTED_TS].value).rstrip("\x00 ")
        if ts not in (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
            errors.append(InputError(f"Encrypted Content Transfer Syntax {ts} is not "
                                     "Explicit VR Little Endian", code="DEID_ESCROW_TS"))
            continue
        try:
            plain, unwrapped, head = _decrypt(bytes(item[TAG_ENCRYPTED_CONTENT].value),
                                              decrypters)
        except (NoRecipientError, WrongPasswordError) as exc:
            errors.append(exc)
            continue
        if head.content_type != oids.DATA:
            raise MalformedError("the escrow envelope does not hold id-data content",
                                 code="CMS_INNER_TYPE")
        if ts == DeflatedExplicitVRLittleEndian:
            try:
                d = zlib.decompressobj(-zlib.MAX_WBITS)
                plain = d.decompress(plain, _MAX_PLAIN)
            except zlib.error as exc:
                raise DecryptionError("the decrypted attributes do not inflate (damaged "
                                      "or tampered)", code="DEID_ESCROW_DAMAGED") from exc
        originals = decode_modified(plain)
        return EscrowOpened(originals, unwrapped, head.cipher, i)
    for exc in errors:
        if isinstance(exc, WrongPasswordError):
            raise exc
    for exc in errors:
        if isinstance(exc, NoRecipientError):
            raise exc
    raise errors[0]


_TEXT = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                   "TM", "UC", "UI", "UR", "UT"})
_CTRL_OK = {"LT": "\r\n\f\t\x1b", "ST": "\r\n\f\t\x1b", "UT": "\r\n\f\t\x1b", "PN": "\x1b",
            "LO": "\x1b", "SH": "\x1b", "UC": "\x1b"}


def _without_zero_tail(plain: bytes) -> bytes:
    """``plain`` without zero bytes after the Modified Attributes Sequence (tolerated)."""
    if plain[:6] != b"\x00\x04\x50\x05SQ" or len(plain) < 12 or not plain.endswith(b"\x00"):
        return plain
    n = int.from_bytes(plain[8:12], "little")
    if n != 0xFFFFFFFF:
        end = 12 + n
    else:
        k = plain.rfind(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
        if k < 0:
            return plain
        end = k + 8
    if end < len(plain) and not plain[end:].strip(b"\x00"):
        return plain[:end]
    return plain


def decode_modified(plain: bytes) -> Dataset:
    """Parse and check the decrypted data set; its single Modified Attributes item."""
    damaged = DecryptionError("the decrypted attributes are not a valid data set (damaged "
                              "or tampered Encrypted Content)", code="DEID_ESCROW_DAMAGED")
    body = _without_zero_tail(plain)
    try:
        fp = BytesIO(body)
        ds = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                          bytelength=None)
        if fp.tell() != len(body):
            raise damaged
        if TAG_MODIFIED_ATTRS not in ds:
            raise InputError("the decrypted attributes hold no Modified Attributes Sequence "
                             "(0400,0550)", code="DEID_ESCROW_CONTENT")
        seq = ds[TAG_MODIFIED_ATTRS].value
        if len(seq) != 1:
            raise InputError(f"the Modified Attributes Sequence has {len(seq)} items, not 1",
                             code="DEID_ESCROW_CONTENT")
        item = seq[0]
        _check(item, 0, ascii_only=tags.SPECIFIC_CHARACTER_SET not in item)
        if tags.SOP_INSTANCE_UID not in item:
            raise InputError("the escrowed attributes lack the SOP Instance UID",
                             code="DEID_ESCROW_CONTENT")
        return item
    except MediasecError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on garbage
        raise damaged from exc


def _check(ds: Dataset, depth: int, *, ascii_only: bool) -> None:
    """Every element decodes and every text value is characters of its VR (a flipped
    ciphertext block turns 16 bytes into noise, which this catches in text)."""
    if depth > 32:
        raise ValueError("nesting too deep")
    for elem in ds:
        vr = elem.VR
        tag = int(elem.tag)
        if tag >> 16 & 1:
            # a private tag: a creator (gggg,00xx) reserves the block of every element
            low = tag & 0xFFFF
            if low >= 0x1000:
                if (tag & 0xFFFF0000 | low >> 8) not in ds:
                    raise ValueError("a private element without its creator")
            elif not 0x10 <= low <= 0xFF:
                raise ValueError("an element number no private group uses")
        else:
            # a public tag: known to the dictionary with this VR (noise makes up tags)
            try:
                known = dictionary_VR(tag)
            except KeyError:
                known = None
            if known is None and vr == "UN":
                raise ValueError("an unknown public tag")
            if known is not None and vr not in known and vr != "UN":
                raise ValueError("a VR that does not match the dictionary")
        if vr == "SQ":
            for item in elem.value:
                _check(item, depth + 1, ascii_only=ascii_only)
            continue
        if vr in _TEXT:
            vals = elem.value
            if vals is None:
                continue
            if not isinstance(vals, (list, tuple)) and not hasattr(vals, "__iter__") \
                    or isinstance(vals, (str, bytes)):
                vals = [vals]
            for v in vals:
                s = str(v)
                ok = _CTRL_OK.get(vr, "")
                top = 0x7E if ascii_only else 0x10FFFF
                if any((ord(ch) < 0x20 and ch not in ok) or 0x7F <= ord(ch) <= 0x9F
                       or ord(ch) > top or ch == "\ufffd" for ch in s):
                    raise ValueError(f"control characters in a {vr} value")
                if vr == "UI" and s and not all(ch.isdigit() or ch == "." for ch in s):
                    raise ValueError("a UID with characters outside 0-9 and '.'")
