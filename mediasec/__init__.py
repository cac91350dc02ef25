"""mediasec: DICOM secure media (PS3.10 §7.4, PS3.11, PS3.12, PS3.15 Annex D).

The Python API (``mediasec.api``, re-exported here): one function per job, a request
object in and a result object out, progress as a callback, errors from
``mediasec.errors``::

    import mediasec
    result = mediasec.build(mediasec.BuildRequest(["study/"], "disc.iso",
                            recipients=[mediasec.PasswordRecipient(b"secret")]))
    report = mediasec.verify(mediasec.VerifyRequest("disc.iso",
                             decrypters=[mediasec.PasswordDecrypter(b"secret")]))

The command line runs the same functions. The names load on first use, so ``import
mediasec`` stays cheap; the layers are described in the README's design section.
"""

__version__ = "0.1.0"

__all__ = [
    # jobs
    "build", "check_build", "BuildRequest", "BuildResult",
    "verify", "VerifyRequest",
    "extract", "ExtractRequest",
    "list_medium", "ListRequest",
    "protect", "ProtectRequest", "ProtectResult",
    "unprotect", "UnprotectRequest",
    "inspect", "InspectRequest", "InspectResult",
    "deidentify", "DeidentifyRequest", "reidentify", "ReidentifyRequest", "RewriteResult",
    "sign_files", "SignFilesRequest", "SignFilesResult",
    "check_signatures", "CheckSignaturesRequest", "CheckSignaturesResult",
    "echo", "EchoRequest", "EchoResult", "send", "SendRequest", "SendResult",
    "receive", "ReceiveRequest", "ReceiveResult", "Receiver",
    # what requests hold
    "ProtectOptions", "AlgorithmPolicy", "TrustContext",
    "KeyTransportRecipient", "PasswordRecipient", "RSASigner", "KeyDecrypter",
    "PasswordDecrypter", "load_certificates", "load_private_key", "DeidJob", "SignRequest",
    "TLSConfig", "PatientMapping",
    # the error tree
    "errors",
]

_FROM = {
    "ProtectOptions": "mediasec.cms.secure",
    "AlgorithmPolicy": "mediasec.policy", "TrustContext": "mediasec.policy",
    "KeyTransportRecipient": "mediasec.cms.keys", "PasswordRecipient": "mediasec.cms.keys",
    "RSASigner": "mediasec.cms.keys", "KeyDecrypter": "mediasec.cms.keys",
    "PasswordDecrypter": "mediasec.cms.keys",
    "load_certificates": "mediasec.pki.certs", "load_private_key": "mediasec.pki.certs",
    "DeidJob": "mediasec.deid.files",
    "SignRequest": "mediasec.sign",
    "TLSConfig": "mediasec.net.tls", "PatientMapping": "mediasec.media.reconcile",
}


def __getattr__(name: str):
    """Load the API on first use (PEP 562)."""
    import importlib

    if name == "errors":
        return importlib.import_module("mediasec.errors")
    if name in __all__:
        module = importlib.import_module(_FROM.get(name, "mediasec.api"))
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mediasec' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
