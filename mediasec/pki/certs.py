"""Loading certificates and keys; the one place that converts asn1crypto <-> cryptography.

Everything here takes bytes (the edge reads the files). Errors are ``InputError`` with
a one-line message; callers attach the file name.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from asn1crypto import cms as acms
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from mediasec._job import _CURRENT, current_job
from mediasec.errors import InputError

__all__ = ["load_certificates", "load_private_key", "to_asn1", "from_asn1", "from_der",
           "issuer_and_serial", "issuer_serial_parts", "subject_key_id", "describe",
           "rsa_bits", "Memo"]


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in PEM (one or more) or DER ``data``."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise InputError("not a PEM or DER X.509 certificate", code="PKI_BAD_CERT") from exc
    if not certs:
        raise InputError("no certificate found", code="PKI_BAD_CERT")
    return certs


def load_private_key(data: bytes, password: bytes | None = None):
    """An RSA private key (and any certificate bundled with it) from PEM, DER or PKCS#12.

    Returns ``(key, cert_or_None)``.
    """
    cert = None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=password)
        else:
            try:
                key, cert, _extra = pkcs12.load_key_and_certificates(data, password)
            except ValueError:
                key = serialization.load_der_private_key(data, password=password)
    except TypeError as exc:
        # encrypted without a password, or a password for an unencrypted key
        if password is None:
            raise InputError("the private key is encrypted; give its passphrase with "
                             "--key-password-env VAR or at the prompt",
                             code="KEY_NEEDS_PASSWORD") from exc
        raise InputError("the private key is not encrypted, but a passphrase was given",
                         code="KEY_BAD_PASSWORD") from exc
    except ValueError as exc:
        if password is not None:
            raise InputError("cannot decrypt the private key: wrong passphrase or not a key",
                             code="KEY_BAD_PASSWORD") from exc
        raise InputError("not a PEM, DER or PKCS#12 private key", code="KEY_BAD") from exc
    if key is None:
        raise InputError("no private key in the file", code="KEY_BAD")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(f"a {type(key).__name__.removeprefix('_')} key; "
                         "the Basic DICOM Media Security Profile uses RSA", code="KEY_NOT_RSA")
    return key, cert


_ABSENT = object()


class Memo:
    """A small LRU map for facts derived from immutable inputs (certificate DER).

    Every file of a medium carries the same signer chain and is opened with the same
    recipient certificate; these caches make the asn1crypto <-> cryptography conversions
    and the derived facts (issuer/serial, SKI, description) once per certificate, not once
    per file. Values must be immutable (or handed out as copies).

    The map itself belongs to the running job (``mediasec._job``): a ``Memo`` declared
    at module level is only a name and a size, and two jobs in two threads each fill
    their own map."""

    def __init__(self, size: int = 256):
        self.size = size

    @property
    def _d(self) -> OrderedDict:
        job = _CURRENT.get()   # current_job() inlined: called several times per file
        if job is None:
            job = current_job()
        d = job._memos.get(id(self))
        return d if d is not None else job.memo(self)

    def get(self, key, make):
        d = self._d
        value = d.get(key, _ABSENT)
        if value is not _ABSENT:
            d.move_to_end(key)
            return value
        value = make()
        d[key] = value
        if len(d) > self.size:
            d.popitem(last=False)
        return value

    def lookup(self, key):
        """The value, or None when absent."""
        d = self._d
        value = d.get(key)
        if value is not None:
            d.move_to_end(key)
        return value

    def put(self, key, value) -> None:
        d = self._d
        d[key] = value
        d.move_to_end(key)
        if len(d) > self.size:
            d.popitem(last=False)

    def clear(self) -> None:
        self._d.clear()


_BY_DER = Memo()          # DER -> cryptography certificate
_FACTS = Memo()           # cryptography certificate -> _Facts


class _Facts:
    """What the readers need of one certificate, derived once."""

    __slots__ = ("cert", "der", "_ias_der", "_issuer_der", "_serial", "_ski", "_describe")

    def __init__(self, cert: x509.Certificate):
        self.cert = cert
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self._ias_der = None
        self._ski = None
        self._describe = None

    def ias(self) -> tuple[bytes, bytes, int]:
        """(IssuerAndSerialNumber DER, issuer Name DER, serial)."""
        if self._ias_der is None:
            a = ax509.Certificate.load(self.der)
            ias = acms.IssuerAndSerialNumber({"issuer": a.issuer,
                                              "serial_number": a.serial_number})
            self._issuer_der = a.issuer.dump()
            self._serial = ias["serial_number"].native
            self._ias_der = ias.dump()
        return self._ias_der, self._issuer_der, self._serial


def _facts(cert: x509.Certificate) -> _Facts:
    return _FACTS.get(cert, lambda: _Facts(cert))


def to_asn1(cert: x509.Certificate) -> ax509.Certificate:
    return ax509.Certificate.load(_facts(cert).der)


def from_der(der: bytes) -> x509.Certificate:
    """``x509.load_der_x509_certificate`` (ValueError when it does not parse), cached by
    the DER bytes: equal bytes give the same certificate object."""
    der = bytes(der)

    def load():
        try:
            return x509.load_der_x509_certificate(der)
        except x509.InvalidVersion as exc:  # not a ValueError: keep the documented contract
            raise ValueError(f"certificate: {exc}") from exc
    return _BY_DER.get(der, load)


def from_asn1(cert: ax509.Certificate) -> x509.Certificate:
    return from_der(cert.dump())


def issuer_and_serial(cert: x509.Certificate) -> acms.IssuerAndSerialNumber:
    # a fresh (lazily parsed) object each call: callers may embed it in new structures
    return acms.IssuerAndSerialNumber.load(_facts(cert).ias()[0])


def issuer_serial_parts(cert: x509.Certificate) -> tuple[bytes, int]:
    """The certificate's issuer Name as DER, and its serial number (for fast matching)."""
    _ias, issuer_der, serial = _facts(cert).ias()
    return issuer_der, serial


def subject_key_id(cert: x509.Certificate) -> bytes:
    """The certificate's SKI extension, or (RFC 5280 method 1) SHA-1 of the public key bits."""
    f = _facts(cert)
    if f._ski is None:
        f._ski = _subject_key_id(cert, f.der)
    return f._ski


def _subject_key_id(cert: x509.Certificate, der: bytes) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        spki = ax509.Certificate.load(der).public_key
        return hashlib.sha1(spki["public_key"].contents[1:]).digest()


def rsa_bits(cert: x509.Certificate) -> int:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise InputError("the certificate's key is not RSA", code="PKI_NOT_RSA")
    return key.key_size


def describe(cert: x509.Certificate) -> str:
    """A short, PHI-free description: subject CN (or whole subject) and serial."""
    f = _facts(cert)
    if f._describe is None:
        f._describe = _describe(cert)
    return f._describe


def _describe(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = cns[0].value if cns else cert.subject.rfc4514_string()
    return f"{name} (serial {cert.serial_number:x})"
