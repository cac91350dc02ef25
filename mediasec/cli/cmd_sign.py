"""``sign`` and ``check-signatures``: DICOM dataset digital signatures (PS3.15 Annex C).

Flags to ``mediasec.api.SignFilesRequest`` / ``CheckSignaturesRequest``, results rendered."""

from __future__ import annotations

import click

from mediasec.api import (CheckSignaturesRequest, SignFilesRequest, check_signatures,
                          check_signer, sign_files, sign_outputs)
from mediasec.cli.exits import FAILED, OK, report_error
from mediasec.cli.main import cli
from mediasec.cli.render import warn, write_json
from mediasec.cms.keys import RSASigner
from mediasec.errors import MediasecError
from mediasec.io.keys import read_certificates, read_private_key
from mediasec.policy import AlgorithmPolicy, TrustContext
from mediasec.sign import SignRequest
from mediasec.sign.signature import parse_tag_name

__all__ = []

MACS = {"sha256": "SHA256", "sha384": "SHA384", "sha512": "SHA512", "sha1": "SHA1",
        "ripemd160": "RIPEMD160", "md5": "MD5"}


@cli.command("sign")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False),
              help="Signer private key (PEM, DER or PKCS#12), RSA >= 2048 bits.")
@click.option("--cert", "cert_path", required=True, type=click.Path(dir_okay=False),
              help="Signer certificate (embedded in the signature).")
@click.option("--chain", type=click.Path(dir_okay=False),
              help="Intermediate CA certificates, checked to issue the signer (DICOM carries "
                   "the signer's certificate only).")
@click.option("--key-password-env", metavar="VAR",
              help="Environment variable holding the key's passphrase (else a prompt).")
@click.option("--profile", type=click.Choice(["base", "creator", "authorization", "sr"]),
              default=None, help="Signature profile (PS3.15 Annex C); default base, "
                                 "authorization with --authorize.")
@click.option("--mac", type=click.Choice(list(MACS)), default="sha256", show_default=True,
              help="MAC algorithm; sha1 and ripemd160 need --allow-legacy; md5 is refused.")
@click.option("--allow-legacy", is_flag=True, help="Allow SHA-1/RIPEMD-160 MACs and RSA "
                                                   "keys under 2048 bits.")
@click.option("--purpose", metavar="CODE", help="Digital Signature Purpose (ASTM E1762 "
                                                "code 1-18, e.g. 1 author, 5 verification).")
@click.option("--item", "item_path", metavar="SEQ[i].SEQ[j]",
              help="Sign inside this sequence item instead of the main data set.")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Sign only this element (keyword or gggg,eeee; repeatable) plus the "
                   "profile's minimum.")
@click.option("--authorize", is_flag=True, help="Make an Authorized Original: SOP Instance "
              "Status OR (or none) -> AO, SOP Authorization DateTime, then an Authorization "
              "signature (PS3.15 A.1).")
@click.option("--authorization-comment", metavar="TEXT", help="(0100,0424) with --authorize.")
@click.option("--equipment-cert-number", metavar="TEXT",
              help="(0100,0426) Authorization Equipment Certification Number.")
@click.option("--drop-covering-signatures", is_flag=True, help="When a status change would "
              "break a signature that covers the status, remove that signature (reported) "
              "instead of refusing.")
@click.option("-o", "--output", "out", type=click.Path(), help="Output file, or a folder "
                                                                "for several inputs.")
