"""Password recipients (pwri, RFC 3211 with PBKDF2, PS3.15 D.1): writing and reading; a
password is ISO-IR 6 octets, and KEKs are derived once per (salt, iterations, PRF) per medium.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from asn1crypto import algos as aalgos
from asn1crypto import cms as acms
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from mediasec.cms import oids
from mediasec.cms.algorithms import block_cipher, block_size, cipher_alg_id
from mediasec.cms.recipients import Decrypter, Spliced, Unwrapped, describe_recipient
from mediasec.errors import (DecryptionError, InputError, MalformedError, NoRecipientError,
                             UsageError, WrongPasswordError)
from mediasec.policy import AlgorithmPolicy, CIPHERS, MIN_PBKDF2_ITERATIONS

__all__ = ["PasswordRecipient", "PasswordDecrypter", "check_password"]


def _pbkdf2(password: bytes, salt: bytes, iterations: int, length: int, prf: str) -> bytes:
    return hashlib.pbkdf2_hmac(prf, password, salt, iterations, length)


def _wrapped_len(kek_cipher: str, cek_len: int) -> int:
    """RFC 3211 §2.3.1: length, check bytes and key, padded to at least two blocks."""
    bs = block_size(kek_cipher)
    return max(2 * bs, -(-(4 + cek_len) // bs) * bs)


def _kek_wrap(kek_cipher: str, kek: bytes, iv: bytes, cek: bytes) -> bytes:
    bs = block_size(kek_cipher)
    body = bytes((len(cek),)) + bytes(b ^ 0xFF for b in cek[:3]) + cek
    total = _wrapped_len(kek_cipher, len(cek))
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

    def _spliced(self, content_cipher: str, wrapped_len: int) -> Spliced:
        key = (content_cipher, wrapped_len)
        if key not in self._templates:
            f_iv = secrets.token_bytes(block_size(content_cipher))
            f_wrapped = secrets.token_bytes(wrapped_len)
            self._templates[key] = Spliced(self._info(f_iv, f_wrapped, content_cipher).dump(),
                                           [f_iv, f_wrapped])
        return self._templates[key]

    def recipient_info_der(self, cek: bytes, content_cipher: str) -> bytes:
        iv = secrets.token_bytes(block_size(content_cipher))
        wrapped = _kek_wrap(content_cipher, self._kek(content_cipher), iv, cek)
        return self._spliced(content_cipher, len(wrapped)).fill(iv, wrapped)

    def recipient_info_size(self, cek_len: int, content_cipher: str) -> int:
        """The exact length of ``recipient_info_der`` for a ``cek_len``-byte key. Derives
        the KEK now (once per job), so that worker processes forked later inherit it."""
        self._kek(content_cipher)
        return len(self._spliced(content_cipher, _wrapped_len(content_cipher, cek_len)).der)

    def _info(self, iv: bytes, wrapped: bytes, content_cipher: str) -> acms.RecipientInfo:
        kdf_params = {"salt": aalgos.Pbkdf2Salt(name="specified", value=self.salt),
                      "iteration_count": self.iterations}
        if self.prf != "sha1":
            kdf_params["prf"] = {"algorithm": self.prf}
        kdf = aalgos.KdfAlgorithm({"algorithm": "pbkdf2",
                                   "parameters": aalgos.Pbkdf2Params(kdf_params)})
        kek_alg = acms.KeyEncryptionAlgorithm({
            "algorithm": oids.PWRI_KEK,
            "parameters": cipher_alg_id(content_cipher, iv)})
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
            if not isinstance(iterations, int) or iterations < 1:  # RFC 8018: 1..MAX
                raise MalformedError(f"PBKDF2 iteration count {iterations} is not positive",
                                     code="CMS_PARSE")
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
