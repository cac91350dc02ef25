"""Signer certificate checks against a caller-given ``TrustContext``.

Path building and validation are done by ``cryptography``'s X.509 verifier (RFC 5280
path validation, CA constraints via its Web PKI CA policy); the end-entity policy is
relaxed to what a document signer needs (no SAN or EKU requirement), and the key usage
is checked here: a signer's certificate must allow digitalSignature or nonRepudiation.
"""

from __future__ import annotations

import datetime as _dt

from cryptography import x509
from cryptography.x509 import verification as xv

from mediasec.errors import SignatureError
from mediasec.pki import certs as pcerts
from mediasec.policy import TrustContext

__all__ = ["check_signer_certificate", "signing_chain_problem"]


def _check_time(cert: x509.Certificate, at: _dt.datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise SignatureError(f"the signer's certificate is not valid before "
                             f"{cert.not_valid_before_utc:%Y-%m-%d} (checked at {at:%Y-%m-%d})",
                             code="SIG_CERT_NOT_YET_VALID")
    if at > cert.not_valid_after_utc:
        raise SignatureError(f"the signer's certificate expired on "
                             f"{cert.not_valid_after_utc:%Y-%m-%d} (checked at {at:%Y-%m-%d})",
                             code="SIG_CERT_EXPIRED")


def _check_key_usage(cert: x509.Certificate) -> None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (ku.digital_signature or ku.content_commitment):
        raise SignatureError("the signer's certificate does not allow digitalSignature or "
                             "nonRepudiation (key usage)", code="SIG_KEYUSAGE")


#: (leaf, carried chain, anchors, intermediates, exact check time) -> outcome. Every file
#: of a medium carries the same signer chain and (one job) the same signingTime, so the
#: path validation runs once per medium, not once per file. The key holds the exact time
#: used (and its UTC offset, which the messages' dates are written in), so files signed at
#: different times are each validated at their own time.
#: The map belongs to the running job (see ``pki.certs._Memo``).
_RESULTS = pcerts._Memo(64)


def check_signer_certificate(cert: x509.Certificate, *, carried=(), trust: TrustContext,
                             signing_time: _dt.datetime | None = None) -> list[x509.Certificate]:
    """Validate ``cert`` to one of ``trust.anchors``; return the chain or raise SignatureError.

    The check time is ``trust.at``, else the signature's signingTime, else now.
    """
    at = trust.at or signing_time or _dt.datetime.now(_dt.timezone.utc)
    if at.tzinfo is None:
        at = at.replace(tzinfo=_dt.timezone.utc)
    key = (cert, tuple(carried), tuple(trust.anchors), tuple(trust.intermediates), at,
           at.utcoffset())
    hit = _RESULTS.lookup(key)
    if hit is None:
        try:
            hit = ("ok", tuple(_validate(cert, carried, trust, at)))
        except SignatureError as exc:
            hit = ("error", exc.message, exc.code)
        _RESULTS.put(key, hit)
    if hit[0] == "ok":
        return list(hit[1])
    raise SignatureError(hit[1], code=hit[2])


def _validate(cert: x509.Certificate, carried, trust: TrustContext,
              at: _dt.datetime) -> list[x509.Certificate]:
    _check_key_usage(cert)
    _check_time(cert, at)
    if not trust.anchors:
        raise SignatureError("no trust anchor given (--trust CA.pem)", code="SIG_NO_TRUST_ANCHOR")
    intermediates = [c for c in (*carried, *trust.intermediates) if c != cert]
    builder = (xv.PolicyBuilder().store(xv.Store(list(trust.anchors)))
               .time(at.astimezone(_dt.timezone.utc).replace(tzinfo=None))
               .extension_policies(ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(),
                                   ee_policy=xv.ExtensionPolicy.permit_all()))
    try:
        chain = builder.build_client_verifier().verify(cert, intermediates).chain
    except xv.VerificationError as exc:
        text = " ".join(str(exc).split())
        if "expired" in text or "not yet valid" in text:
            code = "SIG_CHAIN_EXPIRED"
        else:
            code = "SIG_CHAIN_UNTRUSTED"
        if "candidates exhausted" in text:  # the verifier's words for "no path at all"
            raise SignatureError(
                "the signer's certificate does not chain to a trust anchor: no path from its "
                f"issuer ({cert.issuer.rfc4514_string()}) to the trust anchors through the "
                "certificates carried with the signature", code=code) from exc
        raise SignatureError(f"the signer's certificate does not chain to a trust anchor: "
                             f"{text}", code=code) from exc
    return list(chain)


def signing_chain_problem(cert: x509.Certificate, chain=(), *,
                          trust: TrustContext | None = None) -> str | None:
    """At signing time: why a receiver may not get from the signer to a trust anchor, or
    None. With ``trust`` anchors, the full check (as a receiver holding them would make,
    at the current time); without, only that the carried certificates link the signer to
    its issuer (a self-issued signer, or ``chain`` holding the signer's issuer)."""
    if trust is not None and trust.anchors:
        try:
            check_signer_certificate(cert, carried=tuple(chain), trust=trust)
        except SignatureError as exc:
            return f"checked against the given trust anchors: {exc.message}"
        return None
    if cert.issuer == cert.subject:
        return None  # self-issued: the receiver's anchor is the certificate itself
    issuer = cert.issuer.rfc4514_string()
    if any(c.subject == cert.issuer for c in chain):
        return None
    where = ("no --sign-chain was given" if not chain else
             "the --sign-chain certificates do not include it")
    return (f"the signer's certificate is issued by {issuer} and {where}: receivers can "
            "check the signatures only if they hold that issuer itself as a trust anchor "
            "(give --sign-chain with the issuing CA certificates, and --trust CA.pem to "
            "check the whole chain now)")
