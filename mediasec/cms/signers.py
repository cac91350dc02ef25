"""Signers: the private-key side of SignedData. A smart card or an HSM is a new ``Signer``
subclass, not a flag; legacy choices (SHA-1, RSA under 2048 bits) are checked against an
``AlgorithmPolicy`` when a signer is made.
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import utils as autils

from mediasec.cms.algorithms import HASHES
from mediasec.errors import UsageError
from mediasec.pki import certs as pcerts
from mediasec.policy import AlgorithmPolicy

__all__ = ["Signer", "RSASigner"]


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

    def sign_digest_info(self, digest_info: bytes) -> bytes:  # pragma: no cover - interface
        """RSASSA-PKCS1-v1_5 over a DER DigestInfo already made by the caller (DICOM
        dataset signatures, PS3.15 C.1: no CMS, no signed attributes)."""
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

    def sign_digest_info(self, digest_info: bytes) -> bytes:
        for name, h in _PREHASHED.items():
            # the common hashes: OpenSSL pads and signs the digest itself
            prefix = _DIGEST_INFO_PREFIX[name]
            if digest_info.startswith(prefix) and \
                    len(digest_info) == len(prefix) + h.digest_size:
                return self._key.sign(digest_info[len(prefix):], padding.PKCS1v15(),
                                      autils.Prehashed(h()))
        return _raw_pkcs1_sign(self._key, digest_info)


_PREHASHED = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
              "sha512": hashes.SHA512}
#: DER DigestInfo up to the digest (RFC 8017 9.2 note 1)
_DIGEST_INFO_PREFIX = {
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


def _raw_pkcs1_sign(key, digest_info: bytes) -> bytes:
    """EMSA-PKCS1-v1_5 + RSASP1 for a DigestInfo ``cryptography`` cannot prehash (RIPEMD-160),
    with RSA blinding."""
    nums = key.private_numbers()
    n, e, d = nums.public_numbers.n, nums.public_numbers.e, nums.d
    k = (n.bit_length() + 7) // 8
    if len(digest_info) > k - 11:
        raise UsageError("the key is too small for this digest", code="USAGE")
    em = b"\0\1" + b"\xff" * (k - 3 - len(digest_info)) + b"\0" + digest_info
    m = int.from_bytes(em, "big")
    while True:
        r = secrets.randbelow(n - 2) + 2
        try:
            r_inv = pow(r, -1, n)
            break
        except ValueError:
            continue
    s = (pow((m * pow(r, e, n)) % n, d, n) * r_inv) % n
    return s.to_bytes(k, "big")
