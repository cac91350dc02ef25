"""DICOM over TLS (PS3.15 Annex B): the profiles we build and the ``ssl`` contexts for them.

Profiles (see README, "DICOM over TLS"):

* ``bcp195`` (default) - B.12 "BCP 195 RFC 8996, 9325 TLS": TLS 1.2 minimum, 1.3 preferred
  (OpenSSL picks the highest common version), TLS 1.2 limited to AEAD suites with forward
  secrecy, ``@SECLEVEL=2`` (RSA >= 2048, no SHA-1 signatures).
* ``strict`` - B.13 "Modified BCP 195": the ten TLS 1.2 suites the profile lists (ECDHE only;
  no DHE, no CBC, no SHA-1); a server must load both an RSA and an ECDSA P-256 certificate;
  the peer's certificate key and signature are checked again after the handshake.
* ``legacy-aes`` - the retired B.3 "AES TLS" suite ``TLS_RSA_WITH_AES_128_CBC_SHA``, added to
  the default list, for old PACS only, and never below TLS 1.2.

Refused, each with a message that says why: ``basic``/``3des`` (retired B.1 "Basic TLS",
3DES-EDE-CBC) and ``iscl`` (retired B.2 ISCL).

Certificates and keys come as objects (the edge reads PEM/DER/PKCS#12 files and passwords);
they reach OpenSSL through an anonymous in-memory file (``memfd``), so no private key is
ever written to disk. Hostname checking is on for clients unless ``check_hostname=False``.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mediasec.errors import PolicyRefusal, UsageError

__all__ = ["DEFAULT_PORT", "PROFILES", "RETIRED", "TLSConfig", "client_context",
           "server_context", "check_profile", "check_peer_certificate", "tls_facts",
           "explain_tls_failure"]

DEFAULT_PORT = 2762
PROFILES = ("bcp195", "strict", "legacy-aes")

#: B.12: AEAD suites with forward secrecy (ECDHE/DHE with AES-GCM or ChaCha20-Poly1305)
_BCP195 = "@SECLEVEL=2:ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!aDSS"
#: B.13: exactly the ten suites the Modified BCP 195 profile lists
_STRICT = ("@SECLEVEL=2:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
           "ECDHE-ECDSA-AES256-CCM:ECDHE-ECDSA-AES256-CCM8:ECDHE-ECDSA-CHACHA20-POLY1305:"
           "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-CCM:ECDHE-ECDSA-AES128-CCM8")
#: retired B.3 AES TLS suite, opt-in
_LEGACY = _BCP195 + ":AES128-SHA"
_SUITES = {"bcp195": _BCP195, "strict": _STRICT, "legacy-aes": _LEGACY}

#: retired profiles: name -> why we refuse it
RETIRED = {
    "basic": "the Basic TLS Secure Transport Connection Profile (TLS 1.0 with 3DES-EDE-CBC) "
             "was retired from DICOM in 2018; 3DES is broken (Sweet32) and OpenSSL 3 has no "
             "3DES TLS suites; use --tls-profile bcp195",
    "3des": "3DES TLS suites belong to the Basic TLS profile, retired from DICOM in 2018; "
            "3DES is broken (Sweet32); use --tls-profile bcp195",
    "iscl": "ISCL was retired from DICOM in 2018 and no peer implements it; use TLS",
}


def check_profile(name: str) -> str:
    """The profile name, or ``PolicyRefusal`` naming why a retired one is refused."""
    key = name.lower()
    if key in RETIRED:
        raise PolicyRefusal(f"TLS profile {name!r} refused: {RETIRED[key]}",
                            code="TLS_PROFILE_RETIRED")
    if key not in PROFILES:
        raise UsageError(f"unknown TLS profile {name!r} (choose {', '.join(PROFILES)})",
                         code="USAGE")
    return key


@dataclass(frozen=True)
class TLSConfig:
    """What a TLS endpoint needs, already loaded: ``identities`` are ``(key, [cert, chain...])``
    pairs (one, or an RSA and an ECDSA one for a strict server); ``ca`` the trust anchors
    (the site bundle only; no system roots)."""

    identities: tuple = ()
    ca: tuple = ()
    profile: str = "bcp195"
    check_hostname: bool = True
    client_auth: str = "required"           # server side: required | optional
    crl_pem: bytes | None = None
    extra: dict = field(default_factory=dict)


def _key_ok(key, what: str) -> None:
    if isinstance(key, rsa.RSAPublicKey) or isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise PolicyRefusal(f"{what}: RSA key of {key.key_size} bits (TLS needs >= 2048)",
                                code="TLS_WEAK_KEY")
    elif isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if key.curve.key_size < 256:
            raise PolicyRefusal(f"{what}: EC key of {key.curve.key_size} bits (TLS needs "
                                ">= 256)", code="TLS_WEAK_KEY")


def _memfd_path(data: bytes) -> tuple[int, str]:
    fd = os.memfd_create("mediasec-tls", os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd, f"/proc/self/fd/{fd}"


def _load_identity(ctx: ssl.SSLContext, key, certs) -> None:
    _key_ok(key, "our TLS key")
    for c in certs[:1]:
        if c.public_key().public_numbers() != key.public_key().public_numbers():
            raise UsageError("the TLS certificate does not match the TLS key",
                             code="TLS_KEY_MISMATCH")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pem += b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    fd, path = _memfd_path(pem)
    try:
        ctx.load_cert_chain(path)
    finally:
        os.close(fd)
        del pem


def _base(purpose: ssl.Purpose, cfg: TLSConfig) -> ssl.SSLContext:
    if not cfg.ca:
        raise UsageError("no trust anchors for TLS: give --tls-ca CA.pem", code="USAGE_NO_CA")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT if purpose is ssl.Purpose.SERVER_AUTH
                         else ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_SUITES[check_profile(cfg.profile)])
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.load_verify_locations(cadata="".join(
        c.public_bytes(serialization.Encoding.PEM).decode() for c in cfg.ca))
    if cfg.crl_pem:
        ctx.load_verify_locations(cadata=cfg.crl_pem.decode())
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    return ctx


def client_context(cfg: TLSConfig) -> ssl.SSLContext:
    """The SCU's context: verifies the server against ``cfg.ca`` (and its name unless
    ``check_hostname`` is off) and presents our certificate."""
    ctx = _base(ssl.Purpose.SERVER_AUTH, cfg)
    ctx.check_hostname = cfg.check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    for key, certs in cfg.identities:
        _load_identity(ctx, key, certs)
    return ctx


def server_context(cfg: TLSConfig) -> ssl.SSLContext:
    """The SCP's context: mutual authentication (client certificate required unless
    ``client_auth='optional'``)."""
    ctx = _base(ssl.Purpose.CLIENT_AUTH, cfg)
    # PROTOCOL_TLS_SERVER defaults to CERT_NONE: without this, mutual auth is silently off
    ctx.verify_mode = (ssl.CERT_OPTIONAL if cfg.client_auth == "optional"
                       else ssl.CERT_REQUIRED)
    if not cfg.identities:
        raise UsageError("a TLS server needs --tls-cert and --tls-key", code="USAGE_NO_CERT")
    if check_profile(cfg.profile) == "strict":
        kinds = {"rsa" if isinstance(k, rsa.RSAPrivateKey) else "ec"
                 for k, _ in cfg.identities}
        if kinds != {"rsa", "ec"}:
            raise UsageError("--tls-profile strict needs both an RSA and an ECDSA P-256 "
                             "certificate on the server (ECDHE-ECDSA suites are mandatory); "
                             "give --tls-cert/--tls-key twice", code="USAGE_STRICT_CERTS")
    for key, certs in cfg.identities:
        _load_identity(ctx, key, certs)
    return ctx


def check_peer_certificate(der: bytes | None, profile: str) -> None:
    """Strict profile: the peer's certificate key and signature hash, after the handshake."""
    if der is None or profile != "strict":
        return
    cert = x509.load_der_x509_certificate(der)
    _key_ok(cert.public_key(), "peer certificate")
    h = cert.signature_hash_algorithm
    if h is None or isinstance(h, (hashes.SHA1, hashes.MD5)):
        raise PolicyRefusal("peer certificate signed with a hash the strict profile forbids",
                            code="TLS_WEAK_SIGNATURE")


