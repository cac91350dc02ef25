"""Algorithm names to library objects: digests, content and KEK block ciphers, and their
AlgorithmIdentifiers."""

from __future__ import annotations

from asn1crypto import algos as aalgos
from asn1crypto import core as acore
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import algorithms

from mediasec.cms import oids

__all__ = ["HASHES", "block_cipher", "block_size", "cipher_alg_id"]


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


def cipher_alg_id(cipher: str, iv: bytes) -> aalgos.EncryptionAlgorithm:
    return aalgos.EncryptionAlgorithm({"algorithm": oids.CIPHER[cipher],
                                       "parameters": acore.OctetString(iv)})
