"""Reading RecipientInfos: the ``Decrypter`` interface and what it returns (``Unwrapped``),
PHI-free descriptions of recipients for reports, and a RecipientInfos parse checked once
per medium; ``Spliced``, the DER template both recipient writers fill per file.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import algos as aalgos
from asn1crypto import cms as acms

from mediasec.cms import oids
from mediasec.pki import certs as pcerts

__all__ = ["Spliced", "Unwrapped", "Decrypter", "describe_recipient", "describe_recipients",
           "load_recipient_infos", "masked_recipient_infos"]


@dataclass(frozen=True)
class Unwrapped:
    cek: bytes
    recipient: dict      # description of the recipient that matched (for reports)
    findings: tuple = ()  # (code, message) of legacy/extension algorithms seen


class Decrypter:
    """Finds its recipient among RecipientInfos and returns the content-encryption key."""

    def unwrap(self, infos: acms.RecipientInfos, key_len: int) -> Unwrapped:
        raise NotImplementedError  # pragma: no cover - interface


#: (version, rid, keyEncryptionAlgorithm) encodings of a ktri -> its description: the
#: same on every file of a medium (only the encrypted key differs), and describing the
#: issuer Name (``human_friendly``) is costly
_KTRI_DESCRIPTIONS = pcerts.Memo(64)


def describe_recipient(ri: acms.RecipientInfo) -> dict:
    """A PHI-free description of a RecipientInfo, for inspect and error messages."""
    if ri.name == "ktri":
        k = ri.chosen
        key = (k["version"].dump(), k["rid"].dump(), k["key_encryption_algorithm"].dump())
        return dict(_KTRI_DESCRIPTIONS.get(key, lambda: _describe_ktri(k)))
    return _describe_other(ri)


def _describe_ktri(k) -> dict:
    rid = k["rid"]
    alg = k["key_encryption_algorithm"]["algorithm"].dotted
    d = {"kind": "ktri", "version": k["version"].native,
         "key_encryption": {oids.RSA_ENCRYPTION: "rsaEncryption",
                            oids.RSAES_OAEP: "RSAES-OAEP"}.get(alg, alg)}
    if rid.name == "issuer_and_serial_number":
        d["issuer"] = rid.chosen["issuer"].human_friendly
        d["serial"] = format(rid.chosen["serial_number"].native, "x")
    else:
        d["subject_key_identifier"] = rid.chosen.native.hex()
    return d


def _describe_other(ri: acms.RecipientInfo) -> dict:
    if ri.name == "pwri":
        p = ri.chosen
        kdf = p["key_derivation_algorithm"]
        d = {"kind": "pwri", "key_derivation": kdf["algorithm"].native}
        if kdf["algorithm"].dotted == oids.PBKDF2:
            params = kdf["parameters"]
            d["iterations"] = params["iteration_count"].native
            d["prf"] = "hmacWith" + params["prf"]["algorithm"].native.upper()
        kek = p["key_encryption_algorithm"]
        if kek["algorithm"].dotted == oids.PWRI_KEK:
            inner = aalgos.EncryptionAlgorithm.load(kek["parameters"].dump())
            d["key_encryption"] = "PWRI-KEK/" + oids.CIPHER_NAME.get(
                inner["algorithm"].dotted, inner["algorithm"].dotted)
        return d
    return {"kind": ri.name}


def _ktri_key_holes(raw: bytes):
    """Content ranges of the ``encryptedKey`` OCTET STRINGs of the plain (definite-length)
    ktri in an encoded RecipientInfos SET, or None when the SET itself is not definite.
    Other recipient kinds are left as they are."""
    from mediasec.cms._ber import definite_at

    def tlv(off, end):
        return definite_at(raw, off, end)

    top = tlv(0, len(raw))
    if top is None or top[0] != 0x31 or top[2] != len(raw):
        return None
    holes = []
    off = top[1]
    while off < top[2]:
        ri = tlv(off, top[2])
        if ri is None:
            return None
        if ri[0] == 0x30:
            kids, p = [], ri[1]
            while p < ri[2]:
                k = tlv(p, ri[2])
                if k is None:
                    break
                kids.append(k)
                p = k[2]
            if p == ri[2] and len(kids) == 4 and kids[3][0] == 0x04:
                holes.append((kids[3][1], kids[3][2]))
        off = ri[2]
    return holes


#: RecipientInfos encodings, encrypted keys zeroed, known to parse completely
_RIS_SHAPES = pcerts.Memo(64)


def masked_recipient_infos(raw: bytes) -> tuple[bytes | None, tuple | None]:
    """(the encoding with every plain ktri's encrypted key zeroed, those key ranges), or
    (None, None) when the SET is not the plain definite layout. Files of a medium that
    differ only in their encrypted keys have the same masked encoding."""
    return _MASKED.get(raw, lambda: _mask_ktri_keys(raw))


def _mask_ktri_keys(raw: bytes) -> tuple[bytes | None, tuple | None]:
    holes = _ktri_key_holes(raw)
    if holes is None:
        return None, None
    buf = bytearray(raw)
    for a, b in holes:
        buf[a:b] = bytes(b - a)
    return bytes(buf), tuple(holes)


#: the last few RecipientInfos encodings -> (masked, holes): a file's head is looked at
#: three times (parse check, descriptions, unwrap)
_MASKED = pcerts.Memo(4)
#: masked RecipientInfos -> the descriptions of its RecipientInfos (see describe_recipients)
_RIS_DESCRIPTIONS = pcerts.Memo(64)


def describe_recipients(infos: acms.RecipientInfos) -> list[dict]:
    """``[describe_recipient(ri) for ri in infos]``, worked out once per masked encoding
    (a description never depends on an encrypted key)."""
    masked, _ = masked_recipient_infos(infos.dump())
    if masked is None:
        return [describe_recipient(ri) for ri in infos]
    found = _RIS_DESCRIPTIONS.get(masked, lambda: tuple(describe_recipient(ri)
                                                        for ri in infos))
    return [dict(d) for d in found]


def load_recipient_infos(raw: bytes) -> acms.RecipientInfos:
    """``acms.RecipientInfos.load(raw)``, checked to parse completely as ``.native`` does
    (ValueError/TypeError on damage), but once per medium: the files of a medium differ
    only in their ktri encrypted keys (primitive OCTET STRINGs of fixed length, which
    parse whatever their bytes), so the check is remembered for the encoding with those
    bytes zeroed."""
    ris = acms.RecipientInfos.load(raw)
    masked, _ = masked_recipient_infos(raw)
    if masked is not None and _RIS_SHAPES.lookup(masked) is not None:
        return ris
    ris.native
    if masked is not None:
        _RIS_SHAPES.put(masked, True)
    return ris


# -- writing: DER templates ----------------------------------------------------------

class Spliced:
    """A DER template with fixed-length holes, made once with asn1crypto, filled per file.

    Holes are found by the random filler put there when the template was encoded (a
    collision has probability 2^-128 or less, and is checked)."""

    def __init__(self, der: bytes, holes: list[bytes]):
        self.der = der
        self.holes = []
        for h in holes:
            off = der.find(h)
            if off < 0 or der.find(h, off + 1) >= 0:
                raise ValueError("template hole not unique")
            self.holes.append((off, len(h)))

    def fill(self, *values: bytes) -> bytes:
        out = bytearray(self.der)
        for (off, n), v in zip(self.holes, values):
            if len(v) != n:
                raise ValueError("value of the wrong length for its template hole")
            out[off:off + n] = v
        return bytes(out)
