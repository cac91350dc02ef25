"""Helpers for the dataset-signature tests: keys, test objects with sequences, byte surgery."""

from __future__ import annotations

import datetime as dt
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from _dicomgen import ELE, write_instance
from conftest import PKI
from mediasec.cms.keys import RSASigner
from mediasec.pki.certs import load_certificates, load_private_key
from mediasec.policy import AlgorithmPolicy, TrustContext
from mediasec.sign import open_part10

LEGACY = AlgorithmPolicy(allow_legacy=True)


def signer(name: str = "signer", policy=AlgorithmPolicy()) -> RSASigner:
    key, _ = load_private_key((PKI / f"{name}.key.pem").read_bytes())
    cert = load_certificates((PKI / f"{name}.pem").read_bytes())[0]
    return RSASigner(key, cert, policy=policy)


def trust() -> TrustContext:
    return TrustContext(anchors=tuple(load_certificates((PKI / "trust.pem").read_bytes())),
                        intermediates=tuple(load_certificates((PKI / "chain.pem").read_bytes())))


def nested_ct(path, *, ts=ELE, kind="ct", **kw) -> pathlib.Path:
    """A CT with a two-item sequence whose first item holds a nested sequence."""
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "T-1", "99X", "thing"
    a = Dataset()
    a.PatientID, a.IssuerOfPatientID, a.TypeOfPatientID = "ABCD1234", "ISS", "TEXT"
    a.IssuerOfPatientIDQualifiersSequence = Sequence([_qual()])
    b = Dataset()
    b.PatientID, b.IssuerOfPatientID = "XYZ", "OTHER"
    extra = {"OtherPatientIDsSequence": Sequence([a, b]),
             "AnatomicRegionSequence": Sequence([inner])}
    extra.update(kw.pop("extra", {}))
    return write_instance(path, kind, ts=ts, extra=extra, **kw)


def _qual() -> Dataset:
    q = Dataset()
    q.UniversalEntityID = "UEID"
    return q


def element_offset(data: bytes, tag: int, path: str = "") -> tuple[int, int]:
    """(value offset, value length) of ``tag`` at ``path`` in a Part 10 file's bytes."""
    from mediasec.sign.signature import resolve_level
    part = open_part10(data)
    el = resolve_level(part, path).item.get(tag)
    assert el is not None, hex(tag)
    return el.val, el.length


def flip(data: bytes, off: int) -> bytes:
    b = bytearray(data)
    b[off] ^= 0x01
    return bytes(b)


def ec_signer_files(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """An ECDSA P-256 key and certificate issued by the test intermediate CA."""
    ca_key, _ = load_private_key((PKI / "inter-ca.key.pem").read_bytes())
    ca = load_certificates((PKI / "inter-ca.pem").read_bytes())[0]
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mediasec EC Signer")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(0x4001)
            .not_valid_before(dt.datetime(2020, 1, 1)).not_valid_after(dt.datetime(2099, 1, 1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    kp, cp = tmp / "ec.key.pem", tmp / "ec.pem"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()))
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return kp, cp


def tsa_files(tmp: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """An RSA time-stamping authority (EKU timeStamping) under the test intermediate CA, and
    an ``openssl ts -reply`` configuration for it."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    ca_key, _ = load_private_key((PKI / "inter-ca.key.pem").read_bytes())
    ca = load_certificates((PKI / "inter-ca.pem").read_bytes())[0]
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mediasec Test TSA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(0x4002)
            .not_valid_before(dt.datetime(2020, 1, 1)).not_valid_after(dt.datetime(2099, 1, 1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.TIME_STAMPING]),
                           critical=True)
            .sign(ca_key, hashes.SHA256()))
    kp, cp, cfg = tmp / "tsa.key.pem", tmp / "tsa.pem", tmp / "tsa.cnf"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()))
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "tsaserial").write_text("01\n")
    cfg.write_text(f"""[ tsa ]
default_tsa = tsa1
[ tsa1 ]
serial = {tmp / "tsaserial"}
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_alg = sha256
""")
    return kp, cp, cfg
