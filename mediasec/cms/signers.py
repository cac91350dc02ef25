"""Signers: the private-key side of SignedData. A smart card or an HSM is a new ``Signer``
subclass, not a flag; legacy choices (SHA-1, RSA under 2048 bits) are checked against an
``AlgorithmPolicy`` when a signer is made.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import padding

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
