"""Keys behind interfaces: signers, recipients (writing) and decrypters (reading), in one
import for callers. Each lives in its own module: ``cms.algorithms`` (names to library
objects), ``cms.signers``, ``cms.keytransport`` (RSA), ``cms.password`` (PBKDF2 + key wrap),
``cms.recipients`` (the ``Decrypter`` interface, RecipientInfos reading).

A smart card or an HSM is a new ``Signer``/``Decrypter`` subclass, not a flag.
Legacy choices (SHA-1, RSA under 2048 bits, 3DES) are checked against an
``AlgorithmPolicy`` when a writer object is made; readers accept them and report.
"""

from mediasec.cms.algorithms import HASHES, block_cipher, block_size
from mediasec.cms.keytransport import KeyDecrypter, KeyTransportRecipient
from mediasec.cms.password import PasswordDecrypter, PasswordRecipient, check_password
from mediasec.cms.recipients import (Decrypter, Unwrapped, describe_recipient, describe_recipients,
                                     load_recipient_infos, masked_recipient_infos)
from mediasec.cms.signers import RSASigner, Signer

__all__ = ["Signer", "RSASigner", "KeyTransportRecipient", "PasswordRecipient", "Decrypter",
           "KeyDecrypter", "PasswordDecrypter", "block_cipher", "block_size", "HASHES",
           "Unwrapped", "load_recipient_infos", "describe_recipient", "check_password",
           "describe_recipients", "masked_recipient_infos"]
