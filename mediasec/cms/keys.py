"""Keys behind interfaces: signers, recipients (writing) and decrypters (reading).

A smart card or an HSM is a new ``Signer``/``Decrypter`` subclass, not a flag.
Legacy choices (SHA-1, RSA under 2048 bits, 3DES) are checked against an
``AlgorithmPolicy`` when a writer object is made; readers accept them and report.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from asn1crypto import algos as aalgos
from asn1crypto import cms as acms
from asn1crypto import core as acore
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mediasec.cms import oids
from mediasec.errors import DecryptionError, InputError, NoRecipientError, UsageError, \
    WrongPasswordError
from mediasec.pki import certs as pcerts
from mediasec.policy import AlgorithmPolicy, CIPHERS, MIN_PBKDF2_ITERATIONS

__all__ = ["Signer", "RSASigner", "KeyTransportRecipient", "PasswordRecipient", "Decrypter",
           "KeyDecrypter", "PasswordDecrypter", "block_cipher", "HASHES", "Unwrapped",
           "load_recipient_infos"]

HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
          "sha512": hashes.SHA512}


def block_cipher(name: str, key: bytes):
    """The ``cryptography`` algorithm object for a content/KEK cipher name."""
    if name == "3des":
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
        return TripleDES(key)
    return algorithms.AES(key)


def block_size(name: str) -> int:
    return 8 if name == "3des" else 16


# -- signing ----------------------------------------------------------------------------------

class Signer:
    """Produces RSA signatures for a SignerInfo. Subclass for tokens and HSMs."""

    certificate = None          # cryptography x509.Certificate
    chain: tuple = ()           # intermediates to carry in SignedData.certificates
    digest: str = "sha256"
    pss: bool = False

    @property
    def signature_size(self) -> int:
        return (pcerts.rsa_bits(self.certificate) + 7) // 8

    def sign(self, data: bytes) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


class RSASigner(Signer):
    def __init__(self, key, certificate, chain=(), *, digest: str = "sha256", pss: bool = False,
                 policy: AlgorithmPolicy = AlgorithmPolicy()):
        policy.check_digest(digest)
        if key.public_key().public_numbers() != certificate.public_key().public_numbers():
            raise UsageError("the signing key does not belong to the signing certificate",
                             code="USAGE_KEY_CERT_MISMATCH")
        policy.check_rsa_bits(key.key_size, "the signing key")
        self._key = key
        self.certificate = certificate
        self.chain = tuple(chain)
        self.digest = digest
        self.pss = pss

    def sign(self, data: bytes) -> bytes:
        h = HASHES[self.digest]()
        pad = (padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size) if self.pss
               else padding.PKCS1v15())
        return self._key.sign(data, pad, h)


# -- key transport (writing) -------------------------------------------------------------------

class _Spliced:
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


@dataclass(eq=False)
class KeyTransportRecipient:
    """An RSA recipient certificate: RSAES-PKCS1-v1_5 (the profile's), OAEP on request."""

    certificate: object
    oaep: bool = False
    use_ski: bool = False
    policy: AlgorithmPolicy = AlgorithmPolicy()
    _template: _Spliced | None = field(default=None, repr=False)

    def __post_init__(self):
        self.policy.check_rsa_bits(pcerts.rsa_bits(self.certificate),
                                   f"recipient {pcerts.describe(self.certificate)}")

    def _encrypt(self, cek: bytes) -> bytes:
        pub = self.certificate.public_key()
        if self.oaep:
            return pub.encrypt(cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                 algorithm=hashes.SHA256(), label=None))
        return pub.encrypt(cek, padding.PKCS1v15())

    def recipient_info_der(self, cek: bytes, content_cipher: str) -> bytes:
        """The encoded RecipientInfo (fast: a per-recipient template, one RSA operation)."""
        if self._template is None:
            filler = secrets.token_bytes((pcerts.rsa_bits(self.certificate) + 7) // 8)
            self._template = _Spliced(self._info(filler).dump(), [filler])
        return self._template.fill(self._encrypt(cek))

    def _info(self, enc: bytes) -> acms.RecipientInfo:
        if self.oaep:
            sha256 = {"algorithm": "sha256"}
            alg = {"algorithm": "rsaes_oaep", "parameters": aalgos.RSAESOAEPParams({
                "hash_algorithm": sha256,
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": sha256}})}
        else:
            alg = {"algorithm": "rsaes_pkcs1v15"}
        if self.use_ski:
            rid = acms.RecipientIdentifier(
                name="subject_key_identifier",
                value=pcerts.subject_key_id(self.certificate))
            version = "v2"
        else:
            rid = acms.RecipientIdentifier(name="issuer_and_serial_number",
                                           value=pcerts.issuer_and_serial(self.certificate))
            version = "v0"
        return acms.RecipientInfo(name="ktri", value=acms.KeyTransRecipientInfo({
            "version": version, "rid": rid, "key_encryption_algorithm": alg,
            "encrypted_key": enc}))


# -- password recipients (RFC 3211) ------------------------------------------------------------

def _pbkdf2(password: bytes, salt: bytes, iterations: int, length: int, prf: str) -> bytes:
    return hashlib.pbkdf2_hmac(prf, password, salt, iterations, length)


def _kek_wrap(kek_cipher: str, kek: bytes, iv: bytes, cek: bytes) -> bytes:
    bs = block_size(kek_cipher)
    body = bytes((len(cek),)) + bytes(b ^ 0xFF for b in cek[:3]) + cek
    total = max(2 * bs, -(-len(body) // bs) * bs)
    body += secrets.token_bytes(total - len(body))
    enc = Cipher(block_cipher(kek_cipher, kek), modes.CBC(iv)).encryptor()
    first = enc.update(body)
    enc2 = Cipher(block_cipher(kek_cipher, kek), modes.CBC(first[-bs:])).encryptor()
    return enc2.update(first) + enc2.finalize()


def _kek_unwrap(kek_cipher: str, kek: bytes, iv: bytes, wrapped: bytes) -> bytes | None:
    """RFC 3211 §2.3.2; ``None`` when the check bytes do not match (wrong password)."""
    bs = block_size(kek_cipher)
    n = len(wrapped)
    if n % bs or n < 2 * bs:
        raise DecryptionError("password-wrapped key has a bad length", code="CMS_PWRI_FORMAT")
    alg = block_cipher(kek_cipher, kek)
    # 1. the last block, with the block before it as IV, gives the inner layer's last block
    last = Cipher(alg, modes.CBC(wrapped[-2 * bs:-bs])).decryptor().update(wrapped[-bs:])
    # 2. with that as IV, blocks 1..n-1 strip the outer layer
    inner = Cipher(alg, modes.CBC(last)).decryptor().update(wrapped[:-bs]) + last
    # 3. the inner layer, with the KEK IV
    plain = Cipher(alg, modes.CBC(iv)).decryptor().update(inner)
    length = plain[0]
    if length < 1 or 4 + length > n:
        return None
    check = bytes(b ^ 0xFF for b in plain[4:7])
    if not hmac.compare_digest(check, plain[1:4]):
        return None
    return plain[4:4 + length]


@dataclass
class PasswordRecipient:
    """A password recipient (PWRI): PBKDF2 then the RFC 3211 key wrap.

    The KEK is derived once per recipient object and reused for every file of a job
    (one salt per job), so a disc of thousands of files costs one PBKDF2.
    """

    password: bytes
    iterations: int = 600_000
    prf: str = "sha256"
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    policy: AlgorithmPolicy = AlgorithmPolicy()
    _keks: dict = field(default_factory=dict, repr=False)
    _templates: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        check_password(self.password)
        if self.iterations < MIN_PBKDF2_ITERATIONS and not self.policy.allow_legacy:
            raise UsageError(f"PBKDF2 with {self.iterations} iterations is legacy; refused "
                             "without --allow-legacy", code="POLICY_LEGACY_REFUSED")
        self.policy.check_digest(self.prf)

    def _kek(self, kek_cipher: str) -> bytes:
        if kek_cipher not in self._keks:
            self._keks[kek_cipher] = _pbkdf2(self.password, self.salt, self.iterations,
                                             CIPHERS[kek_cipher], self.prf)
        return self._keks[kek_cipher]

    def recipient_info_der(self, cek: bytes, content_cipher: str) -> bytes:
        iv = secrets.token_bytes(block_size(content_cipher))
        wrapped = _kek_wrap(content_cipher, self._kek(content_cipher), iv, cek)
        key = (content_cipher, len(wrapped))
        if key not in self._templates:
            f_iv, f_wrapped = secrets.token_bytes(len(iv)), secrets.token_bytes(len(wrapped))
            self._templates[key] = _Spliced(self._info(f_iv, f_wrapped, content_cipher).dump(),
                                            [f_iv, f_wrapped])
        return self._templates[key].fill(iv, wrapped)

    def _info(self, iv: bytes, wrapped: bytes, content_cipher: str) -> acms.RecipientInfo:
        kdf_params = {"salt": aalgos.Pbkdf2Salt(name="specified", value=self.salt),
                      "iteration_count": self.iterations}
        if self.prf != "sha1":
            kdf_params["prf"] = {"algorithm": self.prf}
        kdf = aalgos.KdfAlgorithm({"algorithm": "pbkdf2",
                                   "parameters": aalgos.Pbkdf2Params(kdf_params)})
        kek_alg = acms.KeyEncryptionAlgorithm({
            "algorithm": oids.PWRI_KEK,
            "parameters": _cipher_alg_id(content_cipher, iv)})
        return acms.RecipientInfo(name="pwri", value=acms.PasswordRecipientInfo({
            "version": "v0", "key_derivation_algorithm": kdf,
            "key_encryption_algorithm": kek_alg, "encrypted_key": wrapped}))


def check_password(password: bytes) -> None:
    """PS3.15 D.1: passwords are ISO-IR 6 (ASCII) octets; no normalisation."""
    if not password:
        raise UsageError("the password is empty", code="USAGE_EMPTY_PASSWORD")
    try:
        password.decode("ascii")
    except UnicodeDecodeError as exc:
        raise UsageError("the password has characters outside ISO-IR 6 (ASCII), which "
                         "PS3.15 D.1 requires", code="USAGE_PASSWORD_CHARSET") from exc


def _cipher_alg_id(cipher: str, iv: bytes) -> aalgos.EncryptionAlgorithm:
    return aalgos.EncryptionAlgorithm({"algorithm": oids.CIPHER[cipher],
                                       "parameters": acore.OctetString(iv)})


# -- reading: decrypters -----------------------------------------------------------------------

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
_KTRI_DESCRIPTIONS = pcerts._Memo(64)


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
_RIS_SHAPES = pcerts._Memo(64)


def load_recipient_infos(raw: bytes) -> acms.RecipientInfos:
    """``acms.RecipientInfos.load(raw)``, checked to parse completely as ``.native`` does
    (ValueError/TypeError on damage), but once per medium: the files of a medium differ
    only in their ktri encrypted keys (primitive OCTET STRINGs of fixed length, which
    parse whatever their bytes), so the check is remembered for the encoding with those
    bytes zeroed."""
    ris = acms.RecipientInfos.load(raw)
    holes = _ktri_key_holes(raw)
    masked = None
    if holes is not None:
        buf = bytearray(raw)
        for a, b in holes:
            buf[a:b] = bytes(b - a)
        masked = bytes(buf)
        if _RIS_SHAPES.lookup(masked) is not None:
            return ris
    ris.native
    if masked is not None:
        _RIS_SHAPES.put(masked, True)
    return ris


class KeyDecrypter(Decrypter):
    """An RSA private key, with its certificate when known (to pick the right recipient)."""

    def __init__(self, key, certificate=None):
        self._key = key
        self.certificate = certificate
        if certificate is not None and (certificate.public_key().public_numbers()
                                        != key.public_key().public_numbers()):
            raise UsageError("the key does not belong to the certificate given with it",
                             code="USAGE_KEY_CERT_MISMATCH")

    def _matches(self, rid) -> bool | None:
        """True/False when decidable, None when we hold no certificate (try the key)."""
        if rid.name == "subject_key_identifier":
            ski = rid.chosen.native
            if self.certificate is not None:
                return ski == pcerts.subject_key_id(self.certificate)
            return None
        if self.certificate is None:
            return None
        issuer_der, serial = pcerts.issuer_serial_parts(self.certificate)
        if rid.chosen["serial_number"].native != serial:
            return False
        # identical DER first: asn1crypto's Name equality runs LDAP string preparation on
        # every attribute (milliseconds per file on a disc of thousands)
        issuer = rid.chosen["issuer"]
        return (issuer.dump() == issuer_der
                or issuer == pcerts.issuer_and_serial(self.certificate)["issuer"])

    def unwrap(self, infos: acms.RecipientInfos, key_len: int) -> Unwrapped:
        found = []
        for ri in infos:
            if ri.name != "ktri":
                continue
            k = ri.chosen
            found.append(describe_recipient(ri))
            match = self._matches(k["rid"])
            if match is False:
                continue
            alg = k["key_encryption_algorithm"]
            findings = []
            if alg["algorithm"].dotted == oids.RSAES_OAEP:
                params = alg["parameters"]
                h = HASHES[params["hash_algorithm"]["algorithm"].native]()
                mh = HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
                pad = padding.OAEP(mgf=padding.MGF1(mh), algorithm=h, label=None)
                findings.append(("ALG_OAEP_EXTENSION", "RSAES-OAEP key transport is not named "
                                 "by PS3.15 D.1 (read as an extension)"))
            elif alg["algorithm"].dotted == oids.RSA_ENCRYPTION:
                pad = padding.PKCS1v15()
            else:
                raise InputError(f"key transport {alg['algorithm'].dotted} is not supported",
                                 code="CMS_ALG_UNSUPPORTED")
            if self._key.key_size < 2048:
                findings.append(("ALG_LEGACY", f"RSA-{self._key.key_size} key transport"))
            try:
                cek = self._key.decrypt(k["encrypted_key"].native, pad)
            except ValueError:
                cek = None
            if cek is None or len(cek) != key_len:
                if match:  # our recipient, but the key block is damaged: not "wrong key"
                    raise DecryptionError("the encrypted content key for our recipient does "
                                          "not decrypt (damaged file)")
                continue  # no certificate to match with: just not this recipient
            return Unwrapped(cek, found[-1], tuple(findings))
        raise NoRecipientError(
            "none of the file's recipients matches the given key"
            + (f"; recipients: {_recipients_text(found)}" if found else
               "; the file has no key-transport recipients"))


def _recipients_text(found: list[dict]) -> str:
    parts = []
    for d in found:
        if "serial" in d:
            parts.append(f"serial {d['serial']} of {d['issuer']}")
        elif "subject_key_identifier" in d:
            parts.append(f"SKI {d['subject_key_identifier']}")
        else:
            parts.append(d["kind"])
    return "; ".join(parts)


class PasswordDecrypter(Decrypter):
    """A password; KEKs are cached per (salt, iterations, PRF, length) for a whole medium."""

    def __init__(self, password: bytes):
        check_password(password)
        self._password = password
        self._cache: dict = {}

    def unwrap(self, infos: acms.RecipientInfos, key_len: int) -> Unwrapped:
        seen = False
        for ri in infos:
            if ri.name != "pwri":
                continue
            seen = True
            p = ri.chosen
            desc = describe_recipient(ri)
            kdf = p["key_derivation_algorithm"]
            if kdf["algorithm"].dotted != oids.PBKDF2:
                raise InputError(f"key derivation {kdf['algorithm'].dotted} is not supported",
                                 code="CMS_ALG_UNSUPPORTED")
            params = kdf["parameters"]
            salt = params["salt"].native
            if not isinstance(salt, bytes):
                raise InputError("PBKDF2 with a non-octet salt is not supported",
                                 code="CMS_ALG_UNSUPPORTED")
            iterations = params["iteration_count"].native
            prf = params["prf"]["algorithm"].native
            kek_alg = p["key_encryption_algorithm"]
            if kek_alg["algorithm"].dotted != oids.PWRI_KEK:
                raise InputError(f"key encryption {kek_alg['algorithm'].dotted} is not "
                                 "supported", code="CMS_ALG_UNSUPPORTED")
            inner = aalgos.EncryptionAlgorithm.load(kek_alg["parameters"].dump())
            kek_cipher = oids.CIPHER_NAME.get(inner["algorithm"].dotted)
            if kek_cipher is None:
                raise InputError(f"PWRI-KEK cipher {inner['algorithm'].dotted} is not "
                                 "supported", code="CMS_ALG_UNSUPPORTED")
            iv = inner["parameters"].native
            kek_len = params["key_length"].native or CIPHERS[kek_cipher]
            if iterations > 10_000_000:
                raise InputError(f"PBKDF2 with {iterations} iterations is beyond our cap",
                                 code="CMS_ALG_UNSUPPORTED")
            ck = (salt, iterations, prf, kek_len)
            if ck not in self._cache:
                self._cache[ck] = _pbkdf2(self._password, salt, iterations, kek_len, prf)
            cek = _kek_unwrap(kek_cipher, self._cache[ck], iv, p["encrypted_key"].native)
            if cek is None:
                continue
            if len(cek) != key_len:
                raise DecryptionError("the password-wrapped key has the wrong length")
            findings = []
            if iterations < MIN_PBKDF2_ITERATIONS or prf == "sha1" or kek_cipher == "3des":
                findings.append(("ALG_LEGACY", f"PBKDF2 with {iterations} iterations of "
                                 f"hmacWith{prf.upper()}, KEK {kek_cipher}"))
            return Unwrapped(cek, desc, tuple(findings))
        if not seen:
            raise NoRecipientError("the file has no password recipient")
        raise WrongPasswordError("wrong password (the key-wrap check failed)")
