"""TLS test PKI, made at test time (never committed): a site CA, server and client
certificates (SAN localhost/127.0.0.1), a server without SAN, expired ones, a rogue CA's
client and server, and an ECDSA server for the strict profile. RFC 5280-clean (SKI/AKI,
critical CA basicConstraints) so OpenSSL's strict X.509 checks pass."""

from __future__ import annotations

import datetime as dt
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID = (dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
         dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc))
EXPIRED = (dt.datetime(2019, 1, 1, tzinfo=dt.timezone.utc),
           dt.datetime(2019, 6, 1, tzinfo=dt.timezone.utc))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mediasec test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(subject, key, issuer_name, issuer_key, *, ca=False, eku=None, san=True,
          when=VALID, serial=None):
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
         .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
         .not_valid_before(when[0]).not_valid_after(when[1])
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             issuer_key.public_key()), False))
    if ca:
        b = (b.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                          False, False), True))
    else:
        b = (b.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
             .add_extension(x509.KeyUsage(True, False, isinstance(key, rsa.RSAPrivateKey),
                                          False, False, False, False, False, False), True))
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), False)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(root: pathlib.Path, name: str, key, cert) -> None:
    (root / f"{name}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key, rsa.RSAPrivateKey) else serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (root / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_tls_pki(root: pathlib.Path) -> pathlib.Path:
    root.mkdir(parents=True, exist_ok=True)
    ca_key, rogue_key = _rsa(), _rsa()
    ca = _cert("mediasec test site CA", ca_key, _name("mediasec test site CA"), ca_key, ca=True)
    rogue = _cert("rogue CA", rogue_key, _name("rogue CA"), rogue_key, ca=True)
    _write(root, "ca", ca_key, ca)
    _write(root, "rogue-ca", rogue_key, rogue)
    srv, cli = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    for name, issuer, ikey, eku, san, when, keyf in [
            ("server", ca, ca_key, [srv, cli], True, VALID, _rsa),
            ("client", ca, ca_key, [cli, srv], True, VALID, _rsa),
            ("client2", ca, ca_key, [cli], True, VALID, _rsa),
            ("server-ec", ca, ca_key, [srv, cli], True, VALID,
             lambda: ec.generate_private_key(ec.SECP256R1())),
            ("nosan", ca, ca_key, [srv], False, VALID, _rsa),
            ("expired", ca, ca_key, [cli, srv], True, EXPIRED, _rsa),
            ("rogue", rogue, rogue_key, [cli, srv], True, VALID, _rsa)]:
        key = keyf()
        cert = _cert(name, key, issuer.subject, ikey, eku=eku, san=san, when=when)
        _write(root, name, key, cert)
    return root
