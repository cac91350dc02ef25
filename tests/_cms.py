"""Helpers for the CMS tests: fixture keys, protecting in memory, running openssl."""

from __future__ import annotations

import io
import os
import subprocess

from mediasec.cms.keys import (KeyDecrypter, KeyTransportRecipient, PasswordDecrypter,
                               PasswordRecipient, RSASigner)
from mediasec.cms.secure import ProtectOptions, SecureFileProducer, open_secure_file
from mediasec.pki.certs import load_certificates, load_private_key
from mediasec.policy import AlgorithmPolicy, TrustContext

from conftest import DICOM, PKI, peer

PASSWORD = b"correct horse battery staple"
SAMPLE = (DICOM / "ct1.dcm").read_bytes()


def cert(name):
    return load_certificates((PKI / f"{name}.pem").read_bytes())[0]


def key(name):
    return load_private_key((PKI / f"{name}.key.pem").read_bytes())[0]


def signer(name="signer", **kw):
    return RSASigner(key(name), cert(name), load_certificates((PKI / "chain.pem").read_bytes()),
                     **kw)


def trust():
    return TrustContext(anchors=tuple(load_certificates((PKI / "trust.pem").read_bytes())))


def protect_bytes(data: bytes, *, recipients, signers=(), policy=AlgorithmPolicy(), rng=os.urandom,
                  **opts):
    p = SecureFileProducer(len(data), recipients=recipients, signers=signers,
                           options=ProtectOptions(**opts), policy=policy, rng=rng)
    out = io.BytesIO()
    p.write_to(io.BytesIO(data), out)
    blob = out.getvalue()
    assert len(blob) == p.size
    return blob, p


def open_bytes(blob: bytes, *, decrypters=None, trust_ctx=None, piece=65536):
    if decrypters is None:
        decrypters = [KeyDecrypter(key("recipient-2048"), cert("recipient-2048")),
                      PasswordDecrypter(PASSWORD)]
    got = bytearray()
    rep = open_secure_file((blob[i:i + piece] for i in range(0, len(blob), piece)),
                           decrypters=decrypters, sink=got.extend, trust=trust_ctx)
    return bytes(got), rep


def ktri(name="recipient-2048", **kw):
    return KeyTransportRecipient(cert(name), **kw)


def pwri(**kw):
    kw.setdefault("iterations", 100_000)
    return PasswordRecipient(PASSWORD, **kw)


def openssl(*args, input=None, check=True):
    exe = peer("openssl")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args[:2]))} exited "
                             f"{proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return proc


def wrap_content_info(inner: bytes, kind: str) -> bytes:
    """Wrap a bare SignedData/DigestedData in a ContentInfo, as openssl -verify needs."""
    oid = {"signedData": "06092a864886f70d010702", "digestedData": "06092a864886f70d010705"}[kind]
    return b"\x30\x80" + bytes.fromhex(oid) + b"\xa0\x80" + inner + b"\x00" * 4


def write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def env_password():
    return {"MS_PW": PASSWORD.decode()}