def tls_facts(sock) -> dict:
    """Version, suite and peer subject of a connected ``SSLSocket`` (for reports and logs)."""
    if not isinstance(sock, ssl.SSLSocket):
        return {}
    facts = {"version": sock.version()}
    with contextlib.suppress(Exception):
        facts["cipher"] = sock.cipher()[0]
    with contextlib.suppress(Exception):
        der = sock.getpeercert(binary_form=True)
        if der:
            facts["peer_subject"] = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return facts


#: OpenSSL reason fragments -> (our reason code, a sentence for the user)
_REASONS = (
    ("certificate has expired", "TLS_CERT_EXPIRED", "certificate expired"),
    ("alert certificate expired", "TLS_CERT_EXPIRED", "the peer says our certificate expired"),
    ("certificate is not yet valid", "TLS_CERT_NOT_YET_VALID", "certificate not yet valid"),
    ("certificate required", "TLS_NO_CLIENT_CERT", "the server requires a client certificate"),
    ("peer did not return a certificate", "TLS_NO_CLIENT_CERT",
     "the client sent no certificate"),
    ("unknown ca", "TLS_UNTRUSTED_CA", "the peer does not trust our certificate's CA"),
    ("unable to get local issuer", "TLS_UNTRUSTED_CA",
     "certificate from an untrusted CA (unable to get local issuer certificate)"),
    ("self-signed certificate", "TLS_UNTRUSTED_CA", "self-signed certificate, not trusted"),
    ("hostname mismatch", "TLS_HOSTNAME_MISMATCH",
     "hostname mismatch (the certificate does not name this host; --no-hostname-check for "
     "peers without a subject alternative name)"),
    ("ip address mismatch", "TLS_HOSTNAME_MISMATCH",
     "IP address mismatch (the certificate does not name this address; --no-hostname-check "
     "for peers without a subject alternative name)"),
    ("unsupported protocol", "TLS_VERSION", "the peer offers only TLS 1.0/1.1 "
     "(TLS 1.2 is the minimum, RFC 8996)"),
    ("protocol version", "TLS_VERSION", "no common TLS version (TLS 1.2 is the minimum, "
     "RFC 8996)"),
    ("no shared cipher", "TLS_NO_COMMON_SUITE", "no common cipher suite (the peer offers "
     "only suites our profile forbids)"),
    ("no ciphers available", "TLS_NO_COMMON_SUITE", "no common cipher suite"),
    ("handshake failure", "TLS_NO_COMMON_SUITE", "TLS handshake failure (no common cipher "
     "suite; weak suites are accepted only with --tls-profile legacy-aes)"),
    ("wrong version number", "TLS_NOT_TLS", "the peer does not speak TLS on this port "
     "(plaintext DICOM? we never fall back)"),
    ("packet length too long", "TLS_NOT_TLS", "the peer does not speak TLS on this port"),
    ("unsupported certificate purpose", "TLS_KEY_USAGE",
     "certificate not valid for this purpose (extended key usage)"),
    ("bad certificate", "TLS_BAD_CERT", "the peer rejected our certificate"),
    ("certificate verify failed", "TLS_VERIFY_FAILED", "certificate verification failed"),
)


