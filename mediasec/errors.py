"""The mediasec error tree.

Every error mediasec raises on purpose is a ``MediasecError``. The tree is split by
*whose fault it is*, which is also what the command line turns into an exit code
(``mediasec.cli.exits`` is the only place that knows the numbers)::

    MediasecError
    ├── UsageError(ValueError)          the caller asked for something impossible   -> 2
    │   └── PolicyRefusal               a legacy algorithm without the explicit flag
    ├── InputError(ValueError)          the input cannot be used as asked            -> 2
    │   ├── NotCMSError                 not a CMS/Secure DICOM File at all
    │   ├── NoRecipientError            none of our keys/passwords is a recipient
    │   ├── WrongPasswordError          a password recipient, but the check failed
    │   └── NotDicomError               not a DICOM Part 10 file
    ├── VerificationError               the data was read, and it is bad              -> 1
    │   ├── MalformedError              truncated / bad BER / bad lengths / trailing bytes
    │   ├── DecryptionError             padding or unwrap failure after a key matched
    │   ├── IntegrityError              digest or messageDigest mismatch
    │   └── SignatureError              signature invalid, untrusted, expired, bad key usage
    ├── EnvironmentFailure(OSError)     I/O error, disk full, peer down               -> 3
    │   └── PeerError                   DICOM/TLS peer refused, unreachable or lost (net/)
    └── InternalError(RuntimeError)     a bug: a planned size was wrong, ...          -> 4

Each error carries ``code`` (a stable UPPER_SNAKE reason code, as used in JSON
reports), an optional ``path`` (the file concerned) and an optional ``hint``.
Messages never contain patient names or IDs.

A recipient that matches but decrypts to garbage is *damaged input*
(``DecryptionError``), never "wrong key": no padding oracle.
"""

from __future__ import annotations

__all__ = [
    "MediasecError",
    "UsageError",
    "PolicyRefusal",
    "InputError",
    "NotCMSError",
    "NoRecipientError",
    "WrongPasswordError",
    "NotDicomError",
    "VerificationError",
    "MalformedError",
    "DecryptionError",
    "IntegrityError",
    "SignatureError",
    "EnvironmentFailure",
    "PeerError",
    "InternalError",
]


class MediasecError(Exception):
    """Base of every error mediasec raises on purpose."""

    code = "ERROR"

    def __init__(self, message: str, *, path: str | None = None, code: str | None = None,
                 hint: str | None = None) -> None:
        # one line always: parser libraries (asn1crypto, pydicom) raise multi-line texts
        # that end up quoted in ours, and every report shows one line per reason
        message = " ".join(str(message).split())
        super().__init__(message)
        self.message = message
        self.path = path
        self.hint = hint
        if code is not None:
            self.code = code

    def with_path(self, path: str) -> "MediasecError":
        """Attach the file name if none is set yet; returns self for ``raise e.with_path(p)``."""
        if self.path is None:
            self.path = path
        return self

    def __str__(self) -> str:  # one line, without the path (the CLI adds it)
        return self.message


class UsageError(MediasecError, ValueError):
    code = "USAGE"


class PolicyRefusal(UsageError):
    code = "POLICY_REFUSED"


class InputError(MediasecError, ValueError):
    code = "INPUT_INVALID"


class NotCMSError(InputError):
    code = "CMS_NOT_CMS"


class NoRecipientError(InputError):
    code = "CMS_NOT_RECIPIENT"


class WrongPasswordError(InputError):
    code = "CMS_WRONG_PASSWORD"


class NotDicomError(InputError):
    code = "DICOM_NOT_DICOM"


class VerificationError(MediasecError):
    code = "VERIFICATION_FAILED"


class MalformedError(VerificationError):
    code = "CMS_PARSE"


class DecryptionError(VerificationError):
    code = "CMS_DECRYPT_FAILED"


class IntegrityError(VerificationError):
    code = "INTEGRITY_DIGEST_MISMATCH"


class SignatureError(VerificationError):
    code = "SIG_INVALID"


class EnvironmentFailure(MediasecError, OSError):
    code = "ENV_IO"


class PeerError(EnvironmentFailure):
    """A network peer: connection refused or lost, TLS handshake refused (either side's
    certificate, version or suites), association rejected or aborted (``TLS_*``/``NET_*``)."""

    code = "NET_FAILED"


class InternalError(MediasecError, RuntimeError):
    code = "INTERNAL"
