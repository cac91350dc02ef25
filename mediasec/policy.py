"""Policy objects passed in by the caller: no global configuration anywhere.

``AlgorithmPolicy`` decides what may be *written*. Reading accepts everything the
standard allows (3DES, SHA-1, small RSA keys, few PBKDF2 iterations) and reports it
as legacy instead of refusing it.

``TrustContext`` is what a signature is checked against: the caller's trust anchors,
never the operating system's store.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from mediasec.errors import PolicyRefusal

__all__ = ["AlgorithmPolicy", "TrustContext", "CIPHERS", "DIGESTS", "LEGACY_CIPHERS",
           "LEGACY_DIGESTS", "MIN_RSA_BITS", "MIN_PBKDF2_ITERATIONS"]

#: content ciphers by CLI name -> key length in bytes
CIPHERS = {"aes-128": 16, "aes-192": 24, "aes-256": 32, "3des": 24}
LEGACY_CIPHERS = frozenset({"3des"})
DIGESTS = ("sha256", "sha384", "sha512", "sha1")
LEGACY_DIGESTS = frozenset({"sha1"})
MIN_RSA_BITS = 2048
#: below this a PBKDF2 iteration count is reported as legacy when read
MIN_PBKDF2_ITERATIONS = 100_000


@dataclass(frozen=True)
class AlgorithmPolicy:
    """What a writer may produce. ``allow_legacy`` is the explicit ``--allow-legacy`` flag."""

    allow_legacy: bool = False
    min_rsa_bits: int = MIN_RSA_BITS

    def check_cipher(self, name: str) -> None:
        if name not in CIPHERS:
            raise PolicyRefusal(f"unknown cipher {name!r} (choose from {', '.join(CIPHERS)})",
                                code="POLICY_UNKNOWN_ALGORITHM")
        if name in LEGACY_CIPHERS and not self.allow_legacy:
            raise PolicyRefusal(f"{name} is a legacy cipher; refused without --allow-legacy",
                                code="POLICY_LEGACY_REFUSED")

    def check_digest(self, name: str) -> None:
        if name not in DIGESTS:
            raise PolicyRefusal(f"unknown digest {name!r}", code="POLICY_UNKNOWN_ALGORITHM")
        if name in LEGACY_DIGESTS and not self.allow_legacy:
            raise PolicyRefusal(f"{name} is a legacy digest; refused without --allow-legacy",
                                code="POLICY_LEGACY_REFUSED")

    def check_rsa_bits(self, bits: int, what: str) -> None:
        if bits < self.min_rsa_bits and not self.allow_legacy:
            raise PolicyRefusal(
                f"{what} has an RSA-{bits} key, under {self.min_rsa_bits} bits; "
                "refused without --allow-legacy", code="POLICY_LEGACY_REFUSED")


@dataclass(frozen=True)
class TrustContext:
    """Trust anchors and extra intermediates (``cryptography`` certificates) for signer checks.

    ``at`` fixes the validation time (tests, or "as of" checks); when ``None`` a
    signature is checked at its signingTime if present, else now.
    """

    anchors: tuple = ()
    intermediates: tuple = ()
    at: _dt.datetime | None = None

    @property
    def has_anchors(self) -> bool:
        return bool(self.anchors)
