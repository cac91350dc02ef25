"""``sign`` and ``check-signatures``: DICOM dataset digital signatures (PS3.15 Annex C)."""

from __future__ import annotations

import datetime as _dt
import os

import click

from mediasec.cli.exits import FAILED, OK, report_error
from mediasec.cli.main import cli
from mediasec.cli.render import warn, write_json
from mediasec.cms.keys import RSASigner
from mediasec.errors import MediasecError, UsageError
from mediasec.io.fs import AtomicOutput, env_error
from mediasec.io.keys import read_certificates, read_private_key
from mediasec.policy import AlgorithmPolicy, TrustContext
from mediasec.report import Outcome
from mediasec.sign import SignRequest, check_part, finish, open_part10, sign_part
from mediasec.sign.signature import parse_tag_name
from mediasec.sign.status import change_status

__all__ = []

MACS = {"sha256": "SHA256", "sha384": "SHA384", "sha512": "SHA512", "sha1": "SHA1",
        "ripemd160": "RIPEMD160", "md5": "MD5"}


def _open(path: str):
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise UsageError("no such file", path=path, code="USAGE_NO_SUCH_FILE") from exc
    except IsADirectoryError as exc:
        raise UsageError("is a directory, not a file", path=path,
                         code="USAGE_NO_SUCH_FILE") from exc
    except OSError as exc:
        raise env_error(exc, path) from exc


def _outputs(files, out, in_place, force):
    if in_place and out:
        raise UsageError("give -o OUT or --in-place, not both", code="USAGE")
    if not in_place and not out:
        raise UsageError("give -o OUT (a file, or a folder for several inputs) or --in-place",
                         code="USAGE")
    if in_place:
        return [(f, f) for f in files]
    if os.path.isdir(out):
        pairs = [(f, os.path.join(out, os.path.basename(f))) for f in files]
    elif len(files) > 1:
        raise UsageError("several inputs: -o must be an existing folder", path=out,
                         code="USAGE")
    else:
        pairs = [(files[0], out)]
    for src, dst in pairs:
        if os.path.lexists(dst) and not force:
            raise UsageError("output already exists (give --force to replace it)", path=dst,
                             code="USAGE_OUTPUT_EXISTS")
        if os.path.abspath(src) == os.path.abspath(dst):
            raise UsageError("output is the input; use --in-place", path=dst, code="USAGE")
    return pairs


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
    if authorize and profile != "authorization":
        raise UsageError("--authorize signs with the authorization profile", code="USAGE")
    if authorize and item_path:
        raise UsageError("--authorize signs the main data set; --item does not apply",
                         code="USAGE")
    pairs = _outputs(files, out, in_place, force)
    policy = AlgorithmPolicy(allow_legacy=allow_legacy)
    key, bundled = read_private_key(key_path, password_env=key_password_env)
    cert = read_certificates(cert_path, "signer certificate")[0]
    _check_signer_cert(cert, cert_path, chain)
    try:
        signer = RSASigner(key, cert, policy=policy)
    except MediasecError as exc:
        raise exc.with_path(key_path)
    try:
        tag_list = tuple(parse_tag_name(t) for t in tags) if tags else None
    except MediasecError as exc:
        raise exc.with_path(files[0])
    request = SignRequest(profile=profile, mac=MACS[mac], purpose=purpose,
                          item_path=item_path, tags=tag_list)
    results = []
    for src, dst in pairs:
        results.append(_sign_one(src, dst, signer, request, policy, authorize,
                                 authorization_comment, equipment_cert_number,
                                 drop_covering_signatures))
    write_json(json_out, "mediasec.sign/1", {"files": results})


def _check_signer_cert(cert, cert_path, chain) -> None:
    now = _dt.datetime.now(_dt.timezone.utc)
    if not cert.not_valid_before_utc < now < cert.not_valid_after_utc:
        raise UsageError("the signer's certificate is not valid now (a signature made with it "
                         "would not verify)", path=cert_path, code="SIGN_CERT_NOT_VALID")
    if chain:
        issuers = read_certificates(chain, "chain file")
        if not any(c.subject == cert.issuer for c in issuers):
            raise UsageError("the chain file holds no issuer of the signer's certificate",
                             path=chain, code="SIGN_CHAIN_MISMATCH")


