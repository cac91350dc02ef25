"""RSA key transport (ktri, PS3.15 D.1): ``KeyTransportRecipient`` writes a RecipientInfo from
a per-recipient template with one RSA operation; ``KeyDecrypter`` finds and opens ours.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from asn1crypto import algos as aalgos
from asn1crypto import cms as acms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from mediasec.cms import oids
from mediasec.cms.algorithms import HASHES
from mediasec.cms.recipients import (Decrypter, Spliced, Unwrapped, describe_recipient,
                                     masked_recipient_infos)
from mediasec.errors import DecryptionError, InputError, NoRecipientError, UsageError
from mediasec.pki import certs as pcerts
from mediasec.policy import AlgorithmPolicy

__all__ = ["KeyTransportRecipient", "KeyDecrypter"]

#: (KeyDecrypter, masked RecipientInfos) -> its unwrap plan (see KeyDecrypter._plan)
_UNWRAP_PLANS = pcerts.Memo(64)


@dataclass(eq=False)
class KeyTransportRecipient:
    """An RSA recipient certificate: RSAES-PKCS1-v1_5 (the profile's), OAEP on request."""

    certificate: object
    oaep: bool = False
    use_ski: bool = False
    policy: AlgorithmPolicy = AlgorithmPolicy()
    _template: Spliced | None = field(default=None, repr=False)

    def __post_init__(self):
        self.policy.check_rsa_bits(pcerts.rsa_bits(self.certificate),
                                   f"recipient {pcerts.describe(self.certificate)}")

    def _encrypt(self, cek: bytes) -> bytes:
        pub = self.certificate.public_key()
        if self.oaep:
            return pub.encrypt(cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                 algorithm=hashes.SHA256(), label=None))
        return pub.encrypt(cek, padding.PKCS1v15())

    def _spliced(self) -> Spliced:
        if self._template is None:
            filler = secrets.token_bytes((pcerts.rsa_bits(self.certificate) + 7) // 8)
            self._template = Spliced(self._info(filler).dump(), [filler])
        return self._template

    def recipient_info_der(self, cek: bytes, content_cipher: str) -> bytes:
        """The encoded RecipientInfo (fast: a per-recipient template, one RSA operation)."""
        return self._spliced().fill(self._encrypt(cek))

    def recipient_info_size(self, cek_len: int, content_cipher: str) -> int:
        """The exact length of ``recipient_info_der`` for a ``cek_len``-byte key, with no
        RSA operation (a file's layout is planned before its key is transported)."""
        return len(self._spliced().der)

    def _info(self, enc: bytes) -> acms.RecipientInfo:
        if self.oaep:
            sha256 = {"algorithm": "sha256"}
            alg = {"algorithm": "rsaes_oaep", "parameters": aalgos.RSAESOAEPParams({
                "hash_algorithm": sha256,
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": sha256}})}
        else:
            alg = {"algorithm": "rsaes_pkcs1v15"}
        if self.use_ski:
            rid = acms.RecipientIdentifier(
                name="subject_key_identifier",
                value=pcerts.subject_key_id(self.certificate))
            version = "v2"
        else:
            rid = acms.RecipientIdentifier(name="issuer_and_serial_number",
                                           value=pcerts.issuer_and_serial(self.certificate))
            version = "v0"
        return acms.RecipientInfo(name="ktri", value=acms.KeyTransRecipientInfo({
            "version": version, "rid": rid, "key_encryption_algorithm": alg,
            "encrypted_key": enc}))


class KeyDecrypter(Decrypter):
    """An RSA private key, with its certificate when known (to pick the right recipient)."""

    def __init__(self, key, certificate=None):
        self._key = key
        self.certificate = certificate
        if certificate is not None and (certificate.public_key().public_numbers()
                                        != key.public_key().public_numbers()):
            raise UsageError("the key does not belong to the certificate given with it",
                             code="USAGE_KEY_CERT_MISMATCH")

    def _matches(self, rid) -> bool | None:
        """True/False when decidable, None when we hold no certificate (try the key)."""
        if rid.name == "subject_key_identifier":
            ski = rid.chosen.native
            if self.certificate is not None:
                return ski == pcerts.subject_key_id(self.certificate)
            return None
        if self.certificate is None:
            return None
        issuer_der, serial = pcerts.issuer_serial_parts(self.certificate)
        if rid.chosen["serial_number"].native != serial:
            return False
        # identical DER first: asn1crypto's Name equality runs LDAP string preparation on
        # every attribute (milliseconds per file on a disc of thousands)
        issuer = rid.chosen["issuer"]
        return (issuer.dump() == issuer_der
                or issuer == pcerts.issuer_and_serial(self.certificate)["issuer"])

    def unwrap(self, infos: acms.RecipientInfos, key_len: int) -> Unwrapped:
        raw = infos.dump()
        masked, holes = masked_recipient_infos(raw)
        if masked is not None:
            plan = _UNWRAP_PLANS.lookup((self, masked))
            if plan is None:
                plan = self._plan(infos, raw, holes)
                if plan is not None:
                    _UNWRAP_PLANS.put((self, masked), plan)
            if plan is not None:
                return self._unwrap_planned(plan, raw, key_len)
        return self._unwrap(infos, key_len)

    def _plan(self, infos, raw: bytes, holes) -> tuple | None:
        """What ``_unwrap`` decides from everything but the encrypted keys: per ktri, in
        order, (description, match, padding, findings, key range); None (use ``_unwrap``)
        when a ktri cannot be mapped onto a key range or anything raises."""
        out = []
        try:
            ktris = [ri for ri in infos if ri.name == "ktri"]
            if len(ktris) != len(holes):
                return None
            for ri, (a, b) in zip(ktris, holes):
                k = ri.chosen
                if k["encrypted_key"].native != raw[a:b]:
                    return None
                desc = describe_recipient(ri)
                match = self._matches(k["rid"])
                if match is False:
                    out.append((desc, False, None, (), (a, b)))
                    continue
                pad, findings = self._padding(k["key_encryption_algorithm"])
                out.append((desc, match, pad, tuple(findings), (a, b)))
        except Exception:  # noqa: BLE001 - the full path reports it, in its own order
            return None
        return tuple(out)

    def _unwrap_planned(self, plan, raw: bytes, key_len: int) -> Unwrapped:
        found = []
        for desc, match, pad, findings, (a, b) in plan:
            found.append(dict(desc))
            if match is False:
                continue
            try:
                cek = self._key.decrypt(raw[a:b], pad)
            except ValueError:
                cek = None
            if cek is None or len(cek) != key_len:
                if match:
                    raise DecryptionError("the encrypted content key for our recipient does "
                                          "not decrypt (damaged file)")
                continue
            return Unwrapped(cek, found[-1], findings)
        raise NoRecipientError(
            "none of the file's recipients matches the given key"
            + (f"; recipients: {_recipients_text(found)}" if found else
               "; the file has no key-transport recipients"))

    def _padding(self, alg) -> tuple:
        findings = []
        if alg["algorithm"].dotted == oids.RSAES_OAEP:
            params = alg["parameters"]
            h = HASHES[params["hash_algorithm"]["algorithm"].native]()
            mh = HASHES[params["mask_gen_algorithm"]["parameters"]["algorithm"].native]()
            pad = padding.OAEP(mgf=padding.MGF1(mh), algorithm=h, label=None)
            findings.append(("ALG_OAEP_EXTENSION", "RSAES-OAEP key transport is not named "
                             "by PS3.15 D.1 (read as an extension)"))
        elif alg["algorithm"].dotted == oids.RSA_ENCRYPTION:
            pad = padding.PKCS1v15()
        else:
            raise InputError(f"key transport {alg['algorithm'].dotted} is not supported",
                             code="CMS_ALG_UNSUPPORTED")
        if self._key.key_size < 2048:
            findings.append(("ALG_LEGACY", f"RSA-{self._key.key_size} key transport"))
        return pad, findings

    def _unwrap(self, infos: acms.RecipientInfos, key_len: int) -> Unwrapped:
        found = []
        for ri in infos:
            if ri.name != "ktri":
                continue
            k = ri.chosen
            found.append(describe_recipient(ri))
            match = self._matches(k["rid"])
            if match is False:
                continue
            pad, findings = self._padding(k["key_encryption_algorithm"])
            try:
                cek = self._key.decrypt(k["encrypted_key"].native, pad)
            except ValueError:
                cek = None
            if cek is None or len(cek) != key_len:
                if match:  # our recipient, but the key block is damaged: not "wrong key"
                    raise DecryptionError("the encrypted content key for our recipient does "
                                          "not decrypt (damaged file)")
                continue  # no certificate to match with: just not this recipient
            return Unwrapped(cek, found[-1], tuple(findings))
        raise NoRecipientError(
            "none of the file's recipients matches the given key"
            + (f"; recipients: {_recipients_text(found)}" if found else
               "; the file has no key-transport recipients"))


def _recipients_text(found: list[dict]) -> str:
    parts = []
    for d in found:
        if "serial" in d:
            parts.append(f"serial {d['serial']} of {d['issuer']}")
        elif "subject_key_identifier" in d:
            parts.append(f"SKI {d['subject_key_identifier']}")
        else:
            parts.append(d["kind"])
    return "; ".join(parts)
