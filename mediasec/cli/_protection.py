"""Keys from the flags, shared by the verbs: recipients, signers and policy for writers
(``protect``, ``build``); decrypters for readers (``unprotect``, ``inspect``, ``verify``...)."""

from __future__ import annotations

import click

from mediasec.cms.keys import (KeyDecrypter, KeyTransportRecipient, PasswordDecrypter,
                               PasswordRecipient, RSASigner)
from mediasec.errors import MediasecError, UsageError
from mediasec.io.keys import read_certificates, read_password, read_private_key
from mediasec.cli.render import warn
from mediasec.pki.trust import signing_chain_problem
from mediasec.policy import CIPHERS, AlgorithmPolicy, TrustContext

__all__ = ["protection_options", "load_protection", "key_options", "with_options", "load_keys",
           "load_trust"]


def protection_options(f):
    """The protect flags of shared/CLI.md, for any verb that writes Secure DICOM Files."""
    options = [
        click.option("--encrypt-to", multiple=True, type=click.Path(dir_okay=False),
                     help="Recipient certificate (repeatable)."),
        click.option("--password-env", metavar="VAR", help="Environment variable holding a "
                     "password recipient's password."),
        click.option("--password-prompt", "ask_password", is_flag=True,
                     help="Ask for a password recipient's password on the terminal."),
        click.option("--sign-key", type=click.Path(dir_okay=False), help="Signer private key."),
        click.option("--sign-cert", type=click.Path(dir_okay=False), help="Signer certificate."),
        click.option("--sign-chain", type=click.Path(dir_okay=False),
                     help="Intermediate certificates to carry with the signature."),
        click.option("--key-password-env", metavar="VAR", help="Environment variable holding "
                     "the signing key's passphrase."),
        click.option("--trust", "sign_trust", multiple=True, type=click.Path(dir_okay=False),
                     help="Trust anchor(s) to check the signer's chain against before signing "
                     "(a warning when it does not reach one; repeatable)."),
        click.option("--cipher", type=click.Choice(list(CIPHERS)), default="aes-256",
                     show_default=True),
        click.option("--digest", type=click.Choice(["sha256", "sha384", "sha512", "sha1"]),
                     default="sha256", show_default=True),
        click.option("--oaep", is_flag=True, help="RSAES-OAEP key transport (not named by "
                     "PS3.15 D.1; readers may not support it)."),
        click.option("--recipient-id", type=click.Choice(["issuer-serial", "ski"]),
                     default="issuer-serial", show_default=True),
        click.option("--framing", type=click.Choice(["ber", "der"]), default="ber",
                     show_default=True,
                     help="ber: indefinite lengths, chunked content; der: definite lengths."),
        click.option("--pbkdf2-iterations", type=click.IntRange(1, 10_000_000),
                     default=600_000, show_default=True),
        click.option("--allow-legacy", is_flag=True,
                     help="Allow 3DES, SHA-1 and RSA under 2048 bits."),
    ]
    for o in reversed(options):
        f = o(f)
    return f


def load_protection(*, subject: str, encrypt_to, password_env, ask_password, sign_key,
                    sign_cert, sign_chain, key_password_env, cipher, digest, oaep,
                    recipient_id, pbkdf2_iterations, allow_legacy, sign_trust=(), **_ignored):
    """``(policy, recipients, signers)``; ``subject`` names the input in policy errors."""
    policy = AlgorithmPolicy(allow_legacy=allow_legacy)
    try:
        policy.check_cipher(cipher)
        policy.check_digest(digest)
    except MediasecError as exc:
        raise exc.with_path(subject)
    recipients = []
    for p in encrypt_to:
        for c in read_certificates(p, "recipient certificate"):
            try:
                recipients.append(KeyTransportRecipient(c, oaep=oaep,
                                                        use_ski=recipient_id == "ski",
                                                        policy=policy))
            except MediasecError as exc:
                raise exc.with_path(p)
    pw = read_password(password_env, prompt=ask_password, confirm=True)
    if pw is not None:
        try:
            recipients.append(PasswordRecipient(pw, iterations=pbkdf2_iterations,
                                                policy=policy))
        except MediasecError as exc:
            raise exc.with_path(password_env or "password")
    signers = []
    if sign_key or sign_cert:
        if not (sign_key and sign_cert):
            raise UsageError("--sign-key and --sign-cert go together", code="USAGE")
        key, _ = read_private_key(sign_key, password_env=key_password_env)
        cert = read_certificates(sign_cert, "signer certificate")[0]
        chain = read_certificates(sign_chain, "chain file") if sign_chain else ()
        try:
            signers.append(RSASigner(key, cert, chain, digest=digest, policy=policy))
        except MediasecError as exc:
            raise exc.with_path(sign_key)
        anchors = [c for p in sign_trust for c in read_certificates(p, "trust anchor file")]
        problem = signing_chain_problem(cert, chain,
                                        trust=TrustContext(anchors=tuple(anchors)))
        if problem:  # the signatures are made anyway; the receiver's check decides
            warn(sign_cert, f"signer chain: {problem}")
    return policy, recipients, signers


# -- reading: decrypters ------------------------------------------------------------------

key_options = [
    click.option("--key", type=click.Path(dir_okay=False), help="Recipient private key "
                 "(PEM, DER or PKCS#12)."),
    click.option("--cert", type=click.Path(dir_okay=False), help="The key's certificate, to "
                 "pick the matching recipient."),
    click.option("--key-password-env", metavar="VAR", help="Environment variable holding "
                 "the key file's passphrase (else a prompt)."),
    click.option("--password-env", metavar="VAR", help="Environment variable holding the "
                 "media password."),
    click.option("--password-prompt", "ask_password", is_flag=True, help="Ask for the media "
                 "password on the terminal."),
    click.option("--trust", multiple=True, type=click.Path(dir_okay=False),
                 help="Trust anchor certificate(s) for signers (repeatable)."),
]


def with_options(options):
    def deco(f):
        for o in reversed(options):
            f = o(f)
        return f
    return deco


def load_keys(key, cert, key_password_env, password_env, ask_password) -> list:
    """The Decrypter objects the flags name (a key file and/or a password)."""
    decrypters = []
    if key:
        k, bundled = read_private_key(key, password_env=key_password_env)
        c = read_certificates(cert)[0] if cert else bundled
        try:
            decrypters.append(KeyDecrypter(k, c))
        except MediasecError as exc:
            raise exc.with_path(cert or key)
    elif cert:
        raise UsageError("--cert needs --key", code="USAGE")
    pw = read_password(password_env, prompt=ask_password)
    if pw is not None:
        try:
            decrypters.append(PasswordDecrypter(pw))
        except MediasecError as exc:
            raise exc.with_path(password_env or "password")
    return decrypters


def load_trust(paths) -> TrustContext | None:
    """The trust anchors of ``--trust`` (None when there are none)."""
    anchors = []
    for p in paths:
        anchors += read_certificates(p, "trust anchor file")
    return TrustContext(anchors=tuple(anchors)) if anchors else None