@click.option("--in-place", is_flag=True, help="Replace each input (atomically).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "json_out", metavar="FILE", help="Write a JSON result ('-' = stdout).")
def sign_cmd(files, key_path, cert_path, chain, key_password_env, profile, mac, allow_legacy,
             purpose, item_path, tags, authorize, authorization_comment,
             equipment_cert_number, drop_covering_signatures, out, in_place, force, json_out):
    """Add a DICOM digital signature (FFFA,FFFA) to each FILE."""
    if profile is None:
        profile = "authorization" if authorize else "base"
    sign_outputs(files, out, in_place=in_place, force=force)  # before any prompt
    policy = AlgorithmPolicy(allow_legacy=allow_legacy)
    key, _bundled = read_private_key(key_path, password_env=key_password_env)
    cert = read_certificates(cert_path, "signer certificate")[0]
    try:
        signer = RSASigner(key, cert, policy=policy)
    except MediasecError as exc:
        raise exc.with_path(key_path)
    chain_certs = read_certificates(chain, "chain file") if chain else ()
    try:
        check_signer(signer, chain_certs)
    except MediasecError as exc:
        raise exc.with_path(chain if exc.code == "SIGN_CHAIN_MISMATCH" else cert_path)
    try:
        tag_list = tuple(parse_tag_name(t) for t in tags) if tags else None
    except MediasecError as exc:
        raise exc.with_path(files[0])
    result = sign_files(SignFilesRequest(
        files, signer, output=out, in_place=in_place,
        signature=SignRequest(profile=profile, mac=MACS[mac], purpose=purpose,
                              item_path=item_path, tags=tag_list),
        chain=chain_certs, policy=policy, authorize=authorize,
        authorization_comment=authorization_comment,
        equipment_cert_number=equipment_cert_number,
        drop_covering_signatures=drop_covering_signatures, force=force))
    for f in result.files:
        for d in f.dropped:
            warn(f.input, f"removed signature {d.mac_id} ({d.uid}), which covered "
                          f"{', '.join(d.covered)}")
    body = result.to_dict()
    write_json(json_out, body.pop("schema"), body)


# -- check-signatures ---------------------------------------------------------------------------

@cli.command("check-signatures")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--trust", multiple=True, type=click.Path(dir_okay=False),
              help="Trust anchor certificate(s) (repeatable).")
@click.option("--intermediates", multiple=True, type=click.Path(dir_okay=False),
              help="Untrusted intermediate CA certificates for path building (repeatable).")
@click.option("--json", "json_out", metavar="FILE", help="Write a JSON result ('-' = stdout).")
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too: no trust anchor, "
              "weak algorithms, keys outside the DICOM profiles.")
@click.pass_context
def check_signatures_cmd(ctx, files, trust, intermediates, json_out, strict):
    """Verify every DICOM digital signature in each FILE, at every level."""
    anchors, inters = [], []
    for p in trust:
        anchors += read_certificates(p, "trust anchor file")
    for p in intermediates:
        inters += read_certificates(p, "intermediates file")
    result = check_signatures(CheckSignaturesRequest(
        files, TrustContext(anchors=tuple(anchors), intermediates=tuple(inters)),
        strict=strict))
    code = FAILED if result.failed else OK
    for _path, exc in result.errors:
        code = max(code, report_error(exc, verbose=ctx.obj.get("verbose", False)))
    if json_out != "-":
        for path, report in result.reports:
            click.echo(_text(path, report))
    body = result.to_dict()
    write_json(json_out, body.pop("schema"), body)
    ctx.exit(code)


def _text(path, report) -> str:
    lines = [f"{path}: {report.outcome.value}"
             + (f" (SOP Instance Status {report.sop_instance_status}"
                f"{', signed' if report.status_covered() else ', not covered by a signature'})"
                if report.sop_instance_status else "")]
    for s in report.signatures:
        where = s.path or "main data set"
        prof = ", ".join(s.profiles) or "none"
        purpose = f", purpose {s.purpose['code']}" if s.purpose else ""
        ts = ", certified timestamp" if s.timestamp else ""
        lines.append(f"  {where}: signature {s.mac_id} [{s.status}] {s.signer or '?'}, "
                     f"{s.datetime or '?'}, {s.mac_algorithm or '?'}, {s.key or '?'}, "
                     f"profiles: {prof}{purpose}{ts}")
        if s.status not in ("valid",):
            lines.append(f"    {s.code}: {s.message}")
    for f in report.findings:
        if f.code in ("SIG_WEAK_ALGORITHM", "SIG_NO_DICOM_PROFILE", "SIG_NONE",
                      "STATUS_UNSUPPORTED"):
            lines.append(f"  [{f.outcome.value}] {f.code}: {f.message}")
    return "\n".join(lines)