def _sign_one(src, dst, signer, request, policy, authorize, comment, equipment, drop):
    f = _open(src)
    with f:
        try:
            part = open_part10(f)
            dropped = []
            if authorize:
                part, dropped = change_status(part, "AO", comment=comment,
                                              equipment_cert=equipment, drop_covering=drop)
            part, facts = sign_part(part, signer, request, policy=policy)
            _self_check(part, facts)
            signed = finish(part, [facts], dropped)
            target = AtomicOutput(dst)
            with target as out:
                signed.write_to(_writer(out, dst))
                target.commit()
        except OSError as exc:
            raise env_error(exc, src) from exc
        except MediasecError as exc:
            raise exc.with_path(src)
    for d in dropped:
        warn(src, f"removed signature {d.mac_id} ({d.uid}), which covered "
                  f"{', '.join(d.covered)}")
    return {"input": src, "output": dst, "size": signed.size,
            "signature": facts.to_dict(), "dropped": [d.to_dict() for d in dropped],
            "sop_instance_status": "AO" if authorize else None}


def _self_check(part, facts) -> None:
    """Verify the signature just made before anything is written (a wrong answer is worse)."""
    report = check_part(part)
    mine = [s for s in report.signatures if s.uid == facts.uid]
    if len(mine) != 1 or mine[0].status not in ("valid", "trust_not_checked"):
        from mediasec.errors import InternalError
        raise InternalError("the signature just made does not verify: "
                            f"{mine[0].message if mine else 'not found'}")


def _writer(dst, out):
    def write(data):
        try:
            mv = memoryview(data)
            while mv:
                n = dst.write(mv)
                mv = mv[n:]
        except OSError as exc:
            raise env_error(exc, out) from exc
    return write


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
def check_signatures(ctx, files, trust, intermediates, json_out, strict):
    """Verify every DICOM digital signature in each FILE, at every level."""
    anchors, inters = [], []
    for p in trust:
        anchors += read_certificates(p, "trust anchor file")
    for p in intermediates:
        inters += read_certificates(p, "intermediates file")
    tc = TrustContext(anchors=tuple(anchors), intermediates=tuple(inters))
    docs, errors, code = [], [], OK
    quiet = json_out == "-"
    for path in files:
        try:
            f = _open(path)
            with f:
                try:
                    report = check_part(open_part10(f), trust=tc)
                except OSError as exc:
                    raise env_error(exc, path) from exc
                except MediasecError as exc:
                    raise exc.with_path(path)
        except MediasecError as exc:
            code = max(code, report_error(exc, verbose=ctx.obj.get("verbose", False)))
            errors.append({"path": path, "code": exc.code, "message": exc.message})
            continue
        except Exception as exc:  # noqa: BLE001 - one bad file must not hide the others' results
            code = max(code, report_error(exc))
            errors.append({"path": path, "code": "INTERNAL", "message": str(exc)})
            continue
        outcome = report.outcome
        if outcome is Outcome.FAILED or (strict and outcome in (Outcome.WARNING,
                                                                Outcome.INDETERMINATE)):
            code = max(code, FAILED)
        docs.append({"path": path, **report.to_dict()})
        if not quiet:
            click.echo(_text(path, report))
    overall = ("failed" if code else
               ("passed" if all(d["outcome"] == "passed" for d in docs) else "warning"))
    write_json(json_out, "mediasec.check-signatures/1",
               {"outcome": overall if not errors else "error", "strict": strict,
                "files": docs, "errors": errors})
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


# -- for other verbs: dataset signatures of a plain Part 10 file they produced -------------------

def dataset_signatures_of(where: int | str, trust: TrustContext, path: str) -> dict | None:
    """Check the dataset signatures of the Part 10 file open at descriptor ``where`` (read
    from its start, the descriptor itself untouched) or at path ``where``; warn about
    failures; the JSON block, or None when the file has none. Never fails the caller: the
    dataset signatures are reported, the verb's own checks decide its exit code."""
    try:
        f = os.fdopen(os.dup(where), "rb") if isinstance(where, int) else open(where, "rb")
        with f:
            report = check_part(open_part10(f), trust=trust)
    except (MediasecError, OSError) as exc:
        warn(path, f"dataset signatures not checked: {getattr(exc, 'message', exc)}")
        return None
    if not report.signatures:
        return None
    for s in report.signatures:
        if s.outcome is Outcome.FAILED:
            warn(path, f"dataset signature {s.mac_id} in {s.path or 'main data set'}: "
                       f"{s.code}: {s.message}")
    return report.to_dict()