def explain_tls_failure(text: str) -> tuple[str, str]:
    """``(code, message)`` for an OpenSSL error text; ``TLS_FAILED`` when unknown."""
    low = text.lower()
    for frag, code, msg in _REASONS:
        if frag in low:
            return code, msg
    return "TLS_FAILED", " ".join(text.split())[:200] or "TLS failure"


# -- files (PEM, DER or PKCS#12) ---------------------------------------------------------------

def _parse_key(data: bytes, password: bytes | None):
    from cryptography.hazmat.primitives.serialization import pkcs12

    from mediasec.errors import InputError
    bundled: list = []
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=password)
        else:
            try:
                key, cert, extra = pkcs12.load_key_and_certificates(data, password)
                bundled = [c for c in [cert, *(extra or [])] if c is not None]
            except ValueError:
                key = serialization.load_der_private_key(data, password=password)
    except TypeError as exc:
        if password is None:
            raise InputError("the TLS key is encrypted; give its passphrase with "
                             "--tls-key-password-env VAR or at the prompt",
                             code="KEY_NEEDS_PASSWORD") from exc
        raise InputError("the TLS key is not encrypted, but a passphrase was given",
                         code="KEY_BAD_PASSWORD") from exc
    except ValueError as exc:
        if password is not None:
            raise InputError("cannot decrypt the TLS key: wrong passphrase or not a key",
                             code="KEY_BAD_PASSWORD") from exc
        raise InputError("not a PEM, DER or PKCS#12 private key", code="KEY_BAD") from exc
    if key is None:
        raise InputError("no private key in the file", code="KEY_BAD")
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise InputError("TLS keys must be RSA or EC", code="KEY_BAD")
    return key, bundled


def read_identity(cert_path: str | None, key_path: str, *, password_env: str | None = None):
    """``(key, [cert, chain...])`` from files; the passphrase from ``$password_env`` or, if
    the key is encrypted and stdin is a terminal, a prompt (else a usage error)."""
    import sys

    from mediasec.errors import InputError, MediasecError
    from mediasec.io.keys import read_certificates, read_file, read_password

    data = read_file(key_path, "TLS key file")
    password = read_password(password_env, what="TLS key passphrase") if password_env else None
    try:
        try:
            key, bundled = _parse_key(data, password)
        except InputError as exc:
            if exc.code != "KEY_NEEDS_PASSWORD":
                raise
            if not sys.stdin.isatty():
                raise UsageError("the TLS key is encrypted and standard input is not a "
                                 "terminal; use --tls-key-password-env VAR",
                                 code="USAGE_NO_TTY") from exc
            key, bundled = _parse_key(data, read_password(None, prompt=True,
                                                          what="TLS key passphrase"))
    except MediasecError as exc:
        raise exc.with_path(key_path)
    certs = read_certificates(cert_path, "TLS certificate file") if cert_path else bundled
    if not certs:
        raise UsageError("no TLS certificate: give --tls-cert (or a PKCS#12 key file that "
                         "holds it)", path=key_path, code="USAGE_NO_CERT")
    try:
        _key_ok(key, "our TLS key")
    except MediasecError as exc:
        raise exc.with_path(key_path)
    return key, list(certs)
